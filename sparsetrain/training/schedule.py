"""Learning-rate schedules as pure functions of the optimizer step (so resume needs only the step)."""

from __future__ import annotations

import math
from typing import Any


def lr_factor(cfg: Any, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    ``cfg`` is the ``schedule`` config: a linear warm-up over ``warmup_epochs`` or ``warmup_steps`` (from
    1/warmup_steps to 1), then ``constant``, ``cosine`` or ``linear`` decay to ``final_lr_fraction`` at the last step,
    or ``multistep`` (times ``gamma`` at each epoch in ``milestones``), or ``cyclic_linear`` (see ``cyclic_linear``),
    or ``inverse_sqrt`` (fairseq's: ``sqrt(warmup_steps / step)`` after the warm-up, 1 at its end).
    With ``step_at=epoch`` the rate changes only at epoch starts, as a scheduler stepped at every epoch end (AC/DC's
    code): epoch e of the warm-up runs at (e + 1) / warmup_epochs, a milestone takes effect from the epoch after
    it, and the decays take their value at the epoch's first step.
    """
    if getattr(cfg, "step_at", "step") == "epoch":
        epoch, warmup = step // steps_per_epoch, round(cfg.warmup_epochs)
        if epoch < warmup:
            return (epoch + 1) / warmup
        if cfg.name == "multistep":
            return cfg.gamma ** sum(epoch > m for m in cfg.milestones)
        step = epoch * steps_per_epoch
    warmup_steps = warmup_length(cfg, steps_per_epoch)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.name == "inverse_sqrt":
        return math.sqrt(warmup_steps / step)
    if cfg.name == "multistep":
        passed = sum(step >= round(m * steps_per_epoch) for m in cfg.milestones)
        return cfg.gamma**passed
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cyclic_linear":
        return cyclic_linear(step, warmup_steps, round(cfg.cycle_start * steps_per_epoch),
                             max(round(cfg.cycle_epochs * steps_per_epoch), 1), cfg.final_lr_fraction)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    low = cfg.final_lr_fraction
    if cfg.name == "cosine":
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.name == "linear":
        return 1.0 - (1.0 - low) * progress
    raise ValueError(f"schedule.name={cfg.name!r} is not a schedule")


def warmup_length(cfg: Any, steps_per_epoch: int) -> int:
    """The warm-up in steps: ``warmup_steps``, or ``warmup_epochs`` of ``steps_per_epoch`` steps."""
    return getattr(cfg, "warmup_steps", 0) or round(cfg.warmup_epochs * steps_per_epoch)


def cyclic_linear(step: int, warmup_steps: int, start: int, cycle: int, low: float) -> float:
    """Linear decay from 1 to ``low`` that restarts every ``cycle`` steps from ``start`` (sparseml's
    ``cyclic_linear``; the oBERT recipe rewinds the learning rate at every pruning step this way).
    Before ``start`` (after the warm-up), one linear decay from 1 to ``low`` over that span."""
    if step < start:
        progress = (step - warmup_steps) / max(start - warmup_steps, 1)
    else:
        progress = (step - start) % cycle / cycle
    return 1.0 - (1.0 - low) * progress
