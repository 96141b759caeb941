"""Choose each sparse layer's kernels by measuring them on the machine (and thread count) that will run them."""

from __future__ import annotations

import statistics
import timeit
from typing import Callable

import torch
from torch import nn

from .sparse_linear import Kernel, SparseLinear, constant_fan_in

TILES = (32, 128, 512)  # row tiles tried for the sparse products over many rows (with 0: all rows at once)
SPARSE_KERNELS = ("csr", "condensed")  # condensed: tried on layers with constant fan-in only
MARGIN = 0.05  # a sparse kernel must be this much faster than the dense one to be chosen


def sparsify_linear_layers(model: nn.Module, rows: int, min_time: float = 0.05,
                           kernels: tuple[str, ...] = SPARSE_KERNELS) -> dict[str, dict]:
    """Replace, in place, every ``nn.Linear`` of ``model`` with zeros in its weight by a ``SparseLinear`` whose
    kernels for one input row and for ``rows`` rows are the fastest measured among the dense one and ``kernels``;
    return each replaced layer's choice and timings (milliseconds)."""
    report = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and bool((module.weight == 0).any()):
            one, many, times = choose_kernels(module, rows, min_time, kernels)
            parent, _, attr = name.rpartition(".")
            sparse = SparseLinear.from_dense(module.weight, module.bias, one, many)
            setattr(model.get_submodule(parent), attr, sparse)
            report[name] = {**sparse.describe(), "rows": rows, "ms": times}
    return report


def choose_kernels(layer: nn.Linear, rows: int, min_time: float, kernels: tuple[str, ...] = SPARSE_KERNELS,
                   ) -> tuple[Kernel, Kernel, dict[str, float]]:
    """The fastest kernel for one row and for ``rows`` rows among the dense one and ``kernels`` (condensed only
    where every nonzero row keeps as many inputs), and every candidate's median time (ms)."""
    x_one, x_many = torch.randn(1, layer.in_features), torch.randn(rows, layer.in_features)
    times = {}
    with torch.inference_mode():
        if constant_fan_in((layer.weight != 0).sum(1)) is None:
            kernels = tuple(name for name in kernels if name != "condensed")
        many = Kernel("condensed" if "condensed" in kernels else "dense")  # the probe holds what each candidate uses
        probe = SparseLinear.from_dense(layer.weight, layer.bias, Kernel("dense"), many)
        candidates_one = [Kernel("dense"), *(Kernel(name) for name in kernels)]
        candidates_many = [*candidates_one, *(Kernel(name, tile) for name in kernels for tile in TILES if tile < rows)]
        for regime, x, candidates in (("one", x_one, candidates_one), ("many", x_many, candidates_many)):
            for kernel in candidates:
                probe.one = probe.many = kernel
                times[f"{regime}:{kernel.label}"] = milliseconds(lambda: probe(x), min_time)
    return _fastest("one", candidates_one, times), _fastest("many", candidates_many, times), times


def _fastest(regime: str, candidates: list[Kernel], times: dict[str, float]) -> Kernel:
    """The fastest candidate; the dense kernel unless a sparse one beats it by ``MARGIN`` (timing noise)."""
    best = min(candidates, key=lambda kernel: times[f"{regime}:{kernel.label}"])
    return best if times[f"{regime}:{best.label}"] < (1 - MARGIN) * times[f"{regime}:dense"] else Kernel("dense")


def milliseconds(call: Callable[[], object], seconds: float) -> float:
    """Median milliseconds of ``call()`` over five blocks of about ``seconds`` / 5 each (after a warm-up)."""
    timer = timeit.Timer(call)
    timer.timeit(1)  # warm-up
    number = max(1, round(seconds / 5 / max(timer.timeit(1), 1e-7)))
    return statistics.median(timer.repeat(5, number)) / number * 1e3
