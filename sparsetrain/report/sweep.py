"""The summary of a sweep directory: one row per finished job, seeds averaged per group, plots.

``sparsetrain-report multirun/<name>`` (or the ``SummarizeSweep`` Hydra callback at the end of ``-m``) writes
into the sweep directory:

- ``summary.csv``: one row per finished job (a directory with ``summary.json``, found at any depth);
- ``groups.csv`` and ``summary.md``: jobs whose result-relevant overrides differ only in ``seed`` form a group,
  reported with the mean and sample standard deviation of final and best test score over its seeds;
- ``accuracy_vs_sparsity.png``: mean final test score vs weights remaining (log axis), one line per method with
  n per point, lottery runs through their rounds, dense as a dashed line with its ± std band;
- ``lottery.png`` when some job ran several rounds: final and best test score and the early-stop iteration vs
  weights remaining, one line per group (mean over seeds), dense as a dotted line.

The score is each run's headline metric (``summary.json`` ``metric``: ``task.metric``, e.g. top1 for images,
matthews for CoLA); columns are named by it (``final_test_top1``, ``final_test_matthews``), and every other
final test metric of the runs gets a column too (``final_test_f1``, ``final_test_accuracy_mm``, ...).

Jobs timed by ``sparsetrain-bench-infer`` (``infer_bench.json`` in the run directory) get speed columns: the sparse
form with the best throughput speed-up over the dense model in the same runtime (sparse and shrunk against the
dense torch model, shrunk_onnx against model.onnx), that speed-up and its latency (batch 1) one; groups get the
means.

Unfinished jobs (no ``summary.json``) are listed as skipped; they never stop the report.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..runs.files import atomic_write
from ..runs.record import RUN_RECORD, is_result_key, read_run_record
from ..runs.status import read_status
from .plots import lottery_figure, pyplot, save_png, weights_remaining_axis

SUMMARY = "summary.json"
INFER_BENCH = "infer_bench.json"  # written into a run directory by sparsetrain-bench-infer
EXAMPLE = "sparsetrain-report multirun/<name>"

JOB_COLUMNS = ("job", "method", "model", "dataset", "sparsity", "seed", "metric")  # then the metric columns
JOB_TAIL_COLUMNS = ("best_test_step", "realised_sparsity", "itop_rate", "inference_flops", "training_flops",
                    "wall_time_s", "overrides", "status", "error")
GROUP_COLUMNS = ("method", "model", "dataset", "sparsity", "n_seeds", "seeds", "metric")  # then the metric's
GROUP_TAIL_COLUMNS = ("realised_sparsity_mean", "overrides", "jobs")
SPEED_COLUMNS = ("infer_format", "infer_batch", "infer_threads", "infer_throughput_speedup", "infer_latency_speedup")
GROUP_SPEED_COLUMNS = ("infer_formats", "infer_throughput_speedup_mean", "infer_latency_speedup_mean")
SPEED_BASELINES = {"sparse": "dense", "shrunk": "dense", "shrunk_onnx": "onnx"}  # the dense model in each's runtime
METRIC_LABELS = {"top1": "top-1", "top5": "top-5"}
# Overrides that never separate two jobs into different groups: the seed (averaged over) and every key that
# does not change a result (resume, device, ...; see sparsetrain/runs/record.py).
GROUP_IGNORED_KEYS = ("seed",)


class NoFinishedRuns(ValueError):
    """The directory holds no finished run (no ``summary.json`` of a run below it)."""

    def __init__(self, sweep_dir: Path):
        super().__init__(f"{sweep_dir} holds no finished runs ({SUMMARY}); e.g. {EXAMPLE}")
        self.sweep_dir = sweep_dir


# --------------------------------------------------------------------------------------------------- collect


def collect(sweep_dir: Path) -> list[dict]:
    """One row per finished job below ``sweep_dir`` (``JOB_COLUMNS``, plus the job's round table if any)."""
    return _scan(Path(sweep_dir))[0]


def _scan(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """(finished rows, skipped jobs as {"job", "reason"})."""
    rows, skipped = [], []
    for job_dir in _job_dirs(sweep_dir):
        job = job_dir.relative_to(sweep_dir).as_posix()
        overrides = _overrides(job_dir)
        summary_path = job_dir / SUMMARY
        if not summary_path.is_file():
            status = read_status(job_dir)
            if status is None:
                skipped.append({"job": job, "reason": f"unfinished (no {SUMMARY})"})
            else:  # failed or diverged: a row of its own in summary.csv, listed in summary.md
                skipped.append({"job": job, "reason": f"{status['status']}: {status['error']}",
                                "row": _failed_row(job, job_dir, status, overrides)})
            continue
        try:
            summary = json.loads(summary_path.read_text())
            rows.append({**_row(job, summary, overrides), **_speed(job_dir / INFER_BENCH)})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            skipped.append({"job": job, "reason": f"unreadable {SUMMARY} ({type(error).__name__}: {error})"})
    rows.sort(key=lambda row: (str(row["method"]), _number(row["sparsity"]), row["overrides"],
                               _number(row["seed"]), row["job"]))
    skipped.sort(key=lambda item: item["job"])
    return rows, skipped


def _job_dirs(sweep_dir: Path) -> Iterable[Path]:
    """Directories holding a run (summary.json, run.yaml or Hydra's .hydra/overrides.yaml); not searched below:
    a run's own sub-directories (round_XX/summary.json of a lottery run) are not jobs."""
    for root, dirs, files in os.walk(sweep_dir):
        root_path = Path(root)
        if SUMMARY in files or RUN_RECORD in files or (root_path / ".hydra" / "overrides.yaml").is_file():
            dirs.clear()
            yield root_path
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))


