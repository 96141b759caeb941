"""Tests for sparsetrain.sparsity.saliency: SNIP, GraSP, SynFlow and exact top-k masks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsetrain.sparsity.saliency import grasp_scores, keep_top, pair_loss, snip_scores, synflow_masks


def weights_of(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1}


def count(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in masks.items()}


def conv_bn_net() -> nn.Sequential:
    """Conv-BN-ReLU-Dropout-Linear on 3x4x4 inputs, with non-trivial BatchNorm state."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.normal_()
        net[1].bias.normal_()
    return net


# ---- keep_top ----------------------------------------------------------------------------------------------
def test_keep_top_global_keeps_exactly_the_largest():
    torch.manual_seed(0)
    scores = {"a": torch.randn(3, 4), "b": torch.randn(5), "c": torch.randn(2, 2, 2)}
    masks = keep_top(scores, 7)
    assert {n: m.shape for n, m in masks.items()} == {n: s.shape for n, s in scores.items()}
    assert all(m.dtype == torch.bool for m in masks.values())
    kept = torch.cat([s[m] for s, m in zip(scores.values(), masks.values())])
    dropped = torch.cat([s[~m] for s, m in zip(scores.values(), masks.values())])
    assert kept.numel() == 7 and kept.min() > dropped.max()
    assert sum(count(keep_top(scores, 0)).values()) == 0 and sum(count(keep_top(scores, 25)).values()) == 25


def test_keep_top_per_layer_counts():
    torch.manual_seed(1)
    scores = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    masks = keep_top(scores, {"a": 5, "b": 0})
    assert count(masks) == {"a": 5, "b": 0}
    assert scores["a"][masks["a"]].min() > scores["a"][~masks["a"]].max()


def test_keep_top_ties_exact_and_deterministic():
    scores = {"a": torch.ones(2, 3), "b": torch.tensor([2.0, 1.0, 1.0])}
    masks = keep_top(scores, 4)  # 2.0, then ties at 1.0 go to the earliest positions
    assert masks["a"].flatten().tolist() == [True, True, True, False, False, False]
    assert masks["b"].tolist() == [True, False, False]


def test_keep_top_rejects_bad_keep():
    scores = {"a": torch.randn(4)}
    with pytest.raises(ValueError):
        keep_top(scores, 5)
    with pytest.raises(ValueError):
        keep_top(scores, {"b": 1})
    with pytest.raises(ValueError):
        keep_top({"a": torch.tensor([1.0, float("nan")])}, 1)


# ---- SNIP --------------------------------------------------------------------------------------------------
def test_snip_matches_closed_form_gradient():
    torch.manual_seed(2)
    layer = nn.Linear(4, 3, bias=False)
    batches = [(torch.randn(5, 4), torch.randn(5, 3)), (torch.randn(2, 4), torch.randn(2, 3))]
    w = layer.weight.detach()
    # L = mean((x W^T - y)^2)  =>  dL/dW = 2 / (N * 3) * (x W^T - y)^T x, summed over the batches.
    grad = sum(2 / (x.shape[0] * 3) * (x @ w.T - y).T @ x for x, y in batches)
    scores = snip_scores(layer, {"weight": layer.weight}, iter(batches), pair_loss(F.mse_loss))
    torch.testing.assert_close(scores["weight"], (grad * w).abs())


# ---- GraSP -------------------------------------------------------------------------------------------------
def tanh_mlp() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def batches_for(in_features: int, n: int = 2):
    gen = torch.Generator().manual_seed(4)
    return [(torch.randn(6, in_features, generator=gen, dtype=torch.float64), torch.randint(3, (6,), generator=gen))
            for _ in range(n)]


def weight_grad(model, names, values, batches, temperature):
    """Gradient of the summed loss w.r.t. the named weights, as a function of their values (graph kept)."""
    def loss(*ws):
        overrides = dict(zip(names, ws))
        return sum(F.cross_entropy(functional_call(model, overrides, (x,)) / temperature, y) for x, y in batches)
    return torch.autograd.grad(loss(*values), values, create_graph=True), loss


def test_grasp_equals_weight_times_hessian_gradient_product():
    model, batches = tanh_mlp(), batches_for(3)
    params = weights_of(model)
    names, values = list(params), [p.detach().clone().requires_grad_() for p in params.values()]
    grads, loss = weight_grad(model, names, values, batches, 200.0)
    g = tuple(t.detach() for t in grads)
    _, hg = torch.autograd.functional.hvp(loss, tuple(values), g)
    scores = grasp_scores(model, params, batches, pair_loss(F.cross_entropy))
    for name, w, h in zip(names, values, hg):
        torch.testing.assert_close(scores[name], w.detach() * h)


