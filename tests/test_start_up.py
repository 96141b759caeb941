"""Start-up and threads on a shared machine: OpenMP's wait policy set before torch loads, a parallel sweep's jobs
sharing the cores, the thread count in the start line, and nothing slow imported or composed twice at the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import cli_command, cli_env, run_cli

from sparsetrain import cores
from sparsetrain.compose import command_line


def test_share_cores_splits_the_cpus_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(cores, "available_cpus", lambda: 16)
    assert cores.share_cores(1) is None and "OMP_NUM_THREADS" not in os.environ
    assert cores.share_cores(3) == 5 and os.environ["OMP_NUM_THREADS"] == "5"
    assert cores.share_cores(4) is None and os.environ["OMP_NUM_THREADS"] == "5"  # set (here by the first call)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cores.share_cores(32) == 1


def test_the_command_sets_the_wait_policy_before_torch_loads():
    """``main`` sets OMP_WAIT_POLICY=PASSIVE (a user's value wins) while torch is not yet imported (OpenMP reads
    the variable once, when torch loads it)."""
    code = ("import os, sys; import sparsetrain.cli.main as m; "
            "m._main = lambda: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules); m.main()")
    env = {key: value for key, value in cli_env().items() if key != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE False"), ("ACTIVE", "ACTIVE False")):
        run_env = env if given is None else {**env, "OMP_WAIT_POLICY": given}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_parallel_sweep_jobs_share_the_cores_and_the_start_line_names_the_threads(tmp_path):
    env = {key: value for key, value in cli_env().items() if key != "OMP_NUM_THREADS"}
    result = subprocess.run(
        cli_command("-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "seed=0,1", "epochs=1",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    share = max(1, cores.available_cpus() // 2)
    jobs = sorted(path.parent for path in (tmp_path / "sweep").glob("*/summary.json"))
    assert len(jobs) == 2
    for job in jobs:
        assert json.loads((job / "summary.json").read_text())["threads"] == share
        assert f"on cpu ({share} thread" in (job / "sparsetrain.log").read_text()


def test_the_start_line_names_the_threads(tmp_path):
    result = run_cli("epochs=1", "threads=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0 and "with method dense on cpu (1 thread):" in result.stdout + result.stderr


def test_digits_load_without_scikit_learn_and_equal_its_loader():
    from sklearn.datasets import load_digits

    from sparsetrain.data.vision import digits_table

    table, digits = digits_table(), load_digits()
    assert np.array_equal(table[:, :-1], digits.data) and np.array_equal(table[:, -1], digits.target)
    code = ("import sys; from omegaconf import OmegaConf; from sparsetrain.data.vision import load_tensor_source; "
            "load_tensor_source(OmegaConf.create({'name': 'digits'})); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_run_is_composed_once_before_hydra(monkeypatch, tmp_path):
    """The preflight composes the command line once (Hydra composes it once more to run it)."""
    calls = []
    compose = command_line.compose
    monkeypatch.setattr(command_line, "compose", lambda **kwargs: calls.append(kwargs) or compose(**kwargs))
    command_line.preflight(["method=rigl", "sparsity=0.9", f"hydra.run.dir={tmp_path / 'run'}"], multirun=False)
    assert len(calls) == 1
