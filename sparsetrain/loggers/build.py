"""Where metrics events go besides metrics.jsonl (always written: resume and the reports read it): one module
per logger behind ``base.Logger``; ``build_loggers`` makes the configured ones."""

from __future__ import annotations

from pathlib import Path

from .schemas import WandbConfig
from .base import Logger, Loggers


def build_loggers(names: list[str], run_dir: Path, steps_per_round: int, config: dict,
                  wandb: WandbConfig) -> Loggers:
    """The loggers named in ``names`` (``jsonl`` is metrics.jsonl itself and needs none)."""
    loggers: list[Logger] = []
    if "csv" in names:
        from .csv_log import CSVLog

        loggers.append(CSVLog(run_dir / "metrics.jsonl", run_dir / "metrics.csv"))
    if "tensorboard" in names:
        from .tensorboard import TensorBoardLog

        loggers.append(TensorBoardLog(run_dir / "tb", steps_per_round, config))
    if "wandb" in names:
        from .wandb_log import WandbLog

        loggers.append(WandbLog(run_dir, steps_per_round, config, wandb))
    return Loggers(loggers)


__all__ = ["Logger", "Loggers", "build_loggers"]
