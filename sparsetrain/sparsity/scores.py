"""Learned masks: score initialisation, binarisers and the threshold reset, as tensor functions.

A real-valued score per prunable weight; the model computes with ``W0 ⊙ B(scores)`` and the scores get the
straight-through gradient ``∂L/∂(W0 ⊙ M) ⊙ W0`` (TAMT's ``MaskedLinear1``, Liu et al. 2022). Binarisers: a
threshold ``M = 1[s > τ_l]`` (TAMT; ``reset_thresholds`` restores each layer's exact zero count) or exact top-k
(edge-popup, Ramanujan et al. 2020). The binarisers run on the device only (no host read), so a training step
that calls them stays capturable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..seeds import derive_seed
from .masks import random_masks

INITS = ("omp", "random", "kept", "uniform", "signed")


def top_mask(flat: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D tensor, ties at the threshold going to lower indices;
    device work only (the caller checks ``k`` and NaN)."""
    if k == 0:
        return torch.zeros_like(flat, dtype=torch.bool)
    if k == flat.numel():
        return torch.ones_like(flat, dtype=torch.bool)
    kth = flat.topk(k, sorted=False).values.min()
    above, ties = flat > kth, flat == kth
    return above | (ties & (ties.cumsum(0) <= k - above.sum()))


def initial_scores(weights: dict[str, Tensor], zeros: dict[str, int], init: str, threshold: float,
                   seed: int) -> dict[str, Tensor]:
    """fp32 scores per layer: ``omp`` 2τ on the layer's largest-magnitude weights and 0 on its ``zeros[l]`` smallest
    (TAMT's OMP init; ties to lower indices), ``random`` the same at random positions (drawn as
    ``masks.random_masks``), ``kept`` 2τ everywhere (the dense model), ``uniform`` |U(-b, b)| or ``signed`` U(-b, b)
    with the kaiming-uniform bound ``b = 1/sqrt(fan_in)`` of edge-popup, from a generator seeded by (seed, layer)."""
    if init == "omp":
        kept = {name: top_mask(w.detach().abs().flatten(), w.numel() - zeros[name]).view(w.shape)
                for name, w in weights.items()}
    elif init == "random":
        shapes = {name: tuple(w.shape) for name, w in weights.items()}
        kept = random_masks(shapes, zeros, seed, next(iter(weights.values())).device)
    elif init == "kept":
        kept = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    elif init in ("uniform", "signed"):
        return {name: _uniform(w, seed, name, signed=init == "signed") for name, w in weights.items()}
    else:
        raise ValueError(f"unknown score init {init!r}; choose one of {', '.join(INITS)}")
    return {name: mask.float() * (2.0 * threshold) for name, mask in kept.items()}


def _uniform(weight: Tensor, seed: int, name: str, signed: bool) -> Tensor:
    """U(0, b), or U(-b, b) when ``signed`` (edge-popup's ``kaiming_uniform_(a=√5)`` on the scores), b = 1/√fan_in."""
    generator = torch.Generator().manual_seed(derive_seed("mask-scores", seed, name))
    bound = 1.0 / math.sqrt(weight.numel() // weight.shape[0])
    draw = torch.rand(weight.shape, generator=generator)
    return ((2 * draw - 1 if signed else draw) * bound).to(weight.device)


@torch.no_grad()
def threshold_masks_(scores: list[Tensor], thresholds: list[Tensor], out: list[Tensor]) -> None:
    """``out[l] = scores[l] > thresholds[l]`` in place (per-layer 0-d threshold tensors on the device)."""
    for score, tau, mask in zip(scores, thresholds, out):
        torch.gt(score, tau, out=mask)


@torch.no_grad()
def reset_thresholds(scores: dict[str, Tensor], zeros: dict[str, int]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(thresholds, masks): τ_l = the ``zeros[l]``-th smallest score of layer ``l`` (TAMT's ``kthvalue``; -inf for a
    layer without zeros) and the exact top-(N_l − zeros[l]) mask, so every layer has exactly its zeros."""
    thresholds, masks = {}, {}
    for name, score in scores.items():
        flat, k = score.flatten(), zeros[name]
        thresholds[name] = flat.kthvalue(k).values if k > 0 else flat.new_tensor(-math.inf)
        masks[name] = top_mask(flat, flat.numel() - k).view(score.shape)
    return thresholds, masks


@torch.no_grad()
def straight_through_grads_(weight_grads: list[Tensor], start_weights: list[Tensor], out: list[Tensor]) -> None:
    """``out[l] = weight_grads[l] ⊙ start_weights[l]`` in place: the scores' straight-through gradient, from the
    gradient of the effective weight ``W0 ⊙ M``."""
    torch._foreach_copy_(out, weight_grads)
    torch._foreach_mul_(out, start_weights)
