"""SNFS, sparse momentum (Dettmers & Zettlemoyer 2019): grow where the momentum of the dense gradient is
largest, and redistribute the regrowth across layers in proportion to each layer's mean momentum magnitude.

The momentum is the method's own ``momentum``-decayed sum of dense gradients (kept for every position, so it
works with any optimizer, while the optimizer's own state stays masked). Defaults follow the reference code
(``sparse_learning``): updates at the end of every epoch, prune rate 0.5 with cosine decay to 0.005 over the
whole training, momentum 0.9, momentum redistribution.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ConfigError
from ..sparsity.dst import redistribute
from .base import RunContext
from .dynamic import DynamicMethod


class SNFS(DynamicMethod):
    name = "snfs"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        if cfg.redistribute not in ("momentum", "none"):
            raise ConfigError(f"method.redistribute={cfg.redistribute!r} must be momentum or none; "
                              "e.g. method.redistribute=momentum")
        if not 0.0 <= cfg.momentum < 1.0:
            raise ConfigError(f"method.momentum={cfg.momentum} must be in [0, 1); e.g. method.momentum=0.9")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.momentum = {name: torch.zeros_like(p) for name, p in self.targets.params.items()}

    @torch.no_grad()
    def observe(self, step: int) -> None:
        buffers = list(self.momentum.values())
        torch._foreach_mul_(buffers, self.cfg.momentum)
        torch._foreach_add_(buffers, [p.grad for p in self.targets.params.values()])

    def dense_backward(self, step: int) -> bool:
        return True  # the momentum needs the dense gradient every step

    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        return dict(zip(self.momentum, torch._foreach_abs(list(self.momentum.values()))))

    def grow_counts(self, drops: dict[str, int], kept: dict[str, int]) -> dict[str, int]:
        if self.cfg.redistribute == "none":
            return drops
        masks = self.maskset.masks
        # sum of |momentum| over each layer's active weights, all layers at once (L1 norms of the masked momenta)
        active = torch._foreach_mul([self.momentum[name] for name in drops], [masks[name] for name in drops])
        sums = torch.stack(torch._foreach_norm(active, 1)).tolist()
        means = {name: total / max(kept[name] + drops[name], 1) for name, total in zip(drops, sums)}
        capacity = {name: masks[name].numel() - kept[name] for name in drops}
        return redistribute(sum(drops.values()), means, capacity)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": {n: b.clone() for n, b in self.momentum.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, buffer in state["momentum"].items():
            self.momentum[name].copy_(buffer)
