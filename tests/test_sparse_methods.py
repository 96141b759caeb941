"""Property tests: for every masked method, with SGD (momentum, weight decay) and Adam, after every optimizer
step the zeros per layer are exactly the target, and pruned weights, gradients and optimizer state are 0."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import crash_and_resume
from sparsetrain import methods
from sparsetrain.sparsity.distribution import exact_zeros
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.sparsity.schedules import cubic_sparsity
from sparsetrain.runner.run import run

SPARSITY = 0.8
METHODS = {
    "static": [],
    "static_uniform_dense_first": ["method=static", "method.distribution=uniform", "method.dense_layers=[first]"],
    "gmp": ["method=gmp", "method.start=0ep", "method.end=100%", "method.frequency=5it",
            "method.initial_sparsity=0.2"],
    "gmp_global": ["method=gmp", "method.scope=global", "method.frequency=7it", "method.end=80%"],
    "oneshot": ["method=oneshot", "epochs=1"],
    "oneshot_rewind_layerwise": ["method=oneshot", "epochs=1", "method.retrain_lr=rewind", "method.scope=layerwise"],
    "snip": ["method=snip"],
    "grasp": ["method=grasp"],
    "synflow": ["method=synflow", "method.iterations=10"],
}
OPTIMIZERS = {
    "sgd": ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-3", "optimizer.nesterov=true"],
    "adam": ["optimizer=adam", "optimizer.lr=3e-3", "optimizer.weight_decay=1e-3"],
    "adamw": ["optimizer=adamw", "optimizer.lr=3e-3", "optimizer.weight_decay=0.05"],
}


def expected_sparsity(method, steps_done: int) -> float:
    if method.name == "gmp":
        if steps_done < method.schedule["start"]:
            return 0.0 if method.cfg.initial_sparsity == 0 else method.cfg.initial_sparsity
        return cubic_sparsity(steps_done, **method.schedule)
    if method.name == "oneshot" and method.ctx is not None and method._round == 0:
        return 0.0
    return method.sparsity


def check_invariants(method, steps_done: int) -> None:
    target = expected_sparsity(method, steps_done)
    masks, params = method.masks(), method.targets.params
    zeros = {name: int((~mask).sum()) for name, mask in masks.items()}
    if getattr(method.cfg, "scope", "layerwise") == "layerwise" or target == 0.0:
        assert zeros == method.layer_zeros(target), f"step {steps_done}"
    else:
        budgeted = method.targets.budgeted
        total = sum(params[name].numel() for name in budgeted)
        assert sum(zeros[name] for name in budgeted) == exact_zeros(total, 1.0 - target)
    state = method.ctx.optimizer.state
    for name, mask in masks.items():
        param = params[name]
        assert torch.all(param[~mask] == 0), name
        if param.grad is not None:
            assert torch.all(param.grad[~mask] == 0), name
        for key, value in state.get(param, {}).items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                assert torch.all(value[~mask] == 0), (name, key)


def checked(cls):
    """``cls`` with the invariants asserted after every optimizer step."""

    class Checked(cls):
        steps_checked = 0

        def start_round(self, round_index):
            self._round = round_index
            super().start_round(round_index)

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            check_invariants(self, step + 1)
            Checked.steps_checked += 1

    return Checked


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("variant", METHODS)
def test_masks_are_exact_after_every_step(variant, optimizer, compose_config, tmp_path, monkeypatch):
    overrides = ["method=static", *METHODS[variant], *OPTIMIZERS[optimizer], f"sparsity={SPARSITY}",
                 "epochs=2", "device=cpu", "model=lenet300_100", "checkpoint_every=0"]
    cfg = compose_config(*overrides)
    cls = checked(methods.METHODS[cfg.method.name])
    monkeypatch.setitem(methods.METHODS, cfg.method.name, cls)
    summary = run(cfg, tmp_path, overrides)
    assert cls.steps_checked == summary["steps"] * (2 if cfg.method.name == "oneshot" else 1)
    report = summary["masks"]
    assert report["budget_sparsity"] == pytest.approx(SPARSITY, abs=2e-3)
    saved = load_masks(tmp_path / "masks" / "final.safetensors")
    weights = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name, mask in saved.items():
        assert torch.all(weights[name][~mask] == 0)
        assert report["layers"][name]["density"] == pytest.approx(mask.float().mean().item())


def test_resnet_with_batchnorm_keeps_exact_masks(compose_config, tmp_path, monkeypatch):
    overrides = ["method=gmp", "method.frequency=3it", "model=resnet20", "sparsity=0.7", "steps=12", "device=cpu",
                 "dataset.val_size=0", "optimizer=sgd"]
    cfg = compose_config(*overrides)
    cls = checked(methods.METHODS["gmp"])
    monkeypatch.setitem(methods.METHODS, "gmp", cls)
    summary = run(cfg, tmp_path, overrides)
    names = set(summary["masks"]["layers"])
    assert all(name.endswith(".weight") and "bn" not in name for name in names)
    assert len(names) == 20  # 19 convolutions and the classifier


def test_gmp_pruned_weights_never_revive(compose_config, tmp_path):
    overrides = ["method=gmp", "method.frequency=4it", "method.end=100%", "sparsity=0.9", "epochs=1", "device=cpu"]
    run(compose_config(*overrides), tmp_path, overrides)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    prunes = [e for e in events if e["event"] == "prune"]
    assert [e["step"] for e in prunes] == [0, 4, 8, 12, 16, 20]  # 22 steps: the last event at 20
    assert prunes[-1]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert all(a["sparsity"] <= b["sparsity"] for a, b in zip(prunes, prunes[1:]))


def test_static_mask_from_a_run_reproduces_its_masks(compose_config, tmp_path):
    first = ["method=static", "sparsity=0.9", "epochs=1", "device=cpu", "seed=1"]
    run(compose_config(*first), tmp_path / "a", first)
    second = ["method=static", "sparsity=0.9", "epochs=1", "device=cpu", f"method.mask_from={tmp_path / 'a'}"]
    run(compose_config(*second), tmp_path / "b", second)
    a, b = (load_masks(tmp_path / d / "masks" / "final.safetensors") for d in "ab")
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("method", ["gmp", "oneshot"])
def test_crash_and_resume_is_bit_identical(method, compose_config, tmp_path, monkeypatch):
    """Masks, schedule position and optimizer state survive a crash: the resumed run ends identical."""
    overrides = [f"method={method}", "sparsity=0.9", "epochs=2", "device=cpu", "checkpoint_every=5it",
                 "resume=auto", "model.dropout=0.1"]
    if method == "gmp":
        overrides += ["method.frequency=3it", "method.end=100%"]
    crash_after = 60 if method == "oneshot" else 30  # oneshot: inside the retraining round
    a, b = crash_and_resume(compose_config, tmp_path, monkeypatch, method, overrides, crash_after)
    assert all(torch.equal(a["method"]["masks"][k], b["method"]["masks"][k]) for k in a["method"]["masks"])


def test_oneshot_prunes_a_pretrained_run_in_one_round(compose_config, tmp_path):
    dense = ["epochs=1", "device=cpu"]
    run(compose_config(*dense), tmp_path / "dense", dense)
    overrides = ["method=oneshot", "sparsity=0.8", "epochs=1", "device=cpu", f"method.pretrained={tmp_path / 'dense'}"]
    summary = run(compose_config(*overrides), tmp_path / "pruned", overrides)
    assert "rounds" not in summary and summary["masks"]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    events = [json.loads(line) for line in (tmp_path / "pruned" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "prune"] == [0]
    lrs = {e["lr"] for e in events if e["event"] == "train"}
    assert len(lrs) == 1  # fine-tuning at one constant rate


def test_oneshot_finetuning_shorter_than_an_epoch_runs_at_the_schedules_first_rate(compose_config, tmp_path):
    dense = ["epochs=1", "device=cpu"]
    run(compose_config(*dense), tmp_path / "dense", dense)
    overrides = ["method=oneshot", "sparsity=0.5", "steps=3", "device=cpu", "optimizer.lr=0.05",
                 f"method.pretrained={tmp_path / 'dense'}"]
    run(compose_config(*overrides), tmp_path / "pruned", overrides)
    events = [json.loads(line) for line in (tmp_path / "pruned" / "metrics.jsonl").read_text().splitlines()]
    assert [e["lr"] for e in events if e["event"] == "train"] == [pytest.approx(0.05)]  # cosine at step 0
