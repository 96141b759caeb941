"""What produced a run: package versions and the git commit of the working directory (for summary.json)."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version


def provenance() -> dict:
    """``sparsetrain`` and ``torch`` versions, and ``git_commit`` (with ``git_dirty``) when the current working
    directory is inside a git repository."""
    import torch

    try:
        own = version("sparsetrain")
    except PackageNotFoundError:
        own = None
    record = {"sparsetrain": own, "torch": str(torch.__version__)}
    commit = _git("rev-parse", "HEAD")
    if commit:
        record["git_commit"] = commit
        record["git_dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return record


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
