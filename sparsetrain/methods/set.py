"""SET (Mocanu et al., Nature Communications 2018): grow connections uniformly at random.

Defaults follow the paper's reference code: Erdős–Rényi distribution, zeta = 0.3 of each layer's active
weights removed and regrown at the end of every epoch (constant rate), the optimizer step always taken.

Paper: https://arxiv.org/abs/1707.04780; the authors' code:
https://github.com/dcmocanu/sparse-evolutionary-artificial-neural-networks.
"""

from __future__ import annotations

import torch

from .dynamic import DynamicMethod


class SET(DynamicMethod):
    name = "set"
    scores_need_gradient = False  # a seeded draw, a function of (seed, step)

    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        return self.random_scores(step)
