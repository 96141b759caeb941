"""The loop and the round driver through the method interface, in-process on digits."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import events_without_time
from sparsetrain import methods
from sparsetrain.errors import ConfigError
from sparsetrain.times import parse_interval
from sparsetrain.methods.base import Method
from sparsetrain.runs.checkpoint import load_checkpoint
from sparsetrain.runs.files import checkpoint_path
from sparsetrain.sparsity.targets import prunable_parameters
from sparsetrain.errors import Diverged
from sparsetrain.runner.run import run
from sparsetrain.training.schedule import lr_factor

STEPS_PER_EPOCH = 1437 // 64  # digits train split, drop_last


class Recorder(Method):
    """Two rounds; records every hook; vetoes the optimizer step at the steps listed in VETO."""

    name = "recorder"
    rounds = 2
    calls: list = []
    veto: set = set()
    stop_at: tuple | None = None  # (round, step): raise there, as a crash would

    def setup(self, ctx):
        super().setup(ctx)
        self.round = 0
        self.updates = 0
        name, weight = list(prunable_parameters(ctx.model).items())[-1]
        mask = torch.ones(weight.numel(), dtype=torch.bool)
        mask[: weight.numel() // 4] = False
        self.fake_masks = {name: mask.view_as(weight)}

    def start_round(self, round_index):
        self.round = round_index
        self.calls.append(("start_round", round_index, len(self.ctx.optimizer.state)))

    def before_optimizer_step(self, step):
        if self.stop_at == (self.round, step):
            raise KeyboardInterrupt
        return step not in self.veto

    def after_optimizer_step(self, step):
        self.updates += 1
        self.calls.append(("after", self.round, step))

    def on_epoch_end(self, epoch):
        self.calls.append(("epoch_end", self.round, epoch))

    def end_round(self, round_index):
        self.calls.append(("end_round", round_index))

    def masks(self):
        return self.fake_masks

    def state_dict(self):
        return {"round": self.round, "updates": self.updates}

    def load_state_dict(self, state):
        self.round, self.updates = state["round"], state["updates"]


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "recorder", Recorder)
    monkeypatch.setattr(Recorder, "calls", [])
    monkeypatch.setattr(Recorder, "veto", set())
    monkeypatch.setattr(Recorder, "stop_at", None)
    return Recorder


def _run(compose_config, run_dir, *overrides):
    cfg = compose_config("method.name=recorder", "epochs=2", "device=cpu", *overrides)
    return run(cfg, run_dir, list(overrides))


def test_rounds_call_hooks_in_order_and_restart_training(recorder, compose_config, tmp_path):
    summary = _run(compose_config, tmp_path)
    total = 2 * STEPS_PER_EPOCH
    after = [c for c in recorder.calls if c[0] == "after"]
    assert [c[2] for c in after] == list(range(total)) * 2  # each round restarts at step 0
    assert [c for c in recorder.calls if c[0] != "after"] == [
        ("start_round", 0, 0), ("epoch_end", 0, 1), ("epoch_end", 0, 2), ("end_round", 0),
        ("start_round", 1, 0), ("epoch_end", 1, 1), ("epoch_end", 1, 2), ("end_round", 1),
    ]  # the optimizer state is empty at the start of round 1: a fresh training
    assert len(summary["rounds"]) == 2 and summary["final"] == summary["rounds"][1]["final"]
    (name,) = summary["masks"]["layers"]
    assert summary["masks"]["sparsity"] == 0.25 and summary["masks"]["layers"][name]["density"] == 0.75
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["round"] for e in events if e["event"] == "eval"] == [0, 0, 1, 1]
    # Each round restarts the learning-rate schedule: the first epoch's lr is the same in both rounds.
    lrs = [e["lr"] for e in events if e["event"] == "train"]
    assert lrs[0] == lrs[2] and lrs[1] == lrs[3]


def test_vetoed_steps_leave_the_weights_unchanged(recorder, compose_config, tmp_path):
    recorder.veto = set(range(10_000))
    torch.manual_seed(0)
    _run(compose_config, tmp_path / "vetoed", "optimizer.weight_decay=0.1")
    vetoed = load_checkpoint(checkpoint_path(tmp_path / "vetoed"), torch.device("cpu"))
    assert vetoed["optimizer"]["state"] == {}  # no optimizer step was ever taken
    recorder.veto = set()
    _run(compose_config, tmp_path / "trained", "optimizer.weight_decay=0.1")
    trained = load_checkpoint(checkpoint_path(tmp_path / "trained"), torch.device("cpu"))
    initial_weights = vetoed["model"]
    assert any(not torch.equal(initial_weights[k], trained["model"][k]) for k in initial_weights)


def test_resume_in_the_middle_of_round_two_matches(recorder, compose_config, tmp_path):
    overrides = ("checkpoint_every=5it", "resume=auto", "model.dropout=0.1", "log_every=4it")
    reference = _run(compose_config, tmp_path / "reference", *overrides)
    recorder.stop_at = (1, 13)
    with pytest.raises(KeyboardInterrupt):
        _run(compose_config, tmp_path / "crashed", *overrides)
    position = load_checkpoint(checkpoint_path(tmp_path / "crashed"), torch.device("cpu"))["position"]
    assert position == {"round": 1, "epoch": 0, "batch": 10, "step": 10, "started": True}
    recorder.stop_at = None
    resumed = _run(compose_config, tmp_path / "crashed", *overrides)
    for key in ("final", "best", "rounds"):
        assert resumed[key] == reference[key]
    a, b = (load_checkpoint(checkpoint_path(tmp_path / d), torch.device("cpu")) for d in ("reference", "crashed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["method"] == b["method"]
    assert events_without_time(tmp_path / "reference") == events_without_time(tmp_path / "crashed")


def test_steps_override_epochs_and_can_end_mid_epoch(recorder, compose_config, tmp_path):
    recorder.rounds = 1
    summary = _run(compose_config, tmp_path, "steps=30")
    assert summary["steps"] == 30 and summary["epochs"] == 2
    assert [c for c in recorder.calls if c[0] == "epoch_end"] == [("epoch_end", 0, 1), ("epoch_end", 0, 2)]
    assert max(c[2] for c in recorder.calls if c[0] == "after") == 29


def test_validation_split_gives_early_stop_iteration(recorder, compose_config, tmp_path):
    recorder.rounds = 1
    summary = _run(compose_config, tmp_path, "dataset.val_size=300", "eval_every=5it")
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [e for e in events if e["event"] == "eval" and e["split"] == "val"]
    best = min(val, key=lambda e: e["loss"])
    assert summary["early_stop"]["step"] == best["step"] and summary["early_stop"]["loss"] == best["loss"]
    assert {e["step"] for e in val} >= {5, 10, 15, 20}


def test_divergence_is_reported(recorder, compose_config, tmp_path):
    recorder.rounds = 1
    with pytest.raises(Diverged, match="optimizer.lr"):
        _run(compose_config, tmp_path, "optimizer.lr=1e30", "optimizer.momentum=0")


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "multistep"])
def test_schedule_values(compose_config, name):
    cfg = compose_config(f"schedule={name}", "schedule.warmup_epochs=1", "schedule.milestones=[2,3]")
    factor = lambda step: lr_factor(cfg.schedule, step, total_steps=40, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.1) and factor(4) == pytest.approx(0.5) and factor(10) == pytest.approx(1.0)
    expected_mid = {"constant": 1.0, "cosine": 0.5, "linear": 0.5, "multistep": 0.1}[name]
    expected_end = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * 29 / 30)), "linear": 1 / 30,
                    "multistep": 0.01}[name]
    assert factor(25) == pytest.approx(expected_mid)
    assert factor(39) == pytest.approx(expected_end)


def test_intervals():
    every_two_epochs, every_5_steps = parse_interval("k", "2ep"), parse_interval("k", "5it")
    assert parse_interval("k", "3") == parse_interval("k", "3ep")
    assert [e for e in range(1, 7) if every_two_epochs.due(step=0, epoch_end=e)] == [2, 4, 6]
    assert not every_two_epochs.due(step=4, epoch_end=None)
    assert [s for s in range(1, 16) if every_5_steps.due(step=s, epoch_end=None)] == [5, 10, 15]
    assert not parse_interval("k", "0").due(step=5, epoch_end=1)
    with pytest.raises(ConfigError, match="k='x'"):
        parse_interval("k", "x")
