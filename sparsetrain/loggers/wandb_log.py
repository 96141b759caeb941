"""Weights & Biases (``logger=[jsonl,wandb]``, needs ``pip install wandb``): the resolved config as the run's
config, every numeric field of every metrics event as a scalar on one step axis (per-step ``train_step/loss``,
``eval/<split>/top1``, per-layer ``density/<layer>``, the methods' ``mask_update`` and ``prune`` events), and the
summary as the run summary. ``wandb.mode=offline`` (the default) writes ``<run dir>/wandb/offline-run-*`` without
network; ``wandb sync`` uploads it later."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError
from .schemas import WandbConfig
from .base import flatten, global_step, scalars


class WandbLog:
    def __init__(self, run_dir: Path, steps_per_round: int, config: dict, options: WandbConfig) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError("logger=[wandb] needs the wandb package: pip install wandb") from None
        run_dir = Path(run_dir)
        run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]  # a resumed run continues its W&B run
        self.run = wandb.init(
            project=options.project, entity=options.entity, mode=options.mode, dir=str(run_dir), id=run_id,
            name=run_dir.name, config=config, resume="allow", settings=wandb.Settings(console="off", silent=True),
        )
        self.steps_per_round = steps_per_round

    def log(self, event: dict) -> None:
        values = scalars(event)
        if values:
            self.run.log(values, step=global_step(event, self.steps_per_round))

    def finish(self, summary: dict) -> None:
        self.run.summary.update({key: value for key, value in flatten(summary).items()
                                 if isinstance(value, (int, float, str, bool))})
        self.run.finish()
