"""Plot helpers shared by the reports (matplotlib with the Agg backend, imported on first use)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..train.files import atomic_write


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
