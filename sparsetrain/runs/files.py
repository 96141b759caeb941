"""Run-directory file names and atomic writes (no torch import: the CLI's checks use this)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import WriteError

CHECKPOINT_NAME = "last.pt"
HYDRA_ONLY = {".hydra", "sparsetrain.log", ".lock"}  # a run directory's files before the run writes any
STATUS_NAME = "status.json"  # how a run that did not finish ended (diverged, failed)


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / CHECKPOINT_NAME


def checkpointed(path: Path) -> bool:
    """Whether the run a file of (its directory, or a folder of it) has a checkpoint to resume from."""
    return any(checkpoint_path(directory).is_file() for directory in (Path(path).parent, Path(path).parent.parent))


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file in the same directory, fsync, rename.

    A reader sees either the old file or the complete new one, never a partial write; a failed write leaves
    the old file and raises ``WriteError``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(path, error, checkpointed(path)) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, error, checkpointed(path)) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of writes that a kill interrupted (``atomic_write``'s ``.<name>.*.tmp``)."""
    for path in Path(run_dir).rglob(".*.tmp"):
        if path.is_file():
            path.unlink()


def remove_hydra_only_dir(run_dir: Path) -> None:
    """Remove ``run_dir`` if it holds only what Hydra wrote before a refusal (``.hydra/``, the log, the lock), and the
    folders of Hydra's default layout above it that this leaves empty (``outputs/<date>`` in the working directory)."""
    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - HYDRA_ONLY:
        return
    shutil.rmtree(run_dir)
    date, outputs = run_dir.parent, run_dir.parent.parent
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date.name) and outputs.name in ("outputs", "multirun") \
            and outputs.parent == Path.cwd().absolute():
        for folder in (date, outputs):
            if any(folder.iterdir()):
                break
            folder.rmdir()
