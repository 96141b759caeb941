"""Gradual magnitude pruning (Zhu & Gupta 2017): from ``initial_sparsity`` to ``sparsity`` on a cubic schedule,
pruning the smallest-magnitude active weights at each event; pruned weights never come back. With
``criterion=obs`` the events prune by oBERT's second-order saliency and update the remaining weights
(``criteria.py``): gradual oBERT.

Paper: https://arxiv.org/abs/1710.01878; the authors' code: https://github.com/tensorflow/model-optimization.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..times import Interval, parse_interval
from ..sparsity.schedules import cubic_sparsity, is_pruning_step
from .base import MaskUpdates, RunContext
from .criteria import CriterionPruning


class GMP(CriterionPruning):
    name = "gmp"
    patterns = ("unstructured", "block", "fanin", "channel")  # nm fixes the density: nothing to ramp

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if not 0.0 <= cfg.initial_sparsity <= sparsity:
            raise ConfigError(
                f"sparsity={sparsity} is below method.initial_sparsity={cfg.initial_sparsity}; GMP prunes from "
                "initial to final sparsity, e.g. sparsity=0.9 method.initial_sparsity=0"
            )
        if _times(cfg)["frequency"].count == 0:
            raise ConfigError("method.frequency=0 must be positive; e.g. method.frequency=1ep")

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        percent = [key for key, time in _times(cfg).items() if time.unit == "%"]
        return f"method.{percent[0]}={getattr(cfg, percent[0])} is a percent of the run's length" if percent else None

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.times = _times(cfg)

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        steps = {key: time.steps(ctx.steps_per_epoch, ctx.total_steps) for key, time in self.times.items()}
        if steps["start"] > steps["end"]:
            raise ConfigError(
                f"method.start={self.cfg.start} is after method.end={self.cfg.end} ({steps['start']} > "
                f"{steps['end']} steps); e.g. method.start=0ep method.end=75%"
            )
        self.schedule = dict(initial=self.cfg.initial_sparsity, final=self.sparsity, start=steps["start"],
                             end=steps["end"], frequency=max(steps["frequency"], 1))

    def mask_updates(self) -> MaskUpdates:
        start, frequency, total = self.schedule["start"], self.schedule["frequency"], self.ctx.total_steps
        return MaskUpdates([steps for steps in range(start, total + 1, frequency) if self._due(steps)],
                           f"its first pruning event is after step {start} (method.start={self.cfg.start})",
                           f"method.start=0ep, or {self.ctx.length_override(self.schedule['end'])}")

    def start_round(self, round_index: int) -> None:
        self._prune_if_due(0)

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        self._prune_if_due(step + 1)

    def is_plain_step(self, step: int) -> bool:
        return not self._due(step + 1)

    def may_stop(self, steps_done: int) -> bool:
        return steps_done >= self.schedule["end"]  # the last pruning event is behind

    def _due(self, steps_done: int) -> bool:
        return is_pruning_step(steps_done, start=self.schedule["start"], end=self.schedule["end"],
                               frequency=self.schedule["frequency"])

    def _prune_if_due(self, steps_done: int) -> None:
        if not self._due(steps_done):
            return
        event = (steps_done - self.schedule["start"]) // self.schedule["frequency"]
        self.prune_by_criterion(cubic_sparsity(steps_done, **self.schedule), event)


def _times(cfg: Any) -> dict[str, Interval]:
    """The pruning events' start, end and frequency (ConfigError, one line, for a bad one)."""
    return {key: parse_interval(f"method.{key}", getattr(cfg, key), allow_percent=True)
            for key in ("start", "end", "frequency")}
