"""Gradient clipping (optimizer.clip_grad_norm, optimizer.clip_mode): torch's rule, global or per tensor, on the
captured step without host reads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsetrain.runner.run import run
from sparsetrain.runs.checkpoint import load_checkpoint
from sparsetrain.runs.files import checkpoint_path
from sparsetrain.training.clipping import GradientClipping

BASE = ["device=cpu", "model=lenet300_100", "steps=12", "eval_every=0", "optimizer.lr=0.5"]


def _with_gradients(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    model(torch.randn(5, 8, generator=torch.Generator().manual_seed(1))).pow(2).sum().mul(100).backward()
    return model


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_clipping_is_torchs_rule_bit_for_bit(mode):
    """global: ``clip_grad_norm_`` over every gradient (the HF Trainer); per_tensor: over each tensor (BertAdam)."""
    model, reference = _with_gradients(), _with_gradients()
    GradientClipping(0.5, mode)(torch.optim.SGD(model.parameters(), lr=0.1))
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    else:
        for param in reference.parameters():
            torch.nn.utils.clip_grad_norm_(param, 0.5)
    for param, expected in zip(model.parameters(), reference.parameters()):
        assert torch.equal(param.grad, expected.grad)
    norms = torch.stack([param.grad.norm() for param in model.parameters()])
    assert (norms.norm() if mode == "global" else norms.max()) == pytest.approx(0.5, rel=1e-5)


def test_gradients_under_the_bound_are_left_alone():
    model, reference = _with_gradients(), _with_gradients()
    GradientClipping(1e9, "per_tensor")(torch.optim.SGD(model.parameters(), lr=0.1))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(model.parameters(), reference.parameters()))


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_a_clipped_run_trains_the_same_on_the_captured_step_and_differs_from_an_unclipped_one(compose_config,
                                                                                               tmp_path, mode):
    runs = {}
    for name, extra in {"eager": ["step_graph=off"], "graph": ["step_graph=on"],
                        "unclipped": ["step_graph=off", "optimizer.clip_grad_norm=0"]}.items():
        overrides = [*BASE, "optimizer.clip_grad_norm=0.05", f"optimizer.clip_mode={mode}", *extra]
        run(compose_config(*overrides), tmp_path / name, overrides)
        runs[name] = load_checkpoint(checkpoint_path(tmp_path / name), torch.device("cpu"))["model"]
    assert all(torch.equal(runs["eager"][key], runs["graph"][key]) for key in runs["eager"])
    assert not all(torch.equal(runs["eager"][key], runs["unclipped"][key]) for key in runs["eager"])


@pytest.mark.parametrize("override,expected", [
    ("optimizer.clip_grad_norm=-1", "optimizer.clip_grad_norm=-1.0 must be >= 0 (0: no clipping); e.g. "
                                    "optimizer.clip_grad_norm=1.0"),
    ("optimizer.clip_mode=layer", "optimizer.clip_mode='layer' must be global or per_tensor; e.g. "
                                  "optimizer.clip_mode=per_tensor"),
])
def test_bad_clipping_is_refused_in_one_line(cli_in_process, tmp_path, override, expected):
    status, _, err = cli_in_process(tmp_path, override)
    assert status == 2 and expected in err and err.count("\n") == 1 and not (tmp_path / "outputs").exists()


def test_bert_adam_is_adam_without_bias_correction_and_with_decay_in_the_update():
    """BertAdam's rule written out per element; without bias correction its first step is (1 − β1) / √(1 − β2)
    ≈ 3.16 times lr·sign(g), where Adam's is lr·sign(g)."""
    from sparsetrain.training.bert_adam import BertAdam

    torch.manual_seed(0)
    param = nn.Parameter(torch.randn(6, 5))
    start, m, v = param.detach().clone(), torch.zeros(6, 5), torch.zeros(6, 5)
    expected = start.clone()
    optimizer = BertAdam([param], lr=0.01, eps=1e-6, weight_decay=0.01)
    for step in range(3):
        grad = torch.randn(6, 5, generator=torch.Generator().manual_seed(step))
        param.grad = grad.clone()
        optimizer.step()
        m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad * grad
        expected = expected - 0.01 * (m / (v.sqrt() + 1e-6) + 0.01 * expected)
        torch.testing.assert_close(param.detach(), expected, rtol=1e-6, atol=1e-7)
        if step == 0:
            adam_part = (start - param.detach()) / 0.01 - 0.01 * start
            torch.testing.assert_close(adam_part, grad.sign() * 0.1 / 0.001 ** 0.5, rtol=2e-3, atol=0)


def test_bert_adam_composes_and_trains(compose_config, tmp_path):
    overrides = [*BASE, "optimizer=bertadam", "optimizer.lr=1e-3", "optimizer.clip_grad_norm=1.0",
                 "optimizer.clip_mode=per_tensor"]
    summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    assert summary["final"]["test"]["loss"] < 2.3  # below chance level on 10 classes after 12 steps
