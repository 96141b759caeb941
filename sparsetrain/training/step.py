"""The training step: forward, backward, the method's hooks and the optimizer step; eager, or from a graph.

On the graph path a step is two captured graphs, replayed with the batch's plan copied into static buffers:
making the batch from its plan (gather, augmentation, normalisation), forward and backward (the dense gradients
stay in ``.grad``), then the update: the method's hooks around the optimizer step, as they are on the method's
plain steps (``Method.is_plain_step``: only the every-step mask work). Both are captured at the first plain step
after ``WARMUP_STEPS`` eager ones. Any other step (a mask update, a pruning event, a snapshot) replays
forward/backward and runs the update eagerly; it changes masks in place, so the graphs stay valid. A round's
fresh optimizer state or a loaded checkpoint needs a new capture (``reset``).

The optimizer is the fused implementation with the learning rate as a device tensor on both paths, so the
graph can change the rate without a capture, and eager and replayed steps compute the same numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..data.batches import Batch, BatchPlan
from ..methods.base import Method
from ..runs.distributed import Distributed
from ..tasks.base import Task
from .graphs import CaptureError, CudaGraph, RecordedGraph

log = logging.getLogger(__name__)

WARMUP_STEPS = 3  # eager plain steps before a capture (optimizer state, cuDNN algorithm choice, lazy init)
PATHS = ("eager", "cuda_graph", "recorded_graph")


def choose_path(setting: str, device: torch.device, dist: Distributed, compiled: bool,
                optimizer: torch.optim.Optimizer, static_shapes: bool = True) -> tuple[str, str]:
    """(path, why) for ``step_graph=setting``: ``auto`` captures on CUDA where it is safe, ``on`` always (on a
    CPU with the recorded graph, which checks that the step can be captured), ``off`` never. Batches whose
    shapes vary (``static_shapes`` False: dynamic padding) always run eagerly."""
    if setting == "off":
        return "eager", "step_graph=off"
    blocker = ("torchrun (DDP)" if dist.enabled else "compile=true" if compiled else
               "batches of varying shapes (dataset.padding=dynamic, dataset.batch_tokens)" if not static_shapes else
               f"{type(optimizer).__name__} (no fused implementation)" if not has_fused(optimizer) else None)
    if blocker is not None:
        if setting == "on":
            raise ConfigError(f"step_graph=on cannot capture a step under {blocker}; use step_graph=auto")
        return "eager", f"no step graph under {blocker}"
    if device.type == "cuda":
        return "cuda_graph", f"step_graph={setting} on CUDA"
    if setting == "on":
        return "recorded_graph", "step_graph=on off CUDA: recorded ops, graph semantics without the speed-up"
    return "eager", "step_graph=auto off CUDA"


def has_fused(optimizer: torch.optim.Optimizer) -> bool:
    return "fused" in optimizer.defaults


@dataclass
class StepParts:
    model: nn.Module
    step_model: nn.Module  # the model, its DDP or torch.compile wrapper
    optimizer: torch.optim.Optimizer
    method: Method
    task: Task  # feeds the made batch to the model and computes the training loss
    make_batch: Callable[[BatchPlan], Batch]  # the training batches' ``make``: device work only
    autocast: Callable[[], Any]
    dist: Distributed
    clip: Callable[[torch.optim.Optimizer], None] | None = None  # gradient clipping before the optimizer step


class TrainStep:
    """Runs training steps; ``loss_sum`` accumulates the training loss on the device (no host sync)."""

    def __init__(self, parts: StepParts, path: str) -> None:
        if path not in PATHS:
            raise ValueError(f"unknown step path {path!r}")
        self.p = parts
        self.path = path
        device = next(parts.model.parameters()).device
        self.loss_sum = torch.zeros((), device=device)
        self.base_lrs: list[float] = []  # per param group; groups a method adds in its setup join at ``reset``
        self.prepare_optimizer()
        self.lr = self.base_lrs[self.logged_group]
        # (forward/backward, plain update), made at the first plain step; the update None if it cannot be captured
        self.graphs: tuple[CudaGraph | RecordedGraph, CudaGraph | RecordedGraph | None] | None = None
        self.warmups = 0
        self.captured = False
        self.static: BatchPlan | None = None  # the captured step's plan buffers

    def prepare_optimizer(self) -> None:
        """Fused updates and a device-tensor learning rate in every param group (again after a state load); the
        base rate of a group seen for the first time is its configured rate."""
        groups = self.p.optimizer.param_groups
        self.base_lrs += [float(group["lr"]) for group in groups[len(self.base_lrs):]]
        # the group whose rate is logged: the first that trains something (a learned mask's scores when every
        # model parameter is frozen)
        self.logged_group = next((index for index, group in enumerate(groups) if group["params"]), 0)
        if not has_fused(self.p.optimizer):
            return
        for group in self.p.optimizer.param_groups:
            group["fused"], group["foreach"] = True, None
            if "capturable" in group:  # Adam, AdamW: capture refuses a step that is not marked capturable
                group["capturable"] = True
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=self.loss_sum.device)

    def reset(self) -> None:
        """The optimizer state was replaced or cleared: the next plain steps warm up and capture again."""
        self.prepare_optimizer()
        self.graphs, self.warmups, self.captured = None, 0, False

    def set_lr_factor(self, factor: float) -> None:
        """Learning rate = base rate x ``factor`` in every param group (written on the device: no capture)."""
        for group, base in zip(self.p.optimizer.param_groups, self.base_lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * factor)
            else:
                group["lr"] = base * factor
        self.lr = self.base_lrs[self.logged_group] * factor

    def __call__(self, plan: BatchPlan, step: int, advance: Callable[[], None]) -> None:
        """Train on the batch of ``plan`` as step ``step`` of the round; ``advance`` moves the trainer's position,
        between the optimizer step and the method's after-step hook (whose events carry the steps done)."""
        plain = self.p.method.is_plain_step(step)
        if self.path == "eager" or (not self.captured and not plain):
            self._eager_step(plan, step, advance)
            return
        if self.graphs is None:
            self.graphs = (CudaGraph if self.path == "cuda_graph" else RecordedGraph).pair()
        if self.warmups < WARMUP_STEPS:
            self.warmups += 1
            self.graphs[0].warm_up(lambda: self._eager_step(plan, step, advance))
            return
        if self.static is None:
            self.static = tuple(part.clone() for part in plan)
        for buffer, part in zip(self.static, plan):
            buffer.copy_(part)
        forward_backward, update = self.graphs
        if not self.captured:
            self._capture(step, advance)
        elif update is not None and plain:
            forward_backward.replay()
            update.replay()
            advance()
        else:
            forward_backward.replay()
            self._update(step, advance)

    def _capture(self, step: int, advance: Callable[[], None]) -> None:
        """Capture forward/backward and the plain update as two graphs, each run once as it is captured. On CUDA a
        part that cannot be captured runs eagerly for the rest of the run (a failed capture has run nothing); a
        recorded graph has run part of the step when it fails, so the run stops."""
        forward_backward, update = self.graphs
        if not self._try_capture(forward_backward, lambda: self._forward_backward(self.static)):
            self.path = "eager"
            self._eager_step(self.static, step, advance)
            return
        self.captured = True
        if not self._try_capture(update, lambda: self._update(step, lambda: None)):
            self.graphs = (forward_backward, None)
            self._update(step, advance)
            return
        advance()
        log.info("training step captured (%s): forward/backward and the plain update; mask updates and other "
                 "non-plain steps replay forward/backward and update eagerly", self.path)

    def _try_capture(self, graph: CudaGraph | RecordedGraph, part: Callable[[], None]) -> bool:
        try:
            graph.capture(part)
        except CaptureError as error:
            if self.path != "cuda_graph":
                raise ConfigError(f"step_graph=on: the training step cannot be captured ({error}); "
                                  "use step_graph=off") from None
            log.warning("part of the training step cannot be captured (%s); it runs eagerly", error)
            return False
        return True

    def _eager_step(self, plan: BatchPlan, step: int, advance: Callable[[], None]) -> None:
        self._forward_backward(plan)
        self._update(step, advance)

    def _forward_backward(self, plan: BatchPlan) -> None:
        """Loss and gradients of the batch of ``plan``; the dense weight gradients are left in ``.grad``."""
        p = self.p
        made = p.make_batch(plan)  # (inputs, targets), or named tensors (token ids, attention mask, labels)
        batch = {key: p.dist.shard(part) for key, part in made.items()} if isinstance(made, dict) else \
            tuple(p.dist.shard(part) for part in made)
        with p.autocast():
            loss = p.task.train_loss(p.step_model, batch)
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.loss_sum.add_(loss.detach())

    def _update(self, step: int, advance: Callable[[], None]) -> None:
        """The method's hooks around the optimizer step."""
        p = self.p
        if p.method.before_optimizer_step(step):
            if p.clip is not None:
                p.clip(p.optimizer)
            p.optimizer.step()
        advance()
        p.method.after_optimizer_step(step)