def _overrides(job_dir: Path) -> list[str] | None:
    """The overrides the job was started with: run.yaml, else Hydra's .hydra/overrides.yaml, else None."""
    for path, field in ((job_dir / RUN_RECORD, "overrides"), (job_dir / ".hydra" / "overrides.yaml", None)):
        try:
            with path.open() as handle:
                record = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError):
            continue
        overrides = record.get(field) if field and isinstance(record, dict) else record
        if isinstance(overrides, list):
            return [str(o) for o in overrides]
    return None


def _failed_row(job: str, job_dir: Path, status: dict, overrides: list[str] | None) -> dict:
    """A job that failed or diverged: its identity (from run.yaml where it got that far), status and error."""
    try:
        config = read_run_record(job_dir)["config"]
    except ValueError:  # no run.yaml: refused before it was written
        config = {}
    return {
        "job": job, "method": (config.get("method") or {}).get("name"), "model": (config.get("model") or {}).get(
            "name"), "dataset": (config.get("dataset") or {}).get("name"), "sparsity": config.get("sparsity"),
        "seed": config.get("seed"), "overrides": " ".join(overrides or []), "status": status["status"],
        "error": status["error"],
    }


def headline_metric(summary: dict) -> str:
    """The metric a run chose its best by: ``metric`` in summary.json, else its best checkpoint's, else top1."""
    return summary.get("metric") or (summary.get("best_checkpoint") or {}).get("metric") or "top1"


