"""method=mask_training: learned masks over frozen weights with a straight-through gradient (TAMT, edge-popup)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

from sparsetrain.api import sparsify
from sparsetrain.runs.checkpoint import load_checkpoint
from sparsetrain.runs.files import checkpoint_path
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.sparsity.scores import initial_scores, reset_thresholds
from sparsetrain.runner.run import run
from conftest import crash_and_resume

TARGETS = ("0.weight", "2.weight", "4.weight")


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(32, 8, generator=generator), torch.randint(0, 3, (32,), generator=generator)


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    x, y = _batch(step)
    return nn.functional.cross_entropy(model(x), y)


def _train(model, optimizer, sparsifier, steps: int, check=None) -> None:
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        _loss(model, step).backward()
        sparsifier.step()
        if check is not None:
            check(step)


def _zeros(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int((~mask).sum()) for name, mask in masks.items()}


def test_the_scores_gradient_is_the_straight_through_gradient():
    """∂L/∂scores = ∂L/∂(W0 ⊙ M) ⊙ W0, against autograd through an explicit ``W0 * mask`` forward (TAMT's
    MaskedLinear1: the binariser passes the gradient straight through to the scores)."""
    model = _mlp()
    w0 = {name: p.detach().clone() for name, p in model.named_parameters() if name in TARGETS}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsify(model, optimizer, "mask_training", 0.5, total_steps=10, init="omp")
    masks = {name: mask.float().requires_grad_(True) for name, mask in sparsifier.masks.items()}
    reference = {name: w0[name] * masks[name] for name in TARGETS}
    _loss(lambda x: functional_call(model, reference, (x,)), 0).backward()
    _loss(model, 0).backward()
    sparsifier.before_step()
    scores = sparsifier.method.scores
    for name, score in zip(TARGETS, scores):
        torch.testing.assert_close(score.grad, masks[name].grad, rtol=1e-6, atol=1e-9)
        assert score.grad.abs().sum() > 0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for n, p in model.named_parameters() if n in TARGETS)


def test_omp_init_reproduces_l1_unstructured_per_layer():
    model = _mlp()
    weights = {name: p.detach() for name, p in model.named_parameters() if name in TARGETS}
    zeros = {name: int(0.7 * w.numel()) for name, w in weights.items()}
    scores = initial_scores(weights, zeros, "omp", 0.01, seed=0)
    for name, module in zip(TARGETS, (model[0], model[2], model[4])):
        prune.l1_unstructured(module, "weight", amount=zeros[name])
        assert torch.equal(scores[name] > 0.01, module.weight_mask.bool()), name
        assert torch.equal(scores[name].unique(), torch.tensor([0.0, 0.02]))


def test_random_init_has_exact_counts_and_a_threshold_reset_restores_them_with_ties():
    weights = {"a": torch.randn(20, 10), "b": torch.randn(7, 3)}
    zeros = {"a": 150, "b": 0}
    masks = {name: s > 0.01 for name, s in initial_scores(weights, zeros, "random", 0.01, seed=3).items()}
    assert _zeros(masks) == zeros
    tied = {"a": torch.full((200,), 0.1), "b": torch.zeros(7, 3)}
    tied["a"][::10] = 0.7  # 20 clear winners, then 30 of the 180 tied scores: the lowest positions
    thresholds, masks = reset_thresholds({"a": tied["a"].view(20, 10), "b": tied["b"]}, zeros)
    assert _zeros(masks) == zeros
    ties_kept = [i for i in range(200) if i % 10][:30]
    assert masks["a"].flatten().nonzero().flatten().tolist() == sorted([*range(0, 200, 10), *ties_kept])
    assert thresholds["a"] == torch.tensor(0.1) and thresholds["b"] == float("-inf")


def test_threshold_resets_give_exact_zeros_and_the_frozen_weights_stay_bit_identical():
    """Between resets the threshold mask drifts; after every reset each layer has exactly int(s·N) zeros. W0 is never
    changed, the model holds W0 ⊙ M, a parameter outside the optimizer is unchanged, the head's bias trains."""
    model = _mlp()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    trained = [model[4].bias, *(model[i].weight for i in (0, 2, 4))]
    optimizer = torch.optim.AdamW(trained, lr=0.01)
    sparsifier = sparsify(model, optimizer, "mask_training", 0.6, total_steps=12, init="omp", reset_every=4,
                          score_lr=0.05)
    method = sparsifier.method
    expected = {name: int(0.6 * start[name].numel()) for name in TARGETS}
    drifted = []

    def check(step):
        zeros = _zeros(method.masks())
        if (step + 1) % 4 == 0:
            assert zeros == expected, step
        else:
            drifted.append(zeros != expected)

    _train(model, optimizer, sparsifier, 12, check)
    assert any(drifted)  # the scores moved across the threshold between resets
    realised = sum(expected.values()) / sum(start[name].numel() for name in TARGETS)
    assert method.resets == 3 and [e["sparsity"] for e in sparsifier.events] == [realised] * 3
    for name, w0, mask in zip(TARGETS, method.w0, method.masks().values()):
        assert torch.equal(w0, start[name])
        assert torch.equal(dict(model.named_parameters())[name], start[name] * mask)
    assert torch.equal(model[0].bias, start["0.bias"]) and not torch.equal(model[4].bias, start["4.bias"])


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_topk_binarisation_is_exact_at_every_step(scope):
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = sparsify(model, optimizer, "mask_training", 0.8, total_steps=8, binarizer="topk", init="uniform",
                          scope=scope, score_lr=5.0)
    numel = {name: p.numel() for name, p in model.named_parameters() if name in TARGETS}
    first = {name: mask.clone() for name, mask in sparsifier.masks.items()}

    def check(step):
        zeros = _zeros(sparsifier.masks)
        if scope == "layerwise":
            assert zeros == {name: int(0.8 * n) for name, n in numel.items()}
        else:
            assert sum(zeros.values()) == int(0.8 * sum(numel.values()))

    _train(model, optimizer, sparsifier, 8, check)
    assert any(not torch.equal(first[name], mask) for name, mask in sparsifier.masks.items())