def test_grasp_keeps_the_weights_whose_removal_most_reduces_gradient_flow():
    """Finite differences of |g|² along weight removal: d/de |g(w - e w_q e_q)|² = -2 w_q (Hg)_q."""
    model, batches = tanh_mlp(), batches_for(3)
    params = weights_of(model)
    names = list(params)
    scores = grasp_scores(model, params, batches, pair_loss(F.cross_entropy), temperature=1.0)

    def flow(values):
        grads, _ = weight_grad(model, names, [v.requires_grad_() for v in values], batches, 1.0)
        return float(sum((g.detach() ** 2).sum() for g in grads))

    eps, removal_slope = 1e-5, {}
    for i, name in enumerate(names):
        slope = torch.zeros_like(params[name], dtype=torch.float64)
        for q in range(slope.numel()):
            shifted = []
            for sign in (-1, 1):
                values = [p.detach().clone() for p in params.values()]
                values[i].view(-1)[q] *= 1 - sign * eps
                shifted.append(flow(values))
            slope.view(-1)[q] = (shifted[1] - shifted[0]) / (2 * eps)
        removal_slope[name] = slope
        torch.testing.assert_close(slope, -2 * scores[name], rtol=1e-4, atol=1e-9)
    # The paper prunes the largest S = -w ⊙ Hg, i.e. keeps the weights whose removal lowers |g|² the most.
    kept, expected = keep_top(scores, 8), keep_top({n: -s for n, s in removal_slope.items()}, 8)
    assert all(torch.equal(kept[n], expected[n]) for n in names)


# ---- SynFlow -----------------------------------------------------------------------------------------------
def test_synflow_single_shot_matches_closed_form_on_linear_chain():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(5, 6, bias=False), nn.Linear(6, 4, bias=False),
                        nn.Linear(4, 3, bias=False))
    params = weights_of(net)
    a = [p.detach().double().abs() for p in params.values()]
    # R = 1^T |W3||W2||W1| 1, so dR/dW_l = (1^T downstream)^T (upstream 1) for each layer.
    up = [torch.ones(5, 1, dtype=torch.float64), a[0].sum(1, keepdim=True), (a[1] @ a[0]).sum(1, keepdim=True)]
    down = [(a[2] @ a[1]).sum(0, keepdim=True), a[2].sum(0, keepdim=True), torch.ones(1, 3, dtype=torch.float64)]
    reference = {name: ai * (d.T @ u.T) for name, ai, u, d in zip(params, a, up, down)}
    masks = synflow_masks(net, params, (1, 1, 5), 20, iterations=1)
    assert all(torch.equal(masks[n], m) for n, m in keep_top(reference, 20).items())


def test_synflow_iterations_avoid_layer_collapse():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Flatten(), nn.Linear(10, 100, bias=False), nn.ReLU(), nn.Linear(100, 100, bias=False),
                        nn.ReLU(), nn.Linear(100, 10, bias=False))
    params = weights_of(net)
    keep = 120  # 99% sparsity of 12,000 weights
    single_shot = synflow_masks(net, params, (1, 1, 10), keep, iterations=1)
    assert min(count(single_shot).values()) == 0  # the wide middle layer is emptied
    masks = synflow_masks(net, params, (1, 1, 10), keep)
    assert sum(count(masks).values()) == keep and min(count(masks).values()) > 0
    # The pruned network still carries flow from input to output.
    x = torch.ones(1, 10)
    for mask, w in zip(masks.values(), params.values()):
        x = x @ (w.detach().abs() * mask).T
    assert x.sum() > 0


def test_synflow_batchnorm_convnet_uses_eval_mode_and_absolute_state():
    torch.manual_seed(7)
    net = conv_bn_net()  # in train mode: SynFlow must still use the (absolute) running statistics, no dropout
    params = weights_of(net)
    reference = conv_bn_net()
    reference.load_state_dict({k: v.abs() if v.is_floating_point() else v for k, v in net.state_dict().items()})
    reference.double().eval()
    ref_weights = weights_of(reference)
    flow = reference(torch.ones(1, 3, 4, 4, dtype=torch.float64)).sum()
    grads = torch.autograd.grad(flow, list(ref_weights.values()))
    scores = {n: (g * w).abs() for (n, w), g in zip(ref_weights.items(), grads)}
    masks = synflow_masks(net, params, (3, 4, 4), 40, iterations=1)
    assert all(torch.equal(masks[n], m) for n, m in keep_top(scores, 40).items())


def test_synflow_batchnorm_convnet_counts():
    torch.manual_seed(7)
    net = conv_bn_net()
    params = weights_of(net)
    masks = synflow_masks(net, params, (3, 4, 4), 50, iterations=10)
    assert sum(count(masks).values()) == 50
    assert {n: (m.shape, m.dtype) for n, m in masks.items()} == {n: (p.shape, torch.bool) for n, p in params.items()}
    per_layer = synflow_masks(net, params, (3, 4, 4), {"0.weight": 30, "5.weight": 7}, iterations=10)
    assert count(per_layer) == {"0.weight": 30, "5.weight": 7}
    # Scores depend on weight magnitudes only, so flipping signs changes nothing.
    with torch.no_grad():
        for p in params.values():
            p.neg_()
    flipped = synflow_masks(net, params, (3, 4, 4), 50, iterations=10)
    assert all(torch.equal(masks[n], flipped[n]) for n in masks)


