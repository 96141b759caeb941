"""Multi-process data-parallel training under ``torchrun`` (DistributedDataParallel).

Every rank draws the same global batch (a pure function of seed, epoch and batch index, so no
DistributedSampler is needed) and trains on its shard, rows ``rank::world_size``; DDP averages the
gradients, so the update equals a single process at the same global batch. Masks are identical on every rank:
they are computed from all-reduced gradients, synchronised weights and seeded generators, and broadcast from
rank 0 whenever they change. Only rank 0 writes outputs; checkpoints hold every rank's RNG state.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch."""
        return tensor[self.rank :: self.world_size] if self.enabled else tensor

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over ranks (in place)."""
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def gather(self, value: object) -> list:
        """``value`` from every rank, in rank order."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def gather_states(self, state: object) -> list:
        """``state`` (nested dicts, lists and tensors) from every rank, in rank order, with its tensors on the CPU
        (object collectives pickle them)."""
        return self.gather(on_cpu(state))


def on_cpu(value: object) -> object:
    """``value`` with every tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


_created = False  # init_distributed created the process group (close_distributed then destroys it)


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str) -> Distributed:
    """The process group torchrun describes in the environment (NCCL on CUDA, Gloo on CPU), or one process."""
    global _created
    if world_size_from_env() == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        _created = True
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def close_distributed(finished: bool = False) -> None:
    """Destroy the process group ``init_distributed`` created (one a caller created is theirs): a group still alive
    when the interpreter exits can abort the process from its backend's threads ("terminate called without an
    active exception"), failing a run that finished. After a finished run (``finished``) the ranks first meet in a
    barrier, so none closes its connections while another still has traffic on them, and the run's objects that
    hold the group in reference cycles (DDP, the trainer) are collected while the interpreter is fully alive."""
    global _created
    if _created and dist.is_initialized():
        if finished:
            dist.barrier()
            gc.collect()
        dist.destroy_process_group()
    _created = False


def broadcast_masks(masks: list[torch.Tensor]) -> None:
    """Rank 0's masks on every rank (bool tensors, sent as bytes)."""
    if dist.is_available() and dist.is_initialized():
        for mask in masks:
            dist.broadcast(mask.view(torch.uint8), src=0)
