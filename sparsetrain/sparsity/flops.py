"""FLOP accounting: dense per-layer forward FLOPs, sparse inference FLOPs, training FLOPs (RigL, Appendix H).

All counts come from ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2 FLOPs and is
shape-based (stored zeros cost as much as any other value); sparsity enters only through the layer densities.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .targets import SELECTABLE_MODULES, weight_name


def layer_flops(model: nn.Module, in_shape: tuple[int, ...] | None = None, *,
                forward: Callable[[nn.Module], Any] | None = None) -> tuple[int, dict[str, int]]:
    """Dense forward FLOPs of one example (a multiply-add counts 2): the total, and per Conv2d/Linear layer.
    ``forward(model)`` runs the model on a one-sample batch (a task's example); by default a float32 zero batch
    of ``in_shape`` on the model's device.

    The per-layer dict is keyed by the layer's weight name (``"features.0.weight"``) and holds that module's own
    FLOPs (the bias addition is not counted); a layer the forward never reaches counts 0. The forward runs in eval
    mode, without gradients; each module's train/eval mode is restored afterwards.
    """
    modes = {module: module.training for module in model.modules()}
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter:
            if forward is None:
                model(torch.zeros(1, *in_shape, device=device))
            else:
                forward(model)
    finally:
        for module, training in modes.items():
            module.training = training
    counts = counter.get_flop_counts()  # keyed "<root class>.<module fqn>"; a leaf's entry is its own count
    root = type(model).__name__
    per_layer = {
        weight_name(name): int(sum(counts.get(f"{root}.{name}" if name else root, {}).values()))
        for name, module in model.named_modules()
        if isinstance(module, SELECTABLE_MODULES)
    }
    return int(counter.get_total_flops()), per_layer


def inference_flops(total_dense: int, per_layer: dict[str, int], densities: dict[str, float]) -> float:
    """Sparse forward FLOPs of one example: ``total_dense − Σ_l (1 − d_l)·per_layer[l]``.

    ``densities`` maps weight names to their density ``d_l``; layers it leaves out count dense.
    """
    unknown = sorted(set(densities) - set(per_layer))
    if unknown:
        raise ValueError(f"no per-layer FLOPs for {', '.join(unknown)}; known layers: {', '.join(per_layer)}")
    return total_dense - sum((1.0 - density) * per_layer[name] for name, density in densities.items())


class TrainingFlops:
    """Accumulates training FLOPs over a run as in the RigL paper, Appendix H.

    With ``f_S`` the sparse and ``f_D`` the dense forward FLOPs of one example, a training step costs per example
    ``3·f_S`` (forward, then a backward of twice the forward). A step whose weight gradient is computed densely
    (``dense_backward=True``: RigL's mask-update steps, every SNFS step) costs ``2·f_S + f_D`` instead: forward and
    input-gradient pass sparse, weight-gradient pass dense. RigL with update interval ΔT is therefore ΔT steps
    without and one step with ``dense_backward``, on average ``(3·f_S·ΔT + 2·f_S + f_D)/(ΔT + 1)`` per step and
    example. The cost of mask updates themselves (drop/grow) is ignored, as in the paper.
    """

    def __init__(self, total_dense: int, per_layer: dict[str, int]) -> None:
        self.total_dense = total_dense
        self.per_layer = per_layer
        self.total = 0.0  # FLOPs so far
        self.round_start = 0.0  # the total when the current round began
        self._densities: dict[str, float] | None = None  # the last densities seen, and their sparse FLOPs
        self._sparse = float(total_dense)

    def add_steps(self, steps: int, batch_size: int, densities: dict[str, float] | None,
                  dense_backward: bool = False) -> None:
        """Add ``steps`` steps of ``batch_size`` examples at layer ``densities`` (None: dense model)."""
        if steps < 0 or batch_size < 1:
            raise ValueError(f"need steps >= 0 and batch_size >= 1, got steps={steps}, batch_size={batch_size}")
        if densities is not self._densities:  # methods return the same dict until their masks change
            self._densities = densities
            self._sparse = self.total_dense if densities is None else inference_flops(
                self.total_dense, self.per_layer, densities)
        sparse = self._sparse
        per_example = 2 * sparse + self.total_dense if dense_backward else 3 * sparse
        self.total += float(per_example) * batch_size * steps

    def begin_round(self) -> None:
        self.round_start = self.total

    def add_other_ranks(self, round_totals: list[float]) -> None:
        """The current round's FLOPs become those of every rank added up (``round_totals``: each rank's, this
        one's among them), for a round in which each rank trained its own model."""
        self.total = self.round_start + sum(round_totals)

    def round_total(self) -> float:
        return self.total - self.round_start

    def state_dict(self) -> dict:
        return {"total": self.total, "round_start": self.round_start}

    def load_state_dict(self, state: dict) -> None:
        self.total = float(state["total"])
        self.round_start = float(state.get("round_start", self.total))
