"""Preemption: SIGTERM, SIGINT, SIGUSR1 (SLURM's ``--signal``) and SIGUSR2 (submitit's) stop a run cleanly.

The handler only records the signal; the trainer checks ``requested`` between steps (a Python attribute read,
no device work), writes a checkpoint at that step boundary and raises ``Interrupted``. A second signal stops at
once (no checkpoint). A launcher's own handler (submitit's requeue on SIGUSR2) is called after the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class Interrupted(BaseException):
    """A stop signal arrived; ``saved`` says whether the checkpoint at the step boundary was written."""

    def __init__(self, signum: int, saved: bool) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal


class StopSignals:
    """The stop request of this process: None until one of ``STOP_SIGNALS`` arrives while ``installed``."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        """Handle the stop signals for the block (in the main thread; elsewhere Python cannot install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise Interrupted(signum, saved=False)
        self.requested = signum

    def launcher_handler(self, signum: int) -> Callable[[int, Any], None] | None:
        """The handler a launcher installed for ``signum`` before the run (e.g. submitit's requeue), if any."""
        handler = self.previous.get(signum)
        if callable(handler) and handler not in (signal.default_int_handler, stop_outside_training):
            return handler
        return None


def stop_outside_training(signum: int, frame: Any) -> None:
    """The CLI's handler before and after training (nothing to checkpoint): stop at once, with one line."""
    raise Interrupted(signum, saved=False)


def stop_outside_training_from_now() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop_outside_training)
