"""The Python API: sparsify one's own model in one's own training loop, or run a configured run in-process.

``sparsify`` builds the same method objects the runner uses, with the same option defaults (the method's schema),
and installs the starting masks at construction. ``train`` is the ``sparsetrain`` command without a subprocess.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .compose.checks import check_sparsity
from .compose.command_line import compose_group, compose_run
from .errors import ConfigError
from .runs.lock import release as release_lock
from .methods.catalog import METHODS


NEEDED_ARGUMENTS = {  # what a method's ``needs`` asks of sparsify's caller
    "train_batches": ("batches", "the (inputs, targets) pairs it scores the weights on, e.g. batches=train_loader"),
    "in_shape": ("in_shape", "the shape of one input, e.g. in_shape=(3, 32, 32)"),
}


class Sparsifier:
    """One method driving the masks of a user's model; see ``sparsify``.

    Per optimizer step, after ``loss.backward()``: either ``step()`` instead of ``optimizer.step()``, or
    ``if sparsifier.before_step(): optimizer.step()`` then ``sparsifier.after_step()``.
    """

    def __init__(self, method: Any, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        self.method = method
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.round = 0
        self.steps = 0  # optimizer steps (taken or vetoed) in the current round
        self.events: list[dict] = []  # what the method logged (pruning events, mask updates)

    def step(self) -> None:
        """Mask the gradients, take the optimizer step (unless the method skips it), re-mask, update on schedule."""
        if self.before_step():
            self.optimizer.step()
        self.after_step()

    def before_step(self) -> bool:
        """After backward: masks gradients (and, on update steps, may change masks); False: skip optimizer.step()."""
        return self.method.before_optimizer_step(self.steps)

    def after_step(self) -> None:
        """After optimizer.step() (or the skipped one): re-masks weights, prunes or regrows on schedule."""
        step = self.steps
        self.steps += 1
        self.method.after_optimizer_step(step)
        if self.steps % self.steps_per_epoch == 0:
            self.method.on_epoch_end(self.steps // self.steps_per_epoch)

    def next_round(self) -> None:
        """Multi-round methods (lth): end this round (prune, rewind) and start the next with fresh optimizer state;
        train the round from ``steps`` (the rewind point) again."""
        self.method.end_round(self.round)
        self.round += 1
        self.optimizer.state.clear()
        self.steps = self.method.round_start_step(self.round)
        self.method.start_round(self.round)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Bool masks by parameter name (True: the weight is active)."""
        return self.method.masks() or {}

    def sparsity(self) -> float:
        """Fraction of zeros over the masked weights."""
        total = sum(mask.numel() for mask in self.masks.values())
        return 1.0 - sum(int(mask.sum()) for mask in self.masks.values()) / max(total, 1)

    def state_dict(self) -> dict:
        """For the user's checkpoint, next to the model's and the optimizer's state."""
        return {"method": self.method.state_dict(), "round": self.round, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.round, self.steps = state["round"], state["steps"]


def sparsify(model: nn.Module, optimizer: torch.optim.Optimizer, method: str = "rigl", sparsity: float = 0.9, *,
             total_steps: int, steps_per_epoch: int | None = None, seed: int = 0,
             batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             in_shape: tuple[int, ...] | None = None, lr_factor: Callable[[int], float] | None = None,
             **options: Any) -> Sparsifier:
    """Sparsify ``model`` with ``method`` at ``sparsity``; the starting masks are in place on return.

    ``total_steps``: the optimizer steps of training (schedules such as RigL's update decay and GMP's ramp are
    fractions of it); ``steps_per_epoch``: for options in epochs (``frequency="1ep"``; default: total_steps).
    ``options``: the method's config keys (``delta_t=100``, ``distribution="erk"``, ``exclude=["last"]``, ...),
    defaults as ``sparsetrain --help method=<method>`` shows them. Saliency methods (snip, grasp) score on ``batches``
    ((inputs, targets) pairs, ``loss_fn`` default cross-entropy), synflow needs ``in_shape``. Raises ConfigError
    (one line) for a bad name or option.
    """
    from .methods.base import RunContext
    from .methods.build import build_method
    from .sparsity.saliency import pair_loss

    check_sparsity(sparsity)
    try:
        built = build_method(_method_config(method, options), sparsity)
    except ValueError as error:  # ConfigError included
        raise ConfigError(str(error)) from None
    given = {"train_batches": batches, "in_shape": in_shape}
    for need in built.needs:
        argument, example = NEEDED_ARGUMENTS[need]
        if given[need] is None:
            raise ConfigError(f"sparsify(method={method!r}) needs {argument}: {example}")
    device = next(model.parameters()).device
    steps_per_epoch = steps_per_epoch or total_steps
    sparsifier = Sparsifier(built, optimizer, steps_per_epoch)
    built.setup(RunContext(
        model=model, optimizer=optimizer, train_batches=None if batches is None else _Batches(batches),
        loss_fn=pair_loss(loss_fn or nn.CrossEntropyLoss()), in_shape=in_shape, seed=seed,
        device=device,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, lr_factor=lr_factor or (lambda step: 1.0),
        fresh_weights=lambda weight_seed: _fresh_weights(model, weight_seed), run_dir=Path.cwd(),
        log=sparsifier.events.append,
    ))
    built.start_round(0)
    return sparsifier


def train(overrides: Sequence[str] = ()) -> dict:
    """Run ``sparsetrain <overrides>`` in this process and return its summary (ConfigError for bad input).

    The run directory is ``hydra.run.dir`` (default ``outputs/<date>/<time>``); ``resume=<dir>`` works as on the
    command line. Seeds and torch's determinism settings are set for the run and stay set afterwards.
    """
    from .runner.run import run

    overrides = list(overrides)
    job, run_dir = compose_run(overrides)  # every check of the command line; the run directory's lock taken
    try:
        return run(job, run_dir, overrides)
    finally:
        release_lock(run_dir)


def _method_config(name: str, options: dict[str, Any]) -> Any:
    """The method's config as the runner composes it (its schema's defaults), with ``options`` merged in."""
    METHODS.record(name, key="method")  # an unknown name: one line with the choices
    return compose_group("method", name, options)


class _Batches:
    """The user's batches as the methods read training data: ``epoch(e)`` iterates them."""

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return itertools.islice(iter(self.batches), start_batch, None)


def _fresh_weights(model: nn.Module, seed: int) -> dict:
    """A new initialisation of ``model`` from ``seed`` (every module's ``reset_parameters``), global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = copy.deepcopy(model)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return fresh.state_dict()
