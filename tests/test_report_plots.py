"""The report figures, checked on their axes (scale, direction, labels, data, legend), not on pixels."""

from __future__ import annotations

import pytest

from sparsetrain.report.plots import pyplot
from sparsetrain.report.rounds import round_figure, round_rows
from sparsetrain.report.sweep import accuracy_figure, collect, group, lottery_sweep_figure
from test_report import _job, _summary

LENGTH = {"epochs": 3, "steps": 66}


@pytest.fixture
def groups(tmp_path):
    """rigl at 0.5 and 0.9 and dense in the same sparsity sweep (two seeds each), and one lottery run."""
    sweep, index = tmp_path / "sweep", 0
    for method in ("rigl", "dense"):
        for sparsity in (0.5, 0.9):
            for seed in (0, 1):
                recorded = 0.0 if method == "dense" else sparsity
                _job(sweep, f"{method}{sparsity}{seed}", [f"method={method}", f"sparsity={sparsity}", f"seed={seed}"],
                     _summary(method, recorded, seed, index, **LENGTH))
                index += 1
    table = [{"round": r, "weights_remaining_pct": 100 * 0.8 ** r, "final_test_top1": 0.6 + 0.01 * r,
              "best_test_top1": 0.6 + 0.01 * r, "best_test_step": 5, "early_stop_step": 10 * (r + 1)}
             for r in range(4)]
    _job(sweep, "lottery", ["method=lth", "method.levels=3"],
         _summary("lth", 0.0, 0, index, round_table=table, epochs=3, steps=57))
    yield group(collect(sweep))
    pyplot().close("all")


def _legend(axis) -> list[str]:
    return [text.get_text() for text in axis.get_legend().get_texts()]


def test_accuracy_is_plotted_over_weights_remaining_with_n_and_the_dense_band(groups):
    figure = accuracy_figure(groups)
    (axis,) = figure.axes
    assert axis.get_xscale() == "log" and axis.get_xlabel() == "weights remaining (%)"
    left, right = axis.get_xlim()
    assert left > right  # fewer weights to the right
    assert axis.get_title() == "lenet300_100 on digits, 3 epochs (66 steps), 3 epochs (57 steps) per round"
    legend = _legend(axis)
    assert legend == ["dense (n=2)", "lth (n=1)", "rigl (n=2)"]  # methods, not job folders; dense merged
    lines = {label: line for line, label in zip(*axis.get_legend_handles_labels())}
    rigl = lines["rigl (n=2)"].lines[0]
    assert list(rigl.get_xdata()) == pytest.approx([50.0, 10.0])
    lth = lines["lth (n=1)"].lines[0]
    assert list(lth.get_xdata()) == pytest.approx([100 * 0.8 ** r for r in range(4)])  # rounds, not sparsity 0
    dense = next(g for g in groups if g["method"] == "dense")
    assert lines["dense (n=2)"].get_ydata()[0] == pytest.approx(dense["final_test_top1_mean"])
    (band,) = axis.patches
    low, high = band.get_bbox().y0, band.get_bbox().y1
    assert (low + high) / 2 == pytest.approx(dense["final_test_top1_mean"])
    assert high - low == pytest.approx(2 * dense["final_test_top1_std"])
    assert all(tick > 0 for tick in axis.get_xticks())


def test_lottery_figure_has_final_best_dense_and_early_stop_panels(groups):
    figure = lottery_sweep_figure(groups)
    accuracy, early = figure.axes
    assert figure._suptitle.get_text() == "lenet300_100 on digits, 3 epochs (57 steps) per round"
    for axis in (accuracy, early):
        assert axis.get_xscale() == "log" and axis.get_xlim()[0] > axis.get_xlim()[1]
    final, best, dense = accuracy.get_lines()
    assert list(final.get_xdata()) == list(best.get_xdata()) == pytest.approx([100 * 0.8 ** r for r in range(4)])
    assert list(final.get_ydata()) == list(best.get_ydata())  # equal here, and still told apart:
    assert (final.get_marker(), final.get_linestyle()) != (best.get_marker(), best.get_linestyle())
    assert best.get_markerfacecolor() == "none"
    assert _legend(accuracy) == ["lth (n=1): final", "lth (n=1): best", "dense: final (n=2)"]
    assert early.get_ylabel().startswith("early-stop iteration")
    assert list(early.get_lines()[0].get_ydata()) == [10, 20, 30, 40]


def test_one_runs_round_figure_without_a_validation_split_says_so():
    results = [{"final": {"test": {"top1": 0.9 - 0.01 * r}}, "best": {"test": {"top1": 0.91, "step": 3}},
                "early_stop": None, "weights_remaining": 0.8 ** r} for r in range(3)]
    figure = round_figure(round_rows(results), "lenet300_100 on mnist, lth, 2 epochs (40 steps) per round", "lth")
    accuracy, early = figure.axes
    assert _legend(accuracy) == ["lth: final", "lth: best", "dense (round 0): final"]
    assert accuracy.get_lines()[2].get_ydata()[0] == 0.9
    assert not early.get_lines() and "no validation split" in early.texts[0].get_text()
