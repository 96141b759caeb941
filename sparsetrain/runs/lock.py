"""One process per run directory: an exclusive ``flock`` on ``<run dir>/.lock`` (no torch import).

The operating system releases the lock when its process ends, however it ends, so a lock left by a killed
run never blocks; the file only tells the refused process who holds it (pid and host). Under torchrun the
first process holds the lock for the whole run and the others never look at it: the lock they would find is
their own run's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

LOCK_NAME = ".lock"


def first_process() -> bool:
    """This process writes the run's files and holds its lock (under torchrun: rank 0; else the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block; ConfigError (one line) if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, run_dir)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def refuse_if_locked(run_dir: Path) -> None:
    """ConfigError if a live process holds ``run_dir``'s lock; creates nothing (the CLI's check before Hydra).

    Only the first process checks: under torchrun rank 0 may already hold the lock when a slower rank gets here."""
    if not first_process():
        return
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        _acquire(fd, Path(run_dir))
    finally:
        os.close(fd)


def _acquire(fd: int, run_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        raise ConfigError(
            f"hydra.run.dir={str(run_dir)!r} is in use by a running sparsetrain ({holder}); wait for it to end, "
            "or choose a new directory, e.g. hydra.run.dir=outputs/new_run"
        ) from None
