"""ITOP, In-Time Over-Parameterisation (Liu et al., ICML 2021): dynamic sparse training with a large update
interval so that explored connections are trained long enough, tracking the rate R_s of weights ever active.

Defaults follow the reference code: ERK, prune rate 0.5 with cosine decay to 0.005 over the whole training
(no t_end), drop count ceil, the optimizer step always taken, delta_t 4000 with gradient growth (RigL-ITOP;
the paper uses 1500 with ``growth=random``, SET-ITOP), at batch 128.

Paper: https://arxiv.org/abs/2102.02887; the authors' code:
https://github.com/Shiweiliuiiiiiii/In-Time-Over-Parameterization.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .dynamic import DynamicMethod, gradient_scores


class ITOP(DynamicMethod):
    name = "itop"

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.growth not in ("gradient", "random"):
            raise ConfigError(f"method.growth={cfg.growth!r} must be gradient or random; e.g. method.growth=random")

    @property
    def scores_need_gradient(self) -> bool:
        return self.cfg.growth == "gradient"

    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        if self.cfg.growth == "gradient":
            return gradient_scores(self.targets.params)
        return self.random_scores(step)
