"""One process per run directory: an exclusive ``flock`` on ``<run dir>/.lock`` (no torch import).

The operating system releases the lock when its process ends, however it ends, so a lock left by a killed
run never blocks; the file only tells the refused process who holds it (pid and host). Under torchrun the
first process holds the lock for the whole run and the others never look at it: the lock they would find is
their own run's.

The command line takes the lock (``take``) right after its checks and before Hydra writes into the directory, so
a second process aimed at the same directory is refused before it touches anything; the run then finds the lock
held by its own process. A process that does not hold the lock removes nothing.
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
_HELD: dict[Path, int] = {}  # run directories whose lock this process holds (resolved path -> open descriptor)
_RUNNING: set[Path] = set()  # those of them a run of this process is in


def first_process() -> bool:
    """This process writes the run's files and holds its lock (under torchrun: rank 0; else the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for a run (the lock this process took for it before is kept after the block);
    ConfigError (one line) if another process holds it, or another run of this process is in it."""
    path = Path(run_dir).resolve()
    if path in _RUNNING:
        _refuse(Path(run_dir), _this_process())
    taken = not holds(run_dir)
    take(run_dir)
    _RUNNING.add(path)
    try:
        yield
    finally:
        _RUNNING.discard(path)
        if taken:
            release(run_dir)


def take(run_dir: Path) -> None:
    """Take ``run_dir``'s lock for this process until ``release`` (or its end), creating the directory and the lock
    file if missing; ConfigError (one line), with nothing created or changed, if another process holds it."""
    run_dir = Path(run_dir)
    if holds(run_dir):
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if created and run_dir.is_dir():
            run_dir.rmdir()  # nothing of a refused command stays behind
        _unwritable(run_dir, error)
    try:
        _acquire(fd, run_dir)
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{_this_process()}\n".encode())
    _HELD[run_dir.resolve()] = fd


def holds(run_dir: Path) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return Path(run_dir).resolve() in _HELD


def release(run_dir: Path) -> None:
    """Release ``run_dir``'s lock if this process holds it."""
    fd = _HELD.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def release_all() -> None:
    """Release every lock this process holds (the end of a command run in a process that goes on)."""
    for run_dir in list(_HELD):
        release(run_dir)


def refuse_if_locked(run_dir: Path) -> None:
    """ConfigError if a live process holds ``run_dir``'s lock; creates nothing (the CLI's check before Hydra).

    Only the first process checks: under torchrun rank 0 may already hold the lock when a slower rank gets here."""
    if not first_process():
        return
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as error:
        _unwritable(Path(run_dir), error)
    try:
        _acquire(fd, Path(run_dir))
    finally:
        os.close(fd)


def _this_process() -> str:
    """How a refused process is told who holds the lock."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _acquire(fd: int, run_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _refuse(run_dir, os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process")


def _unwritable(run_dir: Path, error: OSError) -> None:
    raise ConfigError(f"hydra.run.dir={str(run_dir)!r} cannot hold a run ({error.strerror or error}); choose a "
                      "writable directory, e.g. hydra.run.dir=outputs/new_run") from None


def _refuse(run_dir: Path, holder: str) -> None:
    raise ConfigError(f"hydra.run.dir={str(run_dir)!r} is in use by a running sparsetrain ({holder}); wait for it to "
                      "end, or choose a new directory, e.g. hydra.run.dir=outputs/new_run") from None
