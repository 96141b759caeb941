"""The command line: bad input gives one line naming the key, exit 2, and writes nothing."""

from __future__ import annotations

import json
import zipfile
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

BAD_INPUT = [
    (["sparsity=1.5"], "sparsity"),
    (["method=nosuch"], "method"),
    (["model=nosuch"], "model"),
    (["epochs=0"], "epochs"),
    (["epochs=abc"], "epochs"),
    (["sparsty=0.5"], "sparsty"),
    (["device=gpu"], "device"),
    (["resume=/nonexistent"], "resume"),
    (["eval_every=often"], "eval_every"),
    (["schedule=multistep", "schedule.milestones=[]"], "schedule.milestones"),
    (["method=rigl", "sparsity=0"], "sparsity"),
    (["logger=[jsonl,mlflow]"], "logger"),
    (["threads=0"], "threads"),
    (["-m", "epochs=1,0"], "epochs"),
    (["method=gmp", "sparsity=0.5", "method.initial_sparsity=0.8"], "method.initial_sparsity"),
    (["method=static", "sparsity=0.9", "method.distribution=nosuch"], "method.distribution"),
    (["method=static", "sparsity=0.9", "method.mask_from=/nonexistent"], "method.mask_from"),
    (["method=gmp", "sparsity=0.9", "method.end=soon"], "method.end"),
    (["dataset=synthetic", "dataset.train_size=0"], "dataset.train_size"),
    (["step_graph=on", "compile=true"], "step_graph"),
    (["step_graph=sometimes"], "step_graph"),
]


@pytest.mark.parametrize("overrides,key", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_is_one_line_naming_the_key(tmp_path, overrides, key):
    run_dir = tmp_path / "run"
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not run_dir.exists()


def test_missing_dataset_root_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "dataset=mnist", "dataset.root=/nonexistent", "dataset.download=false", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dataset.root" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "run.yaml").exists()


def test_mask_from_another_model_is_one_line(tmp_path):
    masks_run = tmp_path / "masks_run"
    assert run_cli("method=static", "sparsity=0.9", "epochs=1", f"hydra.run.dir={masks_run}", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "run"
    result = run_cli("method=static", "sparsity=0.9", "model=conv2", f"method.mask_from={masks_run}",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: method.mask_from") and "Traceback" not in result.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def test_quick_start_trains_digits(tmp_path):
    """The bare command from any directory: digits, offline, accuracy >= 0.90."""
    result = run_cli("hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["test"]["top1"] >= 0.90
    assert summary["parameters"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 20 and {e["split"] for e in evals} == {"test"}
    assert all({"loss", "top1", "top5", "step", "epoch", "round", "time"} <= set(e) for e in evals)
    trains = [e for e in events if e["event"] == "train"]
    assert len(trains) == 20 and all({"loss", "lr", "step", "epoch"} <= set(e) for e in trains)
    assert [e["step"] for e in trains] == [22 * (i + 1) for i in range(20)]
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_refuses_to_overwrite_a_run(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = run_cli("epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and "resume=auto" in result.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_refuses_a_changed_config_naming_the_keys(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    result = run_cli("epochs=2", "optimizer.lr=0.05", f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert "epochs" in result.stderr and "optimizer.lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_of_a_finished_run_keeps_its_results(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("epochs=1", "seed=3", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    summary = (run_dir / "summary.json").read_text()
    metrics = (run_dir / "metrics.jsonl").read_text()
    result = run_cli(f"resume={run_dir}", cwd=tmp_path)  # the run's own overrides are reused
    assert result.returncode == 0, result.stderr
    assert (run_dir / "summary.json").read_text() == summary
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    assert not (tmp_path / "outputs").exists()


def test_installed_configs_ship_in_the_wheel(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("sparsetrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(root / "configs")) for p in (root / "configs").rglob("*.yaml")}
    assert expected and {f"sparsetrain/configs/{name}" for name in expected} <= names
    modules = {str(p.relative_to(root)) for p in (root / "sparsetrain").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules and modules <= names, f"not in the wheel (pyproject's packages): {sorted(modules - names)}"


def test_search_path_is_the_package(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sparsetrain", "--info", "searchpath"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and "pkg://sparsetrain.configs" in result.stdout
