"""SNFS, sparse momentum (Dettmers & Zettlemoyer 2019): grow where the momentum of the dense gradient is
largest, and redistribute the regrowth across layers in proportion to each layer's mean momentum magnitude.

Defaults follow the reference code (``sparse_learning``, ``Masking``): only the weights are masked, so gradients
and the optimizer's momentum stay dense, and growth reads that momentum (under Adam, m / (sqrt(v) + 1e-8));
uniform density over all layers (its ``constant`` init, first layer included); updates at the end of every epoch
(or after every ``delta_t`` steps); prune rate 0.5 with cosine decay to 0.005; counts ``ceil(rate x active)``,
a nearly dense layer (sparsity < 0.2) with more than its even share of momentum drops at most its sparsity, and
every layer, full ones included, takes part in the momentum redistribution (``dst.redistribute``; a pattern
fixes each layer's count, so it needs ``redistribute=none``).

``momentum_source=own`` is the RigL TF "momentum" baseline instead: the method's own ``momentum``-decayed sum
of dense gradients, with gradients and optimizer state masked like every other method.

Paper: https://arxiv.org/abs/1907.04840; the authors' code: https://github.com/TimDettmers/sparse_learning.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.dst import drop_count, redistribute
from .base import RunContext
from .dynamic import DynamicMethod

SOURCES = ("optimizer", "own")


class SNFS(DynamicMethod):
    name = "snfs"
    scores_need_gradient = False  # momentum: read at the update

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.redistribute not in ("momentum", "none"):
            raise ConfigError(f"method.redistribute={cfg.redistribute!r} must be momentum or none; "
                              "e.g. method.redistribute=momentum")
        if cfg.momentum_source not in SOURCES:
            raise ConfigError(f"method.momentum_source={cfg.momentum_source!r} must be optimizer or own; "
                              "e.g. method.momentum_source=optimizer")
        if cfg.redistribute == "momentum" and cfg.pattern.name != "unstructured":
            raise ConfigError(f"method.redistribute=momentum moves growth across layers, but method.pattern.name="
                              f"{cfg.pattern.name} fixes every layer's count; e.g. method.redistribute=none")
        if not 0.0 <= cfg.momentum < 1.0:
            raise ConfigError(f"method.momentum={cfg.momentum} must be in [0, 1); e.g. method.momentum=0.9")

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.own = cfg.momentum_source == "own"

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        if not self.own and not all("betas" in group or group.get("momentum", 0) > 0
                                    for group in ctx.optimizer.param_groups):
            raise ConfigError("method.momentum_source=optimizer needs an optimizer with momentum (SGD with "
                              "optimizer.momentum > 0, Adam, AdamW); e.g. optimizer.momentum=0.9")
        self.momentum = {name: torch.zeros_like(p) for name, p in self.targets.params.items()} if self.own else {}

    @torch.no_grad()
    def observe(self, step: int) -> None:
        if self.own:
            buffers = list(self.momentum.values())
            torch._foreach_mul_(buffers, self.cfg.momentum)
            torch._foreach_add_(buffers, [p.grad for p in self.targets.params.values()])

    def mask_gradients(self) -> None:
        if self.own:
            super().mask_gradients()  # the reference masks the weights only: its optimizer sees dense gradients

    def dense_backward(self, step: int) -> bool:
        return True  # the momentum needs the dense gradient every step

    @torch.no_grad()
    def momenta(self) -> dict[str, torch.Tensor]:
        """The momentum growth reads, per layer: the method's own, or the optimizer's (Adam: m / (sqrt(v) + 1e-8))."""
        if self.own:
            return self.momentum
        out = {}
        for name, param in self.targets.params.items():
            state = self.ctx.optimizer.state.get(param, {})
            if "exp_avg" in state:
                out[name] = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)
            else:
                out[name] = state.get("momentum_buffer")
                if out[name] is None:  # no optimizer step yet
                    out[name] = torch.zeros_like(param)
        return out

    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        return dict(zip(self.targets.params, torch._foreach_abs(list(self.momenta().values()))))

    def layer_shares(self) -> dict[str, float]:
        """Each layer's mean |momentum| over its active weights, as a fraction of the sum over layers."""
        masks, counts = self.maskset.masks, self.maskset.counts()
        momenta = self.momenta()
        active = torch._foreach_mul([momenta[name] for name in masks], list(masks.values()))
        sums = torch.stack(torch._foreach_norm(active, 1)).tolist()
        means = {name: total / max(counts[name], 1) for name, total in zip(masks, sums)}
        norm = sum(means.values())
        return {name: mean / norm if norm > 0 else 1 / len(means) for name, mean in means.items()}

    def drop_counts(self, counts: dict[str, int], fraction: float) -> dict[str, int]:
        if self.cfg.redistribute == "none":
            return super().drop_counts(counts, fraction)
        self.shares = self.layer_shares()
        even = 1 / len(self.shares)
        drops = {}
        for name, count in counts.items():
            if name in self.targets.fixed:
                continue
            sparsity = 1 - count / self.maskset.masks[name].numel()
            rate = min(sparsity, fraction) if sparsity < 0.2 and self.shares[name] > even else fraction
            drops[name] = drop_count(count, rate, self.cfg.drop_rounding)
        return drops

    def grow_counts(self, drops: dict[str, int], kept: dict[str, int]) -> dict[str, int]:
        if self.cfg.redistribute == "none":
            return drops
        masks = self.maskset.masks
        total = sum(self.shares[name] for name in drops)
        shares = {name: self.shares[name] / total if total > 0 else 1 / len(drops) for name in drops}
        capacity = {name: masks[name].numel() - kept[name] for name in drops}
        return redistribute(sum(drops.values()), shares, capacity)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": {n: b.clone() for n, b in self.momentum.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, buffer in state["momentum"].items():
            self.momentum[name].copy_(buffer)