def _row(job: str, summary: dict, overrides: list[str] | None) -> dict:
    final, best = summary["final"], summary["best"]
    metric = headline_metric(summary)
    flops = summary.get("flops") or {}
    if overrides is None:  # no record of the command line: the summary's own identity
        overrides = [f"{key}={summary.get(key)}" for key in ("method", "model", "dataset", "sparsity", "seed")]
    return {
        "job": job,
        "method": summary["method"],
        "model": summary.get("model"),
        "dataset": summary.get("dataset"),
        "sparsity": summary.get("sparsity"),
        "seed": summary.get("seed"),
        "metric": metric,
        **{f"final_test_{name}": value for name, value in final["test"].items()},
        f"best_test_{metric}": best["test"][metric],
        f"final_val_{metric}": (final.get("val") or {}).get(metric),
        "best_test_step": best["test"].get("step"),
        "realised_sparsity": (summary.get("masks") or {}).get("sparsity") or 0.0,
        "itop_rate": (summary.get("dynamics") or {}).get("itop_rate"),
        "inference_flops": flops.get("inference_sparse"),
        "training_flops": flops.get("training"),
        "wall_time_s": summary.get("wall_time_s"),
        "overrides": " ".join(overrides),
        "group": group_key(_used(overrides, summary)),
        "round_table": summary.get("round_table") or [],
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
        "status": "finished",
        "error": "",
    }


def _speed(path: Path) -> dict:
    """``SPEED_COLUMNS`` of a job's ``infer_bench.json``: its sparse form with the best throughput speed-up over
    the dense model in its runtime (``SPEED_BASELINES``); {} when the job was not timed (or the file is
    unreadable)."""
    try:
        report = json.loads(path.read_text())
        timed = {"dense", *report["forms"]}
        speedups = {form: {regime: report[regime][f"{base}_ms"] / report[regime][f"{form}_ms"]
                           for regime in ("throughput", "latency")}
                    for form, base in SPEED_BASELINES.items() if {form, base} <= timed}
        best = max(speedups, key=lambda form: speedups[form]["throughput"])
        return {"infer_format": best, "infer_batch": report["throughput"]["batch"],
                "infer_threads": report.get("threads"), "infer_throughput_speedup": speedups[best]["throughput"],
                "infer_latency_speedup": speedups[best]["latency"]}
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return {}


def _used(overrides: list[str], summary: dict) -> list[str]:
    """The overrides without a ``sparsity`` the method ignored (dense in a sparsity sweep records 0)."""
    recorded = summary.get("sparsity")
    return [o for o in overrides if _key(o) != "sparsity" or recorded is None
            or _number(o.split("=", 1)[1]) == _number(recorded)]


def group_key(overrides: list[str]) -> tuple[str, ...]:
    """The overrides that identify a group: result-relevant ones other than the seed, in a fixed order."""
    return tuple(sorted(o for o in overrides if _is_group_key(_key(o))))


def _is_group_key(key: str) -> bool:
    return key not in GROUP_IGNORED_KEYS and is_result_key(key)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


# ------------------------------------------------------------------------------------------------- summarise


def group(rows: list[dict]) -> list[dict]:
    """One entry per group (``GROUP_COLUMNS`` plus its key), sorted by method, then sparsity."""
    by_key: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        by_key.setdefault(row["group"], []).append(row)
    groups = []
    for key, members in by_key.items():
        members = list({r["seed"]: r for r in reversed(members)}.values())[::-1]  # a repeated seed is the same run
        first = members[0]
        metric = first["metric"]
        final_mean, final_std = mean_std([r.get(f"final_test_{metric}") for r in members])
        best_mean, best_std = mean_std([r.get(f"best_test_{metric}") for r in members])
        groups.append({
            "method": first["method"],
            "model": first["model"],
            "dataset": first["dataset"],
            "sparsity": first["sparsity"],
            "n_seeds": len(members),
            "seeds": " ".join(str(r["seed"]) for r in sorted(members, key=lambda r: _number(r["seed"]))),
            "metric": metric,
            f"final_test_{metric}_mean": final_mean,
            f"final_test_{metric}_std": final_std,
            f"best_test_{metric}_mean": best_mean,
            f"best_test_{metric}_std": best_std,
            "realised_sparsity_mean": mean_std([r["realised_sparsity"] for r in members])[0],
            "overrides": " ".join(key),
            "jobs": " ".join(r["job"] for r in members),
            "key": key,
            "epochs": first["epochs"],
            "steps": first["steps"],
            "round_tables": [r["round_table"] for r in members if r["round_table"]],
            **_speed_means(members),
        })
    groups.sort(key=lambda g: (str(g["method"]), _number(g["sparsity"]), g["overrides"]))
    return groups


