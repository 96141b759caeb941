"""SR-STE (Zhou et al., ICLR 2021): N:M sparsity learned from scratch, the mask recomputed from the dense weights'
magnitudes at every step, with a straight-through gradient and the sparse-refined decay.

The method keeps the dense weights ``W``; the model's weight tensors hold ``W ⊙ M`` for the forward and backward
pass, so evaluation, checkpoints and exports see the sparse model. At every step, after backward: the gradient of
``W ⊙ M`` is the dense weights' (straight-through), plus ``λ_W (1 − M) ⊙ W`` (the sparse-refined term, which pulls
the pruned weights towards zero so the mask settles), computed as ``λ_W (W − W ⊙ M)``; the weight tensors are set to
``W`` and the run's optimizer steps them (its momentum and weight decay act on the dense weights, as in the
authors' code); then ``W`` is kept, ``M`` is the top-n of every m by ``|W|`` (``method.pattern``), and the weight
tensors hold ``W ⊙ M`` again. The same device work at every step: the step is captured like any plain step.
``method.decay=0`` is the plain straight-through estimator (STE).

Defaults follow the authors' code (``devkit/sparse_ops``): 2:4 along the input channels (a convolution's fan-in
ordered (kh, kw, in), their ``Sparse_NHWC``), λ_W = 2e-4, every prunable layer masked. Another pattern (``fanin``,
``unstructured`` per layer or global, ``block``, ``channel``) takes the same rule with ``sparsity`` as its target.
Each epoch logs the fraction of mask entries that changed since the previous epoch (``mask_flips``), the paper's
measure of how far the sparse architecture still moves.

Paper: https://arxiv.org/abs/2102.04010; the authors' code: https://github.com/aojunzz/NM-sparsity.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.masks import check_masks
from ..sparsity.patterns import matrix, top_in_groups, unmatrix
from .base import RunContext
from .masked import MaskedMethod


class SRSTE(MaskedMethod):
    name = "sr_ste"

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.decay < 0:
            raise ConfigError(f"method.decay={cfg.decay} must be >= 0 (λ_W; 0: plain straight-through); e.g. "
                              "method.decay=2e-4")

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        """Not under N:M, whose n/m sets the density (``sparsity`` may then be left 0 or give 1 - n/m)."""
        return cfg.pattern.name != "nm"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.dense: list[torch.Tensor] = []  # W, the weights the optimizer steps
        self.epoch_masks: list[torch.Tensor] = []  # the masks at the previous epoch's end, for mask_flips
        self.flips: list[float] = []  # mask_flips of every epoch

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.dense = [param.detach().clone() for param in self.targets.params.values()]
        # under nm, the layers not kept dense: their groups are ranked together, in one pass, at every step
        self.grouped = [name for name in self.targets.params if self.targets.fixed.get(name) != 1.0] \
            if self.cfg.pattern.name == "nm" else []

    def start_round(self, round_index: int) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.dense, list(self.targets.params.values()))
        masks = self._masks_of_dense()
        self.maskset.set(masks)
        self.maskset.apply_()
        self.epoch_masks = [mask.clone() for mask in self.maskset.masks.values()]

    # ---- every step ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def before_optimizer_step(self, step: int) -> bool:
        """g ← g + λ_W (W − W ⊙ M); the weight tensors ← W, for the optimizer to step."""
        params = list(self.targets.params.values())
        stepped = [(param, dense) for param, dense in zip(params, self.dense) if param.grad is not None]
        if stepped and self.cfg.decay:
            grads = [param.grad for param, _ in stepped]
            torch._foreach_add_(grads, [dense for _, dense in stepped], alpha=self.cfg.decay)
            torch._foreach_add_(grads, [param for param, _ in stepped], alpha=-self.cfg.decay)
        torch._foreach_copy_(params, self.dense)
        return True

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """W ← the stepped weights; M ← the pattern's top |W|; the weight tensors ← W ⊙ M."""
        torch._foreach_copy_(self.dense, list(self.targets.params.values()))
        if self.grouped:
            self._select_groups_()
        else:
            masks = self._masks_of_dense()
            torch._foreach_copy_(list(self.maskset.masks.values()), [masks[name] for name in self.maskset.masks])
        self.maskset.refresh_factors_()
        self.maskset.apply_()

    def is_plain_step(self, step: int) -> bool:
        return True

    def dense_backward(self, step: int) -> bool:
        return True  # the straight-through update reads the gradient of every weight, pruned ones included

    def _select_groups_(self) -> None:
        """The N:M masks of the grouped layers, in place: every layer's |W| groups ranked in one pass (a few kernels
        for the model instead of a few dozen per layer), the same masks as ``select``."""
        pattern, dense = self.cfg.pattern, dict(zip(self.targets.params, self.dense))
        matrices = [matrix(dense[name]) for name in self.grouped]
        kept = top_in_groups(torch.cat([mat.reshape(-1) for mat in matrices]).abs_().view(-1, pattern.m), pattern.n)
        parts = kept.view(-1).split([mat.numel() for mat in matrices])
        masks = self.maskset.masks
        torch._foreach_copy_([masks[name] for name in self.grouped],
                             [unmatrix(part.view(mat.shape), masks[name].shape)
                              for name, part, mat in zip(self.grouped, parts, matrices)])

    def _masks_of_dense(self) -> dict[str, torch.Tensor]:
        """The pattern's masks keeping the largest |W| (device work only; counts exact per layer or group)."""
        scores = {name: dense.abs() for name, dense in zip(self.targets.params, self.dense)}
        return self.select(scores, self.sparsity, checked=False)

    # ---- outputs and state --------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int) -> None:
        """Log the fraction of mask entries that changed during the epoch (one device sync, once an epoch)."""
        masks = list(self.maskset.masks.values())
        changed = torch.stack([(now != then).sum() for now, then in zip(masks, self.epoch_masks)]).sum()
        self.flips.append(float(changed) / self.maskset.numel)
        torch._foreach_copy_(self.epoch_masks, masks)
        self.maskset.recount()  # a global ranking moves the per-layer counts FLOP accounting reads
        self.ctx.log({"event": "mask_flips", "epoch": epoch, "mask_flips": self.flips[-1]})

    def summary(self) -> dict:
        return {"decay": self.cfg.decay, "mask_flips": list(self.flips)}

    def state_dict(self) -> dict:
        names = list(self.targets.params)
        return {**super().state_dict(), "dense": dict(zip(names, self.dense)),
                "epoch_masks": dict(zip(names, self.epoch_masks)), "flips": list(self.flips)}

    def load_state_dict(self, state: dict) -> None:
        names = list(self.targets.params)
        check_masks(state["masks"], self.targets.params, "masks")
        self.maskset.set(state["masks"])
        with torch.no_grad():
            torch._foreach_copy_(self.dense, [state["dense"][name] for name in names])
        self.epoch_masks = [state["epoch_masks"][name].clone() for name in names]
        self.flips = list(state["flips"])
