"""Counting the kernel-running ATen ops of a piece of work: on a GPU each is a launch, which is what a small
model's step and a mask update cost on the host (``scripts/bench.py``, and tests that keep the count down)."""

from __future__ import annotations

from typing import Any, Callable

from torch.utils._python_dispatch import TorchDispatchMode

METADATA_OPS = {"aten::detach", "aten::lift_fresh", "aten::scalar_tensor"}  # run no kernel


class KernelOps(TorchDispatchMode):
    """Counts the ATen ops that run a kernel (views and metadata-only ops left out) while active and not
    ``paused``, under the current ``key``: ``counts[key]``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[Any, int] = {}
        self.key: Any = None
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (self.paused or func.is_view or func.namespace != "aten" or func._schema.name in METADATA_OPS):
            self.counts[self.key] = self.counts.get(self.key, 0) + 1
        return func(*args, **(kwargs or {}))


def kernel_ops(fn: Callable[[], Any]) -> int:
    """The number of kernel-running ATen ops of one call of ``fn``."""
    with KernelOps() as counter:
        fn()
    return counter.counts.get(None, 0)
