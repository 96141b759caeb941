"""The interface between the trainer and a sparsification method.

The trainer calls these hooks and knows no method by name. A method keeps its own state (masks, schedules,
counters, generators) and returns it from ``state_dict`` so a resumed run continues exactly. Masks are
applied in place by the method (gradients in ``before_optimizer_step``; weights and optimizer state in
``after_optimizer_step``), never by forward hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..runs.distributed import Distributed


@dataclass
class RunContext:
    """What a method may read or use; built once per run by the trainer's composition root."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_batches: Any  # sparsetrain.data.TrainBatches: for methods that score weights on data
    loss_fn: Callable[[nn.Module, Any], torch.Tensor]  # the task's training loss of (model, made batch)
    in_shape: tuple[int, ...]  # of one input: (C, H, W) of images
    seed: int
    device: torch.device
    steps_per_epoch: int
    total_steps: int  # optimizer steps per round
    lr_factor: Callable[[int], float]  # the configured learning-rate schedule, as a factor of the base lr
    fresh_weights: Callable[[int], dict]  # a new initialisation of the model (state_dict) from a seed
    run_dir: Path
    log: Callable[[dict], None]  # append an event (stamped with round, epoch, step, time) to metrics.jsonl
    config: dict = field(default_factory=dict)  # the run's resolved config (e.g. to compare with a source run)
    num_classes: int = 0  # of the dataset (e.g. for class-balanced scoring data)
    init_masks: dict[str, torch.Tensor] | None = None  # masks of a sparse `init_from` source: the starting masks
    example: Any = None  # a one-sample batch of the data: (input, target), or named tensors (dict)
    dist: Distributed = field(default_factory=Distributed)  # this process's rank and the number of processes

    def length_override(self, steps: int) -> str:
        """The override that makes the run at least ``steps`` long, in the unit the run's length is given in."""
        if self.config.get("steps"):
            return f"steps={steps}"
        return f"epochs={-(-steps // self.steps_per_epoch)}"


@dataclass(frozen=True)
class MaskUpdates:
    """The mask updates a method plans in the run (``Method.mask_updates``); the runner warns when there are none."""

    at: list[int]  # the steps taken when each update comes (0: before the first step)
    schedule: str  # when they come, naming the keys that set it: "after every 100 steps (method.delta_t=100)"
    fix: str  # overrides that bring an update into the run: "method.delta_t=10 or epochs=5"


