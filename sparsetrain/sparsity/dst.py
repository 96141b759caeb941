"""The drop/grow update shared by every dynamic sparse training method (RigL, SET, SNFS, ITOP).

Per layer, on the device, with ``topk`` (no full sort, no host sync): drop the ``k`` smallest-magnitude active
weights (ties broken by optional seeded noise), then grow ``k'`` connections by the method's grow score among all
positions not kept (just-dropped ones included). Kept and grown sets are disjoint by construction. All layers
are handled as one flat vector (``flat.py``), so an update costs two ``topk`` per layer and a few large
operations, not a dozen small ones per layer.

Under a pattern with a count per group (``nm``, ``fanin``) the drop is the same and growth refills every group to
its count, as SRigL's code does for constant fan-in (a layer-wide drop, then per-neuron regrowth): each group
grows back exactly what it lost, so every group keeps its count and the layer its total. Under ``block`` the
methods call ``drop_grow`` on the layers' tile sums (``DynamicMethod.drop_grow_tiles``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .flat import FlatLayout
from .patterns import groups, ungroup


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
              grows: list[int], grow_scores: list[torch.Tensor], drop_noise: torch.Tensor | None, pattern: Any = None,
              targets: list[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """New masks of every layer as one flat bool tensor (``layout``'s memory order), and the flat mask of the
    truly new connections.

    Layer ``i``: drop the ``drops[i]`` smallest ``|w|`` (+ ``drop_noise``, flat in the layout's order) among its
    active entries, then grow the ``grows[i]`` highest ``grow_scores[i]`` among its entries not kept (dropped
    ones are eligible, and keep their value if regrown). Elementwise work runs once over all layers; only the
    selections are per layer.

    Under an ``nm`` or ``fanin`` ``pattern``, growth instead refills every group (``patterns.groups``) of a layer
    that drops to its count before the update (so ``grows[i]`` is ``drops[i]``), or to ``targets[i]`` (a count per
    group) where given: there a group whose target is 0 drops first, and one over its target keeps its largest.
    """
    mask = layout.flat(masks)
    magnitude = layout.flat(torch._foreach_abs(weights)).float()
    if drop_noise is not None:
        magnitude += drop_noise
    targets = targets or [None] * len(masks)
    for view, target in zip(layout.views(magnitude), targets):
        if target is not None:
            emptied = (target == 0)[:, None].expand(-1, groups(pattern, view).shape[1])
            view.masked_fill_(ungroup(emptied, view.shape), float("-inf"))
    kept = mask.clone()
    kept[_layer_top(layout, torch.where(mask, magnitude, float("inf")), drops, largest=False)] = False
    score = torch.where(kept, float("-inf"), layout.flat(grow_scores).float())
    if pattern is None or pattern.name == "unstructured":
        grown = torch.zeros_like(mask)
        grown[_layer_top(layout, score, grows, largest=True)] = True
        return kept | grown, grown & ~mask
    new = kept.clone()
    views = zip(layout.views(new), layout.views(mask), layout.views(magnitude), layout.views(score), drops, targets)
    for new_view, old, magnitudes, grow, drop, target in views:
        if drop or target is not None:
            rows = _refill(groups(pattern, new_view), groups(pattern, magnitudes), groups(pattern, grow),
                           groups(pattern, old).sum(1) if target is None else target)
            new_view.copy_(ungroup(rows, new_view.shape))
    return new, new & ~mask


def _refill(kept: torch.Tensor, magnitude: torch.Tensor, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bool rows holding ``target[r]`` entries each: row ``r``'s kept entries of largest ``magnitude``, then its
    others of highest ``score``; ties go to lower columns. Sorts on the device: no host sync."""
    order = torch.where(kept, magnitude, score).sort(dim=1, descending=True, stable=True).indices
    order = order.gather(1, kept.gather(1, order).to(torch.uint8).sort(dim=1, descending=True, stable=True).indices)
    ranks = torch.arange(kept.shape[1], device=kept.device).expand_as(kept)
    return torch.zeros_like(kept).scatter_(1, order, ranks < target[:, None])


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


def redistribute(total: int, shares: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Split ``total`` regrowth over layers as sparse_learning's ``calc_growth_redistribution``, with an exact total.

    Layer ``l`` asks for ``shares[l] x total`` (SNFS: its share of the summed mean |momentum|), capped at 0.99 of
    its free room ``capacity[l]``; what capped layers cannot take is spread evenly over all layers, the capped ones
    included (which are capped again), until nothing is left over (at most 1000 rounds, as the reference). The
    real-valued result is rounded once to integers summing to ``total`` (largest remainder, never above a layer's
    capacity; ties go to the earlier layer), where the reference's ceil/floor let the total drift."""
    names = list(shares)  # a list: the result never depends on hashing
    if total > sum(capacity[name] for name in names):
        raise ValueError(f"cannot regrow {total} connections: the layers have room for {sum(capacity.values())}")
    wanted = {name: shares[name] * total for name in names}
    spread = 0.0
    for _ in range(1000):
        residual = 0.0
        for name in names:
            value, cap = wanted[name] + spread, 0.99 * capacity[name]
            wanted[name] = min(value, cap)
            residual += max(value - cap, 0.0)
        spread = residual / len(names)
        if residual <= 0.0:
            break
    counts = {name: min(math.floor(wanted[name]), capacity[name]) for name in names}
    order = sorted(names, key=lambda n: wanted[n] - math.floor(wanted[n]), reverse=True)
    while sum(counts.values()) < total:
        for name in order:
            if sum(counts.values()) == total:
                break
            if counts[name] < capacity[name]:
                counts[name] += 1
    return counts
