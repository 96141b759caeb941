"""Lottery tickets: the sparsity ladder, nested masks, exact rewinding, controls, per-round outputs, resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import run_cli
from sparsetrain import methods
from sparsetrain.methods.build import build_method
from sparsetrain.methods.lth import weights_remaining
from sparsetrain.errors import ConfigError
from sparsetrain.sparsity.dst import drop_count
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.runner.run import run

BASE = ["method=lth", "device=cpu", "steps=30", "dataset.val_size=200", "eval_every=10it"]


def _run(compose_config, run_dir, *overrides):
    overrides = [*BASE, *overrides]
    return run(compose_config(*overrides), run_dir, overrides)


def _round_masks(run_dir):
    return [load_masks(path) for path in sorted(run_dir.glob("round_*/masks.safetensors"))]


def test_ladder_nested_masks_and_outputs(compose_config, tmp_path):
    summary = _run(compose_config, tmp_path, "method.levels=4", "method.layer_rates=[last:0.1]")
    masks = _round_masks(tmp_path)
    assert len(masks) == 5
    counts = {name: mask.numel() for name, mask in masks[0].items()}
    rates = {"1.weight": 0.2, "3.weight": 0.2, "5.weight": 0.1}
    for level, level_masks in enumerate(masks):
        assert {name: int(mask.sum()) for name, mask in level_masks.items()} == counts, f"level {level}"
        counts = {name: n - drop_count(n, rates[name], "floor") for name, n in counts.items()}
    for earlier, later in zip(masks, masks[1:]):
        assert all(torch.all(later[name] <= earlier[name]) for name in earlier)  # nested
    with (tmp_path / "lottery.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    total = sum(mask.numel() for mask in masks[0].values())
    assert [float(row["weights_remaining_pct"]) for row in rows] == pytest.approx(
        [100 * sum(int(m.sum()) for m in level.values()) / total for level in masks])
    initial = {name: mask.numel() for name, mask in masks[0].items()}
    assert [100 * f for f in weights_remaining(initial, list(initial), {"5.weight": 0.1}, 0.2, 4)] == pytest.approx(
        [float(row["weights_remaining_pct"]) for row in rows])  # the ladder a refusal prints is the one trained
    assert all(row["early_stop_step"] not in ("", None) for row in rows)
    assert (tmp_path / "lottery.png").stat().st_size > 0
    assert [r["final"] for r in summary["rounds"]] == [json.loads((tmp_path / f"round_{i:02d}" / "summary.json")
                                                                  .read_text())["final"] for i in range(5)]
    weights = torch.load(tmp_path / "round_03" / "model.pt", weights_only=True)
    assert all(torch.all(weights[name][~mask] == 0) for name, mask in masks[3].items())


def test_levels_past_the_last_that_prunes_are_refused_with_the_ladder(compose_config, tmp_path):
    """LeNet-300-100 on digits at prune_rate 0.2: level 42 is the last at which floor(0.2 x survivors) > 0."""
    with pytest.raises(ConfigError, match=r"^method\.levels=1000 goes past what method\.prune_rate=0\.2 can prune from "
                                          r"this model: level 42 is the last that removes a weight \(weights "
                                          r"remaining by level: 100 %, 80 %, 64 %, .*\); e\.g\. method\.levels=42$"):
        _run(compose_config, tmp_path, "method.levels=1000")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_global_scope_removes_exactly_the_rate_of_the_pool(compose_config, tmp_path):
    _run(compose_config, tmp_path, "method.levels=2", "method.scope=global", "method.layer_rates=[last:0]")
    masks = _round_masks(tmp_path)
    pooled = ["1.weight", "3.weight"]
    for earlier, later in zip(masks, masks[1:]):
        active = sum(int(earlier[name].sum()) for name in pooled)
        assert sum(int(later[name].sum()) for name in pooled) == active - drop_count(active, 0.2, "floor")
        assert torch.equal(later["5.weight"], earlier["5.weight"])  # rate 0: never pruned


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_dense_layers_stay_dense_through_every_level(compose_config, tmp_path, scope):
    _run(compose_config, tmp_path, "method.levels=2", f"method.scope={scope}", "method.dense_layers=[last]")
    masks = _round_masks(tmp_path)
    assert len(masks) == 3 and all(bool(mask["5.weight"].all()) for mask in masks)
    assert int(masks[-1]["3.weight"].sum()) < masks[-1]["3.weight"].numel()


def test_a_fixed_density_is_refused_in_one_line(compose_config, tmp_path):
    with pytest.raises(ConfigError, match=r"^method=lth prunes every layer by a rate per level, so it cannot hold "
                                          r"5\.weight at the fixed density 0\.5; .* method\.layer_rates=\[5\.weight:0\.1\]$"):
        _run(compose_config, tmp_path, "method.layer_density=[last:0.5]")


def test_survivors_are_rewound_exactly_to_theta_k(compose_config, tmp_path, monkeypatch):
    seen = {}

    class Watched(methods.METHODS["lth"]):
        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            if self.round == 0 and step + 1 == 7:
                seen["theta_k"] = {k: v.clone() for k, v in self.ctx.model.state_dict().items()}

        def start_round(self, round_index):
            super().start_round(round_index)
            if round_index == 1:
                seen["start"] = {k: v.clone() for k, v in self.ctx.model.state_dict().items()}
                seen["masks"] = {k: v.clone() for k, v in self.maskset.masks.items()}

    monkeypatch.setitem(methods.METHODS, "lth", Watched)
    _run(compose_config, tmp_path, "method.levels=1", "method.rewind_to=7it", "schedule=cosine")
    for name, value in seen["theta_k"].items():
        expected = value * seen["masks"][name] if name in seen["masks"] else value
        assert torch.equal(seen["start"][name], expected), name
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    round1 = [e for e in events if e["round"] == 1 and e["event"] == "eval"]
    assert round1[0]["step"] == 10  # training resumed at step 7; the first evaluation at step 10


def test_controls_keep_the_levels_densities(compose_config, tmp_path):
    _run(compose_config, tmp_path / "ticket", "method.levels=2")
    source = _round_masks(tmp_path / "ticket")
    for control in ("random_reinit", "random_mask"):
        summary = _run(compose_config, tmp_path / control, f"method.control={control}",
                       f"method.masks_from={tmp_path / 'ticket'}")
        assert len(summary["rounds"]) == 3
        for level, (mine, theirs) in enumerate(zip(_round_masks(tmp_path / control), source)):
            for name in theirs:
                assert int(mine[name].sum()) == int(theirs[name].sum())
                assert torch.equal(mine[name], theirs[name]) == (control == "random_reinit" or level == 0), name


def test_resume_in_the_middle_of_round_two_gives_the_same_table(compose_config, tmp_path, monkeypatch):
    overrides = ("method.levels=3", "checkpoint_every=4it", "resume=auto", "method.rewind_to=5it")
    _run(compose_config, tmp_path / "reference", *overrides)

    class Crashing(methods.METHODS["lth"]):
        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            if self.round == 2 and step == 17 and not getattr(self, "resumed", False):
                raise KeyboardInterrupt

        def load_state_dict(self, state):
            self.resumed = True
            super().load_state_dict(state)

    monkeypatch.setitem(methods.METHODS, "lth", Crashing)
    with pytest.raises(KeyboardInterrupt):
        _run(compose_config, tmp_path / "crashed", *overrides)
    position = torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)["position"]
    assert position["round"] == 2 and position["step"] == 16  # the last checkpoint before the crash
    _run(compose_config, tmp_path / "crashed", *overrides)
    assert (tmp_path / "crashed" / "lottery.csv").read_text() == (tmp_path / "reference" / "lottery.csv").read_text()


def test_bad_lth_options(compose_config):
    with pytest.raises(ValueError, match=r"^sparsity=0\.5 and method\.levels=3 both set the last level"):
        build_method(compose_config("method=lth", "sparsity=0.5", "method.levels=3").method, 0.5)
    with pytest.raises(ValueError, match="method.masks_from"):
        build_method(compose_config("method=lth", "method.control=random_reinit").method, 0.0)


def test_controls_train_from_the_ticket_runs_rewind_point(compose_config, tmp_path, monkeypatch):
    """OpenLTH's branches: each pruned level of a control trains from the ticket run's start step k, and
    random_mask starts from that run's theta_k (random_reinit from a fresh initialisation)."""
    _run(compose_config, tmp_path / "ticket", "method.levels=1", "method.rewind_to=7it")
    theta_k = torch.load(tmp_path / "ticket" / "checkpoints" / "last.pt", weights_only=True)["method"]["theta_k"]
    seen = {}

    class Probe(methods.METHODS["lth"]):
        def start_round(self, round_index):
            super().start_round(round_index)
            seen[(self.cfg.control, round_index)] = {
                "weights": {n: p.detach().clone() for n, p in self.ctx.model.named_parameters()},
                "masks": {n: m.clone() for n, m in self.maskset.masks.items()}}

        def before_optimizer_step(self, step):
            seen.setdefault((self.cfg.control, self.round, "first_step"), step)
            return super().before_optimizer_step(step)

    monkeypatch.setitem(methods.METHODS, "lth", Probe)
    for control in ("random_reinit", "random_mask"):
        _run(compose_config, tmp_path / control, "method.levels=1", "method.rewind_to=7it",
             f"method.control={control}", f"method.masks_from={tmp_path / 'ticket'}")
        assert seen[(control, 0, "first_step")] == 0 and seen[(control, 1, "first_step")] == 7
        start = seen[(control, 1)]
        for name, mask in start["masks"].items():
            expected = theta_k[name] * mask
            assert torch.equal(start["weights"][name], expected) == (control == "random_mask"), (control, name)
        assert torch.equal(start["weights"]["1.bias"], theta_k["1.bias"]) == (control == "random_mask")


