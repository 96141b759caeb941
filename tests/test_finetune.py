"""L0-close fine-tuning: ``finetune.trainable`` freezes what it does not name, the drift report measures how far
every tensor moved from its starting weights, and ``finetune.rank_from`` trains the layers that moved most."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from conftest import crash_and_resume
from sparsetrain.training.optimizer import build_optimizer
from sparsetrain.runner.run import run

BASE = ["steps=12", "device=cpu", "checkpoint_every=0", "eval_every=0", "log_every=0"]
NAMES = ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]  # lenet300_100 on 8x8 digits


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished dense run: the pretrained weights the fine-tuning runs start from."""
    from hydra import compose, initialize_config_module

    run_dir = tmp_path_factory.mktemp("source")
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=BASE)
    run(cfg, run_dir, BASE)
    return run_dir


def _model(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_the_optimizer_holds_exactly_the_selection_and_the_rest_is_frozen(compose_config):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    chosen = ["1.weight", "1.bias", "2.weight"]
    for exempt, groups in ((False, [chosen]), (True, [["2.weight"], ["1.weight", "1.bias"]])):
        cfg = compose_config("optimizer=sgd", f"optimizer.exempt_bias_norm={exempt}").optimizer
        optimizer = build_optimizer(cfg, model, chosen)
        names = {id(p): name for name, p in model.named_parameters()}
        assert [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups] == groups
        assert [name for name, p in model.named_parameters() if p.requires_grad] == chosen
        if exempt:
            assert optimizer.param_groups[1]["weight_decay"] == 0.0 < optimizer.param_groups[0]["weight_decay"]
    assert build_optimizer(cfg, model, []).param_groups[0]["params"] == []  # only a method's own group trains


def test_frozen_tensors_stay_bit_identical_and_drift_matches_a_hand_computation(source, compose_config, tmp_path,
                                                                                  caplog):
    overrides = [*BASE, f"init_from={source}", "finetune.trainable=[head,'re:^1\\.']", "seed=1"]
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        summary = run(compose_config(*overrides), tmp_path, overrides)
    before, after = _model(source), _model(tmp_path)
    trained = ["1.weight", "1.bias", "5.weight", "5.bias"]
    assert all(torch.equal(before[k], after[k]) == (k not in trained) for k in NAMES)
    assert summary["finetune"]["trainable"] == trained
    assert summary["finetune"]["frozen_parameters"] == after["3.weight"].numel() + after["3.bias"].numel()

    start = torch.load(tmp_path / "checkpoints" / "start.pt", weights_only=True)
    assert all(torch.equal(start[k], before[k]) for k in NAMES)  # the start is the init_from weights
    rows = {row["name"]: row for row in summary["drift"]}
    for name in NAMES:
        delta = (after[name].double() - start[name].double()).numpy()
        assert rows[name]["relative_l2"] == pytest.approx(
            (delta ** 2).sum() ** 0.5 / (start[name].double().numpy() ** 2).sum() ** 0.5, rel=1e-9)
        assert rows[name]["changed_fraction"] == (delta != 0).mean()
        assert rows[name]["trainable"] == (name in trained)
    relative = [row["relative_l2"] for row in summary["drift"]]
    assert relative == sorted(relative, reverse=True) and rows["3.weight"]["relative_l2"] == 0.0
    assert json.loads((tmp_path / "summary.json").read_text())["drift"] == summary["drift"]
    assert "distance from the starting weights" in caplog.text and "3.weight" in caplog.text.split("distance")[-1]


def test_the_captured_step_trains_a_selection_like_the_eager_step(source, compose_config, tmp_path):
    overrides = [*BASE, f"init_from={source}", "finetune.trainable=[head]", "optimizer=adamw", "finetune.drift=false"]
    for path in ("on", "off"):  # on: the recorded graph off CUDA (frozen weights get no gradient at all)
        run(compose_config(*overrides, f"step_graph={path}"), tmp_path / path, overrides)
    graph, eager = _model(tmp_path / "on"), _model(tmp_path / "off")
    assert all(torch.equal(graph[k], eager[k]) for k in NAMES)
    assert not torch.equal(graph["5.weight"], _model(source)["5.weight"])
    assert not (tmp_path / "on" / "checkpoints" / "start.pt").exists()  # finetune.drift=false writes no start


def test_the_drift_report_survives_a_crash_and_resume(source, compose_config, tmp_path, monkeypatch):
    overrides = ["steps=12", "device=cpu", "checkpoint_every=4it", "eval_every=0", "log_every=0", "resume=auto",
                 f"init_from={source}", "finetune.trainable=[head]", "method=static", "sparsity=0.5"]
    crash_and_resume(compose_config, tmp_path, monkeypatch, "static", overrides, crash_after=6)
    reference, resumed = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("reference", "crashed"))
    assert resumed["drift"] == reference["drift"] and reference["drift"][0]["relative_l2"] > 0


