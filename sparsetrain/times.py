"""Points and cadences in training time: epochs (``2ep``), optimizer steps (``500it``) or percent of training."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A cadence or time in epochs (``'2ep'``, or a bare number), optimizer steps (``'500it'``) or percent of
    the training steps (``'75%'``, where allowed); a cadence of 0 means never."""

    count: int
    unit: str  # "ep" | "it" | "%"

    def steps(self, steps_per_epoch: int, total_steps: int) -> int:
        """The interval in optimizer steps."""
        if self.unit == "ep":
            return self.count * steps_per_epoch
        if self.unit == "%":
            return round(self.count * total_steps / 100)
        return self.count

    def due(self, *, step: int, epoch_end: Optional[int]) -> bool:
        """True at step ``step`` (1-based, after it ran) or at the end of epoch ``epoch_end`` (1-based)."""
        if self.count == 0:
            return False
        if self.unit == "it":
            return epoch_end is None and step % self.count == 0
        return epoch_end is not None and epoch_end % self.count == 0


_INTERVAL = re.compile(r"^\s*(\d+)\s*(ep|it|%)?\s*$")


def parse_interval(key: str, text: str, allow_percent: bool = False) -> Interval:
    match = _INTERVAL.match(str(text))
    if match is None or (match.group(2) == "%" and not allow_percent):
        units = "epochs, steps or percent of training" if allow_percent else "epochs or steps"
        raise ConfigError(f"{key}={text!r} is not an interval; use {units}, e.g. {key}=2ep or {key}=500it")
    return Interval(int(match.group(1)), match.group(2) or "ep")
