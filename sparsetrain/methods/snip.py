"""SNIP (Lee et al., ICLR 2019): prune at initialisation by connection sensitivity |g ⊙ w| on training data,
then train the fixed mask.

Paper: https://arxiv.org/abs/1810.02340; the authors' code: https://github.com/namhoonlee/snip-public.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.saliency import snip_scores
from .masked import MaskedMethod


class SNIP(MaskedMethod):
    name = "snip"
    needs = ("train_batches",)  # the scores are computed on training batches

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.num_batches < 1:
            raise ConfigError(f"method.num_batches={cfg.num_batches} must be >= 1; e.g. method.num_batches=1")

    def start_round(self, round_index: int) -> None:
        self.prune(self.scores(), self.sparsity)

    def scores(self) -> dict[str, torch.Tensor]:
        return snip_scores(self.ctx.model, self.targets.params, self.scoring_batches(), self.ctx.loss_fn)

    def scoring_batches(self) -> list:
        """The first ``num_batches`` training batches of epoch 0 (no global RNG is drawn)."""
        return list(itertools.islice(self.ctx.train_batches.epoch(0), self.cfg.num_batches))
