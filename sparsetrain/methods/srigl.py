"""SRigL (Lasby et al., ICLR 2024): RigL with constant fan-in and neuron ablation.

RigL's update under ``method.pattern.name=fanin`` (the only pattern it takes): drop the layer's smallest active
weights, then regrow every neuron by |dense gradient| to the layer's constant fan-in (``sparsity/dst.py``). First,
per layer, a weight is salient if RigL would keep it (the ``active - drop`` largest |w|) or grow it (the ``drop``
largest |gradient|), and a neuron with fewer than ``gamma_sal`` x the layer's sparse fan-in salient weights is
ablated: its weights drop first, it regrows none, and the layer's kept count is spread over the live neurons
(fan-in ``count // live``). The threshold is lowered so that more neurons stay live than the count could fill
densely, and a neuron ablated at one update is revived at a later one if it is salient again.

Defaults follow the authors' code (condensed-sparsity ``RigLConstFanScheduler`` and ``configs/config.yaml``):
ERK, delta_t 100, alpha 0.3 with cosine decay to t_end = 75 %, drop count floor, no tie-break noise, no optimizer
step on an update, every layer masked, ``gamma_sal`` 0.3 of the sparse fan-in. Two departures: a neuron over the
new fan-in keeps its largest weights (the reference keeps an arbitrary subset), and the model's output layer is
never ablated (its outputs are the classes; the reference's check for it never fires).

Paper: https://arxiv.org/abs/2305.02299; the authors' code: https://github.com/calgaryml/condensed-sparsity.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.patterns import matrix
from ..sparsity.scores import top_mask
from .base import RunContext
from .rigl import RigL


class SRigL(RigL):
    name = "srigl"
    patterns = ("fanin",)

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if not 0.0 <= cfg.gamma_sal <= 1.0:
            raise ConfigError(f"method.gamma_sal={cfg.gamma_sal} must be a fraction of the fan-in in [0, 1] (0: no "
                              "ablation); e.g. method.gamma_sal=0.3")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        numel = {name: param.numel() for name, param in self.targets.params.items()}
        self.budget = {name: numel[name] - zeros for name, zeros in self.layer_zeros(self.sparsity).items()}
        last, shape = list(self.targets.shapes.items())[-1]
        self.unablated = {last} if shape[0] == ctx.num_classes else set()

    def group_targets(self, scores: dict[str, torch.Tensor], counts: dict[str, int],
                      drops: dict[str, int]) -> list[torch.Tensor | None] | None:
        if not self.cfg.gamma_sal:
            return None
        return [self.fan_ins(param.detach(), scores[name], counts[name], drops[name], self.budget[name])
                if name in drops and name not in self.unablated else None
                for name, param in self.targets.params.items()]

    def fan_ins(self, weight: torch.Tensor, grow: torch.Tensor, count: int, drop: int, budget: int) -> torch.Tensor:
        """Every neuron's new fan-in: 0 where ablated, else ``budget`` over the live neurons (on the device)."""
        out, dense_fan_in = weight.shape[0], weight.numel() // weight.shape[0]
        salient = top_mask(weight.abs().flatten(), count - drop) | top_mask(grow.flatten(), drop)
        per_neuron = matrix(salient.view(weight.shape)).sum(1)
        threshold = max(1, int(self.cfg.gamma_sal * (budget // out)))
        floor = per_neuron.sort(descending=True).values[min(budget // dense_fan_in, out - 1)]
        ablated = per_neuron < torch.clamp(floor, max=threshold)
        live = out - ablated.sum()
        return torch.where(ablated, 0, torch.div(budget, live, rounding_mode="floor"))

    def summary(self) -> dict:
        """RigL's, and the neurons ablated (all-zero rows) per layer at the end."""
        rows = {name: int((~matrix(mask).any(1)).sum()) for name, mask in self.maskset.masks.items()}
        return {**super().summary(), "ablated_neurons": rows}
