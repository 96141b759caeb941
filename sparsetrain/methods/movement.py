"""Movement pruning (Sanh, Wolf & Rush, NeurIPS 2020): fine-prune with learned scores whose gradient is the weights'
movement, the weights training too.

Every prunable weight ``W`` has a real score ``S`` (fp32, ``mask_init=constant`` ``mask_scale=0``: all 0). The
method keeps the dense ``W`` (as ``sr_ste`` does); the model's weight tensors hold ``W ⊙ M``, so the forward pass,
evaluation, checkpoints and exports see the sparse model. After backward the weight tensors' gradient is
``G = ∂L/∂(W ⊙ M)``; the scores get ``G ⊙ W`` (straight through the binariser, ``sparsity/scores.py``) and the
weights ``G ⊙ M``. The weight tensors are then set to ``W`` and the run's optimizer steps both: the weights in their
own groups (momentum, weight decay and Adam moments act on the dense weights, the pruned ones included, as in the
authors' ``MaskedLinear``) and the scores in one more param group (``score_lr``, the authors'
``mask_scores_learning_rate``). After the step ``W`` is kept, ``M`` is binarised from ``S`` and the weight tensors
hold ``W ⊙ M`` again.

Binarisers (``emmental/modules/binarizer.py``): ``topk`` (hard movement, ``TopKBinarizer``): each layer keeps its
highest scores at the scheduled sparsity ``s_t`` (``MaskedMethod.select``); ``sigmoid_threshold`` (soft movement,
``ThresholdBinarizer(sigmoid=True)``): ``M = σ(S) > τ_t``, a layer keeping at least ``int(0.005·N) + 1`` weights
(its highest scores) when fewer pass, and the loss takes ``λ_t · mean_l(sum σ(S_l) / N_l)`` (their
``regularization(mode="l1")``, ``λ_t = final_lambda · τ_t / τ_final``), whose gradient is added to the scores'.

The schedule (``masked_run_glue.schedule_threshold``): the initial value for ``initial_warmup`` steps, then cubic to
the final value ``final_warmup`` steps before the end, ``v_t = v_f + (v_0 − v_f)·(1 − (t − t_0)/(T − t_0 − t_f))³``
(``sparsity/schedules.cubic_sparsity`` with a pruning event every step); ``v`` is the sparsity under ``topk``
(the authors' kept fraction ``threshold`` is ``1 − v``) and τ under ``sigmoid_threshold``. The step's mask work is
device-only (no host read); steps before the schedule has settled change its value and run eagerly, the rest are
plain steps (captured).

Paper: https://arxiv.org/abs/2005.07683; the authors' code:
https://github.com/huggingface/transformers/tree/main/examples/research_projects/movement-pruning.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..seeds import derive_seed
from ..sparsity.masks import check_masks
from ..sparsity.schedules import cubic_sparsity
from ..sparsity.scores import initial_scores, straight_through_grads_
from ..times import Interval, parse_interval
from .base import RunContext
from .masked import MaskedMethod

BINARIZERS = ("topk", "sigmoid_threshold")
MASK_INITS = ("constant", "uniform", "kaiming")
MIN_KEPT_FRACTION = 0.005  # the authors' ThresholdBinarizer keeps at least int(0.005·N) + 1 weights of a layer


class Movement(MaskedMethod):
    name = "movement"
    patterns = ("unstructured", "block", "fanin", "channel")  # nm fixes the density: nothing to ramp

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        soft = cfg.binarizer == "sigmoid_threshold"
        refusals = [
            (cfg.binarizer not in BINARIZERS, f"method.binarizer={cfg.binarizer!r}",
             "is not a binariser; choose topk (hard movement) or sigmoid_threshold (soft movement)",
             "method.binarizer=topk"),
            (cfg.mask_init not in MASK_INITS, f"method.mask_init={cfg.mask_init!r}",
             f"is not a score initialisation; choose one of: {', '.join(MASK_INITS)}", "method.mask_init=constant"),
            (cfg.mask_init == "uniform" and cfg.mask_scale <= 0, f"method.mask_scale={cfg.mask_scale}",
             "must be positive with mask_init=uniform (U(-scale, scale))", "method.mask_scale=0.01"),
            (cfg.score_lr <= 0, f"method.score_lr={cfg.score_lr}", "must be positive", "method.score_lr=1e-2"),
            (cfg.score_weight_decay < 0, f"method.score_weight_decay={cfg.score_weight_decay}", "must be >= 0",
             "method.score_weight_decay=0.0"),
            (not soft and not 0.0 <= cfg.initial_sparsity <= sparsity, f"method.initial_sparsity={cfg.initial_sparsity}",
             f"must be in [0, sparsity={sparsity}]", "method.initial_sparsity=0.0"),
            (soft and not 0.0 < cfg.threshold < 1.0, f"method.threshold={cfg.threshold}",
             "must be in (0, 1) (τ compares sigmoid(scores))", "method.threshold=0.1"),
            (soft and not 0.0 <= cfg.initial_threshold <= cfg.threshold, f"method.initial_threshold={cfg.initial_threshold}",
             f"must be in [0, method.threshold={cfg.threshold}]", "method.initial_threshold=0.0"),
            (cfg.final_lambda < 0, f"method.final_lambda={cfg.final_lambda}", "must be >= 0", "method.final_lambda=400"),
            (soft and cfg.scope != "layerwise", f"method.scope={cfg.scope}",
             "needs binarizer=topk (a threshold is per weight)", "method.scope=layerwise"),
            (soft and cfg.pattern.name != "unstructured", f"method.pattern.name={cfg.pattern.name}",
             "needs binarizer=topk (a threshold keeps no count per group)", "method.binarizer=topk"),
        ]
        for refused, key, rule, example in refusals:
            if refused:
                raise ConfigError(f"{key} {rule}; e.g. {example}")
        _times(cfg)

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        """Soft movement's sparsity comes from τ and the regulariser, not from ``sparsity``."""
        return cfg.binarizer == "topk"

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return f"method.final_warmup={cfg.final_warmup}: the schedule reaches its final value that long before the end"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.soft = cfg.binarizer == "sigmoid_threshold"
        self.dense: list[torch.Tensor] = []  # W, the weights the optimizer steps
        self.scores: list[torch.Tensor] = []
        self.score_grads: list[torch.Tensor] = []  # persistent buffers, the scores' .grad
        self.slopes: list[torch.Tensor] = []  # soft: σ(S)(1 − σ(S)), the regulariser's gradient before its factor
        self.squares: list[torch.Tensor] = []  # soft: σ(S)², a buffer

    def setup(self, ctx: RunContext) -> None:
        """Keep W, create the scores and add them to the run's optimizer as one more param group."""
        super().setup(ctx)
        steps = {key: time.steps(ctx.steps_per_epoch, ctx.total_steps) for key, time in _times(self.cfg).items()}
        start, end = steps["initial_warmup"], ctx.total_steps - steps["final_warmup"]
        if start > end:
            raise ConfigError(f"method.initial_warmup={self.cfg.initial_warmup} and method.final_warmup="
                              f"{self.cfg.final_warmup} overlap ({start} + {steps['final_warmup']} > {ctx.total_steps} "
                              "steps); e.g. method.initial_warmup=10% method.final_warmup=20%")
        initial, final = (self.cfg.initial_threshold, self.cfg.threshold) if self.soft else \
            (self.cfg.initial_sparsity, self.sparsity)
        self.schedule = dict(initial=initial, final=final, start=start, end=end, frequency=1)
        params = self.targets.params
        self.dense = [param.detach().clone() for param in params.values()]
        self.scores = [score.requires_grad_(True) for score in self._initial_scores(ctx).values()]
        self.score_grads = [torch.zeros_like(score) for score in self.scores]
        if self.soft:
            self.slopes = [torch.zeros_like(score) for score in self.scores]
            self.squares = [torch.zeros_like(score) for score in self.scores]
            self.floors = [int(MIN_KEPT_FRACTION * score.numel()) + 1 for score in self.scores]
        ctx.optimizer.add_param_group({"params": self.scores, "lr": self.cfg.score_lr,
                                       "weight_decay": self.cfg.score_weight_decay})

    def _initial_scores(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        """The authors' ``MaskedLinear.init_mask``: constant ``mask_scale``, U(-scale, scale), or kaiming-uniform
        (a = √5: U(-b, b), b = 1/√fan_in, the ``signed`` init of ``sparsity/scores.py``); seeded by (seed, layer)."""
        weights = dict(zip(self.targets.params, self.dense))
        if self.cfg.mask_init == "kaiming":
            return initial_scores(weights, self.layer_zeros(0.0), "signed", 0.0, ctx.seed)
        if self.cfg.mask_init == "constant":
            return {name: torch.full_like(w, self.cfg.mask_scale, dtype=torch.float32) for name, w in weights.items()}
        scores = {}
        for name, weight in weights.items():
            generator = torch.Generator().manual_seed(derive_seed("mask-scores", ctx.seed, name))
            draw = torch.rand(weight.shape, generator=generator)
            scores[name] = ((2 * draw - 1) * self.cfg.mask_scale).to(weight.device)
        return scores

    def start_round(self, round_index: int) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.dense, list(self.targets.params.values()))
        self._binarise(0, plain=False)
        self.maskset.apply_()

    # ---- every step ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def before_optimizer_step(self, step: int) -> bool:
        """The scores' gradient G ⊙ W (plus the regulariser's), the weights' G ⊙ M; the weight tensors ← W."""
        params = list(self.targets.params.values())
        grads = [param.grad if param.grad is not None else torch.zeros_like(param) for param in params]
        straight_through_grads_(grads, self.dense, self.score_grads)
        factor = self.regularisation(step)
        if factor:  # ∂/∂S_l of λ_t · mean_l(sum σ(S_l) / N_l) = λ_t / (L · N_l) · σ(S_l)(1 − σ(S_l))
            torch._foreach_copy_(self.slopes, [score.detach() for score in self.scores])
            torch._foreach_sigmoid_(self.slopes)
            torch._foreach_copy_(self.squares, self.slopes)
            torch._foreach_mul_(self.squares, self.slopes)
            torch._foreach_sub_(self.slopes, self.squares)
            layers = len(self.scores)
            torch._foreach_mul_(self.slopes, [factor / (layers * score.numel()) for score in self.scores])
            torch._foreach_add_(self.score_grads, self.slopes)
        for score, grad in zip(self.scores, self.score_grads):
            score.grad = grad  # zero_grad(set_to_none=True) drops it each eager step; a replay keeps it
        self.maskset.mask_grads_()
        torch._foreach_copy_(params, self.dense)
        return True

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """W ← the stepped weights; M ← the binarised scores at the schedule's next value; the weight tensors ← W ⊙ M."""
        torch._foreach_copy_(self.dense, list(self.targets.params.values()))
        self._binarise(step + 1, plain=self.is_plain_step(step))
        self.maskset.apply_()

    def is_plain_step(self, step: int) -> bool:
        return step >= self.schedule["end"]  # the schedule's value, this step's and the next, is the final one

    def may_stop(self, steps_done: int) -> bool:
        return steps_done >= self.schedule["end"]

    def dense_backward(self, step: int) -> bool:
        return True  # the scores' gradient reads the gradient of every weight, pruned ones included

    def on_epoch_end(self, epoch: int) -> None:
        self.maskset.recount()  # soft masks change every step: FLOP accounting reads counts refreshed once an epoch

    def end_round(self, round_index: int) -> None:
        self.maskset.recount()

    # ---- mechanics ----------------------------------------------------------------------------------------
    def value(self, steps_done: int) -> float:
        """The schedule after ``steps_done`` steps: the sparsity (``topk``) or τ (``sigmoid_threshold``)."""
        return cubic_sparsity(steps_done, **self.schedule)

    def regularisation(self, step: int) -> float:
        """λ_t of the step's loss: ``final_lambda · τ_t / τ_final`` (soft movement; 0 under ``topk``)."""
        return self.cfg.final_lambda * self.value(step) / self.cfg.threshold if self.soft else 0.0

    def _binarise(self, steps_done: int, plain: bool) -> None:
        """The masks of the current scores at the schedule's value (device work only), in place."""
        masks, value = self.maskset.masks, self.value(steps_done)
        scores = [score.detach() for score in self.scores]
        if self.soft:
            sigmoid_threshold_masks_(scores, value, self.floors, list(masks.values()))
            self.maskset.refresh_factors_()
            return
        selected = self.select(dict(zip(self.targets.params, scores)), value, checked=False)
        spread = self.cfg.scope == "global" and self.cfg.pattern.name == "unstructured"  # per-layer counts move
        if plain:  # the same counts as the previous step (global: their sum): no host work beyond the copy
            torch._foreach_copy_(list(masks.values()), [selected[name] for name in masks])
            self.maskset.refresh_factors_()
            if spread:
                self.maskset.recount()  # read when next asked; a replayed step leaves it to the epoch end
        elif spread:
            self.maskset.set(selected)
        else:
            zeros = self.layer_zeros(value)
            self.maskset.set(selected, counts={name: mask.numel() - zeros[name] for name, mask in masks.items()})

    # ---- outputs and state --------------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"binarizer": self.cfg.binarizer, "final_value": self.schedule["final"],
                "layer_sparsity": {name: 1.0 - d for name, d in self.maskset.densities().items()}}

    def state_dict(self) -> dict:
        names = list(self.targets.params)
        return {**super().state_dict(), "counts": dict(self.maskset.counts()),
                "dense": dict(zip(names, self.dense)),
                "scores": {name: score.detach() for name, score in zip(names, self.scores)}}

    def load_state_dict(self, state: dict) -> None:
        """In place: the optimizer holds the score tensors."""
        names = list(self.targets.params)
        check_masks(state["masks"], self.targets.params, "masks")
        self.maskset.set(state["masks"], counts=state["counts"])
        with torch.no_grad():
            torch._foreach_copy_(self.dense, [state["dense"][name] for name in names])
            torch._foreach_copy_(self.scores, [state["scores"][name] for name in names])


@torch.no_grad()
def sigmoid_threshold_masks_(scores: list[torch.Tensor], tau: float, floors: list[int],
                             out: list[torch.Tensor]) -> None:
    """``out[l] = σ(S_l) > τ``; a layer where fewer than ``floors[l]`` pass keeps the scores above its
    ``max(N − floors[l], 1)``-th smallest instead (the authors' ``ThresholdBinarizer``), chosen on the device."""
    for score, floor, mask in zip(scores, floors, out):
        flat = score.reshape(-1)
        torch.gt(torch.sigmoid(score), tau, out=mask)
        kth = flat.topk(flat.numel() - max(flat.numel() - floor, 1) + 1, sorted=False).values.min()
        torch.where(mask.sum() < floor, score > kth, mask, out=mask)


def _times(cfg: Any) -> dict[str, Interval]:
    """The warm-up lengths (ConfigError, one line, for a bad one)."""
    return {key: parse_interval(f"method.{key}", getattr(cfg, key), allow_percent=True)
            for key in ("initial_warmup", "final_warmup")}
