"""method=sr_ste: N:M masks recomputed from the dense weights every step, straight-through with the sparse-refined
decay (Zhou et al., ICLR 2021)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from conftest import crash_and_resume
from sparsetrain import methods
from sparsetrain.api import sparsify
from sparsetrain.runner.run import run
from sparsetrain.sparsity import patterns
from test_patterns import holds

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = ["method=sr_ste", "device=cpu", "model=lenet300_100", "eval_every=0", "steps=24"]


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double()


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(32, 8, generator=generator, dtype=torch.float64), torch.randint(0, 4, (32,), generator=generator)


def _two_of_four(weight: torch.Tensor) -> torch.Tensor:
    """The reference rule, written out: in every 4 consecutive inputs, the 2 largest |w| kept."""
    groups = weight.abs().reshape(-1, 4)
    kept = torch.zeros_like(groups).scatter_(1, groups.argsort(dim=1, descending=True, stable=True)[:, :2], 1.0)
    return kept.reshape(weight.shape)


def _reference_steps(model: nn.Module, steps: int, decay: float, **sgd) -> nn.Module:
    """SR-STE as the paper states it: the forward through W ⊙ M(W); the dense W stepped by the gradient of W ⊙ M
    plus decay · (1 − M) ⊙ W."""
    dense = copy.deepcopy(model)
    optimizer = torch.optim.SGD(dense.parameters(), **sgd)
    for step in range(steps):
        params = dict(dense.named_parameters())
        masks = {name: _two_of_four(p.detach()) for name, p in params.items() if name.endswith("weight")}
        sparse = {name: (params[name] * mask).detach().requires_grad_(True) for name, mask in masks.items()}
        x, y = _batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(functional_call(dense, {**params, **sparse}, (x,)), y).backward()
        with torch.no_grad():
            for name, mask in masks.items():  # straight through: the gradient of W ⊙ M, unmasked, is W's
                params[name].grad = sparse[name].grad + decay * (1 - mask) * params[name]
        optimizer.step()
    return dense


@pytest.mark.parametrize("decay", [2e-4, 0.0, 0.05])
def test_every_step_is_the_straight_through_update_with_the_sparse_refined_decay(decay):
    """The model holds W ⊙ M after each step and the method W, both as the reference computes them (momentum and
    weight decay acting on the dense weights, as the authors' optimizer does)."""
    sgd = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}
    model = _mlp()
    reference = _reference_steps(model, 6, decay, **sgd)
    optimizer = torch.optim.SGD(model.parameters(), **sgd)
    sparsifier = sparsify(model, optimizer, "sr_ste", 0.5, total_steps=6, decay=decay)
    for step in range(6):
        x, y = _batch(step)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        sparsifier.step()
    dense = dict(zip(sparsifier.method.targets.params, sparsifier.method.dense))
    for name, expected in reference.named_parameters():
        if name in dense:
            torch.testing.assert_close(dense[name], expected.detach(), rtol=1e-12, atol=1e-12)
            expected = expected * _two_of_four(expected.detach())
        torch.testing.assert_close(model.get_parameter(name).detach(), expected.detach(), rtol=1e-12, atol=1e-12)


def test_a_convolution_keeps_n_of_every_m_input_channels_at_each_kernel_position():
    """The authors' NHWC grouping: 4 consecutive input channels at one (filter, kh, kw) keep exactly 2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 6, 3), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsify(model, optimizer, "sr_ste", 0.5, total_steps=3)
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        model(torch.randn(4, 8, 6, 6)).square().mean().backward()
        sparsifier.step()
        weight = model[0].weight.detach()
        kept = (weight != 0).permute(0, 2, 3, 1).reshape(-1, 4).sum(1)
        assert (kept == 2).all()
        assert torch.equal(weight != 0, sparsifier.masks["0.weight"])


class _Recording(methods.METHODS["sr_ste"]):
    seen: list[dict] = []

    def after_optimizer_step(self, step):
        super().after_optimizer_step(step)
        _Recording.seen.append({name: mask.clone() for name, mask in self.maskset.masks.items()})
        for name, param in self.targets.params.items():
            assert not param.detach()[~self.maskset.masks[name]].any(), name


def test_a_run_keeps_exact_n_m_groups_after_every_step_and_logs_the_masks_movement(compose_config, tmp_path,
                                                                                      monkeypatch):
    _Recording.seen = []
    monkeypatch.setitem(methods.METHODS, "sr_ste", _Recording)
    overrides = [*BASE, "method.pattern.n=1", "steps=44", "optimizer.lr=0.5"]
    summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    assert len(_Recording.seen) == 44
    for masks in _Recording.seen:
        for mask in masks.values():
            holds("nm", mask, mask.numel() // 4, n=1)
    changed = sum(int((a != b).sum()) for a, b in zip(_Recording.seen[0].values(), _Recording.seen[-1].values()))
    assert changed > 0
    assert summary["masks"]["sparsity"] == pytest.approx(0.75)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    flips = [event["mask_flips"] for event in events if event.get("event") == "mask_flips"]
    assert len(flips) == 2 and all(0 < f < 1 for f in flips) and summary["dynamics"]["mask_flips"] == flips


def test_resume_inside_a_run_is_bit_identical(compose_config, tmp_path, monkeypatch):
    overrides = [*BASE, "steps=40", "checkpoint_every=5it", "resume=auto", "model.dropout=0.1"]
    a, b = crash_and_resume(compose_config, tmp_path, monkeypatch, "sr_ste", overrides, 18)
    for key in ("dense", "masks", "epoch_masks"):
        assert all(torch.equal(a["method"][key][k], b["method"][key][k]) for k in a["method"][key])


def test_another_pattern_takes_the_sparsity_as_its_target(compose_config, tmp_path):
    overrides = [*BASE, "method.pattern.name=fanin", "sparsity=0.9", "steps=6"]
    summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("overrides,expected", [
    (["method=sr_ste", "sparsity=0.9"], "sparsity=0.9 conflicts with method.pattern.name=nm, which keeps 2 of every 4 "
                                        "weights; e.g. sparsity=0.5 (or leave it 0)"),
    (["method=sr_ste", "method.decay=-1"], "method.decay=-1.0 must be >= 0"),
    (["method=sr_ste", "model=conv2", "dataset=synthetic"], "method.pattern.name=nm cannot take layer"),
])
def test_bad_settings_are_refused_in_one_line(cli_in_process, tmp_path, overrides, expected):
    status, _, err = cli_in_process(tmp_path, *overrides)
    assert status == 2 and expected in err and err.count("\n") == 1 and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_the_pairwise_group_ranking_keeps_what_a_stable_sort_keeps(m):
    """N:M selection without a sort (every SR-STE step) against the sorted rule, ties to lower positions included."""
    generator = torch.Generator().manual_seed(m)
    rows = torch.randint(0, 3, (500, m), generator=generator).float()  # many ties
    for n in range(1, m):
        order = rows.sort(dim=1, descending=True, stable=True).indices[:, :n]
        expected = torch.zeros_like(rows, dtype=torch.bool).scatter_(1, order, True)
        assert torch.equal(patterns.top_in_groups(rows, n), expected), n