class Method:
    """Base class: every hook is a no-op, so ``dense`` is this class with a name."""

    name: str = "base"
    rounds: int = 1  # > 1 for methods that train several times (lottery-ticket levels, GaP cycles)
    table_name: str = "rounds"  # <name>.csv / .png: the per-round table of a multi-round method
    # Under torchrun: True trains one model data-parallel (DDP, each rank a shard of every batch, masks broadcast
    # from rank 0); False lets every rank train its own model on full batches (no DDP, each rank's state in the
    # checkpoint), and the method brings the ranks together itself (P-GaP's replicas).
    data_parallel: bool = True
    needs: tuple[str, ...] = ()  # what setup reads of the RunContext beyond model and optimizer (train_batches, in_shape)
    round_keys: tuple[str, ...] = ()  # keys besides the run's length that set the rounds and their lengths

    def same_model_on_every_rank(self, round_index: int) -> bool:
        """Under torchrun with ``data_parallel`` False: whether every rank trains the same model in round
        ``round_index`` (its FLOPs count once) or each rank its own (the run's FLOPs are theirs added up)."""
        return True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A class that overrides a step hook without saying which of its steps are plain has none: its hooks
        may rely on running at every step, so the trainer never replays them from a graph."""
        super().__init_subclass__(**kwargs)
        overrides = {"before_optimizer_step", "after_optimizer_step"} & set(vars(cls))
        if overrides and "is_plain_step" not in vars(cls):
            cls.is_plain_step = _never_plain

    def __init__(self, cfg: Any, sparsity: float) -> None:
        self.cfg = cfg
        self.sparsity = sparsity
        self.ctx: RunContext | None = None

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        """ConfigError (one line) for a bad option, or for a file an option names that is not there; run before
        anything is written (preflight) and by ``build_method``, so that building a method only sets its state."""

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        """Whether the ``sparsity`` key sets this method's target (a zero target is then refused)."""
        return False

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        """The option that ties what the method did so far to the run's total length, as ``method.<key>=<value>``
        and why (then a run cannot be extended to more epochs), or None when a longer run only adds steps."""
        return None

    @classmethod
    def check_config(cls, cfg: Any, config: dict) -> None:
        """Checks against the whole resolved run config (ConfigError); run before anything is written, and again
        in ``setup``."""

    def setup(self, ctx: RunContext) -> None:
        """Called once, after model and optimizer exist and before any checkpoint state is loaded."""
        self.ctx = ctx
        self.check_config(self.cfg, ctx.config)

    def round_start_step(self, round_index: int) -> int:
        """The step a round starts at (its data order and learning rate from there); lottery tickets rewound
        to iteration k start later rounds at k."""
        return 0

    def round_steps(self, round_index: int) -> int:
        """Optimizer steps of round ``round_index``; GaP's final fine-tuning is longer than its steps."""
        return self.ctx.total_steps

    def start_round(self, round_index: int) -> None:
        """Before the round's first step (not called again when a run resumes inside the round)."""

    def before_optimizer_step(self, step: int) -> bool:
        """After backward, before the optimizer step of step ``step`` (0-based in the round).

        Return False to skip the optimizer step (e.g. RigL's reference code on mask-update steps).
        """
        return True

    def after_optimizer_step(self, step: int) -> None:
        """After the optimizer step (or the skipped one): re-mask, update masks on schedule."""

    def is_plain_step(self, step: int) -> bool:
        """Whether the hooks of step ``step`` do only the method's every-step work: the same device operations
        at every plain step, with no host read of a device value and no Python state that later steps depend
        on. The trainer may then replay the step from a captured graph, where the hooks ran once at capture.
        Mask updates, pruning events and snapshots are not plain: they run eagerly. A subclass that overrides
        a step hook must override this too, or none of its steps is plain."""
        return True

    def schedule_factor(self, round_index: int, step: int, factor: float) -> float:
        """The learning-rate factor for ``step``; ``factor`` is the configured schedule's (e.g. fine-tuning
        after one-shot pruning replaces it by a constant)."""
        return factor

    def finetune_factor(self) -> float:
        """The constant learning-rate factor of fine-tuning: the schedule's rate at the start of its last epoch (at its
        start for a run shorter than an epoch)."""
        return self.ctx.lr_factor(max(self.ctx.total_steps - self.ctx.steps_per_epoch, 0))

    def may_stop(self, steps_done: int) -> bool:
        """Whether training may end after ``steps_done`` steps of the round without cutting the method's schedule
        short: early stopping watches only the evaluations where it may (GMP: after its last pruning event)."""
        return True

    def on_epoch_end(self, epoch: int) -> None:
        """After the last step of epoch ``epoch`` (1-based) and that epoch's evaluation."""

    def end_round(self, round_index: int) -> None:
        """After the round's final evaluation: prune, rewind, regrow for the next round."""

    def masks(self) -> dict[str, torch.Tensor] | None:
        """Boolean masks by parameter name, or None for a dense model."""
        return None

    def densities(self) -> dict[str, float] | None:
        """Fraction of active weights per masked layer (read every step for FLOP accounting: cache it)."""
        masks = self.masks()
        return None if masks is None else {name: float(mask.float().mean()) for name, mask in masks.items()}

    def mask_updates(self) -> MaskUpdates | None:
        """The mask updates planned in this run (asked once, after ``setup``); None for a method whose updates cannot
        miss the run (none by design, every step, between rounds)."""
        return None

    def dense_backward(self, step: int) -> bool:
        """Whether step ``step`` needed the dense weight gradient (FLOP accounting: RigL's update steps)."""
        return False

    def summary(self) -> dict:
        """Method-specific results for summary.json (e.g. the ITOP rate)."""
        return {}

    def fixed_layers(self) -> dict[str, float]:
        """Masked layers whose density the user fixed (outside the sparsity budget)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"method {self.name} has no state, got keys {sorted(state)}")


def _never_plain(self: Method, step: int) -> bool:
    return False
