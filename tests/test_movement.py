"""method=movement: learned scores trained with the weights' movement, hard (top-k) and soft (sigmoid threshold with
an L1 regulariser) movement pruning (Sanh, Wolf & Rush, NeurIPS 2020)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import crash_and_resume
from sparsetrain.api import sparsify
from test_sr_ste import _batch, _mlp

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = ["method=movement", "device=cpu", "model=lenet300_100", "eval_every=0", "sparsity=0.8"]


def _authors_threshold(step, total, initial_warmup, final_warmup, initial, final):
    """masked_run_glue.schedule_threshold, written out (warm-ups in steps: warmup_steps = 1)."""
    if step <= initial_warmup:
        return initial
    if step > total - final_warmup:
        return final
    mul_coeff = 1 - (step - initial_warmup) / (total - (final_warmup + initial_warmup))
    return final + (initial - final) * mul_coeff ** 3


def _train(model, sparsifier, optimizer, steps, on_step=None):
    for step in range(steps):
        x, y = _batch(step)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        if sparsifier.before_step():
            if on_step:
                on_step(step)
            optimizer.step()
        sparsifier.after_step()


def test_the_weights_and_scores_gradients_are_the_straight_through_rule():
    """∂L/∂W = ∂L/∂(W ⊙ M) ⊙ M and ∂L/∂S = ∂L/∂(W ⊙ M) ⊙ W, against autograd through W ⊙ (M + S − sg(S))."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsify(model, optimizer, "movement", 0.5, total_steps=8, initial_warmup="0it", final_warmup="0it",
                          mask_init="uniform", mask_scale=0.1)
    method = sparsifier.method
    _train(model, sparsifier, optimizer, 3)  # masks no longer dense
    names = list(method.targets.params)
    dense = {name: w.clone() for name, w in zip(names, method.dense)}
    scores = {name: s.detach().clone() for name, s in zip(names, method.scores)}
    masks = {name: m.clone() for name, m in method.maskset.masks.items()}
    assert not all(m.all() for m in masks.values())
    x, y = _batch(3)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    method.before_optimizer_step(3)
    # the reference: autograd through the straight-through product
    w_ref = {name: w.clone().requires_grad_(True) for name, w in dense.items()}
    s_ref = {name: s.double().requires_grad_(True) for name, s in scores.items()}
    params = {name: w_ref[name] * (masks[name].double() + s_ref[name] - s_ref[name].detach()) for name in names}
    logits = torch.func.functional_call(model, {**dict(model.named_parameters()), **params}, (x,))
    nn.functional.cross_entropy(logits, y).backward()
    for name, score in zip(names, method.scores):
        param = model.get_parameter(name)
        torch.testing.assert_close(param.grad, w_ref[name].grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(score.grad.double(), s_ref[name].grad, rtol=1e-5, atol=1e-7)  # fp32 scores
        assert torch.equal(param.detach(), dense[name])  # the optimizer steps the dense weights


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_hard_movement_keeps_the_scheduled_count_at_every_step(scope):
    """Each step's masks are the top scores, with exactly the count of the authors' cubic schedule (sparsity
    1 − threshold), the initial warm-up dense and the final warm-up at `sparsity`."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    total, sparsity = 30, 0.8
    sparsifier = sparsify(model, optimizer, "movement", sparsity, total_steps=total, initial_warmup="4it",
                          final_warmup="6it", scope=scope)
    method = sparsifier.method
    seen = []

    def check(steps_done):
        expected = 1 - _authors_threshold(steps_done, total, 4, 6, 1.0, 1 - sparsity)
        assert method.value(steps_done) == pytest.approx(expected, abs=1e-12)
        masks = method.maskset.masks
        kept = {name: int(mask.sum()) for name, mask in masks.items()}
        if scope == "layerwise":
            assert kept == {name: m.numel() - math.floor(round(method.value(steps_done) * m.numel(), 6))
                            for name, m in masks.items()}
            for name, score in zip(masks, method.scores):  # the kept ones are the top scores
                if 0 < kept[name] < score.numel():
                    assert score[masks[name]].min() >= score[~masks[name]].max()
        else:
            total_kept = sum(m.numel() for m in masks.values())
            assert sum(kept.values()) == total_kept - math.floor(round(method.value(steps_done) * total_kept, 6))
        assert kept == method.maskset.counts()
        for name, param in method.targets.params.items():  # the model holds W ⊙ M
            assert torch.equal(param.detach(), method.dense[list(masks).index(name)] * masks[name])
        seen.append(sum(kept.values()))

    check(0)
    for step in range(total):
        x, y = _batch(step)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        sparsifier.step()
        check(step + 1)
    numel = sum(m.numel() for m in method.maskset.masks.values())
    assert seen[:5] == [numel] * 5 and seen[-7:] == [seen[-1]] * 7 and seen[-1] < numel
    assert all(a >= b for a, b in zip(seen, seen[1:]))
    assert [method.is_plain_step(step) for step in range(total)] == [step >= 24 for step in range(total)]


def test_soft_movement_thresholds_sigmoid_scores_and_adds_the_l1_regulariser():
    """M = σ(S) > τ_t; the scores' gradient is the straight-through one plus ∇ λ_t · mean_l(‖σ(S_l)‖₁ / N_l),
    λ_t = final_lambda · τ_t / τ_final (the authors' `regularization(mode="l1")`)."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    total = 20
    sparsifier = sparsify(model, optimizer, "movement", 0.0, total_steps=total, binarizer="sigmoid_threshold",
                          initial_warmup="2it", final_warmup="5it", threshold=0.2, initial_threshold=0.0,
                          final_lambda=2000.0, score_lr=1.0)
    method = sparsifier.method
    names = list(method.targets.params)
    taus = []

    def check_gradient(step):
        tau = _authors_threshold(step, total, 2, 5, 0.0, 0.2)
        taus.append(tau)
        lam = 2000.0 * tau / 0.2
        assert method.regularisation(step) == pytest.approx(lam, abs=1e-12)
        scores = [s.detach().clone().requires_grad_(True) for s in method.scores]
        regu = sum(torch.norm(torch.sigmoid(s), p=1) / s.numel() for s in scores) / len(scores)
        (lam * regu).backward()
        for name, score, ref, dense in zip(names, method.scores, scores, method.dense):
            weight_grad = torch.where(method.maskset.masks[name], model.get_parameter(name).grad, 0)
            # before_optimizer_step masked the weight's gradient; the scores' part is ∂L/∂(W ⊙ M) ⊙ W on every entry
            regu_part = score.grad - (saved[name] * dense).float()
            torch.testing.assert_close(regu_part, ref.grad, rtol=1e-4, atol=1e-7)
            assert torch.equal(model.get_parameter(name).grad, weight_grad)

    saved = {}
    for step in range(total):
        x, y = _batch(step)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        saved = {name: model.get_parameter(name).grad.clone() for name in names}
        sparsifier.before_step()
        check_gradient(step)
        optimizer.step()
        sparsifier.after_step()
        tau = _authors_threshold(step + 1, total, 2, 5, 0.0, 0.2)
        for name, score in zip(names, method.scores):
            expected = torch.sigmoid(score.detach()) > tau
            if expected.sum() >= int(0.005 * score.numel()) + 1:
                assert torch.equal(method.maskset.masks[name], expected)
    assert taus[:3] == [0.0] * 3 and taus[-5:] == [0.2] * 5
    assert sum(int((~m).sum()) for m in method.maskset.masks.values()) > 0  # the regulariser pruned


def test_a_threshold_passing_too_few_keeps_the_authors_floor():
    from sparsetrain.methods.movement import sigmoid_threshold_masks_
    score = torch.linspace(-5, 5, 1000)[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    out = torch.empty(1000, dtype=torch.bool)
    sigmoid_threshold_masks_([score], 0.999, [int(0.005 * 1000) + 1], [out])  # none passes
    k_threshold = score.kthvalue(max(1000 - 6, 1)).values
    assert torch.equal(out, score > k_threshold) and int(out.sum()) == 6
    sigmoid_threshold_masks_([score], 0.5, [6], [out])
    assert torch.equal(out, torch.sigmoid(score) > 0.5)


def test_pruned_weights_get_no_gradient_and_keep_their_values():
    """Under plain SGD a weight outside the mask is not stepped, and the method keeps its dense value (a weight the
    mask brings back returns with it), while the model holds 0 there."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    sparsifier = sparsify(model, optimizer, "movement", 0.7, total_steps=12, initial_warmup="0it",
                          final_warmup="12it")  # straight to 70 %: the mask then moves with the scores
    method = sparsifier.method
    names = list(method.targets.params)
    seen = {"masked": 0}

    def check(step):
        for name, dense in zip(names, method.dense):
            mask, grad = method.maskset.masks[name], model.get_parameter(name).grad
            assert not grad[~mask].any()
            assert torch.equal(model.get_parameter(name).detach(), dense)  # the optimizer steps W itself
        before.update({name: (d.clone(), method.maskset.masks[name].clone()) for name, d in zip(names, method.dense)})

    before = {}
    for step in range(12):
        x, y = _batch(step)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        sparsifier.before_step()
        check(step)
        optimizer.step()
        sparsifier.after_step()
        for name, dense in zip(names, method.dense):
            old, mask = before[name]
            assert torch.equal(dense[~mask], old[~mask])
            assert not model.get_parameter(name).detach()[~method.maskset.masks[name]].any()
            seen["masked"] += int((dense[~method.maskset.masks[name]] != 0).sum())
    assert seen["masked"] > 0  # the pruned weights' values are kept, not zeroed


@pytest.mark.parametrize("extra", [[], ["method.binarizer=sigmoid_threshold", "method.final_lambda=50",
                                        "method.threshold=0.3"]])
def test_crash_and_resume_is_bit_exact(compose_config, tmp_path, monkeypatch, extra):
    overrides = [*BASE, *extra, "steps=40", "checkpoint_every=5it", "resume=auto", "model.dropout=0.1",
                 "optimizer=adamw", "optimizer.lr=1e-3", "method.initial_warmup=5it", "method.final_warmup=10it"]
    a, b = crash_and_resume(compose_config, tmp_path, monkeypatch, "movement", overrides, 18)
    for key in ("dense", "scores", "masks"):
        assert all(torch.equal(a["method"][key][k], b["method"][key][k]) for k in a["method"][key])


def test_a_run_reaches_the_target_sparsity(compose_config, tmp_path):
    from sparsetrain.runner.run import run
    overrides = [*BASE, "steps=30"]
    summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    assert summary["masks"]["sparsity"] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("args,key", [
    (["method.binarizer=soft"], "method.binarizer='soft' is not a binariser"),
    (["method.mask_init=zeros"], "method.mask_init='zeros' is not a score initialisation"),
    (["method.score_lr=0"], "method.score_lr=0.0 must be positive; e.g. method.score_lr=1e-2"),
    (["method.initial_sparsity=0.9"], "method.initial_sparsity=0.9 must be in [0, sparsity=0.8]"),
    (["method.binarizer=sigmoid_threshold", "method.threshold=1.5"], "method.threshold=1.5 must be in (0, 1)"),
    (["method.binarizer=sigmoid_threshold", "method.scope=global"], "method.scope=global needs binarizer=topk"),
    (["method.final_lambda=-1"], "method.final_lambda=-1.0 must be >= 0; e.g. method.final_lambda=400"),
    (["method.initial_warmup=soon"], "method.initial_warmup='soon' is not an interval"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, cli_in_process, args, key):
    status, _, err = cli_in_process(tmp_path, *BASE, *args)
    assert status == 2 and key in err and err.count("\n") == 1 and not (tmp_path / "outputs").exists()
