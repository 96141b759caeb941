"""metrics.jsonl (one JSON object per event) and summary.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..errors import WriteError
from ..runs.files import atomic_write, checkpointed


class MetricsLog:
    """Appends JSON lines; ``truncate(offset)`` drops events logged after a checkpoint that is resumed."""

    def __init__(self, path: Path, enabled: bool = True, mirror: Callable[[dict], None] | None = None) -> None:
        self.path = Path(path)  # created by the first event
        self.enabled = enabled  # off on every rank but the first of a distributed run
        self.mirror = mirror  # e.g. TensorBoard

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        try:
            with self.path.open("a") as handle:
                handle.write(json.dumps(event, sort_keys=True) + "\n")
        except OSError as error:  # a partial line is cut off by the resume (the checkpoint's offset)
            raise WriteError(self.path, error, checkpointed(self.path)) from error
        if self.mirror is not None:
            self.mirror(event)

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open() as handle:
            return handle.readlines()

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, offset: int) -> None:
        if self.path.exists():
            with self.path.open("r+") as handle:
                handle.truncate(offset)


def read_events(path: Path) -> list[dict]:
    with Path(path).open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_summary(path: Path) -> dict:
    """A finished run's summary.json; ConfigError (one line) when it was damaged or edited into something else."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        summary = error
    if not isinstance(summary, dict) or not isinstance(summary.get("final"), dict):
        raise ConfigError(f"resume: {path} is not a run summary (damaged or edited); delete it to finish the run "
                          "again from its checkpoint, e.g. resume=auto")
    return summary


def write_summary(path: Path, summary: dict) -> None:
    text = json.dumps(_finite(summary), indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
