"""One-shot pruning: train dense (or load a trained model), prune once to ``sparsity`` (by magnitude, or by oBERT's
second-order saliency with ``criterion=obs``: ``criteria.py``), retrain.

``method.pretrained`` (a checkpoint, a run directory or a ``model.safetensors`` export) is loaded as ``init_from``
loads weights: a model with another head on the same body (a masked-LM run into a classifier) keeps its own head.

Retraining either fine-tunes at a constant learning rate, the schedule's rate at the start of its last epoch
(``retrain_lr=finetune``), or replays the whole schedule (``retrain_lr=rewind``: learning-rate rewinding,
Renda et al. 2020). Both trainings have the run's length (``epochs``/``steps``). ``retrain=false`` prunes and
evaluates without retraining (the one-shot magnitude baseline the language-model pruners compare against).

Papers: https://arxiv.org/abs/1506.02626, https://arxiv.org/abs/2003.02389; the authors' code:
https://github.com/lottery-ticket/rewinding-iclr20-public.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..runs.weights import load_shared_weights, read_weights, weights_file
from ..sparsity.targets import prunable_parameters
from .criteria import CriterionPruning

RETRAIN_LR = ("finetune", "rewind")
EXAMPLE = "e.g. method.pretrained=outputs/2026-11-25/14-03-11"


class OneShot(CriterionPruning):
    name = "oneshot"
    round_keys = ("method.pretrained", "method.retrain")  # dense training then retraining, or retraining a given model only

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.retrain_lr not in RETRAIN_LR:
            raise ConfigError(f"method.retrain_lr={cfg.retrain_lr!r} must be finetune or rewind; e.g. method.retrain_lr=rewind")
        if cfg.pretrained:
            weights_file("method.pretrained", cfg.pretrained, EXAMPLE)

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        if not cfg.pretrained:
            return "method.pretrained=null: method=oneshot trains dense, then retrains, each for the run's length"
        if not cfg.retrain:
            return "method.retrain=false prunes once and does not retrain"
        if cfg.retrain_lr == "finetune":
            return "method.retrain_lr=finetune retrains at the schedule's rate of the run's last epoch"
        return None

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.pretrained = weights_file("method.pretrained", cfg.pretrained, EXAMPLE) if cfg.pretrained else None
        self.rounds = 1 if self.pretrained else 2  # round 0 trains dense unless a trained model is given

    def start_round(self, round_index: int) -> None:
        if self.pretrained is not None:
            self._load_pretrained()
            self.prune_by_criterion(self.sparsity, event=0)

    def end_round(self, round_index: int) -> None:
        if round_index == 0 and self.pretrained is None:
            self.prune_by_criterion(self.sparsity, event=0)

    def round_steps(self, round_index: int) -> int:
        if round_index == self.rounds - 1 and not self.cfg.retrain:
            return 0
        return super().round_steps(round_index)

    def schedule_factor(self, round_index: int, step: int, factor: float) -> float:
        if round_index == self.rounds - 1 and self.cfg.retrain_lr == "finetune":
            return self.finetune_factor()
        return factor

    def _load_pretrained(self) -> None:
        """The trained weights (as ``init_from`` loads them: another head on the same body keeps its own)."""
        weights, _ = read_weights(self.pretrained, self.ctx.device, "method.pretrained")
        required = prunable_parameters(self.ctx.model, include=self.model_prunable)
        load_shared_weights(self.ctx.model, weights, required, "method.pretrained", self.cfg.pretrained, EXAMPLE)