def _speed_means(members: list[dict]) -> dict:
    """``GROUP_SPEED_COLUMNS`` over the group's timed jobs; {} when none was timed."""
    timed = [r for r in members if r.get("infer_format")]
    if not timed:
        return {}
    return {"infer_formats": ", ".join(dict.fromkeys(r["infer_format"] for r in timed)),
            **{f"infer_{regime}_speedup_mean": mean_std([r[f"infer_{regime}_speedup"] for r in timed])[0]
               for regime in ("throughput", "latency")}}


def mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for a single value) of the values that are numbers."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not numbers:
        return None, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0


def summarize(sweep_dir: Path) -> dict:
    """Write summary.csv, groups.csv, summary.md and the plots into ``sweep_dir``.

    Returns {"rows", "groups", "skipped", "files"}; raises NoFinishedRuns when no job has finished.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NoFinishedRuns(sweep_dir)
    rows, skipped = _scan(sweep_dir)
    failed = [item["row"] for item in skipped if "row" in item]
    if not rows and not failed:
        raise NoFinishedRuns(sweep_dir)
    groups = group(rows)
    files = [
        _write_csv(sweep_dir / "summary.csv", job_columns(rows), rows + failed),
        _write_csv(sweep_dir / "groups.csv", group_columns(groups), groups),
        _write_text(sweep_dir / "summary.md", markdown(sweep_dir, rows, groups, skipped)),
        save_png(accuracy_figure(groups), sweep_dir / "accuracy_vs_sparsity.png"),
    ]
    if any(g["round_tables"] for g in groups):
        files.append(save_png(lottery_sweep_figure(groups), sweep_dir / "lottery.png"))
    return {"rows": len(rows), "groups": len(groups), "skipped": len(skipped), "files": [str(f) for f in files]}


def _metrics(entries: list[dict]) -> list[str]:
    """The headline metrics of ``entries`` (rows or groups), in order of appearance; top1 when there is none."""
    return list(dict.fromkeys(entry["metric"] for entry in entries)) or ["top1"]


def job_columns(rows: list[dict]) -> tuple[str, ...]:
    """summary.csv: identity, final/best test and final validation score per headline metric, every other final
    test metric of the runs, then the rest."""
    headline = [f"{part}_{metric}" for metric in _metrics(rows) for part in ("final_test", "best_test", "final_val")]
    others = sorted({key for row in rows for key in row if key.startswith("final_test_")} - set(headline))
    speed = SPEED_COLUMNS if any("infer_format" in row for row in rows) else ()
    return (*JOB_COLUMNS, *headline, *others, *JOB_TAIL_COLUMNS, *speed)


def group_columns(groups: list[dict]) -> tuple[str, ...]:
    scores = [f"{part}_{metric}_{stat}" for metric in _metrics(groups) for part in ("final_test", "best_test")
              for stat in ("mean", "std")]
    speed = GROUP_SPEED_COLUMNS if any("infer_formats" in g for g in groups) else ()
    return (*GROUP_COLUMNS, *scores, *GROUP_TAIL_COLUMNS, *speed)


def metric_label(metrics: list[str]) -> str:
    """``top-1``, ``matthews``, or ``f1/accuracy`` for a sweep mixing tasks."""
    return "/".join(METRIC_LABELS.get(metric, metric) for metric in metrics)


def markdown(sweep_dir: Path, rows: list[dict], groups: list[dict], skipped: list[dict]) -> str:
    metrics = _metrics(groups)
    label, named = metric_label(metrics), len(metrics) > 1  # a sweep mixing tasks names the metric per cell
    timed = any("infer_formats" in g for g in groups)
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} finished job{'s' * (len(rows) != 1)} in {len(groups)} group{'s' * (len(groups) != 1)} "
        "(mean ± sample std over seeds); "
        f"{len(skipped)} job{'s' * (len(skipped) != 1)} skipped.",
        "",
        f"| method | model | dataset | sparsity | seeds | final test {label} | best test {label} | overrides | realised |"
        + (" inference speed-up (throughput / latency) |" if timed else ""),
        "|---|---|---|---:|---:|---:|---:|---|---:|" + ("---|" if timed else ""),
    ]
    for g in groups:
        lines.append(
            f"| {g['method']} | {g['model']} | {g['dataset']} | {_fmt(g['sparsity'], 'g')} | {g['n_seeds']} "
            f"| {_mean_std(*score(g, 'final_test'), g['n_seeds'])}{_named(g, named)} "
            f"| {_mean_std(*score(g, 'best_test'), g['n_seeds'])}{_named(g, named)} "
            f"| {_md_code(g['overrides'])} | {_fmt(g['realised_sparsity_mean'])} |" + (_speed_cell(g) if timed else "")
        )
    if skipped:
        lines += ["", f"Skipped {len(skipped)} job{'s' * (len(skipped) != 1)}:"]
        lines += [f"- {_md_code(item['job'])}: {item['reason']}" for item in skipped]
    return "\n".join(lines) + "\n"


def _speed_cell(g: dict) -> str:
    """`` 2.13x / 1.02x (sparse) |``: the group's mean speed-ups and the forms they are of, or `` - |``."""
    if "infer_formats" not in g:
        return " - |"
    return (f" {g['infer_throughput_speedup_mean']:.2f}x / {g['infer_latency_speedup_mean']:.2f}x "
            f"({g['infer_formats']}) |")


