"""AC/DC: alternating compressed / decompressed training (Peste, Iofinova, Vladu, Alistarh, NeurIPS 2021).

Epochs follow ``sparsity.phases.acdc_phase``. Entering a compressed phase prunes to ``sparsity`` by magnitude
(global by default, as the authors) and fixes the mask for the phase; entering a decompressed phase removes the
mask: the pruned weights re-enter at zero and, with ``reset_momentum`` (the authors' run scripts), every
per-element optimizer buffer of every trained parameter is zeroed (the authors' ``reset_momentum_buffer`` zeroes the
momentum of every parameter group: BatchNorm and biases included). Phase changes happen at epoch ends, so every
step is plain; the final phase is compressed, so the run ends exactly at ``sparsity``.

Paper: https://arxiv.org/abs/2106.12379; the authors' code: https://github.com/IST-DASLab/ACDC.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.phases import COMPRESSED, DECOMPRESSED, acdc_phase
from .base import RunContext
from .masked import MaskedMethod

# each phase's share of the run where its length is not given, as the authors' ImageNet schedule (10 / 5 / 5 / 15 of 100
# epochs), and the fewest epochs it takes
SHARES = {"warmup_epochs": (0.10, 0), "compressed_epochs": (0.05, 1), "decompressed_epochs": (0.05, 1),
          "final_epochs": (0.15, 1)}


class ACDC(MaskedMethod):
    name = "acdc"

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        for key, (_, low) in SHARES.items():
            if getattr(cfg, key) is not None and getattr(cfg, key) < low:
                raise ConfigError(f"method.{key}={getattr(cfg, key)} must be >= {low}; e.g. method.{key}=5")

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return "method.final_epochs: the final compressed phase ends the run (the phases before it follow)"

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.epochs = math.ceil(ctx.total_steps / ctx.steps_per_epoch)
        shares = {key: max(low, round(share * self.epochs)) for key, (share, low) in SHARES.items()}
        self.lengths = {key: shares[key] if getattr(self.cfg, key) is None else getattr(self.cfg, key) for key in SHARES}
        if self.lengths["warmup_epochs"] + self.lengths["final_epochs"] > self.epochs:
            raise ConfigError(
                f"method.warmup_epochs={self.lengths['warmup_epochs']} and method.final_epochs="
                f"{self.lengths['final_epochs']} do not fit in a run of {self.epochs} epochs; e.g. "
                f"method.warmup_epochs={shares['warmup_epochs']} method.final_epochs={shares['final_epochs']} (or "
                "leave them null: the ImageNet schedule's shares of the run)"
            )

    def summary(self) -> dict:
        """The phase lengths the run used (epochs)."""
        return {"phases": dict(self.lengths)}

    def phase(self, epoch: int) -> str:
        """The phase of 0-based ``epoch`` of this run."""
        lengths = self.lengths
        return acdc_phase(epoch, epochs=self.epochs, warmup=lengths["warmup_epochs"],
                          compressed=lengths["compressed_epochs"], decompressed=lengths["decompressed_epochs"],
                          final=lengths["final_epochs"])

    def may_stop(self, steps_done: int) -> bool:
        final_start = max(self.lengths["warmup_epochs"], self.epochs - self.lengths["final_epochs"])
        return steps_done > final_start * self.ctx.steps_per_epoch  # in the final compressed phase

    def start_round(self, round_index: int) -> None:
        if self.phase(0) == COMPRESSED:
            self._compress()

    def on_epoch_end(self, epoch: int) -> None:
        if epoch >= self.epochs:
            return
        before, after = self.phase(epoch - 1), self.phase(epoch)
        if after == before:
            return
        if after == COMPRESSED:
            self._compress()
        elif after == DECOMPRESSED:
            self._decompress()

    def _compress(self) -> None:
        self.prune(self.magnitude_scores(), self.sparsity)

    @torch.no_grad()
    def _decompress(self) -> None:
        self.set_masks({name: torch.ones_like(mask) for name, mask in self.maskset.masks.items()})
        if self.cfg.reset_momentum:  # every parameter's, as the authors' reset_momentum_buffer (BatchNorm, biases)
            state = self.ctx.optimizer.state
            params = [param for group in self.ctx.optimizer.param_groups for param in group["params"]]
            buffers = [value for param in params for value in state.get(param, {}).values()
                       if isinstance(value, torch.Tensor) and value.shape == param.shape]
            if buffers:
                torch._foreach_zero_(buffers)
        self.ctx.log({"event": "decompress", "sparsity": 0.0})
