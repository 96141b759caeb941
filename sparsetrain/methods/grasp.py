"""GraSP (Wang et al., ICLR 2020): prune at initialisation the weights whose removal least reduces the
gradient flow, scored by the Hessian-gradient product, then train the fixed mask."""

from __future__ import annotations

import torch

from ..sparsity.saliency import grasp_scores
from .snip import SNIP


class GraSP(SNIP):
    name = "grasp"

    def scores(self) -> dict[str, torch.Tensor]:
        return grasp_scores(self.ctx.model, self.targets.params, self.scoring_batches(), self.ctx.loss_fn,
                            temperature=self.cfg.temperature)
