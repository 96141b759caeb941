"""TensorBoard (``logger=[jsonl,tensorboard]`` or ``tensorboard=true``, needs ``pip install "sparsetrain[tb]"``):
every numeric field of every metrics event becomes a scalar ``<event>[/<split>]/<field>`` in ``<run dir>/tb/``
(per-step ``train_step/loss``, per-layer ``density/<layer>``), and the run's hyperparameters with its final
metrics go to the HParams tab at the end."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import flatten, global_step, scalars


class TensorBoardLog:
    def __init__(self, log_dir: Path, steps_per_round: int, config: dict) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError('logger=[tensorboard] needs the tensorboard package: pip install "sparsetrain[tb]"') \
                from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.steps_per_round = steps_per_round
        self.config = config

    def log(self, event: dict) -> None:
        step = global_step(event, self.steps_per_round)
        for tag, value in scalars(event).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def finish(self, summary: dict) -> None:
        hparams = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                   for key, value in flatten(self.config).items() if value is not None}
        final = {f"hparam/{key}": value for key, value in flatten(summary.get("final", {})).items()}
        self.writer.add_hparams(hparams, final, run_name=".")
        self.writer.close()
