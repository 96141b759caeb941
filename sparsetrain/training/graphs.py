"""Captured training steps: a CUDA graph, and the same semantics on any device by recording tensor ops.

Both capture one call of a function and replay exactly the tensor work it did, on the same tensors, without
running its Python again: what the function decided in Python at capture time (which hooks ran, which branch
it took) is fixed in the graph. ``RecordedGraph`` makes that testable on a CPU: it records every ATen op of
the call and replays them in order, writing each op's result into the tensor the op produced at capture, as a
CUDA graph writes into its memory pool; a host read of a device value during capture (``.item()``,
``bool(tensor)``, an op whose output shape depends on the data) raises ``CaptureError``, as it would break a
CUDA graph capture.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

# ops that read a device value on the host, or whose output shape depends on the values (a host sync on CUDA)
HOST_READS = {aten._local_scalar_dense, aten.is_nonzero, aten.equal, aten.nonzero, aten.masked_select,
              aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.unique_dim_consecutive, aten.bincount}


# Python-level reads of tensor values on the host (on CUDA each waits for the device); on a CPU tensor some of
# them (.tolist(), .numpy()) dispatch no op, so they are watched at the Python level
HOST_READ_METHODS = frozenset({torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu,
                               torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
                               torch.Tensor.__index__})


class CaptureError(RuntimeError):
    """The function cannot be captured: it reads device values on the host."""


class HostReads(TorchFunctionMode):
    """Calls ``on_read(name)`` at every Python-level read of tensor values on the host (``.item()``,
    ``.tolist()``, ``bool()``, ``float()``, ``.cpu()``, ...): a host-device synchronisation on CUDA."""

    def __init__(self, on_read: Callable[[str], None]) -> None:
        super().__init__()
        self.on_read = on_read

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READ_METHODS:
            self.on_read(func.__name__)
        return func(*args, **(kwargs or {}))


def _refuse_host_read(name: str) -> None:
    raise CaptureError(f"Tensor.{name} reads a device value on the host inside the captured step; "
                       "move it out of the step")


class CudaGraph:
    """``torch.cuda.CUDAGraph`` capture and replay, with warm-up calls on the side stream of the capture."""

    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream = stream
        self.graph: torch.cuda.CUDAGraph | None = None

    @classmethod
    def pair(cls) -> tuple[CudaGraph, CudaGraph]:
        """Two graphs (a step's two parts) whose warm-up and captures share one side stream."""
        stream = torch.cuda.Stream()
        return cls(stream), cls(stream)

    def warm_up(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` eagerly on the side stream the capture will use."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            fn()
        torch.cuda.current_stream().wait_stream(self.stream)

    def capture(self, fn: Callable[[], Any]) -> None:
        """Capture ``fn`` and run it once (capturing alone runs no kernel)."""
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: other threads (DataLoader pinning, ...) may go on using CUDA during the capture
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                fn()
        except RuntimeError as error:  # e.g. "operation not permitted when stream is capturing"
            raise CaptureError(textwrap.shorten(str(error), 300)) from None
        self.graph = graph
        graph.replay()

    def replay(self) -> None:
        self.graph.replay()


class RecordedGraph:
    """CUDA-graph semantics on any device: the ATen ops of one call, replayed on the tensors they used."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, tuple, dict, list[torch.Tensor | None]]] = []

    @classmethod
    def pair(cls) -> tuple[RecordedGraph, RecordedGraph]:
        return cls(), cls()

    def warm_up(self, fn: Callable[[], Any]) -> None:
        fn()

    def capture(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once, recording its ops; raises ``CaptureError`` at a host read of a device value."""
        recorder = _Recorder()
        with HostReads(_refuse_host_read), recorder:
            fn()
        self.ops = recorder.ops

    @torch.no_grad()
    def replay(self) -> None:
        for func, args, kwargs, targets in self.ops:
            results = func(*args, **kwargs)
            for target, result in zip(targets, tree_leaves(results)):
                if target is not None:
                    if target.shape != result.shape:
                        raise CaptureError(f"{func} returned shape {tuple(result.shape)} on replay, "
                                           f"{tuple(target.shape)} at capture: its shape depends on the data")
                    target.copy_(result)


class _Recorder(TorchDispatchMode):
    """Records (op, args, kwargs, targets): targets are the op's fresh output tensors (None where an output is an
    input or a view of one, which replaying the op updates in place, or no tensor). View ops are not recorded:
    a view made at capture stays a view of the same memory; nor are profiler annotations."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, list[torch.Tensor | None]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in HOST_READS:
            raise CaptureError(f"{func} reads a device value on the host inside the captured step "
                               "(e.g. .item(), bool(tensor) or a data-dependent shape); move it out of the step")
        results = func(*args, **kwargs)
        if func.is_view or func.namespace == "profiler":
            return results
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        targets = []
        for result in tree_leaves(results):
            if isinstance(result, (bool, int, float, complex)):
                raise CaptureError(f"{func} returned the host value {result!r} inside the captured step; "
                                   "move the host read out of the step")
            fresh = isinstance(result, torch.Tensor) and result.untyped_storage().data_ptr() not in inputs
            targets.append(result if fresh else None)
        self.ops.append((func, args, kwargs, targets))
        return results
