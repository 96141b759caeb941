"""Exact resume: a run killed mid-epoch and resumed ends bit-identical to an uninterrupted run (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import cli_command, events_without_time, kill_at_first_checkpoint, run_cli

# Dropout draws from the global torch RNG and the validation split exercises early-stop tracking, so the
# comparison fails if any RNG state, position or accumulator is not restored.
RUN = ["model=lenet300_100", "model.dropout=0.2", "dataset.val_size=200", "epochs=5", "checkpoint_every=7it",
       "optimizer.momentum=0.9", "schedule.warmup_epochs=1", "label_smoothing=0.1"]


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def _assert_same_tensors(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "uninterrupted"
    assert run_cli(*RUN, f"hydra.run.dir={reference}", cwd=tmp_path).returncode == 0

    killed = tmp_path / "killed"
    kill_at_first_checkpoint(cli_command(*RUN, f"hydra.run.dir={killed}"), killed, tmp_path)
    position = _final_state(killed)["position"]
    assert position["batch"] != 0, "checkpoint should be mid-epoch"

    result = run_cli(f"resume={killed}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    expected, actual = _final_state(reference), _final_state(killed)
    for part in ("model", "optimizer", "position", "finished"):
        _assert_same_tensors(expected[part], actual[part], part)
    assert events_without_time(killed) == events_without_time(reference)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (reference, killed)]
    for summary in summaries:
        summary.pop("wall_time_s"), summary.pop("run_dir")
    assert summaries[0] == summaries[1]
