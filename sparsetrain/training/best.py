"""The best checkpoint: the model (and masks) at the evaluation with the best headline metric of a round (the
task's ``best_metric``), on the validation split, or on the test split when there is none."""

from __future__ import annotations

from pathlib import Path

from ..runs.checkpoint import save_checkpoint

def selection_split(has_val: bool) -> str:
    return "val" if has_val else "test"


def best_path(run_dir: Path, round_index: int, rounds: int) -> Path:
    """``checkpoints/best.pt``; a multi-round method has one per round, ``checkpoints/best_round_XX.pt``."""
    name = "best.pt" if rounds == 1 else f"best_round_{round_index:02d}.pt"
    return Path(run_dir) / "checkpoints" / name


def save_best(path: Path, model_state: dict, masks: dict | None, split: str, metric: str, scores: dict,
              stamp: dict) -> None:
    """Plain tensors and numbers only: ``torch.load(path, weights_only=True)`` reads it."""
    save_checkpoint(path, {"model": model_state, "masks": masks or {}, "split": split, "metric": metric,
                           "value": scores[metric], "scores": scores, **stamp})
