"""Choose each sparse layer's kernels by measuring them on the machine (and thread count) that will run them."""

from __future__ import annotations

import dataclasses
import statistics
import timeit
from typing import Callable

import torch
from torch import nn

from .sparse_linear import Kernel, SparseLinear

TILES = (32, 128, 512)  # row tiles tried for the sparse products over many rows (with 0: all rows at once)
SPARSE_KERNELS = ("csr", "gather")
MARGIN = 0.05  # a sparse kernel must be this much faster than the dense one to be chosen


def sparsify_linear_layers(model: nn.Module, rows: int, min_time: float = 0.05,
                           kernels: tuple[str, ...] = SPARSE_KERNELS, example: tuple | None = None) -> dict[str, dict]:
    """Replace, in place, every ``nn.Linear`` of ``model`` with zeros in its weight by a ``SparseLinear`` whose
    kernels for one input row and for ``rows`` rows are the fastest measured among the dense one and ``kernels``;
    with ``example`` (the model's inputs, ``rows`` rows in all), each layer's many-row output layout too, by timing
    the whole model (``choose_output_layouts``). Return each replaced layer's choice and timings (milliseconds)."""
    report = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and bool((module.weight == 0).any()):
            one, many, times = choose_kernels(module, rows, min_time, kernels)
            parent, _, attr = name.rpartition(".")
            sparse = SparseLinear.from_dense(module.weight, module.bias, one, many)
            setattr(model.get_submodule(parent), attr, sparse)
            report[name] = {"rows": rows, "ms": times}
    if example is not None:
        for name, ms in choose_output_layouts(model, example, min_time).items():
            report[name]["ms"]["model:transposed"] = ms
    for name, plan in report.items():
        plan.update(model.get_submodule(name).describe())
    return report


def choose_output_layouts(model: nn.Module, example: tuple, min_time: float) -> dict[str, float]:
    """Give each sparse many-row kernel, in order, the transposed output where the whole model on ``example`` is
    faster so (what follows the layer decides: a sparse layer takes it without a copy, a layer norm slows down);
    return the model's time (ms) with each layer transposed, after those before it were settled."""
    times = {}
    with torch.inference_mode():
        best = milliseconds(lambda: model(*example), min_time)
        for name, layer in model.named_modules():
            if isinstance(layer, SparseLinear) and layer.many.name != "dense":
                row_major, layer.many = layer.many, dataclasses.replace(layer.many, transposed=True)
                times[name] = milliseconds(lambda: model(*example), min_time)
                if times[name] < best:
                    best = times[name]
                else:
                    layer.many = row_major
    return times


def choose_kernels(layer: nn.Linear, rows: int, min_time: float, kernels: tuple[str, ...] = SPARSE_KERNELS,
                   ) -> tuple[Kernel, Kernel, dict[str, float]]:
    """The fastest kernel for one row and for ``rows`` rows among the dense one and ``kernels``, and every
    candidate's median time (ms)."""
    x_one, x_many = torch.randn(1, layer.in_features), torch.randn(rows, layer.in_features)
    times = {}
    with torch.inference_mode():
        probe = SparseLinear.from_dense(layer.weight, layer.bias, Kernel("dense"), Kernel("dense"))
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
