"""Whether a run may start in, or resume from, a directory: refused for a changed config or earlier outputs."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .files import STATUS_NAME, checkpoint_path
from ..runs.record import RUN_RECORD, differing_keys, flatten


LENGTH_KEYS = ("epochs", "steps")  # the run's length: a resume that changes only these extends the run


def refuse_if_changed(stored: dict, current: dict, run_dir: Path, baseline: dict | None = None,
                      check_extension: Callable[[], None] | None = None) -> bool:
    """ConfigError naming the result keys that changed (``differing_keys``: keys added to sparsetrain after the run
    started count as changed only when they differ from ``baseline``, the run's command line composed today).
    A change of the length alone passes ``check_extension`` (which refuses in one line what cannot be extended)
    and returns True: the run is extended."""
    keys = differing_keys(stored, current, baseline)
    if keys and check_extension is not None and set(keys) <= set(LENGTH_KEYS):
        check_extension()
        return True
    if keys:
        shown = "; ".join(f"{k}: {flatten(stored).get(k)!r} -> {flatten(current).get(k)!r}" for k in keys[:6])
        more = f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
        raise ConfigError(
            f"resume={str(run_dir)!r} refused: the config differs in {shown}{more}; resume it as it started (its "
            f"overrides: {run_dir / RUN_RECORD}), e.g. sparsetrain resume={shlex.quote(str(run_dir))}, or start a new run"
        )
    return False


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


def resumable_run_dir(text: str) -> Path:
    """The run directory named by ``resume=<dir>``; ConfigError unless it holds a checkpoint."""
    run_dir = Path(text).expanduser()
    if not checkpoint_path(run_dir).is_file() or not (run_dir / RUN_RECORD).is_file():
        raise ConfigError(
            f"resume={text!r} is not a run directory with a checkpoint (checkpoints/last.pt and {RUN_RECORD}); "
            "e.g. resume=outputs/2026-11-25/14-03-11, or resume=auto to continue the run in hydra.run.dir"
        )
    return run_dir
