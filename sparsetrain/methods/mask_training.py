"""Mask training: learn a binary mask over frozen starting weights with a straight-through gradient.

The model's weight tensors hold ``W_eff = W0 ⊙ M`` (written in place whenever ``M`` changes), so the forward pass is
the model's own. After backward, each target weight's gradient is ``∂L/∂W_eff``; the scores' gradient is that times
``W0`` (TAMT's ``MaskedLinear1``), the scores are one extra param group of the run's optimizer (``score_lr``,
``score_weight_decay``), and the target weights are in no group: the run's optimizer never changes them. After the
step the scores are binarised again (``threshold``: ``scores > τ_l``; ``topk``: exact top-k per layer or global) and
``W_eff`` rewritten, every step the same device work (capturable). A threshold reset (every ``reset_every`` steps,
after the steps listed in ``reset_at`` and at the round's end) sets τ_l to the layer's k-th smallest score and the
mask to the exact top-(N − k): each layer has exactly its configured zeros again; between resets the threshold
binariser's sparsity drifts.

A weight another module shares (an MLM decoder tied to the word embeddings) is masked for every reader by default
(``tied_weights=masked``); ``tied_weights=unmasked`` gives the other readers their own frozen copy of W0, as TAMT's
masked embedding leaves its tied decoder reading the unmasked weights.

Liu et al. (TAMT, NAACL 2022); Radiya-Dixit & Wang (AISTATS 2020: supermask fine-tuning, ``init=kept``);
Ramanujan et al. (CVPR 2020: edge-popup, ``binarizer=topk init=signed rank=abs``: the top-k of |s|, the scores'
gradient times sign(s), as its ``GetSubnet`` on ``scores.abs()``); Zhou et al. (NeurIPS 2019).

Papers: https://arxiv.org/abs/2204.11218, https://arxiv.org/abs/2004.14129, https://arxiv.org/abs/1911.13299,
https://arxiv.org/abs/1905.01067; the authors' code: https://github.com/llyx97/TAMT,
https://github.com/allenai/hidden-networks.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import ConfigError
from ..models.tying import tied_names, untie_
from ..sparsity.masks import check_masks
from ..sparsity.scores import INITS, initial_scores, reset_thresholds, straight_through_grads_, threshold_masks_
from .base import RunContext
from .masked import MaskedMethod

BINARIZERS = ("threshold", "topk")
TIED_WEIGHTS = ("masked", "unmasked")
RANKS = ("value", "abs")
log = logging.getLogger(__name__)


class MaskTraining(MaskedMethod):
    name = "mask_training"

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.binarizer not in BINARIZERS:
            raise ConfigError(f"method.binarizer={cfg.binarizer!r} is not a binariser; choose threshold or topk "
                              "(e.g. method.binarizer=topk)")
        if cfg.init not in INITS:
            raise ConfigError(f"method.init={cfg.init!r} is not a score initialisation; choose one of: "
                              f"{', '.join(INITS)} (e.g. method.init=omp)")
        refusals = [
            (cfg.binarizer == "topk" and cfg.init == "kept", "method.init=kept",
             "starts every score equal, which top-k cannot rank", "method.init=uniform"),
            (cfg.rank not in RANKS, f"method.rank={cfg.rank!r}", "must be value or abs", "method.rank=abs"),
            (cfg.rank == "abs" and cfg.binarizer != "topk", "method.rank=abs",
             "ranks scores for binarizer=topk (a threshold compares values)", "method.binarizer=topk"),
            (cfg.binarizer == "threshold" and cfg.scope == "global", "method.scope=global",
             "needs binarizer=topk (threshold resets are per layer)", "method.scope=layerwise"),
            (cfg.binarizer == "threshold" and cfg.pattern.name != "unstructured",
             f"method.pattern.name={cfg.pattern.name}", "needs binarizer=topk (a threshold keeps no count per group)",
             "method.binarizer=topk"),
            (cfg.reset_every < 0, f"method.reset_every={cfg.reset_every}", "must be >= 0 (0: never reset)",
             "method.reset_every=1000"),
            (any(step < 1 for step in cfg.reset_at), f"method.reset_at={list(cfg.reset_at)}",
             "counts steps taken, each >= 1", "method.reset_at=[1]"),
            (cfg.score_lr <= 0, f"method.score_lr={cfg.score_lr}", "must be positive", "method.score_lr=5e-5"),
            (cfg.score_weight_decay < 0, f"method.score_weight_decay={cfg.score_weight_decay}", "must be >= 0",
             "method.score_weight_decay=0.0"),
            (cfg.tied_weights not in TIED_WEIGHTS, f"method.tied_weights={cfg.tied_weights!r}",
             "must be masked or unmasked", "method.tied_weights=unmasked"),
        ]
        for refused, key, rule, example in refusals:
            if refused:
                raise ConfigError(f"{key} {rule}; e.g. {example}")

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        if cfg.binarizer == "threshold" and cfg.reset_every > 0:
            return f"method.reset_every={cfg.reset_every} also resets the thresholds after the run's last step"
        return None

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.w0: list[torch.Tensor] = []  # the frozen starting weights
        self.scores: list[torch.Tensor] = []
        self.score_grads: list[torch.Tensor] = []  # persistent buffers, the scores' .grad
        self.thresholds: list[torch.Tensor] = []  # τ_l, 0-d device tensors
        self.resets = 0

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        """Not when the mask starts dense and is never reset: the scores alone then set the sparsity."""
        return not (cfg.init == "kept" and cfg.reset_every == 0 and not cfg.reset_at)

    def setup(self, ctx: RunContext) -> None:
        """Keep W0, create the scores as a new param group of the run's optimizer and take the target weights out
        of its groups (they keep their gradient, which the scores' gradient is computed from)."""
        super().setup(ctx)
        params = self.targets.params
        _take_out_of_optimizer(ctx.optimizer, list(params.values()))
        for param in params.values():
            param.requires_grad_(True)  # whatever finetune.trainable says: ∂L/∂W_eff is the scores' gradient
        self.w0 = [param.detach().clone() for param in params.values()]
        if self.cfg.tied_weights == "unmasked":
            starting = dict(zip(params, self.w0))
            untied = {name: first for name, first in tied_names(ctx.model).items() if first in starting}
            for name, first in untied.items():
                untie_(ctx.model, name, starting[first], requires_grad=False)
            if untied:
                log.info("method.tied_weights=unmasked: %s read the frozen starting weights", ", ".join(untied))
        zeros = self.layer_zeros(self.sparsity)
        scores = initial_scores(dict(zip(params, self.w0)), zeros, self.cfg.init, self.cfg.threshold, ctx.seed)
        self.scores = [score.requires_grad_(True) for score in scores.values()]
        self.score_grads = [torch.zeros_like(score) for score in self.scores]
        self.signs = [torch.zeros_like(score) for score in self.scores] if self.cfg.rank == "abs" else []
        self.thresholds = [torch.tensor(self.cfg.threshold, device=ctx.device) for _ in self.scores]
        ctx.optimizer.add_param_group({"params": self.scores, "lr": self.cfg.score_lr,
                                       "weight_decay": self.cfg.score_weight_decay})

    def start_round(self, round_index: int) -> None:
        self.maskset.set(self._binarised())
        self._write_weights()

    # ---- every step ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def before_optimizer_step(self, step: int) -> bool:
        """The scores' straight-through gradient from the weights' gradient, which is then cleared (the weights are
        in no optimizer group, so nothing else clears it before the next backward accumulates into it)."""
        weights = list(self.targets.params.values())
        grads = [param.grad if param.grad is not None else torch.zeros_like(param) for param in weights]
        straight_through_grads_(grads, self.w0, self.score_grads)
        if self.cfg.rank == "abs":  # through |s|: edge-popup's scores get the gradient times sign(s)
            torch._foreach_copy_(self.signs, [score.detach() for score in self.scores])
            torch._foreach_sign_(self.signs)
            torch._foreach_mul_(self.score_grads, self.signs)
        torch._foreach_zero_(grads)
        for score, grad in zip(self.scores, self.score_grads):
            score.grad = grad  # zero_grad(set_to_none=True) drops it each eager step; a replay keeps it
        return True

    def after_optimizer_step(self, step: int) -> None:
        if self._is_reset_step(step):
            self._reset()
        else:
            masks = self.maskset.masks
            if self.cfg.binarizer == "threshold":
                threshold_masks_(self.scores, self.thresholds, list(masks.values()))
            else:
                binarised = self._binarised()
                torch._foreach_copy_(list(masks.values()), [binarised[name] for name in masks])
            self.maskset.refresh_factors_()
        self._write_weights()

    def is_plain_step(self, step: int) -> bool:
        return not self._is_reset_step(step)

    def may_stop(self, steps_done: int) -> bool:
        return self.cfg.binarizer == "topk"  # threshold masks reach their exact counts at the round's last reset

    def on_epoch_end(self, epoch: int) -> None:
        # the threshold binariser's masks change every step; the densities FLOP accounting reads (the MaskSet's cached
        # counts) are those of the last reset or epoch end, since reading them each step would sync the device
        self.maskset.recount()

    # ---- mechanics ----------------------------------------------------------------------------------------
    def _is_reset_step(self, step: int) -> bool:
        every = self.cfg.reset_every
        return self.cfg.binarizer == "threshold" and (
            (every > 0 and ((step + 1) % every == 0 or step + 1 == self.round_steps(0)))
            or step + 1 in self.cfg.reset_at)

    def _binarised(self) -> dict[str, torch.Tensor]:
        """The binariser's masks of the current scores (device work only)."""
        scores = dict(zip(self.targets.params, self.scores))
        if self.cfg.binarizer == "topk":
            ranked = {name: s.detach().abs() if self.cfg.rank == "abs" else s.detach() for name, s in scores.items()}
            return self.select(ranked, self.sparsity, checked=False)
        return {name: s.detach() > tau for (name, s), tau in zip(scores.items(), self.thresholds)}

    def _reset(self) -> None:
        """τ_l ← the layer's k-th smallest score, mask ← exact top-(N − k): every layer has exactly its zeros."""
        scores = {name: s.detach() for name, s in zip(self.targets.params, self.scores)}
        thresholds, masks = reset_thresholds(scores, self.layer_zeros(self.sparsity))
        torch._foreach_copy_(self.thresholds, list(thresholds.values()))
        self.maskset.set(masks)
        self.resets += 1
        self.ctx.log({"event": "threshold_reset", "sparsity": self.maskset.sparsity()})

    @torch.no_grad()
    def _write_weights(self) -> None:
        """W_eff = W0 ⊙ M, in place."""
        weights = list(self.targets.params.values())
        torch._foreach_copy_(weights, self.w0)
        self.maskset.apply_()

    # ---- outputs and state --------------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"binarizer": self.cfg.binarizer, "init": self.cfg.init, "resets": self.resets,
                "layer_sparsity": {name: 1.0 - d for name, d in self.maskset.densities().items()}}

    def state_dict(self) -> dict:
        names = list(self.targets.params)
        return {
            **super().state_dict(),
            "counts": dict(self.maskset.counts()),  # the cached counts FLOP accounting reads until the next recount
            "w0": dict(zip(names, self.w0)),
            "scores": {name: s.detach() for name, s in zip(names, self.scores)},
            "thresholds": torch.stack(self.thresholds),
            "resets": self.resets,
        }

    def load_state_dict(self, state: dict) -> None:
        """In place: the optimizer holds the score tensors."""
        names = list(self.targets.params)
        check_masks(state["masks"], self.targets.params, "masks")
        self.maskset.set(state["masks"], counts=state["counts"])
        with torch.no_grad():
            torch._foreach_copy_(self.w0, [state["w0"][name] for name in names])
            torch._foreach_copy_(self.scores, [state["scores"][name] for name in names])
            torch._foreach_copy_(self.thresholds, list(state["thresholds"].unbind()))
        self.resets = state["resets"]


def _take_out_of_optimizer(optimizer: torch.optim.Optimizer, weights: list[torch.Tensor]) -> None:
    """Remove ``weights`` from the optimizer's groups; ConfigError if it has state for one (a step was taken)."""
    ids = {id(weight) for weight in weights}
    if any(id(param) in ids for param in optimizer.state):
        raise ConfigError("method=mask_training needs an optimizer that has not stepped the prunable weights yet; "
                          "e.g. start the run from init_from=<run dir> instead of loading optimizer state")
    for group in optimizer.param_groups:
        group["params"] = [param for param in group["params"] if id(param) not in ids]
