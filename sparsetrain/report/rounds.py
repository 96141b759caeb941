"""The per-round table of a multi-round run (``lottery.csv``) and its plot of accuracy vs weights remaining."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..train.files import atomic_write
from .plots import lottery_figure, save_png

COLUMNS = ("round", "weights_remaining_pct", "final_test_top1", "best_test_top1", "best_test_step",
           "early_stop_step", "early_stop_val_loss", "final_val_top1")


def round_rows(results: list[dict]) -> list[dict]:
    """One row per round: weights remaining (%), final and best test accuracy, early-stop iteration (the step of
    minimum validation loss, when there is a validation split)."""
    rows = []
    for index, result in enumerate(results):
        early = result.get("early_stop") or {}
        rows.append({
            "round": index,
            "weights_remaining_pct": 100.0 * result.get("weights_remaining", 1.0),
            "final_test_top1": result["final"]["test"]["top1"],
            "best_test_top1": result["best"]["test"]["top1"],
            "best_test_step": result["best"]["test"]["step"],
            "early_stop_step": early.get("step"),
            "early_stop_val_loss": early.get("loss"),
            "final_val_top1": result["final"].get("val", {}).get("top1"),
        })
    return rows


def write_round_table(run_dir: Path, name: str, results: list[dict], title: str = "", label: str = "run") -> list[dict]:
    """Write ``<name>.csv`` and ``<name>.png`` (test accuracy and early-stop iteration vs weights remaining, log
    axis; round 0, the dense training, as the dense line) into ``run_dir``."""
    rows = round_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(run_dir) / f"{name}.csv", lambda handle: handle.write(text.getvalue().encode()))
    save_png(round_figure(rows, title, label), Path(run_dir) / f"{name}.png")
    return rows


def round_figure(rows: list[dict], title: str, label: str):
    """The run's rounds (``label``, e.g. the method), with round 0 as the dense line when it trained unpruned."""
    dense = [("dense (round 0): final", rows[0]["final_test_top1"])] if rows[0]["weights_remaining_pct"] == 100 else []
    return lottery_figure([(label, rows)], dense, title)
