"""Plot helpers shared by the reports (matplotlib with the Agg backend, imported on first use)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..runs.files import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def weights_remaining_axis(axis, remaining: list[float]) -> None:
    """A log x axis of weights remaining (%), decreasing to the right, with plain-number tick labels."""
    import matplotlib.ticker

    axis.set_xscale("log")
    values = sorted({float(f"{value:.3g}") for value in remaining})
    if values and values[-1] < 10 * values[0]:  # less than a decade: decade ticks would show one label
        step = max(1, math.ceil(len(values) / 8))
        axis.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(values[::-1][::step]))
    else:
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.invert_xaxis()
    axis.set_xlabel("weights remaining (%)")


def save_png(figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    pyplot().close(figure)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def lottery_figure(series: list[tuple[str, list[dict]]], dense: list[tuple[str, float]], title: str,
                   metric: str = "top1"):
    """Two panels over weights remaining (log): the test ``metric`` (top-1 by default) per round (final: filled
    circles on a solid line; best: hollow squares on a dashed line, so both show where they are equal; dense as
    dotted lines) and the
    early-stop iteration (step of minimum validation loss). ``series``: (label, rows with
    ``weights_remaining_pct``, ``final_test_<metric>``, ``best_test_<metric>``, ``early_stop_step``)."""
    figure, (accuracy, early) = pyplot().subplots(1, 2, figsize=(11, 4.5))
    remaining, early_drawn = [], False
    for label, rows in series:
        x = [row["weights_remaining_pct"] for row in rows]
        (final,) = accuracy.plot(x, [row[f"final_test_{metric}"] for row in rows], "o-", label=f"{label}: final")
        accuracy.plot(x, [row[f"best_test_{metric}"] for row in rows], "s--", mfc="none", markersize=9,
                      color=final.get_color(), label=f"{label}: best")
        points = [(xi, row["early_stop_step"]) for xi, row in zip(x, rows) if row.get("early_stop_step") is not None]
        if points:
            early.plot(*zip(*points), "o-", color=final.get_color(), label=label)
            early_drawn = True
        remaining += x
    for label, value in dense:
        accuracy.axhline(value, linestyle=":", color="gray", label=label)
    for axis in (accuracy, early):
        weights_remaining_axis(axis, remaining)
        axis.grid(True, which="both", alpha=0.3)
    accuracy.set_ylabel("test top-1" if metric == "top1" else f"test {metric}")
    accuracy.legend(fontsize="x-small")
    early.set_ylabel("early-stop iteration (min. validation loss)")
    if early_drawn:
        early.legend(fontsize="x-small")
    else:
        early.text(0.5, 0.5, "no validation split:\nset dataset.val_size to measure it", ha="center", va="center",
                   transform=early.transAxes)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