def test_a_control_trained_differently_from_its_ticket_run_is_refused(compose_config, tmp_path):
    _run(compose_config, tmp_path / "ticket", "method.levels=1")
    with pytest.raises(ConfigError, match=r"trained differently: optimizer.lr=0.05 \(ticket run: 0.1\), steps=40"):
        _run(compose_config, tmp_path / "control", "method.levels=1", "method.control=random_reinit",
             f"method.masks_from={tmp_path / 'ticket'}", "steps=40", "optimizer.lr=0.05")
    assert not (tmp_path / "control" / "checkpoints").exists()
    # from the command line: one line, exit 2, nothing written (refused before Hydra creates the run directory)
    result = run_cli(*BASE, "method.levels=1", "method.control=random_mask", f"method.masks_from={tmp_path / 'ticket'}",
                     "batch_size=32", f"hydra.run.dir={tmp_path / 'cli'}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: method.masks_from='{tmp_path / 'ticket'}' was trained differently: batch_size=32 (ticket run: 64); "
        "a control trains as its ticket run, e.g. batch_size=64"]
    assert not (tmp_path / "cli").exists()


def test_a_sparsity_sets_the_levels_to_reach_it(compose_config, tmp_path):
    """``method=lth sparsity=0.5`` prunes 20 % a level until half the weights are gone: 4 levels (59 % remaining
    after 3, 41 % after 4, floor counts per layer)."""
    summary = _run(compose_config, tmp_path, "sparsity=0.5")
    masks = _round_masks(tmp_path)
    assert len(masks) == 5 and len(summary["rounds"]) == 5
    remaining = [sum(int(m.sum()) for m in level.values()) / sum(m.numel() for m in level.values()) for level in masks]
    assert remaining[3] > 0.5 >= remaining[4]
