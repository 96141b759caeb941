"""Optional TensorBoard logging (``tensorboard=true``, needs ``pip install "sparsetrain[tb]"``): every numeric
field of every metrics event becomes a scalar ``<event>[/<split>]/<field>`` in ``<run dir>/tb/``."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError

STAMPS = ("round", "epoch", "step", "time")


class TensorBoardLog:
    def __init__(self, log_dir: Path, steps_per_round: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError('tensorboard=true needs the tensorboard package: pip install "sparsetrain[tb]"') from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.steps_per_round = steps_per_round

    def __call__(self, event: dict) -> None:
        prefix = "/".join(str(event[key]) for key in ("event", "split") if key in event)
        step = event["round"] * self.steps_per_round + event["step"]  # rounds follow each other on one axis
        for key, value in event.items():
            if key not in STAMPS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, global_step=step)
        self.writer.flush()
