"""Sweep reports: summary.csv / groups.csv / summary.md / plots from a sweep directory, the CLI, the callback."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sparsetrain.report.callback import SummarizeSweep
from sparsetrain.report.sweep import collect, main, summarize

METHODS = ("rigl", "set")
SPARSITIES = (0.5, 0.9)
SEEDS = (0, 1)


def _summary(method: str, sparsity: float, seed: int, index: int, **extra) -> dict:
    """A summary.json in the shape run.py writes, with distinct values per job."""
    final = 0.5 + 0.01 * index + 0.003 * seed
    return {
        "method": method,
        "model": "lenet300_100",
        "dataset": "digits",
        "sparsity": sparsity,
        "seed": seed,
        "final": {"test": {"top1": final, "loss": 1.0 + index, "top5": 0.9},
                  "val": {"top1": final - 0.02, "loss": 1.1}},
        "best": {"test": {"top1": final + 0.001 * (seed + 1), "step": 10 + index, "loss": 0.9, "epoch": 1}},
        "wall_time_s": 2.5 + index,
        "masks": {"sparsity": sparsity - 0.0001 * index},
        "dynamics": {"itop_rate": 0.1 + 0.01 * index},
        "flops": {"inference_sparse": 1000.0 * (index + 1), "training": 1e6 * (index + 1), "inference_dense": 1e5},
        **extra,
    }


def _job(sweep: Path, name: str, overrides: list[str], summary: dict | None) -> Path:
    job = sweep / name
    job.mkdir(parents=True)
    (job / "run.yaml").write_text(yaml.safe_dump({"overrides": overrides, "config": {}}))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    return job


@pytest.fixture
def fake_sweep(tmp_path) -> tuple[Path, dict[str, dict]]:
    """2 methods x 2 sparsities x 2 seeds, one unfinished job, one lottery job (nested one level deeper)."""
    sweep = tmp_path / "sweep"
    jobs = {}
    index = 0
    for method in METHODS:
        for sparsity in SPARSITIES:
            for seed in SEEDS:
                overrides = [f"method={method}", f"sparsity={sparsity}", f"seed={seed}", "epochs=1", "device=cpu"]
                if seed == 1:
                    overrides.append("resume=auto")  # no effect on the group
                name = f"method={method},seed={seed},sparsity={sparsity}"
                jobs[name] = _summary(method, sparsity, seed, index)
                _job(sweep, name, overrides, jobs[name])
                index += 1
    _job(sweep, "method=rigl,seed=2,sparsity=0.9", ["method=rigl", "sparsity=0.9", "seed=2", "epochs=1"], None)
    table = [
        {"round": r, "weights_remaining_pct": 100 * 0.8 ** r, "final_test_top1": 0.6 + 0.01 * r,
         "best_test_top1": 0.61 + 0.01 * r, "best_test_step": 5, "early_stop_step": None}
        for r in range(4)
    ]
    lottery = _summary("lth", 0.488, 0, index, round_table=table)
    lottery["final"]["test"]["top1"] = table[-1]["final_test_top1"]
    jobs["lottery/method=lth"] = lottery
    job = _job(sweep, "lottery/method=lth", ["method=lth", "method.levels=3"], lottery)
    (job / "round_00").mkdir()  # a round's own summary is not a job
    (job / "round_00" / "summary.json").write_text(json.dumps({"round": 0, "final": {"test": {"top1": 0.6}}}))
    return sweep, jobs


def _read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _check_summary_csv(sweep: Path, summaries: dict[str, dict]) -> None:
    rows = {row["job"]: row for row in _read_csv(sweep / "summary.csv")}
    assert set(rows) == set(summaries)
    for job, summary in summaries.items():
        row = rows[job]
        assert row["method"] == summary["method"]
        assert row["model"] == summary["model"]
        assert row["dataset"] == summary["dataset"]
        assert float(row["sparsity"]) == summary["sparsity"]
        assert int(row["seed"]) == summary["seed"]
        assert float(row["final_test_top1"]) == summary["final"]["test"]["top1"]
        assert float(row["best_test_top1"]) == summary["best"]["test"]["top1"]
        val = summary["final"].get("val")
        assert (float(row["final_val_top1"]) if row["final_val_top1"] else None) == (val and val["top1"])
        assert float(row["realised_sparsity"]) == (summary.get("masks") or {}).get("sparsity", 0.0)
        itop = (summary.get("dynamics") or {}).get("itop_rate")
        assert (float(row["itop_rate"]) if row["itop_rate"] else None) == itop
        assert float(row["inference_flops"]) == summary["flops"]["inference_sparse"]
        assert float(row["training_flops"]) == summary["flops"]["training"]
        assert float(row["wall_time_s"]) == summary["wall_time_s"]
        record = yaml.safe_load((sweep / job / "run.yaml").read_text())
        assert row["overrides"] == " ".join(record["overrides"])


def _expected_groups(summaries: dict[str, dict]) -> dict[tuple, dict]:
    """Computed independently: group by (method, sparsity), which is all the fake jobs differ in besides seed."""
    groups: dict[tuple, list[dict]] = {}
    for summary in summaries.values():
        groups.setdefault((summary["method"], summary["sparsity"]), []).append(summary)
    expected = {}
    for key, members in groups.items():
        final = [m["final"]["test"]["top1"] for m in members]
        best = [m["best"]["test"]["top1"] for m in members]
        expected[key] = {
            "n": len(members),
            "final": (sum(final) / len(final), statistics.stdev(final) if len(final) > 1 else 0.0),
            "best": (sum(best) / len(best), statistics.stdev(best) if len(best) > 1 else 0.0),
        }
    return expected


def test_summarize_fake_sweep(fake_sweep):
    sweep, summaries = fake_sweep
    result = summarize(sweep)
    assert result["rows"] == len(summaries) == 9
    assert result["groups"] == 5
    assert result["skipped"] == 1
    assert {Path(f).name for f in result["files"]} == {
        "summary.csv", "groups.csv", "summary.md", "accuracy_vs_sparsity.png", "lottery.png"}
    assert all(Path(f).parent == sweep for f in result["files"])
    _check_summary_csv(sweep, summaries)
    assert len(collect(sweep)) == 9

    expected = _expected_groups(summaries)
    groups = _read_csv(sweep / "groups.csv")
    assert len(groups) == len(expected)
    for row in groups:
        want = expected[(row["method"], float(row["sparsity"]))]
        assert int(row["n_seeds"]) == want["n"]
        assert math.isclose(float(row["final_test_top1_mean"]), want["final"][0], rel_tol=1e-12)
        assert math.isclose(float(row["final_test_top1_std"]), want["final"][1], rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(float(row["best_test_top1_mean"]), want["best"][0], rel_tol=1e-12)
        assert math.isclose(float(row["best_test_top1_std"]), want["best"][1], rel_tol=1e-9, abs_tol=1e-15)
        assert "seed=" not in row["overrides"] and "resume=" not in row["overrides"]
    # sorted by method, then sparsity
    order = [(row["method"], float(row["sparsity"])) for row in groups]
    assert order == sorted(order)

    markdown = (sweep / "summary.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(table) == len(expected)
    shown = []
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        method, sparsity, n = cells[0], float(cells[3]), int(cells[4])
        want = expected[(method, sparsity)]
        assert n == want["n"]
        for cell, (mean, std) in zip(cells[5:7], (want["final"], want["best"])):
            assert cell == (f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}")  # one seed: no spread
        shown.append((method, sparsity))
    assert shown == sorted(shown)
    assert "Skipped 1 job" in markdown and "method=rigl,seed=2,sparsity=0.9" in markdown

    for name in ("accuracy_vs_sparsity.png", "lottery.png"):
        data = (sweep / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert not list(sweep.rglob(".*.tmp"))  # atomic writes leave no temporary files

    summarize(sweep)  # re-running over its own outputs gives the same table
    _check_summary_csv(sweep, summaries)


def test_dense_group_and_missing_optional_fields(tmp_path):
    sweep = tmp_path / "sweep"
    dense = _summary("dense", 0.0, 0, 0)
    for key in ("masks", "dynamics"):
        del dense[key]
    del dense["final"]["val"]
    sparse = _summary("static", 0.8, 0, 1)
    _job(sweep, "0", ["method=dense"], dense)
    _job(sweep, "1", ["method=static", "sparsity=0.8"], sparse)
    result = summarize(sweep)
    assert (result["rows"], result["groups"], result["skipped"]) == (2, 2, 0)
    rows = {row["job"]: row for row in _read_csv(sweep / "summary.csv")}
    assert rows["0"]["realised_sparsity"] == "0.0"
    assert rows["0"]["itop_rate"] == "" and rows["0"]["final_val_top1"] == ""
    assert (sweep / "accuracy_vs_sparsity.png").stat().st_size > 0
    assert not (sweep / "lottery.png").exists()


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None,
                                  lambda p: _job(p, "job", ["seed=0"], None)])
def test_main_without_finished_runs(tmp_path, capsys, make):
    target = tmp_path / "sweep"
    make(target)
    assert main([str(target)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sparsetrain-report" in lines[0]
    assert str(target) in lines[0]
    assert captured.out == ""


def test_main_prints_table(fake_sweep, capsys):
    sweep, _ = fake_sweep
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out == (sweep / "summary.md").read_text()
    assert "| method |" in out


def test_callback(fake_sweep, tmp_path, caplog):
    sweep, _ = fake_sweep
    callback = SummarizeSweep()
    with caplog.at_level("INFO", logger="sparsetrain.report.callback"):
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "summary.md").is_file()
    assert str(sweep / "summary.md") in caplog.text
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level("WARNING", logger="sparsetrain.report.callback"):
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}}))  # logs, no raise
    assert "holds no finished runs" in caplog.text
    # instantiable from YAML as the config registers it
    from hydra.utils import instantiate

    assert isinstance(instantiate({"_target_": "sparsetrain.report.callback.SummarizeSweep"}), SummarizeSweep)


def test_real_sweep_end_to_end(tmp_path):
    """A real 2 x 2 sweep with the callback (``++``: whether or not train.yaml registers it already); job directory
    names are not assumed."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "sparsetrain", "-m", "method=static", "sparsity=0.5,0.8", "seed=0,1",
               "epochs=1", f"hydra.sweep.dir={sweep}",
               "++hydra.callbacks.summarize._target_=sparsetrain.report.callback.SummarizeSweep"]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = {path.parent.relative_to(sweep).as_posix(): json.loads(path.read_text())
                 for path in sweep.rglob("summary.json") if not path.parent.name.startswith("round_")}
    assert len(summaries) == 4
    assert str(sweep / "summary.md") in done.stdout + done.stderr  # the callback says where the table is
    _check_summary_csv(sweep, summaries)  # written by the callback
    result = summarize(sweep)
    assert (result["rows"], result["groups"], result["skipped"]) == (4, 2, 0)
    _check_summary_csv(sweep, summaries)
    groups = _read_csv(sweep / "groups.csv")
    assert sorted((row["method"], float(row["sparsity"]), int(row["n_seeds"])) for row in groups) == [
        ("static", 0.5, 2), ("static", 0.8, 2)]
    expected = _expected_groups(summaries)
    for row in groups:
        mean, std = expected[(row["method"], float(row["sparsity"]))]["final"]
        assert math.isclose(float(row["final_test_top1_mean"]), mean, rel_tol=1e-12)
        assert math.isclose(float(row["final_test_top1_std"]), std, rel_tol=1e-9, abs_tol=1e-15)
    assert (sweep / "accuracy_vs_sparsity.png").stat().st_size > 0