def _write_drift_table(run_dir, relative: dict[str, float], shapes: dict[str, list[int]]) -> None:
    run_dir.mkdir()
    rows = [{"name": name, "shape": shapes[name], "numel": 1, "relative_l2": value, "l2": value,
             "changed_fraction": 1.0, "trainable": True} for name, value in relative.items()]
    (run_dir / "summary.json").write_text(json.dumps({"drift": rows}))


def test_rank_from_trains_the_layers_that_moved_most_plus_the_head(source, compose_config, tmp_path):
    shapes = {name: list(t.shape) for name, t in _model(source).items()}
    ranking = tmp_path / "ranking"  # only weight tensors are ranked, and the head (trained anyway) is not
    _write_drift_table(ranking, {"1.bias": 9.0, "3.bias": 8.0, "5.weight": 0.9, "1.weight": 0.2, "3.weight": 0.5,
                                 "5.bias": 0.3}, shapes)
    for top, ranked, trained in ((1, ["3.weight"], ["3.weight", "3.bias", "5.weight", "5.bias"]),
                                 (2, ["3.weight", "1.weight"], NAMES)):
        overrides = [*BASE, f"init_from={source}", "finetune.trainable=[head]", f"finetune.rank_from={ranking}",
                     f"finetune.top_layers={top}"]
        summary = run(compose_config(*overrides), tmp_path / f"top{top}", overrides)
        assert summary["finetune"]["ranked"] == ranked and summary["finetune"]["trainable"] == trained
        after = _model(tmp_path / f"top{top}")
        assert all(torch.equal(_model(source)[k], after[k]) == (k not in trained) for k in NAMES)


@pytest.mark.parametrize("args, key", [
    (["finetune.trainable=[fc9.*]"], "finetune.trainable"),
    (["finetune.top_layers=-1"], "finetune.top_layers"),
    (["finetune.top_layers=2"], "finetune.rank_from"),
    (["finetune.trainable=[head]", "finetune.rank_from=NODRIFT", "finetune.top_layers=1"], "finetune.rank_from"),
    (["finetune.trainable=[head]", "finetune.rank_from=OTHER", "finetune.top_layers=1"], "finetune.rank_from"),
    (["finetune.trainable=[head]", "finetune.rank_from=OTHER9", "finetune.top_layers=9"], "finetune.top_layers"),
    (["finetune.rank_from=OTHER9", "finetune.top_layers=1"], "finetune.trainable"),
    (["finetune.drift=sometimes"], "finetune.drift"),
    (["method=rigl", "sparsity=0.5", "finetune.trainable=[head]"], "finetune.trainable"),
])
def test_bad_finetune_inputs_are_one_line_and_write_nothing(args, key, tmp_path, cli_in_process):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "NODRIFT").mkdir()
    (inputs / "NODRIFT" / "summary.json").write_text(json.dumps({"final": {}}))
    _write_drift_table(inputs / "OTHER", {"fc.weight": 1.0}, {"fc.weight": [3, 3]})
    _write_drift_table(inputs / "OTHER9", dict.fromkeys(NAMES, 1.0), {"1.weight": [300, 64], "3.weight": [100, 300],
                       "5.weight": [10, 100], "1.bias": [300], "3.bias": [100], "5.bias": [10]})
    args = [arg.replace("=NODRIFT", f"={inputs / 'NODRIFT'}").replace("=OTHER", f"={inputs / 'OTHER'}") for arg in args]
    run_dir = tmp_path / "run"
    status, out, err = cli_in_process(tmp_path, *BASE, *args, f"hydra.run.dir={run_dir}")
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in out + err, err
    assert key in err and "e.g. " in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]
