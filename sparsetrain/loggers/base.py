"""The interface every logger implements, and the scalar view of a metrics event they share."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

STAMPS = ("round", "epoch", "step", "time")


class Logger(Protocol):
    """Receives every metrics.jsonl event as it is written, then the run's summary once at the end."""

    def log(self, event: dict) -> None: ...

    def finish(self, summary: dict) -> None: ...


def scalars(event: dict) -> dict[str, float]:
    """Every numeric field of ``event`` as ``<event>[/<split>]/<field>`` (stamps and flags left out)."""
    prefix = "/".join(str(event[key]) for key in ("event", "split") if key in event)
    return {f"{prefix}/{key}": value for key, value in event.items()
            if key not in STAMPS and isinstance(value, (int, float)) and not isinstance(value, bool)}


def global_step(event: dict, steps_per_round: int) -> int:
    """One step axis for the whole run: rounds follow each other."""
    return event["round"] * steps_per_round + event["step"]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class Loggers:
    """Fans each event and the summary out to the configured loggers."""

    def __init__(self, loggers: Iterable[Logger]) -> None:
        self.loggers = list(loggers)

    def __call__(self, event: dict) -> None:
        for logger in self.loggers:
            logger.log(event)

    def finish(self, summary: dict) -> None:
        for logger in self.loggers:
            logger.finish(summary)
