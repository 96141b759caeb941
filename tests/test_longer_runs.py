"""Runs users expect to continue: a finished run extended to more epochs, early stopping, a limit on kept checkpoints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import events_without_time
from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.runner.extend import refuse_unextendable
from sparsetrain.runner.run import run

STEPS_PER_EPOCH = (1437 - 200) // 64  # digits train split less dataset.val_size=200, drop_last
# dropout draws from the global RNG and the validation split feeds "best": both must continue exactly
RUN = ["model=lenet300_100", "model.dropout=0.2", "dataset.val_size=200", "schedule=multistep",
       "schedule.milestones=[2.5]", "device=cpu", "log_every=10it"]


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def _summary(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("run_dir", "wall_time_s", "extended"):
        summary.pop(key, None)
    return summary


@pytest.mark.parametrize("method", [["method=dense"], ["method=static", "sparsity=0.8"]])
def test_a_run_extended_from_two_to_three_epochs_is_the_run_of_three(cli_in_process, tmp_path, method):
    three, two = tmp_path / "three", tmp_path / "two"
    for run_dir, epochs in ((three, 3), (two, 2)):
        assert cli_in_process(tmp_path, *RUN, *method, f"epochs={epochs}", f"hydra.run.dir={run_dir}")[0] == 0
    status, _, err = cli_in_process(tmp_path, f"resume={two}", "epochs=3")
    assert status == 0, err
    expected, actual = _state(three), _state(two)
    for part in (("model",), ("optimizer", "state"), ("method",), ("rng", 0, "torch")):
        a, b = actual, expected
        for key in part:
            a, b = a[key], b[key]
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # bit for bit
    assert expected["position"] == actual["position"] and actual["finished"]
    assert events_without_time(two) == events_without_time(three)
    assert _summary(two) == _summary(three)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["extended"] == [{"at_step": 2 * STEPS_PER_EPOCH, "steps": 3 * STEPS_PER_EPOCH}]
    assert summary["epochs"] == 3 and yaml.safe_load((two / "run.yaml").read_text())["config"]["epochs"] == 3


def test_a_schedule_tied_to_the_length_is_refused_in_one_line_naming_the_key(cli_in_process, tmp_path):
    run_dir = tmp_path / "cosine"
    assert cli_in_process(tmp_path, "schedule=cosine", "steps=3", "device=cpu", f"hydra.run.dir={run_dir}")[0] == 0
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file() and path.suffix != ".log"}
    status, out, err = cli_in_process(tmp_path, f"resume={run_dir}", "steps=6")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "steps=6: this run cannot be extended, schedule=cosine" in err and "init_from" in err
    assert {path: path.read_bytes() for path in before} == before  # nothing written


@pytest.mark.parametrize("overrides, key", [
    (["method=gmp"], "method.end=75%"),
    (["method=rigl"], "method.t_end=0.75"),
    (["method=acdc"], "method.final_epochs"),
    (["method=lth"], "method.levels"),
    (["method=oneshot"], "method.pretrained=null"),
    (["schedule=linear"], "schedule=linear"),
])
def test_each_part_names_what_ties_it_to_the_length(compose_config, overrides, key):
    with pytest.raises(ConfigError, match=f"epochs=20: this run cannot be extended, {key}"):
        refuse_unextendable(compose_config("schedule=constant", *overrides))


def test_length_independent_parts_may_be_extended(compose_config):
    for overrides in (["method=gmp", "method.end=2ep"], ["method=snip", "schedule=multistep"], ["method=static"]):
        refuse_unextendable(compose_config("schedule=constant", *overrides))


def test_a_shorter_length_is_refused(compose_config, tmp_path):
    overrides = [*RUN, "method=dense", "epochs=2", "eval_every=0"]  # val_size=200 in RUN
    run(compose_config(*overrides), tmp_path, overrides)
    with pytest.raises(ConfigError, match=f"epochs=1 is {STEPS_PER_EPOCH} steps, and the run has done "):
        run(compose_config(*overrides, "epochs=1", "resume=auto"), tmp_path, overrides)


def test_early_stop_waits_for_the_method_then_ends_the_run_normally(compose_config, tmp_path, caplog):
    """GMP's pruning ends at epoch 2: the evaluation of epoch 1 is not watched; no change is an improvement of 1."""
    overrides = ["method=gmp", "sparsity=0.5", "method.end=2ep", "epochs=5", "schedule=constant", "device=cpu",
                 "dataset.val_size=200",
                 "early_stop.patience=2", "early_stop.min_delta=1", "resume=auto"]
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        summary = run(compose_config(*overrides), tmp_path, overrides)
    stop = 4 * STEPS_PER_EPOCH  # watched from epoch 2, then two evaluations without improvement
    assert summary["stopped_early"]["step"] == stop and "early_stop.patience=2" in summary["stopped_early"]["reason"]
    assert [r.getMessage() for r in caplog.records if "stopped early" in r.getMessage()] == [
        f"stopped early at step {stop}: {summary['stopped_early']['reason']}"]
    events = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert events["step"] == stop and summary["masks"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    last_eval = [e for e in events_without_time(tmp_path) if e["event"] == "eval" and e["split"] == "test"][-1]
    assert summary["final"]["test"] == {k: v for k, v in last_eval.items() if k not in ("event", "split", "round",
                                                                                        "epoch", "step")}
    assert _state(tmp_path)["finished"] and max(e["step"] for e in events_without_time(tmp_path)) == stop
    metrics = (tmp_path / "metrics.jsonl").read_text()
    assert run(compose_config(*overrides), tmp_path, overrides)["stopped_early"] == summary["stopped_early"]
    assert (tmp_path / "metrics.jsonl").read_text() == metrics  # a resume does not train again
    with pytest.raises(ConfigError, match="stopped early"):
        run(compose_config(*overrides, "epochs=6"), tmp_path, overrides)


def test_early_stop_mid_epoch_watches_the_test_split_without_validation(compose_config, tmp_path):
    overrides = ["method=dense", "epochs=2", "device=cpu", "eval_every=5it", "early_stop.patience=2",
                 "early_stop.min_delta=1"]
    summary = run(compose_config(*overrides), tmp_path, overrides)
    assert summary["stopped_early"]["step"] == 15 and "test top1" in summary["stopped_early"]["reason"]
    assert [e["event"] for e in events_without_time(tmp_path) if e["step"] == 15][-2:] == ["eval", "train"]


def test_only_the_newest_kept_checkpoints_stay(compose_config, tmp_path):
    overrides = ["method=dense", "epochs=1", "device=cpu", "keep_checkpoint_every=5it", "keep_checkpoints=2"]
    run(compose_config(*overrides), tmp_path, overrides)
    names = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step_0000015.pt", "step_0000020.pt"]


@pytest.mark.parametrize("override, message", [
    ("keep_checkpoints=0", "keep_checkpoints=0 must be a positive number or null"),
    ("early_stop.patience=-1", "early_stop.patience=-1 must be >= 0"),
    ("early_stop.min_delta=-0.1", "early_stop.min_delta=-0.1 must be >= 0"),
])
def test_bad_values_are_refused(compose_config, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(override))
