"""Feedback between evaluations: every ``log_every`` steps the loop reads its loss accumulator once and reports the
running train loss, learning rate and sparsity (bar postfix on a terminal, a log line without one) with the pace
and the time left in the round."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class LossWindow:
    """The device loss accumulator's value (summed over the epoch) and step count at the last logging point."""

    loss_sum: float = 0.0
    count: int = 0

    def mean_since(self, loss_sum: float, count: int) -> float:
        """Mean loss of the steps since the last point; moves the point here."""
        mean = (loss_sum - self.loss_sum) / max(count - self.count, 1)
        self.loss_sum, self.count = loss_sum, count
        return mean


class Pace:
    """Steps per second since the previous call (host clock only), and the time the remaining steps take at it."""

    def __init__(self) -> None:
        self.restart(0)

    def restart(self, step: int) -> None:
        self.step, self.clock = step, time.perf_counter()

    def rate(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.clock, 1e-9)
        self.step, self.clock = step, now
        return rate


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_line(label: str, step: int, total: int, loss: float, lr: float, sparsity: float, steps_per_s: float,
                  batch_size: int) -> str:
    """``round 1/3 epoch 2/20 step 150/400: loss 0.4321 lr 0.0950 sparsity 0.9000, 12.3 steps/s (787 samples/s),
    ETA 0:20``."""
    eta = (total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    return (f"{label} step {step}/{total}: loss {loss:.4f} lr {lr:.4g} sparsity {sparsity:.4f}, "
            f"{steps_per_s:.1f} steps/s ({steps_per_s * batch_size:.0f} samples/s), "
            f"ETA {format_duration(eta) if eta != float('inf') else '?'}")
