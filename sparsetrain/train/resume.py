"""Which config keys may change on resume, and the record of how a run was started (``run.yaml``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from .files import STATUS_NAME, atomic_write, checkpoint_path

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


def differing_keys(stored: dict, current: dict) -> list[str]:
    """Result-relevant keys whose values differ between two resolved configs."""
    old, new = flatten(stored), flatten(current)
    return sorted(k for k in old.keys() | new.keys() if is_result_key(k) and old.get(k) != new.get(k))


def refuse_if_changed(stored: dict, current: dict, run_dir: Path) -> None:
    keys = differing_keys(stored, current)
    if keys:
        shown = "; ".join(f"{k}: {flatten(stored).get(k)!r} -> {flatten(current).get(k)!r}" for k in keys[:6])
        more = f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
        raise ConfigError(
            f"resume={str(run_dir)!r} refused: the config differs in {shown}{more}; "
            f"repeat the original overrides (see {run_dir / RUN_RECORD}) or start a new run"
        )


# What a run writes into its directory (Hydra's .hydra/ and log file belong to the current invocation).
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", RUN_RECORD, "summary.json", STATUS_NAME, "masks", "tb", "round_*")


def refuse_to_overwrite(run_dir: Path) -> None:
    """ConfigError when ``run_dir`` holds a checkpoint or other run outputs (for a run started without ``resume``)."""
    if checkpoint_path(run_dir).is_file():
        raise ConfigError(
            f"hydra.run.dir={str(run_dir)!r} already holds a checkpoint; add resume=auto to continue it, "
            "or choose a new directory, e.g. hydra.run.dir=outputs/new_run"
        )
    found = attempt_outputs(run_dir)
    if found:
        raise ConfigError(
            f"hydra.run.dir={str(run_dir)!r} holds outputs of an earlier attempt that never checkpointed "
            f"({', '.join(p.name for p in found)}); add resume=auto to restart it cleanly, or choose a new "
            "directory, e.g. hydra.run.dir=outputs/new_run"
        )


def attempt_outputs(run_dir: Path) -> list[Path]:
    """The run outputs present in ``run_dir``."""
    return sorted(path for pattern in RUN_OUTPUTS for path in Path(run_dir).glob(pattern))


def clear_attempt(run_dir: Path) -> None:
    """Remove the outputs of an attempt that never checkpointed, so a restart leaves none of its events."""
    for path in attempt_outputs(run_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


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


def resumable_run_dir(text: str) -> Path:
    """The run directory named by ``resume=<dir>``; ConfigError unless it holds a checkpoint."""
    run_dir = Path(text).expanduser()
    if not checkpoint_path(run_dir).is_file() or not (run_dir / RUN_RECORD).is_file():
        raise ConfigError(
            f"resume={text!r} is not a run directory with a checkpoint (checkpoints/last.pt and {RUN_RECORD}); "
            "e.g. resume=outputs/2026-11-25/14-03-11, or resume=auto to continue the run in hydra.run.dir"
        )
    return run_dir