def score(g: dict, part: str) -> tuple[float | None, float | None]:
    """(mean, std) of a group's ``part`` (``final_test`` or ``best_test``) score on its headline metric."""
    return g[f"{part}_{g['metric']}_mean"], g[f"{part}_{g['metric']}_std"]


def _named(g: dict, named: bool) -> str:
    return f" ({METRIC_LABELS.get(g['metric'], g['metric'])})" if named else ""


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _mean_std(mean: Any, std: Any, n: int) -> str:
    """``0.9012 ± 0.0031`` over several seeds; a single seed has no spread to show."""
    return f"{_fmt(mean)} ± {_fmt(std)}" if n > 1 else _fmt(mean)


def _md_code(text: str) -> str:
    return f"`{text.replace('|', '/')}`" if text else ""


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> Path:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return _write_text(path, text.getvalue())


def _write_text(path: Path, text: str) -> Path:
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return path


# ----------------------------------------------------------------------------------------------------- plots


def _series(groups: list[dict]) -> tuple[dict[tuple, list[dict]], dict[tuple, str]]:
    """Groups by line: the method and every other override but sparsity. A line is labelled by its method, plus the
    overrides that tell it from the method's other lines (e.g. ``rigl method.alpha=0.5``)."""
    lines: dict[tuple, list[dict]] = {}
    for g in groups:
        rest = tuple(o for o in g["key"] if _key(o) not in ("sparsity", "method"))
        lines.setdefault((str(g["method"]), rest), []).append(g)
    labels = {}
    for method, rest in lines:
        siblings = [set(other) for m, other in lines if m == method]
        common = set.intersection(*siblings)
        labels[(method, rest)] = " ".join([method, *(o for o in rest if o not in common)])
    return lines, labels


def title(groups: list[dict]) -> str:
    """``lenet300_100 on digits, 20 epochs (440 steps)``: model, dataset and training length (per round for
    multi-round runs) of every group, each value once."""
    def each(values: Iterable[Any]) -> str:
        return ", ".join(dict.fromkeys(str(v) for v in values))

    lengths = each(f"{g['epochs']} epochs ({g['steps']} steps){' per round' if g['round_tables'] else ''}"
                   for g in groups if g["epochs"] is not None)
    return f"{each(g['model'] for g in groups)} on {each(g['dataset'] for g in groups)}" + (
        f", {lengths}" if lengths else "")


