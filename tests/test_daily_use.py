"""Daily use: running feedback, threads, loggers (CSV, TensorBoard, W&B offline) and what summary.json records."""

from __future__ import annotations

import csv
import json
import logging
import re
import struct
import subprocess
from pathlib import Path

import pytest
import torch

from sparsetrain.provenance import provenance
from sparsetrain.runner.process import cpu_threads
from sparsetrain.runner.run import run

STEPS_PER_EPOCH = 1437 // 64  # digits train split, drop_last


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _run(compose_config, run_dir, *overrides):
    args = ["method=rigl", "sparsity=0.9", "epochs=2", "device=cpu", *overrides]
    return run(compose_config(*args), run_dir, args)


def test_running_loss_is_logged_every_log_every_steps(compose_config, tmp_path, caplog):
    """Without a terminal: a log line and a train_step event every log_every steps; two windows that split an epoch
    average to the epoch's train loss; the epoch line carries the train loss and the epoch time."""
    half = STEPS_PER_EPOCH // 2
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        _run(compose_config, tmp_path, f"log_every={half}it")
    events = _events(tmp_path)
    steps = [e for e in events if e["event"] == "train_step"]
    assert [e["step"] for e in steps] == list(range(half, 2 * STEPS_PER_EPOCH + 1, half))
    epochs = [e for e in events if e["event"] == "train"]
    for epoch, (first, second) in enumerate(zip(steps[::2], steps[1::2])):
        assert (first["loss"] + second["loss"]) / 2 == pytest.approx(epochs[epoch]["loss"], rel=1e-5)
        assert second["lr"] == epochs[epoch]["lr"]
    assert all(e["sparsity"] == pytest.approx(0.9, abs=1e-3) for e in steps)
    lines = [r.getMessage() for r in caplog.records if re.search(r"step \d+/\d+: loss", r.getMessage())]
    assert [int(re.search(r"step (\d+)/", line).group(1)) for line in lines] == [e["step"] for e in steps]
    pattern = r"loss \d+\.\d{4} lr \S+ sparsity 0\.9\d{3}, [\d.]+ steps/s \(\d+ samples/s\), ETA \d+:\d\d$"
    assert all(re.search(pattern, line) for line in lines), lines
    epoch_lines = [r.getMessage() for r in caplog.records if "epoch time" in r.getMessage()]
    assert len(epoch_lines) == 2 and f"train loss {epochs[0]['loss']:.4f}" in epoch_lines[0]


def test_the_density_table_is_printed_and_logged_at_the_end(compose_config, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        summary = _run(compose_config, tmp_path, "method=gmp", "method.end=50%")
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("masks at the end of round 0")]
    assert len(ends) == 1 and "sparsity 0.9000 over all masked layers" in ends[0]
    (start, end) = [e for e in _events(tmp_path) if e["event"] == "density"]
    assert start["when"] == "start" and start["sparsity"] == 0.0
    assert end["when"] == "end" and end["sparsity"] == pytest.approx(summary["masks"]["sparsity"])
    assert {name: end[name] for name in summary["masks"]["layers"]} == {
        name: layer["density"] for name, layer in summary["masks"]["layers"].items()}


