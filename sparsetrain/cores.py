"""CPU cores on a shared machine: OpenMP's wait policy and each process's share of the cores (torch-free: both
must be set before torch loads)."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a cluster job's allocation, a container's limit)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def passive_wait() -> None:
    """OpenMP workers sleep between parallel regions instead of spinning (unless the user set ``OMP_WAIT_POLICY``):
    on cores shared with other jobs, spinning workers take the CPU time the others need (a quick start 2-4x
    slower under load). Effective only before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def share_cores(processes: int) -> int | None:
    """Give this process its share of the cores when ``processes`` run side by side (a sweep's parallel jobs):
    ``OMP_NUM_THREADS`` = CPUs // processes (at least 1) unless the user set it. Returns the share, or None when
    nothing was set."""
    if processes <= 1 or os.environ.get("OMP_NUM_THREADS"):
        return None
    share = max(1, available_cpus() // processes)
    os.environ["OMP_NUM_THREADS"] = str(share)
    return share
