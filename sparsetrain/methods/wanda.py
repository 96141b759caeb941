"""Wanda (Sun, Liu, Bair & Kolter, ICLR 2024): one-shot pruning of a trained model by weight magnitude times input
norm, ``|W_ij| · ‖X_j‖``, with no weight update; the input norms come from a calibration set, layer after layer in
sequence as SparseGPT gathers them (``methods/sparsegpt.py``, whose calibration, options and run it shares).

As the authors' ``prune_wanda``: the weights are compared within each output row (``method.compare=row``: every row
keeps the same count; ``layer``: one ranking over the layer, the paper's ablation), or within each group of ``m``
consecutive inputs of a row (``method.pattern.name=nm``).

Paper: https://arxiv.org/abs/2306.11695; the authors' code: https://github.com/locuslab/wanda.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .schemas import PatternConfig
from ..sparsity.patterns import keep_count, select
from .sparsegpt import SparseGPT

COMPARE = ("row", "layer")
ROWS = PatternConfig(name="fanin")  # every output row keeps the same count


class Wanda(SparseGPT):
    name = "wanda"
    full_statistics = False  # the squared input norms only

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.compare not in COMPARE:
            raise ConfigError(f"method.compare={cfg.compare!r} must be row or layer; e.g. method.compare=row")

    def prune_matrix(self, name: str, weight: Tensor, gram: Tensor, zeros: int) -> tuple[Tensor, Tensor]:
        if self.targets.fixed.get(name) == 1.0:
            return weight, torch.ones_like(weight, dtype=torch.bool)
        metric = weight.abs().float() * gram.sqrt()[None, :]
        pattern = self.cfg.pattern
        if pattern.name == "unstructured" and self.cfg.compare == "row":  # floor(fan-in x sparsity) zeros per row
            pattern, zeros = ROWS, zeros // weight.shape[0] * weight.shape[0]
        kept = select(pattern, metric, keep_count(pattern, weight.shape, weight.numel() - zeros))
        return weight * kept, kept