def _infer_bench(latency: dict[str, float], throughput: dict[str, float], batch: int = 8) -> dict:
    """An infer_bench.json as sparsetrain-bench-infer writes it, from milliseconds per form (``dense`` first)."""
    forms = [form for form in latency if form != "dense"]

    def regime(ms: dict[str, float], size: int) -> dict:
        return {"batch": size, **{f"{form}_ms": value for form, value in ms.items()},
                **{f"{form}_speedup": ms["dense"] / ms[form] for form in forms}}

    return {"batch": batch, "forms": forms, "flop_bound": {form: 2.0 for form in forms},
            "latency": regime(latency, 1), "throughput": regime(throughput, batch), "threads": 1,
            "kernels": {}, "sparse_source": "converted now"}


def test_speed_columns_from_the_jobs_inference_benchmarks(fake_sweep):
    sweep, _ = fake_sweep
    summarize(sweep)  # no job timed: no speed columns
    assert "infer_format" not in _read_csv(sweep / "summary.csv")[0]
    assert "infer_formats" not in _read_csv(sweep / "groups.csv")[0]
    assert "speed-up" not in (sweep / "summary.md").read_text()
    benches = {  # shrunk is best at 3x (onnx runs the dense model: no sparse form); shrunk_onnx beats model.onnx 4x
        "method=rigl,seed=0,sparsity=0.9": _infer_bench({"dense": 1.0, "sparse": 0.8, "shrunk": 0.5},
                                                        {"dense": 6.0, "sparse": 3.0, "shrunk": 2.0}),
        "method=rigl,seed=1,sparsity=0.9": _infer_bench(
            {"dense": 1.0, "sparse": 0.5, "onnx": 0.1, "shrunk_onnx": 0.05},
            {"dense": 6.0, "sparse": 4.0, "onnx": 0.4, "shrunk_onnx": 0.1}),
    }
    for job, report in benches.items():
        (sweep / job / "infer_bench.json").write_text(json.dumps(report))
    (sweep / "method=set,seed=0,sparsity=0.5" / "infer_bench.json").write_text("{")  # unreadable: not timed
    summarize(sweep)
    rows = {row["job"]: row for row in _read_csv(sweep / "summary.csv")}
    timed = {job: (row["infer_format"], row["infer_batch"], float(row["infer_throughput_speedup"]),
                   float(row["infer_latency_speedup"])) for job, row in rows.items() if row["infer_format"]}
    assert timed == {"method=rigl,seed=0,sparsity=0.9": ("shrunk", "8", 3.0, 2.0),
                     "method=rigl,seed=1,sparsity=0.9": ("shrunk_onnx", "8", 4.0, 2.0)}
    groups = {(row["method"], float(row["sparsity"])): row for row in _read_csv(sweep / "groups.csv")}
    rigl = groups[("rigl", 0.9)]
    assert rigl["infer_formats"] == "shrunk, shrunk_onnx"
    assert float(rigl["infer_throughput_speedup_mean"]) == 3.5 and float(rigl["infer_latency_speedup_mean"]) == 2.0
    assert all(row["infer_formats"] == "" for key, row in groups.items() if key != ("rigl", 0.9))
    markdown = (sweep / "summary.md").read_text()
    assert "| inference speed-up (throughput / latency) |" in markdown
    lines = [line for line in markdown.splitlines() if line.startswith("| rigl ")]
    assert [line.rsplit("|", 2)[1].strip() for line in lines] == ["-", "3.50x / 2.00x (shrunk, shrunk_onnx)"]