def test_threads(compose_config, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        assert _run(compose_config, tmp_path, "threads=2", "steps=2")["threads"] == 2
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == len(__import__("os").sched_getaffinity(0))


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One run with every logger (W&B offline: no network)."""
    from hydra import compose, initialize_config_module

    run_dir = tmp_path_factory.mktemp("loggers")
    args = ["method=rigl", "sparsity=0.9", "epochs=2", "device=cpu", "log_every=10it",
            "logger=[jsonl,csv,tensorboard,wandb]", "wandb.mode=offline"]
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=args)
    summary = run(cfg, run_dir, args)
    return run_dir, summary


def test_csv_logger_holds_every_event(logged_run):
    run_dir, _ = logged_run
    events = _events(run_dir)
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["event"], int(r["step"])) for r in rows] == [(e["event"], e["step"]) for e in events]
    for row, event in zip(rows, events):
        for key in ("loss", "top1", "sparsity", "drop_fraction"):
            if key in event:
                assert float(row[key]) == pytest.approx(event[key], rel=1e-12)


def test_tensorboard_gains_step_loss_densities_and_hparams(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, summary = logged_run
    tb = EventAccumulator(str(run_dir / "tb")).Reload()
    tags = set(tb.Tags()["scalars"])
    layers = set(summary["masks"]["layers"])
    assert {"train_step/loss", "train_step/lr", "train_step/sparsity"} | {f"density/{n}" for n in layers} <= tags
    steps = [e["step"] for e in _events(run_dir) if e["event"] == "train_step"]
    assert [s.step for s in tb.Scalars("train_step/loss")] == steps
    assert [s.value for s in tb.Scalars("hparam/test.top1")] == [pytest.approx(summary["final"]["test"]["top1"])]
    hparams = tb.PluginTagToContent("hparams")
    assert b"sparsity" in hparams["_hparams_/session_start_info"] and b"method.name" in hparams[
        "_hparams_/session_start_info"]


def _wandb_records(run_dir: Path) -> list:
    """The records of the offline run's .wandb file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    raw, pos, pending, records, block = path.read_bytes(), 7, b"", [], 32768
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def test_wandb_offline_run_holds_scalars_config_and_summary(logged_run):
    run_dir, summary = logged_run
    records = _wandb_records(run_dir)
    history: dict[int, dict] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = _items(record.history.item)
            history.setdefault(int(items["_step"]), {}).update(items)
    for event in _events(run_dir):
        if event["event"] == "train_step":
            assert history[event["step"]]["train_step/loss"] == pytest.approx(event["loss"])
    layer = next(iter(summary["masks"]["layers"]))
    assert history[summary["steps"]][f"density/{layer}"] == summary["masks"]["layers"][layer]["density"]
    final = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            final.update(_items(record.summary.update))
    assert final["final.test.top1"] == summary["final"]["test"]["top1"]
    assert final["method"] == "rigl" and final["sparsetrain"] == summary["sparsetrain"]
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = _items(run_record.config.update)
    assert config["sparsity"] == 0.9 and config["method"]["name"] == "rigl"


def test_summary_records_versions_and_the_git_commit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "git_commit" not in provenance() and provenance()["torch"] == torch.__version__
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = provenance()
    assert record["git_commit"] == head and record["git_dirty"] is False and record["sparsetrain"]
    (tmp_path / "a.txt").write_text("b")
    assert provenance()["git_dirty"] is True


@pytest.mark.parametrize("val_size, split", [(0, "test"), (200, "val")])
def test_best_checkpoint_is_the_best_evaluation_and_kept_checkpoints_match(val_size, split, compose_config,
                                                                          tmp_path):
    summary = _run(compose_config, tmp_path, "eval_every=4it", "keep_checkpoint_every=4it",
                   f"dataset.val_size={val_size}")
    evals = [e for e in _events(tmp_path) if e["event"] == "eval" and e["split"] == split]
    top = max(e["top1"] for e in evals)
    first_top = next(e for e in evals if e["top1"] == top)
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert (best["split"], best["metric"], best["value"], best["step"]) == (split, "top1", top, first_top["step"])
    assert summary["best_checkpoint"]["step"] == first_top["step"]
    if split == "val":  # the test split as the best checkpoint scores it: the test evaluation of that step
        test_then = next(e for e in _events(tmp_path) if e["event"] == "eval" and e["split"] == "test"
                         and e["step"] == first_top["step"])
        assert summary["best_checkpoint"]["test"]["top1"] == test_then["top1"]
    else:
        assert "test" not in summary["best_checkpoint"]
    assert set(best["masks"]) == set(summary["masks"]["layers"])
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert kept == [f"step_{s:07d}.pt" for s in range(4, summary["steps"], 4)]  # the end is last.pt
    if first_top["step"] % 4 == 0:  # the weights of the kept checkpoint at that step (or of the end)
        name = f"step_{first_top['step']:07d}.pt" if first_top["step"] < summary["steps"] else "last.pt"
        same_step = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert all(torch.equal(best["model"][k], same_step["model"][k]) for k in best["model"])


def test_a_sparse_method_at_sparsity_zero_is_refused_and_dense_shares_a_sparsity_sweep(compose_config, tmp_path,
                                                                                        caplog):
    from sparsetrain.compose.command_line import preflight
    from sparsetrain.errors import ConfigError

    for method in ("rigl", "gmp", "snip", "static"):
        with pytest.raises(ConfigError, match=rf"^sparsity=0\.0 with method={method} would train a dense model"):
            preflight([f"method={method}", "sparsity=0"], multirun=False)
    preflight(["method=lth", "sparsity=0", "method.levels=1"], multirun=False)  # its sparsity comes from its levels
    preflight(["method=dense,rigl", "sparsity=0.5,0.9"], multirun=True)  # every job of the sweep composes
    with caplog.at_level(logging.WARNING, logger="sparsetrain"):
        summary = run(compose_config("method=dense", "sparsity=0.9", "steps=2"), tmp_path, ["sparsity=0.9"])
    assert summary["sparsity"] == 0.0 and "masks" not in summary
    assert any("method=dense ignores sparsity=0.9" in r.getMessage() for r in caplog.records)


def test_on_a_terminal_the_bar_shows_loss_lr_and_sparsity(compose_config, tmp_path, monkeypatch, caplog):
    from sparsetrain.training import trainer as trainer_module

    postfixes = []
    monkeypatch.setattr(trainer_module.sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(trainer_module.tqdm, "set_postfix", lambda self, **values: postfixes.append(values))
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        _run(compose_config, tmp_path, "log_every=10it")
    steps = [e for e in _events(tmp_path) if e["event"] == "train_step"]
    assert [p["loss"] for p in postfixes] == [f"{e['loss']:.4f}" for e in steps]
    assert all(p["sparsity"].startswith("0.9") and p["lr"] for p in postfixes)
    assert not [r for r in caplog.records if "steps/s" in r.getMessage()]  # the bar, not log lines


def test_log_every_in_epochs_is_refused(compose_config):
    from sparsetrain.compose.checks import validate
    from sparsetrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^log_every='1ep' must be in steps"):
        validate(compose_config("log_every=1ep"))
    validate(compose_config("log_every=0"))


def test_a_logger_without_its_package_is_refused_before_the_run(compose_config, monkeypatch):
    import importlib.util

    from sparsetrain.compose.checks import validate
    from sparsetrain.errors import ConfigError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"wandb needs the wandb package \(pip install \"sparsetrain\[wandb\]\"\)"):
        validate(compose_config("logger=[jsonl,wandb]"))
    validate(compose_config("logger=[jsonl,csv,tensorboard]"))


def test_milestones_past_the_end_of_the_run_are_one_warning(compose_config, tmp_path, caplog):
    """multistep's default milestones (epochs 50 and 75) in a 2-epoch run: the rate would never decay."""
    with caplog.at_level(logging.WARNING, logger="sparsetrain"):
        run(compose_config("schedule=multistep", "epochs=2", "device=cpu"), tmp_path / "late", [])
        run(compose_config("schedule=multistep", "schedule.milestones=[1]", "epochs=2", "device=cpu"),
            tmp_path / "in_time", [])
    warnings = [r.getMessage() for r in caplog.records if "milestones" in r.getMessage()]
    assert warnings == ["schedule.milestones=[50.0, 75.0]: [50.0, 75.0] lie past the run's 2 epochs, where the "
                        "learning rate never gets; e.g. schedule.milestones=[1,1.5]"]


def test_a_sparsity_that_leaves_layers_almost_empty_is_one_warning(compose_config, tmp_path, caplog):
    """sparsity=0.9999999 on LeNet-300-100 (ERK): 2, 2 and 1 active weights; 0.99 leaves every layer enough."""
    with caplog.at_level(logging.WARNING, logger="sparsetrain"):
        run(compose_config("method=static", "sparsity=0.9999999", "epochs=1", "device=cpu"), tmp_path / "empty", [])
        run(compose_config("method=static", "sparsity=0.99", "epochs=1", "device=cpu"), tmp_path / "enough", [])
    warnings = [r.getMessage() for r in caplog.records if "active weights" in r.getMessage()]
    assert warnings == ["sparsity=0.9999999 leaves fewer than 10 active weights in 1.weight 2 of 19200, 3.weight 2 of "
                        "30000, 5.weight 1 of 1000; e.g. sparsity=0.995"]


def test_resume_auto_without_a_checkpoint_says_it_starts_a_new_run(compose_config, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        run(compose_config("resume=auto", "epochs=1", "device=cpu"), tmp_path, ["resume=auto"])
    assert f"resume=auto: {tmp_path} holds no checkpoint yet, so this starts a new run" in caplog.messages

