"""Multi-process training (torchrun, 2 CPU processes with gloo): identical masks and weights on every rank,
the same result as one process at the same global batch, and resume; P-GaP with one replica per rank."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import cli_command, cli_env, events_without_time, kill_at_first_checkpoint, run_cli
from sparsetrain.runner.run import run


def torchrun(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "sparsetrain", *overrides]


def run_torchrun(cwd, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(*overrides), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def test_rigl_masks_and_weights_identical_on_every_rank(tmp_path):
    result = run_torchrun(tmp_path, "method=rigl", "sparsity=0.9", "epochs=2", "method.delta_t=5",
                          "hydra.run.dir=ddp")
    assert_succeeded(result)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    ranks = summary["distributed"]
    assert ranks["world_size"] == 2
    assert len(set(ranks["mask_checksums"])) == 1 and len(set(ranks["weight_checksums"])) == 1
    updates = [e for e in events_without_time(tmp_path / "ddp") if e["event"] == "mask_update"]
    assert len(updates) == summary["dynamics"]["mask_updates"] > 3


@pytest.mark.parametrize("method", [
    ["method=static"],
    # learned masks over frozen weights: DDP must reduce the gradients of weights only the method's scores train
    ["method=mask_training", "finetune.trainable=[]", "method.score_lr=0.01", "method.reset_every=5"],
], ids=["static", "mask_training"])
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path, method):
    overrides = [*method, "sparsity=0.5", "epochs=2", "batch_size=64"]
    assert_succeeded(run_torchrun(tmp_path, *overrides, "hydra.run.dir=ddp"))
    assert_succeeded(run_cli(*overrides, "hydra.run.dir=single", cwd=tmp_path))
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
    assert_succeeded(run_torchrun(tmp_path, *overrides, "hydra.run.dir=reference"))
    kill_at_first_checkpoint(torchrun(*overrides, "hydra.run.dir=killed"), tmp_path / "killed", tmp_path)
    result = run_torchrun(tmp_path, *overrides, "hydra.run.dir=killed", "resume=auto")
    assert_succeeded(result)
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("reference", "killed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert events_without_time(tmp_path / "reference") == events_without_time(tmp_path / "killed")


# ---- P-GaP: every rank trains its own replica -------------------------------------------------------------------
PGAP = ["method=gap", "method.mode=parallel", "method.num_partitions=2", "sparsity=0.9", "steps=6", "method.rounds=1",
        "method.finetune=100%", "model.dropout=0.1", "device=cpu", "threads=1", "keep_checkpoint_every=3it"]


def test_parallel_gap_replicas_on_two_ranks_equal_the_one_device_run_and_resume(tmp_path, compose_config):
    """Rank i trains replica i on full batches with replica i's dropout draws, so the combine (partition i from
    rank i), the re-prune and the fine-tuning give the one-device run's bits; a run resumed inside a replica (from a
    checkpoint holding every rank's state) gives them too."""
    single = run(compose_config(*PGAP), tmp_path / "single", PGAP)
    result = run_torchrun(tmp_path, *PGAP, "hydra.run.dir=ddp")
    assert_succeeded(result)
    one, two = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("single", "ddp"))
    shared = (one["method"]["shared"], two["method"]["shared"])  # after the last combine and re-prune
    for name, mask in shared[0]["masks"].items():
        assert torch.equal(shared[1]["masks"][name], mask) and torch.equal(two["method"]["masks"][name],
                                                                            one["method"]["masks"][name])
    for name, value in one["model"].items():
        assert torch.equal(shared[1]["model"][name], shared[0]["model"][name])
        assert torch.equal(two["model"][name], value) and torch.equal(two["rank_states"][0]["model"][name], value)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["final"] == single["final"]
    # the training FLOPs of every replica, as on one device (rank 0 alone counted only its own replicas)
    assert summary["flops"]["training"] == pytest.approx(single["flops"]["training"], rel=1e-12)

    # inside cycle 0 each rank holds its own replica: rank 1's checkpointed masks have partition 1 dense
    kept = tmp_path / "ddp" / "checkpoints" / "round_00_step_0000003.pt"
    inside = torch.load(kept, weights_only=True)
    densities = [[float(m.float().mean()) for m in state["method"]["masks"].values()]
                 for state in (inside, inside["rank_states"][0])]
    assert densities[0] != densities[1] and max(densities[0]) == max(densities[1]) == 1.0
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ddp", resumed)
    (resumed / "summary.json").unlink()
    shutil.copy(kept, resumed / "checkpoints" / "last.pt")
    result = run_torchrun(tmp_path, *PGAP, "hydra.run.dir=resumed", "resume=auto")
    assert_succeeded(result)
    again = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(again["model"][k], v) for k, v in one["model"].items())
    assert events_without_time(tmp_path / "ddp") == events_without_time(resumed)
    flops = json.loads((resumed / "summary.json").read_text())["flops"]["training"]
    assert flops == pytest.approx(single["flops"]["training"], rel=1e-12)  # each rank resumed its own count


def test_parallel_gap_refuses_a_world_size_other_than_the_partitions(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(cli_command(*PGAP, "method.num_partitions=3", f"hydra.run.dir={run_dir}"), cwd=tmp_path,
                            env={**cli_env(), "WORLD_SIZE": "2"}, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: method.num_partitions=3") and "method.num_partitions=2" in lines[0]
    assert not run_dir.exists()
