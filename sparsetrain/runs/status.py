"""How a run that did not finish ended: ``status.json`` (status and the one-line error) in its directory.

A sweep records a failed or diverged job here and goes on; re-running the sweep skips the job unless
``retry_failed=true``. No torch import: the CLI reads it before training.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import STATUS_NAME, atomic_write


def write_status(run_dir: Path, status: str, error: str) -> None:
    text = json.dumps({"status": status, "error": error}, sort_keys=True) + "\n"
    atomic_write(Path(run_dir) / STATUS_NAME, lambda handle: handle.write(text.encode()))


def read_status(run_dir: Path) -> dict | None:
    """The recorded status, or None when there is none (or it is unreadable: then the job simply runs)."""
    try:
        status = json.loads((Path(run_dir) / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) and {"status", "error"} <= status.keys() else None
