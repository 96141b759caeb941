"""Sweeps: stable job directories, re-runs that skip finished jobs, launcher presets."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import yaml

from conftest import cli_command, cli_env, run_cli
from sparsetrain.runs.record import NON_RESULT_KEYS

SWEEP = ["-m", "method=static", "sparsity=0.5", "seed=0,1", "epochs=3"]


def _job_dirs(sweep_dir):
    return sorted(path.parent for path in sweep_dir.glob("*/run.yaml"))


def test_killed_sweep_rerun_skips_the_finished_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = subprocess.Popen(cli_command(*SWEEP, f"hydra.sweep.dir={sweep_dir}"), env=cli_env(), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list(sweep_dir.glob("*/summary.json")):
            assert process.poll() is None, "the sweep ended before its first job finished"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    (first,) = [path.parent for path in sweep_dir.glob("*/summary.json")]
    assert first.name == "epochs=3,method=static,seed=0,sparsity=0.5"
    files = ("summary.json", "metrics.jsonl", "checkpoints/last.pt")
    before = {name: (first / name).read_bytes() for name in files}

    result = run_cli(*SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {name: (first / name).read_bytes() for name in files} == before  # not retrained
    assert [path.name for path in _job_dirs(sweep_dir)] == [
        "epochs=3,method=static,seed=0,sparsity=0.5", "epochs=3,method=static,seed=1,sparsity=0.5"]
    assert all((path / "summary.json").is_file() for path in _job_dirs(sweep_dir))


def test_job_names_leave_out_exactly_the_non_result_keys():
    from importlib.resources import files

    config = yaml.safe_load(files("sparsetrain.configs").joinpath("train.yaml").read_text())
    excluded = config["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    assert sorted(excluded) == sorted(NON_RESULT_KEYS)


@pytest.mark.parametrize("launcher,target", [("local_parallel", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_presets_compose(tmp_path, launcher, target):
    result = run_cli(f"hydra/launcher={launcher}", "--cfg", "hydra", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    launcher_cfg = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher_cfg["_target_"].endswith(target)


def test_tensorboard_logs_every_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli("method=rigl", "sparsity=0.9", "epochs=2", "method.delta_t=5", "tensorboard=true",
                     "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/test/top1", "eval/test/loss", "train/loss", "train/lr", "mask_update/itop_rate"} <= tags
    top1 = [(e.step, e.value) for e in events.Scalars("eval/test/top1")]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    expected = [(e["step"], e["top1"]) for e in lines if e["event"] == "eval"]
    assert [step for step, _ in top1] == [step for step, _ in expected]
    assert [value for _, value in top1] == pytest.approx([value for _, value in expected], rel=1e-6)
