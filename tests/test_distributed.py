"""Multi-process training (torchrun, 2 CPU processes with gloo): identical masks and weights on every rank,
the same result as one process at the same global batch, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from conftest import cli_env, events_without_time, run_cli


def torchrun(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "sparsetrain", *overrides]


def run_torchrun(cwd, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(*overrides), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def test_rigl_masks_and_weights_identical_on_every_rank(tmp_path):
    result = run_torchrun(tmp_path, "method=rigl", "sparsity=0.9", "epochs=2", "method.delta_t=5",
                          "hydra.run.dir=ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    ranks = summary["distributed"]
    assert ranks["world_size"] == 2
    assert len(set(ranks["mask_checksums"])) == 1 and len(set(ranks["weight_checksums"])) == 1
    updates = [e for e in events_without_time(tmp_path / "ddp") if e["event"] == "mask_update"]
    assert len(updates) == summary["dynamics"]["mask_updates"] > 3


def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    overrides = ["method=static", "sparsity=0.5", "epochs=2", "batch_size=64"]
    assert run_torchrun(tmp_path, *overrides, "hydra.run.dir=ddp").returncode == 0
    assert run_cli(*overrides, "hydra.run.dir=single", cwd=tmp_path).returncode == 0
    ddp, single = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("ddp", "single"))
    for name, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=1e-4, atol=1e-5)
    assert torch.equal(ddp["method"]["masks"]["3.weight"], single["method"]["masks"]["3.weight"])
    # training FLOPs count the global batch (every rank's share), not rank 0's
    flops = [json.loads((tmp_path / d / "summary.json").read_text())["flops"]["training"] for d in ("ddp", "single")]
    assert flops[0] == flops[1]


def test_killed_distributed_run_resumes_to_the_same_result(tmp_path):
    overrides = ["method=rigl", "sparsity=0.9", "epochs=4", "method.delta_t=5", "checkpoint_every=7it",
                 "model.dropout=0.1"]
    assert run_torchrun(tmp_path, *overrides, "hydra.run.dir=reference").returncode == 0
    process = subprocess.Popen(torchrun(*overrides, "hydra.run.dir=killed"), cwd=tmp_path, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = tmp_path / "killed" / "checkpoints" / "last.pt"
    try:
        while not checkpoint.exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
        process.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    result = run_torchrun(tmp_path, *overrides, "hydra.run.dir=killed", "resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("reference", "killed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert events_without_time(tmp_path / "reference") == events_without_time(tmp_path / "killed")
