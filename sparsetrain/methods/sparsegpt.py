"""SparseGPT (Frantar & Alistarh, ICML 2023): one-shot pruning of a trained model from a small calibration set, each
layer pruned and its remaining weights updated (Optimal Brain Surgeon, ``sparsity/obs.py``) so that its outputs on
the calibration inputs change least, layer after layer in sequence (``sparsity/calibration.py``).

The calibration set is the first ``n_samples`` training samples (a language model's blocks of ``max_seq_length``
tokens) in the seeded order of epoch 0. The model pruned is the run's starting model: a pretrained ``model=hf`` or
``init_from`` a trained run. Every prunable layer keeps its share at ``sparsity`` (``distribution=uniform``, the
authors'), or ``n`` of every ``m`` inputs (``method.pattern.name=nm``). The run takes no training step: it prunes,
evaluates and writes the sparse model and its masks; sparse fine-tuning is a further run from it (``method=static
method.mask_from=<run> init_from=<run>``, with a dense teacher if wanted).

Paper: https://arxiv.org/abs/2301.00774; the authors' code: https://github.com/IST-DASLab/sparsegpt.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from ..data.batches import batch_rows, batch_slice
from ..errors import ConfigError
from ..sparsity.calibration import Calibration, InputStats, calibrate_in_sequence, check_layer
from ..sparsity.obs import sparsegpt_prune
from ..sparsity.patterns import matrix, unmatrix
from .base import RunContext
from .masked import MaskedMethod

log = logging.getLogger(__name__)


class SparseGPT(MaskedMethod):
    name = "sparsegpt"
    patterns = ("unstructured", "nm")
    needs = ("train_batches",)  # the calibration samples
    full_statistics = True  # the Gram matrix of each layer's inputs (Wanda: its diagonal)

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.n_samples < 1:
            raise ConfigError(f"method.n_samples={cfg.n_samples} must be >= 1; e.g. method.n_samples=128")
        if cfg.scope != "layerwise":
            raise ConfigError(f"method={cls.name} prunes each layer from its own inputs, in sequence, so "
                              f"method.scope={cfg.scope} cannot rank across layers; e.g. method.scope=layerwise")

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return f"method={cls.name} prunes once and takes no training step"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.calibration: dict = {}

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        if ctx.dist.enabled:
            raise ConfigError(f"method={self.name} prunes once without training steps; run it in one process "
                              "(sparsetrain ..., not torchrun)")
        for name in self.targets.params:
            why = check_layer(name, self._module(name))
            if why:
                raise ConfigError(f"method={self.name} prunes linear layers and 2-d convolutions, and {why}; leave it "
                                  f"out, e.g. method.exclude=[{name}]")

    def round_steps(self, round_index: int) -> int:
        return 0

    def start_round(self, round_index: int) -> None:
        zeros, masks = self.layer_zeros(self.sparsity), {}
        layers = {name: self._module(name) for name in self.targets.params}

        def prune(stats: dict[str, InputStats]) -> None:
            for name, stat in stats.items():
                weight = self.targets.params[name]
                pruned, kept = self.prune_matrix(name, matrix(weight.detach()), stat.gram(), zeros[name])
                weight.data.copy_(unmatrix(pruned, weight.shape).to(weight.dtype))
                masks[name] = unmatrix(kept, weight.shape).contiguous()

        began = time.perf_counter()
        record = calibrate_in_sequence(self.ctx.model, layers, self.calibration_batches(), self._forward, prune,
                                       self.full_statistics)
        self._record(record, time.perf_counter() - began)
        self.install({name: masks[name] for name in self.targets.params}, self.sparsity)

    def prune_matrix(self, name: str, weight: Tensor, gram: Tensor, zeros: int) -> tuple[Tensor, Tensor]:
        """(pruned weight matrix, bool mask of kept weights) of layer ``name`` with ``zeros`` zeros (unstructured)."""
        if zeros == 0 and self.cfg.pattern.name == "unstructured" or self.targets.fixed.get(name) == 1.0:
            return weight, torch.ones_like(weight, dtype=torch.bool)
        pattern = self.cfg.pattern
        nm = (pattern.n, pattern.m) if pattern.name == "nm" else None
        pruned, kept, error = sparsegpt_prune(weight, gram, zeros, nm, self.cfg.blocksize, self.cfg.damp)
        self.calibration.setdefault("error", {})[name] = error
        return pruned, kept

    def calibration_batches(self) -> list:
        """The first ``n_samples`` training samples in the order of epoch 0 (the last batch cut to fit)."""
        batches, taken, wanted = [], 0, self.cfg.n_samples
        for batch in self.ctx.train_batches.epoch(0):
            rows = min(batch_rows(batch), wanted - taken)
            batches.append(batch_slice(batch, slice(0, rows)))
            taken += rows
            if taken == wanted:
                return batches
        raise ConfigError(f"method.n_samples={wanted} is more than the {taken} training samples one epoch has; "
                          f"e.g. method.n_samples={taken}")

    def summary(self) -> dict:
        return {"calibration": self.calibration} if self.calibration else {}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "calibration": self.calibration}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.calibration = state.get("calibration", {})

    def _forward(self, batch: Any) -> Any:
        return self.ctx.loss_fn(self.ctx.model, batch)

    def _module(self, name: str) -> torch.nn.Module:
        return self.ctx.model.get_submodule(name.rpartition(".")[0])

    def _record(self, record: Calibration, seconds: float) -> None:
        self.calibration.update({"samples": self.cfg.n_samples, "seconds": round(seconds, 3), **record.summary()})
        self.ctx.log({"event": "calibration", **{k: v for k, v in self.calibration.items() if k != "error"}})
        log.info("method=%s: %d layers pruned in sequence (%s) on %d calibration samples in %.1f s; held %.1f MiB of "
                 "block inputs and %.1f MiB of layer statistics", self.name, len(record.layers), record.walk,
                 self.cfg.n_samples, seconds, record.cached_bytes / 2**20, record.statistics_bytes / 2**20)

