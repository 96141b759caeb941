"""The drop/grow update shared by every dynamic sparse training method (RigL, SET, SNFS, ITOP).

Per layer, on the device, with ``topk`` (no full sort, no host sync): drop the ``k`` smallest-magnitude active
weights (ties broken by optional seeded noise), then grow ``k'`` connections by the method's grow score among all
positions not kept (just-dropped ones included). Kept and grown sets are disjoint by construction. All layers
are handled as one flat vector (``flat.py``), so an update costs two ``topk`` per layer and a few large
operations, not a dozen small ones per layer.
"""

from __future__ import annotations

import math

import torch

from .flat import FlatLayout


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


def drop_grow(layout: FlatLayout, weights: list[torch.Tensor], masks: list[torch.Tensor], drops: list[int],
              grows: list[int], grow_scores: list[torch.Tensor],
              drop_noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """New masks of every layer as one flat bool tensor (``layout``'s memory order), and the flat mask of the
    truly new connections.

    Layer ``i``: drop the ``drops[i]`` smallest ``|w|`` (+ ``drop_noise``, flat in the layout's order) among its
    active entries, then grow the ``grows[i]`` highest ``grow_scores[i]`` among its entries not kept (dropped
    ones are eligible, and keep their value if regrown). Elementwise work runs once over all layers; only the
    selections are per layer.
    """
    mask = layout.flat(masks)
    magnitude = layout.flat(torch._foreach_abs(weights)).float()
    if drop_noise is not None:
        magnitude += drop_noise
    kept = mask.clone()
    kept[_layer_top(layout, torch.where(mask, magnitude, float("inf")), drops, largest=False)] = False
    score = torch.where(kept, float("-inf"), layout.flat(grow_scores).float())
    grown = torch.zeros_like(mask)
    grown[_layer_top(layout, score, grows, largest=True)] = True
    return kept | grown, grown & ~mask


def _layer_top(layout: FlatLayout, flat: torch.Tensor, counts: list[int], largest: bool) -> torch.Tensor:
    """Flat positions of the ``counts[i]`` largest (or smallest) entries of each layer ``i`` of ``flat``."""
    picks, offsets = [], []
    for segment, count, offset in zip(layout.segments(flat), counts, layout.offsets):
        if count:
            picks.append(torch.topk(segment, count, largest=largest, sorted=False).indices)
            offsets.append(offset)
    if not picks:
        return torch.zeros(0, dtype=torch.long, device=flat.device)
    torch._foreach_add_(picks, offsets)
    return torch.cat(picks)


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
