"""The per-round table of a multi-round run (``lottery.csv``) and its plot of accuracy vs weights remaining."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..runs.files import atomic_write
from .plots import lottery_figure, save_png


def columns(metric: str = "top1") -> tuple[str, ...]:
    """The round table's columns for the task's headline metric (``top1`` for image classification)."""
    return ("round", "weights_remaining_pct", f"final_test_{metric}", f"best_test_{metric}", "best_test_step",
            "early_stop_step", "early_stop_val_loss", f"final_val_{metric}")


def headline_metric(results: list[dict]) -> str:
    """The metric the rounds' best checkpoints were chosen by (``task.metric``); top1 for older results."""
    return (results[0].get("best_checkpoint") or {}).get("metric", "top1")


def round_rows(results: list[dict]) -> list[dict]:
    """One row per round: weights remaining (%), final and best test score on the headline metric (top-1
    accuracy for image classification), early-stop iteration (the step of minimum validation loss, when there is
    a validation split)."""
    metric, rows = headline_metric(results), []
    for index, result in enumerate(results):
        early = result.get("early_stop") or {}
        rows.append({
            "round": index,
            "weights_remaining_pct": 100.0 * result.get("weights_remaining", 1.0),
            f"final_test_{metric}": result["final"]["test"][metric],
            f"best_test_{metric}": result["best"]["test"][metric],
            "best_test_step": result["best"]["test"]["step"],
            "early_stop_step": early.get("step"),
            "early_stop_val_loss": early.get("loss"),
            f"final_val_{metric}": result["final"].get("val", {}).get(metric),
        })
    return rows


def write_round_table(run_dir: Path, name: str, results: list[dict], title: str = "", label: str = "run") -> list[dict]:
    """Write ``<name>.csv`` and ``<name>.png`` (test accuracy and early-stop iteration vs weights remaining, log
    axis; round 0, the dense training, as the dense line) into ``run_dir``."""
    rows = round_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns(headline_metric(results)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(run_dir) / f"{name}.csv", lambda handle: handle.write(text.getvalue().encode()))
    save_png(round_figure(rows, title, label, headline_metric(results)), Path(run_dir) / f"{name}.png")
    return rows


def round_figure(rows: list[dict], title: str, label: str, metric: str = "top1"):
    """The run's rounds (``label``, e.g. the method), with round 0 as the dense line when it trained unpruned."""
    dense = [("dense (round 0): final", rows[0][f"final_test_{metric}"])] \
        if rows[0]["weights_remaining_pct"] == 100 else []
    return lottery_figure([(label, rows)], dense, title, metric)
