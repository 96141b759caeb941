"""How far training moves every parameter tensor from its starting weights (``finetune.drift``).

The starting weights are the model's parameters after ``init_from`` loaded, before the method's setup and step 0.
They are written once to ``checkpoints/start.pt`` (atomically, before the first checkpoint), so a resumed run
reports the same distances. Per tensor: ``relative_l2`` = ||W - W_start|| / ||W_start|| (0 for an unchanged
tensor that started at zero; null, ranked first, for one that started at zero and moved), ``l2`` = ||W - W_start||,
``changed_fraction`` = the fraction of entries with W != W_start. Buffers (BatchNorm running statistics) are not
parameters: they are not reported, and they update in train mode whether or not their layer is trainable.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..runs.checkpoint import load_checkpoint, save_checkpoint

START_NAME = "start.pt"
log = logging.getLogger(__name__)


def drift_enabled(drift: str, init_from: str | None) -> bool:
    """``finetune.drift``: ``auto`` reports when the run fine-tunes (``init_from`` is set)."""
    value = str(drift).lower()
    return init_from is not None if value == "auto" else value == "true"


def start_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / START_NAME


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by every name it has (a tied weight's one copy under each: a method may untie
    it)."""
    copies = {id(param): param.detach().clone() for param in model.parameters()}
    return {name: copies[id(param)] for name, param in model.named_parameters(remove_duplicate=False)}


def save_start(run_dir: Path, start: dict[str, torch.Tensor]) -> None:
    save_checkpoint(start_path(run_dir), start)


def load_start(run_dir: Path, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """The starting weights a run wrote; ConfigError (one line) when they are missing or do not fit the model."""
    path = start_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"resume: {path} (the starting weights finetune.drift compares with) is missing; "
                          "e.g. resume=<an intact run directory>, or finetune.drift=false")
    start = load_checkpoint(path, device)
    shapes = {name: tuple(param.shape) for name, param in model.named_parameters(remove_duplicate=False)}
    if not isinstance(start, dict) or not all(isinstance(t, torch.Tensor) for t in start.values()) or \
            {name: tuple(t.shape) for name, t in start.items()} != shapes:
        raise ConfigError(f"resume: {path} does not hold this model's starting weights; "
                          "e.g. resume=<an intact run directory>, or finetune.drift=false")
    return start


@torch.no_grad()
def drift_rows(model: nn.Module, start: dict[str, torch.Tensor], trainable: set[str]) -> list[dict]:
    """One row per parameter tensor, the ones that moved most (relative L2) first; one host read in all."""
    named = list(model.named_parameters())
    values = torch.stack([
        torch.stack([
            torch.linalg.vector_norm(param.double() - start[name].double()),
            torch.linalg.vector_norm(start[name].double()),
            (param != start[name]).sum().double(),
        ]) for name, param in named
    ]).cpu().tolist()
    rows = []
    for (name, param), (distance, norm, changed) in zip(named, values):
        relative = distance / norm if norm > 0 else (0.0 if distance == 0 else None)
        rows.append({"name": name, "shape": list(param.shape), "numel": param.numel(), "relative_l2": relative,
                     "l2": distance, "changed_fraction": changed / param.numel(), "trainable": name in trainable})
    return sorted(rows, key=lambda row: -ranking_value(row))


def ranking_value(row: dict) -> float:
    """A row's relative L2, infinite for a tensor that started at zero and moved."""
    return math.inf if row["relative_l2"] is None else row["relative_l2"]


def format_drift(rows: list[dict]) -> str:
    """The drift table printed at the end of a run."""
    lines = [f"{'parameter':<40} {'shape':<20} {'numel':>10} {'rel. L2':>10} {'changed':>8}  trained"]
    for row in rows:
        relative = "inf" if row["relative_l2"] is None else f"{row['relative_l2']:.4g}"
        lines.append(f"{row['name']:<40} {str(tuple(row['shape'])):<20} {row['numel']:>10} {relative:>10} "
                     f"{row['changed_fraction']:>8.4f}  {'yes' if row['trainable'] else 'frozen'}")
    lines.append("rel. L2 = ||W - W_start|| / ||W_start||; changed = fraction of entries != start; BatchNorm running "
                 "statistics are buffers and update in train mode even when their layer is frozen")
    return "\n".join(lines)


class Drift:
    """The run's distance-from-the-start report as one component: the starting weights, taken before the method's
    setup (masks), saved with the run record, read back on resume, compared with at the end."""

    def __init__(self, enabled: bool, model: nn.Module, resuming: bool) -> None:
        self.enabled = enabled
        self.start = snapshot(model) if enabled and not resuming else None

    def record(self, run_dir: Path) -> None:
        """Before the first checkpoint: a resumed run compares with the same start."""
        if self.start is not None:
            save_start(run_dir, self.start)

    def restore(self, run_dir: Path, model: nn.Module, device: torch.device) -> None:
        if self.enabled:
            self.start = load_start(run_dir, model, device)

    def summarise(self, summary: dict, model: nn.Module, trained: set[str]) -> None:
        """``summary["drift"]``: per tensor, how far training moved it (and log the table)."""
        if self.start is not None:
            summary["drift"] = drift_rows(model, self.start, trained)
            log.info("distance from the starting weights:\n%s", format_drift(summary["drift"]))