class _GetSubnet(torch.autograd.Function):
    """Edge-popup's rule, written out: the forward keeps the top-k of its input, the backward passes the gradient
    straight through (to ``scores.abs()``, whose own backward multiplies by sign(s))."""

    @staticmethod
    def forward(ctx, ranked, kept):
        flat = ranked.flatten()
        mask = torch.zeros_like(flat)
        mask[flat.argsort(descending=True, stable=True)[:kept]] = 1
        return mask.view(ranked.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def test_edge_popup_ranks_the_scores_magnitude_and_their_gradient_takes_the_sign():
    model = _mlp()
    w0 = {name: p.detach().clone() for name, p in model.named_parameters() if name in TARGETS}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsify(model, optimizer, "mask_training", 0.5, total_steps=4, binarizer="topk", init="signed",
                          rank="abs")
    method = sparsifier.method
    scores = {name: score.detach().clone().requires_grad_(True) for name, score in zip(TARGETS, method.scores)}
    assert all(bool((score < 0).any()) for score in scores.values())  # signed init: U(-b, b)
    masks = {name: _GetSubnet.apply(score.abs(), score.numel() // 2) for name, score in scores.items()}
    assert all(torch.equal(masks[name].bool(), sparsifier.masks[name]) for name in TARGETS)  # the top |s|
    _loss(lambda x: functional_call(model, {name: w0[name] * masks[name] for name in TARGETS}, (x,)), 0).backward()
    _loss(model, 0).backward()
    sparsifier.before_step()
    for name, score in zip(TARGETS, method.scores):
        torch.testing.assert_close(score.grad, scores[name].grad, rtol=1e-6, atol=1e-9)
        assert bool((score.grad * score.detach() < 0).any())  # the sign flips some


# ---- whole runs -------------------------------------------------------------------------------------------------
RUN = ["method=mask_training", "sparsity=0.5", "epochs=2", "optimizer=adamw", "method.reset_every=7",
       "method.score_lr=0.01"]


def _run(compose_config, run_dir, *overrides):
    return run(compose_config(*overrides), run_dir, list(overrides))


def test_crash_and_resume_is_bit_exact(compose_config, tmp_path, monkeypatch):
    """Killed after a mid-epoch checkpoint between two resets (the drifting masks, scores, thresholds and the
    densities FLOP accounting has cached are restored)."""
    a, b = crash_and_resume(compose_config, tmp_path, monkeypatch, "mask_training",
                            [*RUN, "checkpoint_every=10it", "resume=auto"], crash_after=26)
    for key in ("scores", "w0", "masks"):
        assert all(torch.equal(a["method"][key][n], b["method"][key][n]) for n in a["method"][key])
    assert torch.equal(a["method"]["thresholds"], b["method"]["thresholds"])


def test_the_learned_mask_serves_static_mask_from_and_init_from(compose_config, tmp_path):
    source = tmp_path / "source"
    summary = _run(compose_config, source, *RUN)
    learned = load_masks(source / "masks" / "final.safetensors")
    assert summary["masks"]["sparsity"] == 0.5 and summary["dynamics"]["resets"] == 7  # every 7 of 44 steps, the end
    assert summary["dynamics"]["layer_sparsity"] == {name: 0.5 for name in learned}
    state = load_checkpoint(checkpoint_path(source), torch.device("cpu"))
    for name, mask in learned.items():  # the model holds W0 ⊙ M at the end
        assert torch.equal(state["model"][name], state["method"]["w0"][name] * mask)
    static = _run(compose_config, tmp_path / "static", "method=static", f"method.mask_from={source}",
                  "sparsity=0.5", "epochs=1")
    fine_tuned = _run(compose_config, tmp_path / "tuned", "method=static", f"init_from={source}", "sparsity=0.5",
                      "epochs=1")
    for run_dir in (tmp_path / "static", tmp_path / "tuned"):
        masks = load_masks(run_dir / "masks" / "final.safetensors")
        assert all(torch.equal(masks[name], mask) for name, mask in learned.items())
    assert static["masks"]["sparsity"] == fine_tuned["masks"]["sparsity"] == 0.5


def test_with_every_model_parameter_frozen_the_logged_rate_is_the_scores(compose_config, tmp_path):
    _run(compose_config, tmp_path / "run", *RUN, "epochs=1", "finetune.trainable=[]", "schedule=constant",
         "log_every=10it")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rates = {event["lr"] for event in map(json.loads, lines) if event["event"] in ("train", "train_step")}
    assert rates == {0.01}  # method.score_lr, not the empty model group's optimizer.lr


@pytest.mark.parametrize(("args", "key"), [
    (["method.binarizer=sign"], "method.binarizer"),
    (["method.binarizer=topk", "method.init=kept"], "method.init=kept"),
    (["method.scope=global"], "method.scope=global"),
    (["method.reset_every=-1"], "method.reset_every"),
    (["method.score_lr=0"], "method.score_lr"),
    (["method.init=magnitude"], "method.init"),
    (["method.tied_weights=shared"], "method.tied_weights"),
])
def test_bad_keys_are_one_line_and_write_nothing(tmp_path, cli_in_process, args, key):
    status, out, err = cli_in_process(tmp_path, "method=mask_training", "sparsity=0.5", *args)
    assert status == 2 and key in err and "e.g." in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_without_resets_a_kept_start_learns_its_own_sparsity_and_reports_it_per_layer():
    """Supermask fine-tuning from the dense model (init=kept, reset_every=0): `sparsity` is not needed, the scores
    alone set each layer's sparsity, and the summary reports what they realised."""
    model = _mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    sparsifier = sparsify(model, optimizer, "mask_training", 0.0, total_steps=6, init="kept", reset_every=0,
                          score_lr=0.02)
    assert sparsifier.sparsity() == 0.0
    _train(model, optimizer, sparsifier, 6)
    summary = sparsifier.method.summary()
    realised = {name: int((~mask).sum()) / mask.numel() for name, mask in sparsifier.masks.items()}
    assert summary["resets"] == 0 and summary["layer_sparsity"] == pytest.approx(realised, abs=1e-12)
    assert sparsifier.sparsity() > 0
