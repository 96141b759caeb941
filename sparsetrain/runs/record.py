"""The record of how a run was started (``run.yaml``: its overrides and resolved config), and which config keys
are results (the others may differ between a run and its resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .files import atomic_write

RUN_RECORD = "run.yaml"

# Keys that do not change what a run computes: they may differ between a run and its resume.
NON_RESULT_KEYS = (
    "name",
    "resume",
    "device",
    "compile",
    "step_graph",
    "checkpoint_every",
    "tensorboard",
    "eval_batch_size",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.cache_dir",
    "log_every",
    "threads",
    "logger",
    "wandb.project",
    "wandb.entity",
    "wandb.mode",
    "keep_checkpoint_every",
    "keep_checkpoints",
    "retry_failed",
)


def is_result_key(key: str) -> bool:
    return not key.startswith("hydra.") and not any(
        key == skip or key.startswith(skip + ".") for skip in NON_RESULT_KEYS
    )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


# Keys whose ``auto`` a run resolves once its data is built (and records resolved): ``auto`` on either side matches
# any value here; the run compares the resolved values (a run recorded before the default became ``auto`` resumes).
RESOLVED_BY_THE_RUN = ("task.name",)


def differing_keys(stored: dict, current: dict, baseline: dict | None = None) -> list[str]:
    """Result-relevant keys whose values differ between two resolved configs. A key the stored config lacks (its run
    predates the key) differs only when its current value is not the ``baseline``'s: the config the run's own
    command line composes to today (without one, such keys never differ)."""
    old, new = flatten(stored), flatten(current)
    base = new if baseline is None else flatten(baseline)

    def changed(key: str) -> bool:
        if key in RESOLVED_BY_THE_RUN and "auto" in (new.get(key), old.get(key)):
            return False
        return new.get(key) != (old[key] if key in old else base.get(key))

    return sorted(key for key in old.keys() | new.keys() if is_result_key(key) and changed(key))


def write_run_record(run_dir: Path, overrides: list[str], config: dict) -> None:
    text = yaml.safe_dump({"overrides": overrides, "config": config}, sort_keys=False)
    atomic_write(Path(run_dir) / RUN_RECORD, lambda handle: handle.write(text.encode()))


def read_run_record(run_dir: Path) -> dict:
    """run.yaml; ConfigError (one line) when it was damaged or edited into something that is not a run record."""
    path = Path(run_dir) / RUN_RECORD
    try:
        with path.open() as handle:
            record = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        record = error
    if not (isinstance(record, dict) and isinstance(record.get("overrides"), list)
            and isinstance(record.get("config"), dict)):
        raise ConfigError(f"resume: {path} is not a run record (damaged or edited; it holds the run's overrides and "
                          "config); e.g. resume=<a run directory written by sparsetrain>")
    return record