def _points(g: dict) -> list[tuple[float, float, float, int]]:
    """(weights remaining %, mean, std, n) of a group: one point, or one per round of a lottery group (mean over its
    seeds)."""
    mean, std = score(g, "final_test")
    if not g["round_tables"]:
        return [(100.0 * (1.0 - _number(g["sparsity"])), mean, std or 0.0, g["n_seeds"])]
    points = []
    for rounds in zip(*g["round_tables"]):
        mean, std = mean_std([r.get(f"final_test_{g['metric']}") for r in rounds])
        points.append((mean_std([r["weights_remaining_pct"] for r in rounds])[0], mean, std, len(rounds)))
    return points


def accuracy_figure(groups: list[dict]):
    """Final test score (the headline metric) vs weights remaining (log axis, decreasing), one line per method
    with n per point and error bars (std over seeds), dense as a dashed line with its ± std band."""
    lines, labels = _series(groups)
    figure, axis = pyplot().subplots(figsize=(7.5, 4.8))
    remaining = []
    for line, members in lines.items():
        members = [g for g in members if score(g, "final_test")[0] is not None]
        if not members:
            continue
        if line[0] == "dense":
            for g in members:
                mean, std = score(g, "final_test")
                std = std or 0.0
                drawn = axis.axhline(mean, linestyle="--", color="gray", label=f"{labels[line]} (n={g['n_seeds']})")
                axis.axhspan(mean - std, mean + std, color=drawn.get_color(), alpha=0.2, lw=0)
            continue
        points = sorted((p for g in members for p in _points(g)), key=lambda p: -p[0])
        x, y, err, n = zip(*points)
        same_n = len(set(n)) == 1  # n in the legend; per point where it varies
        axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{labels[line]} (n={n[0]})" if same_n else
                      f"{labels[line]} (n per point)")
        for xi, yi, ni in ([] if same_n else zip(x, y, n)):
            axis.annotate(f"n={ni}", (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center",
                          fontsize="x-small")
        remaining += x
    weights_remaining_axis(axis, remaining or [100.0])
    axis.set_ylabel(f"final test {metric_label(_metrics(groups))} (mean ± std over seeds)")
    axis.set_title(title(groups), fontsize="medium")
    axis.grid(True, which="both", alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize="small")
    figure.tight_layout()
    return figure


def lottery_sweep_figure(groups: list[dict]):
    """The lottery groups round by round (mean over seeds), with the sweep's dense groups as lines."""
    lines, labels = _series(groups)
    series, dense = [], []
    for line, members in lines.items():
        for g in members:
            if line[0] == "dense" and score(g, "final_test")[0] is not None:
                dense.append((f"{labels[line]}: final (n={g['n_seeds']})", score(g, "final_test")[0]))
            if not g["round_tables"]:
                continue
            rows = []
            metric = g["metric"]
            for rounds in zip(*g["round_tables"]):
                rows.append({key: mean_std([r.get(key) for r in rounds])[0] for key in (
                    "weights_remaining_pct", f"final_test_{metric}", f"best_test_{metric}", "early_stop_step")})
            series.append((f"{labels[line]} (n={len(g['round_tables'])})", rows))
    lottery = [g for g in groups if g["round_tables"]]
    return lottery_figure(series, dense, title(lottery), _metrics(lottery)[0])


# ------------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsetrain-report",
        description="Summarise a sweep directory: summary.csv, groups.csv, summary.md and plots, written into it.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. multirun/<name>")
    args = parser.parse_args(argv)
    try:
        result = summarize(args.sweep_dir)
    except NoFinishedRuns as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((args.sweep_dir / "summary.md").read_text(), end="")
    print(f"wrote {', '.join(result['files'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
