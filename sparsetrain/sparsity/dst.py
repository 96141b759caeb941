"""The drop/grow update shared by every dynamic sparse training method (RigL, SET, SNFS, ITOP).

Per layer, on the device, with ``topk`` (no full sort, no host sync): keep the ``n_on - k`` largest-magnitude
active weights (ties broken by optional seeded noise), then grow ``k'`` connections by the method's grow score
among all positions not kept (just-dropped ones included). Kept and grown sets are disjoint by construction.
"""

from __future__ import annotations

import math

import torch

from ..seeds import derive_seed


def drop_fraction(step: int, *, alpha: float, alpha_min: float, decay: str, end_step: int) -> float:
    """Fraction of active weights dropped at ``step``: ``constant`` (alpha), ``linear`` or ``cosine`` decay from
    ``alpha`` at step 0 to ``alpha_min`` at ``end_step`` (RigL: cosine, alpha_min 0; ITOP: cosine, 0.005)."""
    if decay == "constant":
        return alpha
    progress = min(step / end_step, 1.0) if end_step > 0 else 1.0
    if decay == "linear":
        return alpha + (alpha_min - alpha) * progress
    if decay == "cosine":
        return alpha_min + (alpha - alpha_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"method.decay={decay!r} is not a decay; choose cosine, linear or constant")


def drop_count(active: int, fraction: float, rounding: str) -> int:
    """``floor`` (RigL) or ``ceil`` (SET/ITOP) of ``fraction`` times the active count."""
    raw = round(fraction * active, 9)
    return min(active, math.ceil(raw) if rounding == "ceil" else math.floor(raw))


def noise(like: torch.Tensor, scale: float, seed: int, step: int, name: str, purpose: str) -> torch.Tensor | None:
    """Seeded N(0, scale) noise shaped like ``like`` (None when scale is 0): a function of (seed, step, layer)."""
    if scale == 0.0:
        return None
    generator = torch.Generator(device=like.device).manual_seed(derive_seed(purpose, seed, step, name))
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype) * scale


def drop_grow(weight: torch.Tensor, mask: torch.Tensor, active: int, drop: int, grow: int,
              grow_score: torch.Tensor, drop_noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """New mask of one layer with ``active - drop + grow`` active entries, and the mask of truly new connections.

    Drop: the ``drop`` smallest ``|w|`` (+ noise) among active entries. Grow: the ``grow`` highest
    ``grow_score`` among entries not kept (dropped ones are eligible, and keep their value if regrown).
    """
    flat_mask = mask.flatten()
    magnitude = weight.detach().abs().flatten().float()
    if drop_noise is not None:
        magnitude = magnitude + drop_noise.flatten()
    drop_score = torch.where(flat_mask, magnitude, float("-inf"))
    kept = torch.zeros_like(flat_mask)
    kept[torch.topk(drop_score, active - drop, sorted=False).indices] = True
    score = torch.where(kept, float("-inf"), grow_score.flatten().float())
    grown = torch.zeros_like(flat_mask)
    grown[torch.topk(score, grow, sorted=False).indices] = True
    new_mask = (kept | grown).view_as(mask)
    return new_mask, (grown & ~flat_mask).view_as(mask)


def redistribute(total: int, weights: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Split ``total`` regrowth over layers in proportion to ``weights`` (SNFS: mean |momentum| of the active
    weights), never above a layer's ``capacity`` (its free positions), keeping the exact total (largest
    remainder rounding; what a full layer cannot take goes to the others). Layers whose proportional share
    exceeds their capacity are filled first, then the rest is rounded once; ties go to the earlier layer."""
    share = {name: 0 for name in weights}
    remaining = total
    open_layers = [name for name in weights if capacity[name] > 0]  # a list: the result never depends on hashing
    while True:
        norm = sum(weights[name] for name in open_layers)
        raw = {name: remaining * (weights[name] / norm if norm > 0 else 1 / len(open_layers)) for name in open_layers}
        full = [name for name in open_layers if raw[name] >= capacity[name]]
        if not full:
            break
        for name in full:
            share[name] = capacity[name]
            remaining -= capacity[name]
        open_layers = [name for name in open_layers if name not in full]
        if not open_layers:
            break
    if remaining and not open_layers:
        raise ValueError(f"cannot regrow {remaining} more connections: every layer is full")
    floors = {name: math.floor(value) for name, value in raw.items() if name in open_layers}
    leftover = remaining - sum(floors.values())
    for name in sorted(open_layers, key=lambda n: raw[n] - floors[n], reverse=True)[:leftover]:
        floors[name] += 1
    share.update(floors)
    return share