# ---- side effects ------------------------------------------------------------------------------------------
def snapshot(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            [m.training for m in model.modules()],
            torch.get_rng_state())


def assert_same(before, after):
    (state0, grads0, modes0, rng0), (state1, grads1, modes1, rng1) = before, after
    assert state0.keys() == state1.keys() and all(torch.equal(state0[k], state1[k]) for k in state0)
    assert grads0.keys() == grads1.keys()
    for name, g in grads0.items():
        assert (g is None and grads1[name] is None) or torch.equal(g, grads1[name])
    assert modes0 == modes1
    assert torch.equal(rng0, rng1)


CALLS = {
    "snip": lambda net, params, batches: snip_scores(net, params, batches, pair_loss(F.cross_entropy)),
    "grasp": lambda net, params, batches: grasp_scores(net, params, batches, pair_loss(F.cross_entropy)),
    "synflow": lambda net, params, batches: synflow_masks(net, params, (3, 4, 4), 20, iterations=5),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", list(CALLS))
def test_model_and_rng_untouched(name, train):
    torch.manual_seed(8)
    net = conv_bn_net().train(train)
    net[3].train(not train)  # a mixed-mode model must come back mixed
    net[0].weight.grad = torch.randn_like(net[0].weight)  # one grad set, the others None
    params = weights_of(net)
    batches = [(torch.randn(4, 3, 4, 4), torch.randint(3, (4,))) for _ in range(2)]
    before = snapshot(net)
    assert (before[0]["0.weight"] < 0).any()
    with torch.no_grad():  # the caller's grad mode must not matter
        CALLS[name](net, params, batches)
    assert_same(before, snapshot(net))


def test_keep_top_per_layer_with_ties_is_each_layer_alone():
    """Layers are selected independently, ties at each layer's threshold going to its lowest positions, also
    with counts of 0 and of the whole layer and with -inf (pruned) and +inf scores."""
    generator = torch.Generator().manual_seed(3)
    scores = {"a": torch.randint(0, 4, (6, 5), generator=generator).float(),
              "b": torch.tensor([1.0, float("inf"), 1.0, float("-inf"), 1.0]),
              "c": torch.randint(0, 3, (4, 3, 2, 2), generator=generator).float(),
              "d": torch.ones(7)}
    keep = {"a": 11, "b": 0, "c": 48, "d": 3}
    masks = keep_top(scores, keep)
    assert count(masks) == keep
    for name, score in scores.items():
        assert torch.equal(masks[name], keep_top({name: score}, {name: keep[name]})[name]), name
    assert masks["d"].tolist() == [True, True, True, False, False, False, False]
    flat_a, kept_a = scores["a"].flatten(), masks["a"].flatten()
    cut = flat_a[kept_a].min()
    assert flat_a[~kept_a].max() <= cut  # the largest kept ...
    ties = (flat_a == cut).nonzero().squeeze(1)
    kept_ties = kept_a[ties]
    assert kept_ties.any() and not kept_ties.all()  # the cut falls inside a run of ties ...
    assert not (kept_ties[:-1] < kept_ties[1:]).any()  # ... and the front of the run is kept


def test_grasp_scores_a_class_balanced_sample_in_two_halves(compose_config, tmp_path, monkeypatch):
    """As the reference's GraSP_fetch_data: samples_per_class of every class (10 by default), in the first
    epoch's order, split into two halves."""
    from sparsetrain import methods
    from sparsetrain.runner.run import run

    seen = []

    class Probe(methods.METHODS["grasp"]):
        def scoring_batches(self):
            batches = super().scoring_batches()
            x, y = (torch.cat(part) for part in zip(*self.ctx.train_batches.epoch(0)))
            ranks = torch.tensor([int((y[:i] == label).sum()) for i, label in enumerate(y.tolist())])
            seen.append((batches, x[ranks < 10], y[ranks < 10]))  # the first 10 of every class, in order
            return batches

    monkeypatch.setitem(methods.METHODS, "grasp", Probe)
    overrides = ["method=grasp", "sparsity=0.9", "device=cpu", "steps=1", "eval_every=0"]
    run(compose_config(*overrides), tmp_path, overrides)
    ((first, second), x, y), = seen
    labels = torch.cat([first[1], second[1]])
    assert len(first[1]) == len(second[1]) == 50
    assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), 10))
    assert torch.equal(labels, y) and torch.equal(torch.cat([first[0], second[0]]), x)


def test_grasp_samples_per_class_beyond_the_data_is_a_config_error(compose_config, tmp_path):
    from sparsetrain.errors import ConfigError
    from sparsetrain.runner.run import run

    overrides = ["method=grasp", "sparsity=0.9", "device=cpu", "steps=1", "method.samples_per_class=500"]
    with pytest.raises(ConfigError, match=r"method.samples_per_class=500 needs .* e.g. method.samples_per_class=1"):
        run(compose_config(*overrides), tmp_path, overrides)
