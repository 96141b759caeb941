"""GaP: scheduled grow-and-prune (Ma et al., ICLR 2022),
cyclic (C-GaP) and parallel (P-GaP: its k replicas one after another on one device, or as k processes under
torchrun).

The prunable layers form k partitions (``partitions``: one entry of ``|``-separated patterns each, or
``num_partitions`` contiguous groups balanced by parameter count). Partition 0 starts dense, the others at random
masks of the target. Each later round (a GaP step of the run's length, learning rate restarted) first
magnitude-prunes the dense partition to its per-layer target, then grows the next partition to dense: its pruned
weights re-enter at zero, with the optimizer state cleared at the round start. After ``rounds`` cycles the last
dense partition is pruned and the all-sparse model fine-tuned for ``finetune``. The schedule is
``sparsity.phases.cyclic_gap``; layers with a fixed density (``dense_layers``, ``layer_density``) belong to no
partition.

P-GaP (``mode=parallel``, schedule ``sparsity.phases.parallel_gap``): all partitions start at random masks; in each
cycle, replica i (one round each) starts from the shared sparse model, grows partition i and trains with its own
dropout draws; after the last replica, each partition's block is taken from the replica that grew it (its layers'
modules and, with ``combine=block``, every tensor up to the next prunable layer: the BatchNorm after a convolution,
a transformer layer's LayerNorms, as the authors' ``combine_sparse_block``; the tensors of no partition, such as a
shared embedding, from the first replica), or with ``combine=average`` the tensors outside the partitions' modules
are averaged over the replicas; then every layer is magnitude-pruned to its target; the result is the next shared
model. A fine-tuning round with
fixed masks ends the run. Under torchrun with k processes, rank i trains replica i (``data_parallel`` False: full
batches, no gradient all-reduce, replica i's data order and dropout draws), one round per cycle; the combine
gathers every rank's hand-in, so every rank re-prunes the same model, and the fine-tuning runs on every rank
identically (the one-device run's fine-tuning: same batches, same dropout draws), so both give the same result.

Paper: https://arxiv.org/abs/2106.09857; the authors' code: https://github.com/boone891214/GaP.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..times import parse_interval
from ..runs.distributed import world_size_from_env
from ..seeds import derive_seed
from ..sparsity.phases import GapStep, balanced_partitions, cyclic_gap, parallel_gap
from ..sparsity.targets import match_layers
from .base import RunContext
from .masked import MaskedMethod


class GaP(MaskedMethod):
    name = "gap"
    table_name = "gap_steps"
    round_keys = ("method.num_partitions", "method.rounds", "method.finetune")  # 1 + k x rounds GaP steps, fine-tuning

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        checks = [
            (cfg.mode in SCHEDULES, "method.mode", "must be cyclic or parallel", "method.mode=cyclic"),
            (cfg.combine in ("block", "average"), "method.combine", "must be block or average", "method.combine=block"),
            (cfg.scope == "layerwise", "method.scope", "must be layerwise (GaP prunes each layer to its target)",
             "method.scope=layerwise"),
            (cfg.rounds >= 1, "method.rounds", "must be a positive number of cycles", "method.rounds=2"),
            (len(cfg.partitions) != 1 and (cfg.partitions or cfg.num_partitions >= 2), "method.num_partitions",
             "must give at least 2 partitions", "method.num_partitions=3"),
        ]
        for ok, key, rule, example in checks:
            if not ok:
                raise ConfigError(f"{key}={getattr(cfg, key.split('.', 1)[1])!r} {rule}; e.g. {example}")
        parse_interval("method.finetune", cfg.finetune, allow_percent=True)

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.finetune_time = parse_interval("method.finetune", cfg.finetune, allow_percent=True)
        self.k = len(cfg.partitions) or cfg.num_partitions
        self.rounds = len(SCHEDULES[cfg.mode](self.k, cfg.rounds, 0, 0))  # on one device; `setup` knows the rank
        self.data_parallel = cfg.mode != "parallel"  # P-GaP under torchrun: every rank its own replica
        self.shared: dict | None = None  # P-GaP: the shared sparse model every replica starts from
        self.replicas: list[dict[str, torch.Tensor]] = []  # P-GaP: what each finished replica of a cycle hands in

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return f"method.rounds={cfg.rounds}: every GaP step trains for the run's length"

    @classmethod
    def check_config(cls, cfg: Any, config: dict) -> None:
        super().check_config(cfg, config)
        world, k = world_size_from_env(), len(cfg.partitions) or cfg.num_partitions
        if cfg.mode == "parallel" and world > 1 and world != k:
            raise ConfigError(f"method.num_partitions={k} must equal the {world} torchrun processes with "
                              f"method.mode=parallel (one replica per process); e.g. method.num_partitions={world}")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.partitions = self._partitions()
        finetune = self.finetune_time.steps(ctx.steps_per_epoch, ctx.total_steps)
        self.replica = ctx.dist.rank if ctx.dist.enabled and not self.data_parallel else None  # None: all in turn
        self.schedule: list[GapStep] = parallel_gap(self.k, self.cfg.rounds, ctx.total_steps, finetune, self.replica) \
            if self.cfg.mode == "parallel" else cyclic_gap(self.k, self.cfg.rounds, ctx.total_steps, finetune)
        self.rounds = len(self.schedule)
        self.trainings_per_cycle = self.k if self.replica is None else 1
        self.owner = self._owners(list(ctx.model.state_dict()))

    def _owners(self, names: list[str]) -> dict[str, int | None]:
        """The partition each model tensor travels with in P-GaP's combine (None: no partition's). A partition's
        layers own their modules' tensors; with ``combine=block`` every other tensor belongs to the last prunable
        layer before it in the model's order (a BatchNorm or LayerNorm to the layer it follows, as the authors'
        ``combine_sparse_block`` copies whole blocks), and a layer kept out of the partitions, or a tensor before
        every prunable layer (the embeddings), owns what follows it until the next partition's layer."""
        partition = {name.rpartition(".")[0]: j for j, group in enumerate(self.partitions) for name in group}
        prunable = {name.rpartition(".")[0] for name in self.targets.params}
        owners, current = {}, None
        for name in names:
            module = name.rpartition(".")[0]
            if module in prunable:
                current = partition.get(module)
            owners[name] = current if module in prunable or self.cfg.combine == "block" else None
        return owners

    def _partitions(self) -> list[list[str]]:
        names = [name for name in self.targets.params if name not in self.targets.fixed]
        if not self.cfg.partitions:
            sizes = [self.targets.params[name].numel() for name in names]
            return [[names[i] for i in group] for group in balanced_partitions(sizes, self.k)]
        groups = [sorted({name for pattern in entry.split("|")
                          for name in match_layers(self.targets.params, pattern.strip(), "method.partitions")
                          if name not in self.targets.fixed}, key=names.index) for entry in self.cfg.partitions]
        counted = [name for group in groups for name in group]
        if sorted(counted) != sorted(names):
            twice = sorted({name for name in counted if counted.count(name) > 1})
            missing = [name for name in names if name not in counted]
            raise ConfigError(f"method.partitions={list(self.cfg.partitions)} must put every prunable layer in "
                              f"exactly one partition (in two: "
                              f"{twice[:3]}, in none: {missing[:3]}); e.g. method.partitions=['{names[0]}|"
                              f"{names[1] if len(names) > 1 else names[0]}','{names[-1]}']")
        return groups

    def round_steps(self, round_index: int) -> int:
        return self.schedule[round_index].length

    def same_model_on_every_rank(self, round_index: int) -> bool:
        return self.schedule[round_index].grow is None  # P-GaP's fine-tuning; each rank grows its own replica

    def dense_partition(self, round_index: int) -> int | None:
        """The partition that is dense during training ``round_index`` (None in the final fine-tuning)."""
        return self.schedule[round_index].grow

    @torch.no_grad()
    def start_round(self, round_index: int) -> None:
        step = self.schedule[round_index]
        if self.cfg.mode == "parallel":
            self._start_replica(round_index, step)
            return
        if round_index == 0:
            masks = self.draw_random_masks(self.sparsity, self.ctx.seed)
        else:  # every sparse layer keeps its mask (its active weights are its top count); the dense one is pruned
            masks = self.select(self.magnitude_scores(), self.sparsity)
        if step.grow is not None:
            masks.update({name: torch.ones_like(masks[name]) for name in self.partitions[step.grow]})
        self.set_masks(masks)
        self.ctx.log({"event": "gap_step", "pruned": step.prune, "grown": step.grow,
                      "sparsity": self.maskset.sparsity()})

    # ---- P-GaP ------------------------------------------------------------------------------------------------
    def _start_replica(self, round_index: int, step: GapStep) -> None:
        if self.shared is None:
            self.set_masks(self.draw_random_masks(self.sparsity, self.ctx.seed))
            self.shared = self._snapshot()
        self.ctx.model.load_state_dict(self.shared["model"])
        masks = {name: mask.clone() for name, mask in self.shared["masks"].items()}
        if step.grow is not None:
            masks.update({name: torch.ones_like(masks[name]) for name in self.partitions[step.grow]})
            cycle = round_index // self.trainings_per_cycle
            torch.manual_seed(derive_seed("gap-replica", self.ctx.seed, cycle, step.grow))  # its own dropout draws
        else:  # the fine-tuning: the same dropout draws on one device and on every rank
            torch.manual_seed(derive_seed("gap-finetune", self.ctx.seed))
        self.set_masks(masks)
        self.ctx.log({"event": "gap_step", "replica": step.grow, "sparsity": self.maskset.sparsity()})

    @torch.no_grad()
    def end_round(self, round_index: int) -> None:
        step = self.schedule[round_index]
        if self.cfg.mode != "parallel" or step.grow is None:
            return
        state = self.ctx.model.state_dict()
        hand_in = {name: tensor.clone() for name, tensor in state.items() if self.owner[name] in (step.grow, None)}
        if self.replica is None:
            self.replicas.append(hand_in)
        else:  # every rank's replica, in rank (= replica) order
            device = self.ctx.device
            self.replicas = [{name: tensor.to(device) for name, tensor in replica.items()}
                             for replica in self.ctx.dist.gather_states(hand_in)]
        if step.combine:
            self.ctx.model.load_state_dict(self.combine(self.replicas))
            self.set_masks({name: torch.ones_like(mask) for name, mask in self.maskset.masks.items()})
            self.prune(self.magnitude_scores(), self.sparsity)
            self.shared, self.replicas = self._snapshot(), []

    def combine(self, replicas: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The model of a cycle before its re-prune: partition i's tensors from replica i; the tensors of no partition
        from the first replica (``combine=block``, the authors' shared embedding) or averaged over the replicas
        (``combine=average``; integer buffers from the last one)."""
        combined = {}
        for name, owner in self.owner.items():
            if owner is not None:
                combined[name] = replicas[owner][name]
            elif self.cfg.combine == "block":
                combined[name] = replicas[0][name]
            elif replicas[-1][name].is_floating_point():
                combined[name] = torch.stack([replica[name] for replica in replicas]).mean(0)
            else:
                combined[name] = replicas[-1][name]
        return combined

    def _snapshot(self) -> dict:
        return {"model": {name: tensor.clone() for name, tensor in self.ctx.model.state_dict().items()},
                "masks": self.maskset.state_dict()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "shared": self.shared, "replicas": self.replicas}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.shared, self.replicas = state.get("shared"), state.get("replicas", [])


SCHEDULES = {"cyclic": cyclic_gap, "parallel": parallel_gap}
