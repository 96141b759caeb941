"""SynFlow (Tanaka et al., NeurIPS 2020): data-free, iterative pruning at initialisation by synaptic flow
(100 rounds on an exponential schedule), then train the fixed mask.

Paper: https://arxiv.org/abs/2006.05467; the authors' code: https://github.com/ganguli-lab/Synaptic-Flow.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..sparsity.distribution import exact_zeros
from ..sparsity.saliency import synflow_masks
from .base import RunContext
from .masked import MaskedMethod


class SynFlow(MaskedMethod):
    name = "synflow"
    patterns = ("unstructured", "block", "fanin", "channel")  # nm fixes the density: no schedule to prune through
    needs = ("in_shape",)  # the all-ones input of the synaptic-flow pass

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.iterations < 1:
            raise ConfigError(f"method.iterations={cfg.iterations} must be >= 1; e.g. method.iterations=100")
        if cfg.scope == "global" and (cfg.dense_layers or cfg.layer_density):
            raise ConfigError("method.dense_layers and method.layer_density need method.scope=layerwise with synflow")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        if isinstance(ctx.example, dict):
            raise ConfigError("method=synflow is data-free: it feeds the model one all-ones input tensor, and this "
                              "model takes named tensors (token ids cannot be all-ones); prune it on data, "
                              "e.g. method=snip")

    def start_round(self, round_index: int) -> None:
        params = self.targets.params
        if self.cfg.scope == "global":
            total = sum(p.numel() for p in params.values())
            keep = total - exact_zeros(total, 1.0 - self.sparsity)
        else:
            keep = {name: params[name].numel() - zeros for name, zeros in self.layer_zeros(self.sparsity).items()}
        in_pattern = self.pattern_masks if self.cfg.pattern.name != "unstructured" else None
        masks = synflow_masks(self.ctx.model, params, self.ctx.in_shape, keep, iterations=self.cfg.iterations,
                              select=in_pattern)
        self.install(masks, self.sparsity)
