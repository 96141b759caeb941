"""One-shot magnitude pruning: train dense (or load a trained model), prune once to ``sparsity``, retrain.

Retraining either fine-tunes at a constant learning rate, the schedule's rate at the start of its last epoch
(``retrain_lr=finetune``), or replays the whole schedule (``retrain_lr=rewind``: learning-rate rewinding,
Renda et al. 2020). Both trainings have the run's length (``epochs``/``steps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..runs.checkpoint import load_checkpoint
from ..runs.files import checkpoint_path
from .masked import MaskedMethod

RETRAIN_LR = ("finetune", "rewind")


class OneShot(MaskedMethod):
    name = "oneshot"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        if cfg.retrain_lr not in RETRAIN_LR:
            raise ConfigError(f"method.retrain_lr={cfg.retrain_lr!r} must be finetune or rewind; e.g. method.retrain_lr=rewind")
        self.pretrained = pretrained_file(cfg.pretrained) if cfg.pretrained else None
        self.rounds = 1 if self.pretrained else 2  # round 0 trains dense unless a trained model is given

    def start_round(self, round_index: int) -> None:
        if self.pretrained is not None:
            self._load_pretrained()
            self.prune(self.magnitude_scores(), self.sparsity)

    def end_round(self, round_index: int) -> None:
        if round_index == 0 and self.pretrained is None:
            self.prune(self.magnitude_scores(), self.sparsity)

    def schedule_factor(self, round_index: int, step: int, factor: float) -> float:
        if round_index == self.rounds - 1 and self.cfg.retrain_lr == "finetune":
            return self.finetune_factor()
        return factor

    def _load_pretrained(self) -> None:
        state = load_checkpoint(self.pretrained, self.ctx.device, "method.pretrained")
        weights = state.get("model", state) if isinstance(state, dict) else state
        try:
            self.ctx.model.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as error:
            first = " ".join(str(error).split())[:200]
            raise ConfigError(f"method.pretrained={str(self.cfg.pretrained)!r} does not fit the model ({first})") from None


def pretrained_file(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        path = checkpoint_path(path)
    if not path.is_file():
        raise ConfigError(
            f"method.pretrained={text!r} is neither a checkpoint file nor a run directory with checkpoints/last.pt; "
            "e.g. method.pretrained=outputs/2026-11-25/14-03-11"
        )
    return path
