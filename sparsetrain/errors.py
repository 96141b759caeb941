"""The errors a user sees: each message is one line that names what to change.

They sit at the bottom of the package (nothing here imports anything of sparsetrain), so every layer can raise
them and the command line can tell bad input (exit 2) from a run that could not go on (exit 1).
"""

from __future__ import annotations

import errno
import shutil
import textwrap
from pathlib import Path

NLP_EXTRA = 'pip install "sparsetrain[nlp]"'  # the install hint of every message about a missing NLP package


class ConfigError(ValueError):
    """A bad value in the composed config; its message is one line naming the key and a valid example."""


class DataError(ValueError):
    """A dataset problem the user can fix; the message is one line naming the config key and a valid example."""


class UserCodeError(ConfigError):
    """The user's own code raised (a model's factory, its first forward pass): the message is one line naming it and
    the exception, which is the ``__cause__``. ``log_file``: the run's log that holds the traceback, once written
    there (the run directory is then kept for it)."""

    log_file: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} (traceback: {self.log_file})" if self.log_file else message


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name when it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class RunFailure(Exception):
    """A run that cannot go on (its message is one line); ``status`` is recorded in status.json."""

    status = "failed"


class Diverged(RunFailure):
    """The loss or the weights are no longer finite (or the loss is absurdly large)."""

    status = "diverged"


class WriteError(OSError):
    """A run file could not be written (disk full, quota, read-only, removed by another process); the message is one
    line naming it, and advises freeing space only when space ran out."""

    def __init__(self, path: Path, error: BaseException, checkpointed: bool = True) -> None:
        """``checkpointed``: the run has a checkpoint to resume from (else it starts again)."""
        path = Path(path)
        if isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        else:  # torch.save reports a full disk as a RuntimeError about positions
            free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
            reason = f"{textwrap.shorten(str(error), 100)}; {free} bytes free there"
        full = not isinstance(error, OSError) or error.errno in (errno.ENOSPC, errno.EDQUOT)
        remedy = f"free space in {path.parent}" if full else f"make sure {path.parent} is writable and no other " \
                                                             "process changes it"
        then = "the last checkpoint is intact: {} and resume" if checkpointed else \
            "no checkpoint was written yet: {} and start the run again"
        super().__init__(f"could not write {path} ({reason}); {then.format(remedy)}, or choose another directory, "
                         "e.g. hydra.run.dir=/scratch/run")
