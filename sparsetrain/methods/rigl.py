"""RigL (Evci et al., ICML 2020): grow the connections with the largest dense gradient of the current batch.

Defaults follow the reference ``SparseRigLOptimizer``: ERK, delta_t 100, alpha 0.3 with cosine decay to
t_end = 75 % of training, drop count floor, N(0, 1e-5) tie-break noise, new connections at 0 with zero
optimizer state, and no optimizer step on an update iteration.

Paper: https://arxiv.org/abs/1911.11134; the authors' code: https://github.com/google-research/rigl.
"""

from __future__ import annotations

import torch

from .dynamic import DynamicMethod, gradient_scores


class RigL(DynamicMethod):
    name = "rigl"

    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        return gradient_scores(self.targets.params)
