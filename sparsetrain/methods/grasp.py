"""GraSP (Wang et al., ICLR 2020): prune at initialisation the weights whose removal least reduces the
gradient flow, scored by the Hessian-gradient product, then train the fixed mask.

As the authors' code (``GraSP_fetch_data`` and ``GraSP``): the scoring data is a class-balanced sample,
``samples_per_class`` of every class taken in the order of the first training epoch (10 in its CIFAR configs),
split into two halves; the gradient ``g`` (logits divided by ``temperature`` = 200) is summed over the halves,
and ``Hg`` by double backpropagation of ``g · ∇L`` through each half; one scoring iteration; one global ranking
over the prunable weights (``scope=global``); the model scored in its current (training) mode.
``samples_per_class=0`` scores on the first ``num_batches`` training batches instead.

Paper: https://arxiv.org/abs/2002.07376; the authors' code: https://github.com/alecwangcq/GraSP.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.saliency import grasp_scores
from .base import RunContext
from .snip import SNIP


class GraSP(SNIP):
    name = "grasp"

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.samples_per_class < 0:
            raise ConfigError(f"method.samples_per_class={cfg.samples_per_class} must be >= 0 (0: num_batches "
                              "batches); e.g. method.samples_per_class=10")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        if self.cfg.samples_per_class and isinstance(ctx.example, dict):
            raise ConfigError(f"method.samples_per_class={self.cfg.samples_per_class} samples (input, label) pairs "
                              "by class, and this data's batches are named tensors; score on whole batches with "
                              "method.samples_per_class=0")

    def scores(self) -> dict[str, torch.Tensor]:
        return grasp_scores(self.ctx.model, self.targets.params, self.scoring_batches(), self.ctx.loss_fn,
                            temperature=self.cfg.temperature)

    def scoring_batches(self) -> list:
        per_class = self.cfg.samples_per_class
        if per_class == 0:
            return super().scoring_batches()
        x, y = class_balanced_sample(self.ctx.train_batches.epoch(0), self.ctx.num_classes, per_class)
        half = len(y) // 2
        return [(x[:half], y[:half]), (x[half:], y[half:])]


def class_balanced_sample(batches, num_classes: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` samples of every class, in the order ``batches`` gives them (stops reading as soon
    as every class is complete); ConfigError when the data runs out first."""
    xs, ys, counts = [], [], torch.zeros(num_classes, dtype=torch.long)
    for x, y in batches:
        taken = torch.zeros_like(y, dtype=torch.bool)
        for index, label in enumerate(y.tolist()):
            if counts[label] < per_class:
                counts[label] += 1
                taken[index] = True
        xs.append(x[taken])
        ys.append(y[taken])
        if bool((counts == per_class).all()):
            return torch.cat(xs), torch.cat(ys)
    short = int(torch.argmin(counts))
    raise ConfigError(f"method.samples_per_class={per_class} needs that many training samples of every class; "
                      f"class {short} has {int(counts[short])}; e.g. method.samples_per_class={int(counts[short])}")
