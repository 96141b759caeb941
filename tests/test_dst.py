"""Dynamic sparse training (RigL, SET, SNFS, ITOP).

Unit tests of the drop/grow primitives in ``sparsetrain/sparsity/dst.py`` on hand-built tensors, then the methods
in the real training loop (digits, LeNet-300-100, sparsity 0.9), wrapped to record the state around every mask
update and to check the masked state after every optimizer step.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_env, crashing, events_without_time, run_cli
from sparsetrain import methods
from sparsetrain.methods.build import build_method
from sparsetrain.errors import ConfigError
from sparsetrain.sparsity import dst
from sparsetrain.sparsity.flat import FlatLayout
from sparsetrain.sparsity.masks import load_masks
from sparsetrain.diagnostics import kernel_ops
from sparsetrain.methods.base import RunContext
from sparsetrain.models.zoo import build_model
from sparsetrain.runner.run import run

SPARSITY = 0.9
BASE = [f"sparsity={SPARSITY}", "device=cpu", "model=lenet300_100", "checkpoint_every=0", "eval_every=0"]
STEPS_PER_EPOCH = 22  # digits: 1437 training images at batch 64


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- drop fraction and drop count (§2.7) ------------------------------------------------------------------------
def test_drop_fraction_cosine_rigl_golden_values():
    f = lambda t: dst.drop_fraction(t, alpha=0.3, alpha_min=0.0, decay="cosine", end_step=1000)
    assert f(0) == pytest.approx(0.3, abs=1e-12)
    assert f(500) == pytest.approx(0.15, abs=1e-12)
    assert f(1000) == pytest.approx(0.0, abs=1e-12)
    assert f(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    values = [f(t) for t in range(0, 1001, 10)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert f(1500) == pytest.approx(0.0, abs=1e-12)  # clamped after T_end


def test_drop_fraction_cosine_itop_golden_values():
    f = lambda t: dst.drop_fraction(t, alpha=0.5, alpha_min=0.005, decay="cosine", end_step=7040)
    assert f(0) == pytest.approx(0.5, abs=1e-12)
    assert f(3520) == pytest.approx(0.2525, abs=1e-12)
    assert f(7040) == pytest.approx(0.005, abs=1e-12)
    assert f(9000) == pytest.approx(0.005, abs=1e-12)


def test_drop_fraction_linear_and_constant():
    lin = lambda t: dst.drop_fraction(t, alpha=0.3, alpha_min=0.1, decay="linear", end_step=100)
    assert [lin(t) for t in (0, 25, 50, 100, 200)] == pytest.approx([0.3, 0.25, 0.2, 0.1, 0.1], abs=1e-12)
    const = lambda t: dst.drop_fraction(t, alpha=0.3, alpha_min=0.0, decay="constant", end_step=100)
    assert [const(t) for t in (0, 50, 100, 1000)] == [0.3] * 4
    with pytest.raises(ValueError, match="decay"):
        dst.drop_fraction(0, alpha=0.3, alpha_min=0.0, decay="exponential", end_step=100)


def test_drop_count_floor_vs_ceil():
    assert dst.drop_count(10, 0.25, "floor") == 2
    assert dst.drop_count(10, 0.25, "ceil") == 3
    assert dst.drop_count(7, 0.5, "floor") == 3 and dst.drop_count(7, 0.5, "ceil") == 4
    # float error must not move an exact product: 0.3 * 100 = 30.000000000000004, 0.29 * 100 = 28.999999999999996
    assert dst.drop_count(100, 0.3, "ceil") == 30 and dst.drop_count(100, 0.3, "floor") == 30
    assert dst.drop_count(100, 0.29, "floor") == 29 and dst.drop_count(100, 0.29, "ceil") == 29
    assert dst.drop_count(5, 0.0, "ceil") == 0 and dst.drop_count(5, 1.0, "floor") == 5
    assert dst.drop_count(3, 1e-6, "ceil") == 1 and dst.drop_count(3, 1e-6, "floor") == 0


# ---- drop_grow ------------------------------------------------------------------------------------------------
def top_among(score: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` highest ``score`` among ``candidates`` by a full stable sort; asserts that no tie
    straddles the cut, so the set is unique."""
    flat, cand = score.flatten(), candidates.flatten()
    index = cand.nonzero().squeeze(1)
    order = torch.sort(flat[index], descending=True, stable=True)
    if 0 < k < len(index):
        assert order.values[k - 1] > order.values[k], "a tie straddles the cut: the set is not unique"
    out = torch.zeros_like(cand)
    out[index[order.indices[:k]]] = True
    return out.view_as(candidates)


def kept_witness(score, old, new, keep: int, grow_score) -> torch.Tensor:
    """The kept set of an update: the ``keep`` largest drop ``score`` among the ``old`` active entries. Entries
    tied at the cut are interchangeable; among those still active afterwards, the ones with the lowest grow score
    are taken as kept (the most favourable choice for the check that grown entries have the top grow scores)."""
    flat, old_flat, new_flat = score.flatten(), old.flatten(), new.flatten()
    kept = torch.zeros_like(old_flat)
    if keep == 0:
        return kept.view_as(old)
    values = torch.sort(flat[old_flat], descending=True).values
    cut = values[keep - 1]
    sure = old_flat & (flat > cut)
    assert not (sure & ~new_flat).any(), "an entry above the cut was dropped"
    pool = (old_flat & (flat == cut) & new_flat).nonzero().squeeze(1)
    need = keep - int(sure.sum())
    assert 0 < need <= len(pool), "fewer entries at the cut survived than must be kept"
    order = torch.sort(grow_score.flatten()[pool], stable=True).indices
    kept[pool[order[:need]]] = True
    return (kept | sure).view_as(old)


def drop_grow_one(weight, mask, active, drop, grow, score, noise):
    """``dst.drop_grow`` on one layer, in the layer's shape; ``active`` (the mask's count) is checked."""
    assert int(mask.sum()) == active
    layout = FlatLayout([weight])
    new, fresh = dst.drop_grow(layout, [weight], [mask], [drop], [grow], [score],
                               None if noise is None else layout.flat([noise]))
    return layout.views(new)[0], layout.views(fresh)[0]


def random_layer(shape=(20, 30), active=150, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=generator)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask.view(-1)[torch.randperm(mask.numel(), generator=generator)[:active]] = True
    score = torch.rand(shape, generator=generator)
    return weight * mask, mask, score


@pytest.mark.parametrize("drop,grow", [(37, 37), (50, 20), (10, 40), (0, 0), (150, 150)])
def test_drop_grow_keeps_the_largest_and_grows_the_top_scores(drop, grow):
    weight, mask, score = random_layer()
    new_mask, new = drop_grow_one(weight, mask, 150, drop, grow, score, None)
    assert new_mask.shape == mask.shape and new_mask.dtype == torch.bool
    assert int(new_mask.sum()) == 150 - drop + grow
    kept = top_among(weight.abs(), mask, 150 - drop)  # the largest |w| among the active entries
    assert torch.equal(new_mask & kept, kept)
    dropped = mask & ~kept
    if drop and 150 - drop:
        assert weight.abs()[dropped].max() < weight.abs()[kept].min()  # the dropped are the smallest |w|
    grown = new_mask & ~kept
    assert int(grown.sum()) == grow and not (grown & kept).any()
    assert torch.equal(grown, top_among(score, ~kept, grow))  # top grow score among the non-kept
    assert torch.equal(new, grown & ~mask)  # truly new connections


def test_drop_grow_just_dropped_entries_can_be_regrown():
    weight, mask, score = random_layer(seed=1)
    kept = top_among(weight.abs(), mask, 150 - 30)
    dropped = mask & ~kept
    # the dropped entries score highest: all of them come back, nothing is new
    new_mask, new = drop_grow_one(weight, mask, 150, 30, 30, score + 10 * dropped, None)
    assert torch.equal(new_mask, mask) and not new.any()
    # ten of them score highest: those come back, the other 20 grown are new
    favoured = torch.zeros_like(mask)
    favoured.view(-1)[dropped.flatten().nonzero().squeeze(1)[:10]] = True
    inactive_score = score * ~mask  # the other dropped entries score 0 and lose to the inactive ones
    new_mask, new = drop_grow_one(weight, mask, 150, 30, 30, inactive_score + 10 * favoured, None)
    assert torch.equal(new_mask & dropped, favoured)
    assert int(new.sum()) == 20 and torch.equal(new, new_mask & ~mask)
    assert torch.equal(new_mask, kept | favoured | top_among(score, ~mask, 20))


def test_drop_grow_ignores_inactive_weights_and_uses_magnitude():
    weight = torch.tensor([[-5.0, 0.1, 3.0, -0.2], [100.0, -100.0, 0.5, 0.0]])
    mask = torch.tensor([[True, True, True, True], [False, False, True, True]])
    score = torch.tensor([[9.0, 9.0, 9.0, 9.0], [1.0, 2.0, 9.0, 3.0]])
    new_mask, new = drop_grow_one(weight, mask, 6, 3, 3, score, None)
    # kept: |-5|, |3|, |0.5| (inactive +-100 never compete); dropped: 0.1, -0.2, 0.0
    # grown among the rest by score: 0.1 and -0.2 (9.0, just dropped) and (1, 3) (3.0)
    expected = torch.tensor([[True, True, True, True], [False, False, True, True]])
    assert torch.equal(new_mask, expected) and not new.any()
    # only the inactive entries score: the two grown are new, and the dropped 0.1, -0.2, 0.0 stay out
    score = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]])
    new_mask, new = drop_grow_one(weight, mask, 6, 3, 2, score, None)
    assert torch.equal(new_mask, torch.tensor([[True, False, True, False], [True, True, True, False]]))
    assert torch.equal(new, torch.tensor([[False, False, False, False], [True, True, False, False]]))


def test_drop_grow_exact_counts_with_ties_and_no_noise():
    # 40 active weights with |w| in {1, 2} (signs mixed), every grow score equal
    weight = torch.zeros(10, 10)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask.view(-1)[::2][:40] = True
    values = torch.tensor([1.0, -1.0, 2.0, -2.0]).repeat(10)
    weight.view(-1)[mask.view(-1).nonzero().squeeze(1)] = values
    ones, twos = mask & (weight.abs() == 1), mask & (weight.abs() == 2)
    for drop in (1, 5, 19, 20, 21, 33, 40):
        kept, new = drop_grow_one(weight, mask, 40, drop, 0, torch.zeros(10, 10), None)  # drop only
        assert int(kept.sum()) == 40 - drop and not new.any() and not (kept & ~mask).any()
        # exactly `drop` removed, the smallest first: every |w| = 1 before any |w| = 2
        assert int((ones & ~kept).sum()) == min(drop, 20)
        assert int((twos & ~kept).sum()) == max(drop - 20, 0)
        new_mask, new = drop_grow_one(weight, mask, 40, drop, drop, torch.zeros(10, 10), None)  # tied grow scores
        assert int(new_mask.sum()) == 40
        assert int((mask & ~new_mask).sum()) == int(new.sum()) <= drop
        assert torch.equal(new_mask & mask & twos, twos) if drop <= 20 else True
    # a layer of identical magnitudes: still exact counts
    new_mask, new = drop_grow_one(torch.ones(6, 6), torch.ones(6, 6, dtype=torch.bool), 36, 7, 7,
                                  torch.ones(6, 6), None)
    assert int(new_mask.sum()) == 36 and not new.any()


def set_up(compose_config, *overrides, method="rigl", seed=0, model=None, in_shape=(8,)):
    """A DST method set up outside the training loop, by default on a two-layer MLP."""
    cfg = compose_config(f"method={method}", "sparsity=0.5", *overrides)
    torch.manual_seed(0)
    model = model or torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    built = build_method(cfg.method, cfg.sparsity)
    built.setup(RunContext(
        model=model, optimizer=optimizer, train_batches=None, loss_fn=None,
        in_shape=in_shape, seed=seed, device=torch.device("cpu"), steps_per_epoch=10,
        total_steps=100, lr_factor=lambda step: 1.0, run_dir=Path("."), log=lambda event: None,
        fresh_weights=lambda seed: {}))
    return built


def layer_noise(method, step: int) -> dict[str, torch.Tensor] | None:
    """The method's drop noise at ``step``, per layer."""
    flat = method.drop_noise(step)
    return None if flat is None else dict(zip(method.targets.params, method.layout.views(flat)))


def test_drop_noise_is_one_seeded_draw_over_every_layer(compose_config):
    method = set_up(compose_config, "method.tie_noise=1e-5", seed=3)
    noise = method.drop_noise(7)
    assert noise.shape == (8 * 16 + 16 * 4,)
    assert torch.equal(noise, method.drop_noise(7))  # a function of (seed, step): no generator state carried
    assert not torch.equal(noise, method.drop_noise(8))
    assert not torch.equal(noise, set_up(compose_config, "method.tie_noise=1e-5", seed=4).drop_noise(7))
    first, second = layer_noise(method, 7).values()
    assert first.shape == (16, 8) and second.shape == (4, 16) and not torch.equal(first[:4], second[:, :8])
    assert noise.std().item() == pytest.approx(1e-5, rel=0.15) and abs(noise.mean().item()) < 3e-6
    assert set_up(compose_config, "method.tie_noise=0").drop_noise(7) is None


def test_set_grow_scores_are_one_seeded_uniform_draw_over_every_layer(compose_config):
    method = set_up(compose_config, method="set", seed=3)
    scores = method.random_scores(5)
    assert [s.shape for s in scores.values()] == [(16, 8), (4, 16)]
    flat = method.layout.flat(list(scores.values()))
    assert 0 <= flat.min() and flat.max() < 1 and len(flat.unique()) == len(flat)
    assert torch.equal(flat, method.layout.flat(list(method.random_scores(5).values())))
    assert not torch.equal(flat, method.layout.flat(list(method.random_scores(6).values())))


@pytest.mark.parametrize("name", ["rigl", "set", "snfs", "itop"])
def test_a_mask_update_is_two_selections_per_layer_and_a_few_whole_model_ops(name, compose_config):
    """On a GPU every kernel-running op is a launch: an update costs two ``topk`` per layer plus a fixed number
    of ops over all layers (random draws included), not a handful per layer (ResNet-20: 20 masked layers)."""
    model = build_model("resnet20", (3, 32, 32), 10)
    method = set_up(compose_config, method=name, model=model, in_shape=(3, 32, 32))
    method.start_round(0)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    method.ctx.optimizer.step()
    method.update(0, method.grow_scores(0))  # the first update after new masks also counts them
    ops = kernel_ops(lambda: method.update(1, method.grow_scores(1)))
    assert len(method.targets.params) == 20 and ops <= 2 * 20 + 30, ops


def test_drop_grow_tie_noise_breaks_ties():
    weight, mask = torch.ones(8, 8), torch.ones(8, 8, dtype=torch.bool)
    noise = torch.empty(8, 8).normal_(0.0, 1e-5, generator=torch.Generator().manual_seed(0))
    new_mask, _ = drop_grow_one(weight, mask, 64, 10, 0, torch.zeros(8, 8), noise)
    assert torch.equal(new_mask, top_among(weight + noise, mask, 54))  # the 10 smallest noise values dropped


def test_drop_grow_on_a_convolution_shape():
    weight, mask, score = random_layer(shape=(4, 3, 3, 3), active=40, seed=2)
    new_mask, new = drop_grow_one(weight, mask, 40, 12, 12, score, None)
    assert new_mask.shape == (4, 3, 3, 3) and new.shape == (4, 3, 3, 3) and int(new_mask.sum()) == 40


def test_drop_grow_over_several_layers_equals_each_layer_alone():
    """One call over layers of different shapes and memory layouts (a channels_last convolution, a full layer
    left alone, a layer with nothing to grow) gives each layer what a call on it alone gives."""
    conv = random_layer(shape=(6, 4, 3, 3), active=70, seed=3)
    conv = tuple(t.contiguous(memory_format=torch.channels_last) for t in conv[:2]) + (conv[2],)  # score contiguous
    layers = [random_layer(seed=4), conv, (torch.randn(5, 5), torch.ones(5, 5, dtype=torch.bool), torch.rand(5, 5)),
              random_layer(shape=(8, 9), active=30, seed=5)]
    drops, grows = [40, 21, 0, 12], [40, 21, 0, 0]
    weights, masks, scores = (list(column) for column in zip(*layers))
    layout = FlatLayout(weights)
    new, fresh = dst.drop_grow(layout, weights, masks, drops, grows, scores, None)
    for i, (weight, mask, score) in enumerate(layers):
        alone, alone_fresh = drop_grow_one(weight.contiguous(), mask.contiguous(), int(mask.sum()), drops[i], grows[i],
                                           score, None)
        assert torch.equal(layout.views(new)[i], alone), i
        assert torch.equal(layout.views(fresh)[i], alone_fresh), i
    assert layout.views(new)[1].stride() == conv[0].stride()  # views come back in the layer's own layout


def test_flat_layout_reads_memory_order_and_views_back():
    weights = [torch.randn(3, 4), torch.randn(2, 3, 2, 2).contiguous(memory_format=torch.channels_last),
               torch.randn(5, 1, 1, 1).contiguous(memory_format=torch.channels_last)]
    layout = FlatLayout(weights)
    flat = layout.flat(weights)
    assert flat.numel() == layout.numel == 12 + 24 + 5 and layout.offsets == [0, 12, 36]
    assert torch.equal(flat[12:36], weights[1].permute(0, 2, 3, 1).reshape(-1))  # N, H, W, C order
    for view, weight in zip(layout.views(flat), weights):
        assert torch.equal(view, weight) and view.stride() == weight.stride()
    logical = [w.contiguous() for w in weights]  # other strides are copied into the references' layout
    assert torch.equal(layout.flat(logical), flat)
    layout.views(flat)[1].zero_()
    assert not flat[12:36].any() and flat[:12].abs().sum() > 0  # views share the flat storage


# ---- redistribute -----------------------------------------------------------------------------------------------
BIG = {"a": 10**6, "b": 10**6, "c": 10**6}


def test_redistribute_is_proportional_and_exact():
    assert dst.redistribute(100, {"a": 0.25, "b": 0.75}, BIG) == {"a": 25, "b": 75}
    shares = {"a": 0.2, "b": 0.5, "c": 0.3}
    share = dst.redistribute(1001, shares, BIG)
    assert sum(share.values()) == 1001
    assert all(abs(share[name] - 1001 * w) < 1 for name, w in shares.items())  # within one of the exact share
    share = dst.redistribute(10, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, BIG)
    assert share == {"a": 4, "b": 3, "c": 3}  # equal remainders: the earlier layer first
    assert dst.redistribute(0, {"a": 0.5, "b": 0.5}, BIG) == {"a": 0, "b": 0}


def test_redistribute_caps_at_99_percent_and_spreads_the_overflow_evenly_over_all_layers():
    """sparse_learning's calc_growth_redistribution: a layer takes at most 0.99 of its room; the overflow goes in
    equal parts to every layer (the capped one included, which overflows again), not in proportion to shares."""
    # a wants 60, is capped at 19.8; its 40.2 overflow ends split equally between b and c (+20.1 each)
    assert dst.redistribute(100, {"a": 0.6, "b": 0.1, "c": 0.3}, {"a": 20, "b": 1000, "c": 1000}) == \
        {"a": 20, "b": 30, "c": 50}  # a proportional split would give b 20 and c 60
    assert dst.redistribute(30, {"a": 0.5, "b": 0.5}, {"a": 0, "b": 30}) == {"a": 0, "b": 30}
    assert dst.redistribute(30, {"a": 0.5, "b": 0.5}, {"a": 10, "b": 20}) == {"a": 10, "b": 20}
    with pytest.raises(ValueError, match="room"):
        dst.redistribute(31, {"a": 0.5, "b": 0.5}, {"a": 10, "b": 20})


def test_redistribute_with_zero_shares():
    # a zero-share layer gets nothing while others have room ...
    assert dst.redistribute(40, {"a": 0.0, "b": 1.0}, BIG) == {"a": 0, "b": 40}
    # ... and takes the overflow when they are full
    assert dst.redistribute(40, {"a": 0.0, "b": 1.0}, {"a": 100, "b": 25}) == {"a": 15, "b": 25}
    assert dst.redistribute(0, {"a": 0.0, "b": 0.0}, {"a": 0, "b": 0}) == {"a": 0, "b": 0}


def test_redistribute_ties_do_not_depend_on_the_hash_seed(tmp_path):
    """Equal remainders must be resolved the same way in every process (str hashing is randomised per process),
    or two runs of the same SNFS config could differ."""
    code = ("from sparsetrain.sparsity.dst import redistribute\n"
            "w = {'1.weight': 0.0, '3.weight': 0.0, '5.weight': 0.0}\n"
            "print(redistribute(10, w, {n: 100 for n in w}), redistribute(5, {'a': 1.0, 'b': 1.0}, {'a': 9, 'b': 9}),"
            " redistribute(7, {'x': 1.0, 'y': 1.0, 'z': 1.0, 'u': 1.0}, {'x': 9, 'y': 9, 'z': 9, 'u': 9}))")
    processes = [
        subprocess.Popen([sys.executable, "-c", code], env={**cli_env(), "PYTHONHASHSEED": str(seed)}, cwd=tmp_path,
                         stdout=subprocess.PIPE, text=True)
        for seed in (0, 1, 2)  # seeds under which the set-ordered version gave three different answers
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert len(set(outputs)) == 1, outputs


# ---- the methods in the training loop ---------------------------------------------------------------------------
def read_events(run_dir, kind="mask_update"):
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == kind]


def state_buffers(method, param) -> dict[str, torch.Tensor]:
    """The per-element optimizer buffers of ``param`` (SGD momentum, Adam moments)."""
    return {key: value for key, value in method.ctx.optimizer.state.get(param, {}).items()
            if isinstance(value, torch.Tensor) and value.shape == param.shape}


def check_masked_state(method, masked_state=True) -> None:
    """Pruned weights, and (``masked_state``) their gradients and optimizer state are exactly 0."""
    for name, mask in method.maskset.masks.items():
        param = method.targets.params[name]
        assert torch.all(param[~mask] == 0), name
        if not masked_state:
            continue
        if param.grad is not None:
            assert torch.all(param.grad[~mask] == 0), name
        for key, value in state_buffers(method, param).items():
            assert torch.all(value[~mask] == 0), (name, key)


def snapshot(method) -> dict:
    params = method.targets.params
    return {
        "masks": {n: m.clone() for n, m in method.maskset.masks.items()},
        "weights": {n: p.detach().clone() for n, p in params.items()},
        "state": {n: {k: v.clone() for k, v in state_buffers(method, p).items()} for n, p in params.items()},
    }


def recording(cls, layer_counts=True, per_step=None, masked_state=True):
    """``cls`` recording the state around every mask update and checking, after every optimizer step, that the
    masked state is 0 (and, with ``layer_counts``, that every layer has exactly its target zeros)."""

    class Recording(cls):
        updates: list[dict] = []
        update_steps: list[int] = []
        took_step: dict[int, bool] = {}
        steps_checked = 0

        def before_optimizer_step(self, step):
            self.pre = None
            if per_step is not None:
                per_step(self, step)
            if self.is_update_step(step):
                self.pre = {"weights": {n: p.detach().clone() for n, p in self.targets.params.items()},
                            "grads": {n: p.grad.detach().clone() for n, p in self.targets.params.items()}}
            took = super().before_optimizer_step(step)
            Recording.took_step[step] = took
            return took

        def update(self, step, scores):
            before = {**snapshot(self), "scores": {n: s.clone() for n, s in scores.items()},
                      "counts": dict(self.maskset.counts())}
            super().update(step, scores)
            Recording.update_steps.append(step)
            Recording.updates.append({"step": step, "pre": self.pre, "before": before, "after": snapshot(self)})

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            if Recording.update_steps and Recording.update_steps[-1] == step:
                Recording.updates[-1]["final"] = snapshot(self)
            check_masked_state(self, masked_state)
            if layer_counts:
                zeros = {name: int((~mask).sum()) for name, mask in self.maskset.masks.items()}
                assert zeros == self.layer_zeros(self.sparsity), f"step {step}"
            Recording.steps_checked += 1
            Recording.method = self

    return Recording


def run_recorded(compose_config, monkeypatch, run_dir, overrides, **kwargs):
    cfg = compose_config(*overrides)
    cls = recording(methods.METHODS[cfg.method.name], **kwargs)
    monkeypatch.setitem(methods.METHODS, cfg.method.name, cls)
    summary = run(cfg, run_dir, overrides)
    assert cls.steps_checked == summary["steps"]
    return cls, summary


def fraction_at(method, step: int) -> float:
    cfg = method.cfg
    return dst.drop_fraction(step, alpha=cfg.alpha, alpha_min=cfg.alpha_min, decay=cfg.decay,
                             end_step=method.end_step)


def check_update(method, record, grows: dict[str, int] | None = None) -> int:
    """One recorded update against the rules of §5.2; returns the number of dropped-then-regrown connections."""
    cfg, step = method.cfg, record["step"]
    before, after = record["before"], record["after"]
    fraction = fraction_at(method, step)
    regrown_total = 0
    for name, old in before["masks"].items():
        new, weight = after["masks"][name], before["weights"][name]
        count = int(old.sum())
        assert count == before["counts"][name]
        if count == old.numel():  # a dense layer has nothing to drop: left alone
            assert torch.equal(new, old)
            continue
        drop = dst.drop_count(count, fraction, cfg.drop_rounding)
        grow = drop if grows is None else grows[name]
        noise = layer_noise(method, step)
        score = weight.abs().float() + (0 if noise is None else noise[name])
        grow_score = before["scores"][name]
        kept = kept_witness(score, old, new, count - drop, grow_score)  # the largest |w| (+ tie noise)
        assert torch.equal(new & kept, kept), (step, name)
        grown = new & ~kept
        assert int(new.sum()) == count - drop + grow and int(grown.sum()) == grow, (step, name)
        others = ~kept & ~grown
        if grow and others.any():  # grown: the top grow scores among everything not kept
            assert grow_score[grown].min() >= grow_score[others].max(), (step, name)
        created, stayed, removed = new & ~old, new & old, old & ~new
        assert int(created.sum()) == int(removed.sum()) + grow - drop
        w_after = after["weights"][name]
        assert torch.all(w_after[created] == 0) and torch.all(w_after[removed] == 0), (step, name)
        assert torch.equal(w_after[stayed], weight[stayed]), (step, name)  # kept and regrown keep their value
        for key, value in after["state"][name].items() if cfg.reset_momentum else ():
            assert torch.all(value[created] == 0) and torch.all(value[removed] == 0), (step, name, key)
        regrown_total += int((stayed & ~kept).sum())
    return regrown_total


def test_rigl_updates_follow_the_reference_rules(compose_config, tmp_path, monkeypatch):
    overrides = ["method=rigl", *BASE, "epochs=3", "method.delta_t=5"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    method, total = cls.method, summary["steps"]
    assert total == 3 * STEPS_PER_EPOCH
    end = round(0.75 * total)
    assert method.end_step == end
    expected = [t for t in range(total) if t % 5 == 0 and t <= end]
    assert cls.update_steps == expected and end == 50 and expected[-1] == 50

    for record in cls.updates:
        step = record["step"]
        # growth scores: |dense gradient of this step's batch| (read before the gradients were masked)
        for name, grad in record["pre"]["grads"].items():
            assert torch.equal(record["before"]["scores"][name], grad.abs())
            inactive = ~record["before"]["masks"][name]
            assert grad[inactive].abs().sum() > 0  # dense: defined at inactive positions too
        check_update(method, record)
        # no optimizer step on an update iteration: the weights that stay active end the iteration unchanged
        assert not cls.took_step[step]
        for name, mask in record["final"]["masks"].items():
            stayed = mask & record["before"]["masks"][name]
            assert torch.equal(record["final"]["weights"][name][stayed], record["pre"]["weights"][name][stayed])
    assert all(cls.took_step[t] for t in range(total) if t not in expected)

    # the log: one event per update, stamped with the steps done (the update replaces step t), drop fraction f(t)
    events = read_events(tmp_path)
    assert [e["step"] for e in events] == expected
    for event, record in zip(events, cls.updates):
        t = event["step"]
        assert event["drop_fraction"] == pytest.approx(
            dst.drop_fraction(t, alpha=0.3, alpha_min=0.0, decay="cosine", end_step=end), abs=1e-12)
        counts = record["before"]["counts"]
        dropped = sum(dst.drop_count(c, event["drop_fraction"], "floor") for n, c in counts.items()
                      if c < record["before"]["masks"][n].numel())
        assert event["dropped"] == event["grown"] == dropped
        created = sum(int((record["after"]["masks"][n] & ~record["before"]["masks"][n]).sum()) for n in counts)
        assert event["churn"] == pytest.approx(created / sum(counts.values()))
    assert events[0]["drop_fraction"] == pytest.approx(0.3)
    assert summary["dynamics"]["mask_updates"] == len(expected)
    assert summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)


def test_rigl_dropped_then_regrown_connections_keep_their_value(compose_config, tmp_path, monkeypatch):
    """Force a just-dropped position to win the growth (odd positions get a huge grow score): it comes back with
    its old weight, while the other grown connections are new and start at 0."""

    class Forced(methods.METHODS["rigl"]):
        def grow_scores(self, step):
            scores = super().grow_scores(step)
            return {n: s + 1e6 * (self.maskset.masks[n] & (torch.arange(s.numel()).view_as(s) % 2 == 1))
                    for n, s in scores.items()}

    monkeypatch.setitem(methods.METHODS, "rigl", Forced)
    overrides = ["method=rigl", *BASE, "steps=12", "method.delta_t=5"]
    cls, _ = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    assert cls.update_steps == [0, 5]
    for record in cls.updates:
        regrown = check_update(cls.method, record)
        assert regrown > 100
        new_total = 0
        for name, old in record["before"]["masks"].items():
            new = record["after"]["masks"][name]
            odd = torch.arange(old.numel()).view_as(old) % 2 == 1
            # every dropped odd position is back, with its (non-zero) weight; even ones were replaced by new ones
            assert torch.equal(new & old & odd, old & odd)
            assert torch.equal(record["after"]["weights"][name][old & odd], record["before"]["weights"][name][old & odd])
            if record["step"] == 0:  # the initial weights are all non-zero
                assert torch.all(record["before"]["weights"][name][old & odd] != 0)
            new_total += int((new & ~old).sum())
        assert new_total > 0


def test_rigl_without_skipping_the_optimizer_moves_surviving_weights(compose_config, tmp_path, monkeypatch):
    overrides = ["method=rigl", *BASE, "steps=16", "method.delta_t=5", "method.skip_step_on_update=false"]
    cls, _ = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    end = round(0.75 * 16)
    assert cls.update_steps == [0, 5, 10] and end == 12
    assert all(cls.took_step.values())
    for record in cls.updates:
        # the update runs after the step: grow scores are still this batch's dense gradient
        for name, grad in record["pre"]["grads"].items():
            assert torch.equal(record["before"]["scores"][name], grad.abs())
        check_update(cls.method, record)
        for name, mask in record["final"]["masks"].items():
            stayed = mask & record["before"]["masks"][name]
            moved = record["final"]["weights"][name][stayed] != record["pre"]["weights"][name][stayed]
            assert moved.float().mean() > 0.9, name
    # stamped with the steps done: the update follows step t, so t + 1
    assert [e["step"] for e in read_events(tmp_path)] == [1, 6, 11]


def test_set_updates_at_epoch_ends_with_seeded_random_growth(compose_config, tmp_path, monkeypatch):
    overrides = ["method=set", *BASE, "epochs=3", "seed=0"]
    original = methods.METHODS["set"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path / "a", overrides)
    spe = summary["steps_per_epoch"]
    assert cls.update_steps == [spe - 1, 2 * spe - 1]  # none after the last step
    for record in cls.updates:
        check_update(cls.method, record)
        # the grow scores are uniform in [0, 1), unrelated to the gradient
        for name, score in record["before"]["scores"].items():
            assert 0 <= score.min() and score.max() < 1
            assert not torch.equal(score, record["pre"]["grads"][name].abs())
    events = read_events(tmp_path / "a")
    assert [e["step"] for e in events] == [spe, 2 * spe]  # at the end of every epoch but the last
    assert all(e["step"] % spe == 0 for e in events)
    assert [e["drop_fraction"] for e in events] == [0.3] * 2  # constant zeta
    for event, record in zip(events, cls.updates):
        assert event["dropped"] == sum(math.ceil(round(0.3 * c, 9)) for c in record["before"]["counts"].values())

    monkeypatch.setitem(methods.METHODS, "set", original)
    same = run(compose_config(*overrides), tmp_path / "b", overrides)
    other = ["method=set", *BASE, "epochs=3", "seed=1"]
    run(compose_config(*other), tmp_path / "c", other)
    a, b, c = (load_masks(tmp_path / d / "masks" / "final.safetensors") for d in "abc")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
    assert events_without_time(tmp_path / "a") == events_without_time(tmp_path / "b")
    assert same["dynamics"] == summary["dynamics"]


def test_set_grow_scores_are_a_seeded_draw(compose_config, tmp_path, monkeypatch):
    """SET's grow scores are a seeded draw: identical in two runs with one seed, new at every update, and
    different under another seed."""
    seen = {}

    class Probe(methods.METHODS["set"]):
        def grow_scores(self, step):
            scores = super().grow_scores(step)
            seen.setdefault(self.ctx.seed, []).append({n: s.clone() for n, s in scores.items()})
            return scores

    monkeypatch.setitem(methods.METHODS, "set", Probe)
    for seed in (0, 0, 1):
        overrides = ["method=set", *BASE, "steps=7", "method.update_at=step", "method.delta_t=5", f"seed={seed}"]
        run(compose_config(*overrides), tmp_path / f"{seed}-{len(seen.get(seed, []))}", overrides)
    first, again = seen[0][:2], seen[0][2:]
    assert len(first) == 2 and len(again) == 2  # steps 0 and 5, twice
    assert all(torch.equal(first[i][n], again[i][n]) for i in range(2) for n in first[i])
    assert not any(torch.equal(first[0][n], first[1][n]) for n in first[0])  # a new draw at every update
    assert not any(torch.equal(first[0][n], seen[1][0][n]) for n in first[0])


def snfs_grows(method, record) -> dict[str, int]:
    """sparse_learning's regrowth per layer: shares of the mean |momentum| over each layer's active weights, every
    layer taking part; drops ceil(rate x active)."""
    before = record["before"]
    counts, masks, scores = before["counts"], before["masks"], before["scores"]
    means = {n: float((scores[n] * masks[n]).sum() / counts[n]) for n in counts}
    shares = {n: m / sum(means.values()) for n, m in means.items()}
    drops = {n: dst.drop_count(counts[n], fraction_at(method, record["step"]), "ceil") for n in counts}
    capacity = {n: masks[n].numel() - counts[n] + drops[n] for n in counts}
    return dst.redistribute(sum(drops.values()), shares, capacity)


def check_snfs_updates(cls) -> None:
    layer_counts_changed = False
    for record in cls.updates:
        counts = record["before"]["counts"]
        check_update(cls.method, record, snfs_grows(cls.method, record))
        after_counts = {n: int(m.sum()) for n, m in record["after"]["masks"].items()}
        assert sum(after_counts.values()) == sum(counts.values())  # the total is preserved exactly
        layer_counts_changed |= after_counts != counts
    assert layer_counts_changed


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_snfs_grows_by_the_optimizers_dense_momentum(optimizer, compose_config, tmp_path, monkeypatch):
    """sparse_learning masks only the weights: gradients and the optimizer's momentum stay dense (so the "state is
    0 at pruned positions" invariant does not hold: what holds is that pruned *weights* are 0 after every step),
    and growth reads the optimizer's momentum at the update (Adam: m / (sqrt(v) + 1e-8))."""
    checked = []

    class Probe(methods.METHODS["snfs"]):
        def grow_scores(self, step):
            scores = super().grow_scores(step)
            for name, param in self.targets.params.items():
                state = self.ctx.optimizer.state[param]
                momentum = (state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8) if optimizer == "adam"
                            else state["momentum_buffer"])
                assert torch.equal(scores[name], momentum.abs()), (step, name)
            checked.append(step)
            return scores

    monkeypatch.setitem(methods.METHODS, "snfs", Probe)
    overrides = ["method=snfs", *BASE, *OPTIMIZERS[optimizer], "epochs=2", "method.update_at=step",
                 "method.delta_t=5"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides, layer_counts=False,
                                masked_state=False)
    assert cls.update_steps == checked == list(range(4, 43, 5))  # after every delta_t steps (sparse_learning)
    check_snfs_updates(cls)
    method = cls.method
    assert set(method.targets.params) == {"1.weight", "3.weight", "5.weight"}
    initial = cls.updates[0]["before"]["masks"]  # uniform over all layers, the first included
    assert all(m.float().mean().item() == pytest.approx(1 - SPARSITY, abs=1e-3) for m in initial.values())
    for name, mask in method.maskset.masks.items():
        param = method.targets.params[name]
        if mask.all():
            continue  # redistribution may fill a layer
        assert (param.grad[~mask] != 0).any(), name  # dense gradient reaches the optimizer
        for key, value in state_buffers(method, param).items():
            assert (value[~mask] != 0).any(), (name, key)  # dense optimizer state
    assert summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)


def test_snfs_optimizer_momentum_needs_momentum(compose_config, tmp_path):
    overrides = ["method=snfs", *BASE, "steps=3", "optimizer.momentum=0"]
    with pytest.raises(ConfigError, match="method.momentum_source=optimizer needs an optimizer with momentum"):
        run(compose_config(*overrides), tmp_path, overrides)


def test_snfs_own_momentum_variant(compose_config, tmp_path, monkeypatch):
    """``momentum_source=own`` (the RigL TF "momentum" baseline): the method's momentum of the dense gradient,
    with gradients and optimizer state masked like every other method."""
    manual: dict[str, torch.Tensor] = {}
    checked = []

    def per_step(method, step):  # the method's momentum of the dense gradient, computed by hand
        for name, param in method.targets.params.items():
            grad = param.grad.detach()
            manual[name] = grad.clone() if name not in manual else manual[name] * 0.9 + grad

    class WithMomentum(methods.METHODS["snfs"]):
        def observe(self, step):
            super().observe(step)
            for name in manual:
                assert torch.equal(self.momentum[name], manual[name]), (step, name)
            checked.append(step)

        def grow_scores(self, step):
            scores = super().grow_scores(step)
            for name in manual:  # |momentum| of the dense gradients, this step's included
                assert torch.equal(scores[name], manual[name].abs()), (step, name)
            return scores

    monkeypatch.setitem(methods.METHODS, "snfs", WithMomentum)
    overrides = ["method=snfs", *BASE, "epochs=2", "method.update_at=step", "method.delta_t=5",
                 "method.momentum_source=own", "method.reset_momentum=true"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides, layer_counts=False,
                                per_step=per_step)
    assert checked == list(range(summary["steps"]))
    assert cls.update_steps == list(range(4, 43, 5))
    check_snfs_updates(cls)
    method = cls.method  # the momentum is of the dense gradient: non-zero at inactive positions too
    assert all((method.momentum[n][~method.maskset.masks[n]] != 0).any() for n in ("1.weight", "3.weight"))
    assert summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)


def test_snfs_full_layers_take_part_in_redistribution(compose_config):
    """A layer at density 1 is not left out (as in sparse_learning): with more than its even share of momentum it
    drops at most its sparsity (0 here), and it still shares its momentum and can give weights to the others."""
    method = set_up(compose_config, "method.momentum_source=own", method="snfs")
    method.start_round(0)
    first, second = method.targets.params
    full = {first: torch.ones(16, 8, dtype=torch.bool), second: method.maskset.masks[second].clone()}
    method.set_masks(full)
    method.momentum[first].fill_(1.0)  # the full layer has most of the momentum
    method.momentum[second].fill_(0.01)
    counts = method.maskset.counts()
    drops = method.drop_counts(counts, 0.5)
    assert set(drops) == {first, second} and drops[first] == 0 and drops[second] == math.ceil(0.5 * counts[second])
    method.momentum[first].fill_(0.001)  # now below its even share: it drops like the others
    drops = method.drop_counts(counts, 0.5)
    assert drops[first] == 64 and drops[second] == math.ceil(0.5 * counts[second])
    grows = method.grow_counts(drops, {n: counts[n] - drops[n] for n in counts})
    assert sum(grows.values()) == sum(drops.values()) and grows[first] < drops[first]


def test_snfs_without_redistribution_keeps_every_layer_count(compose_config, tmp_path, monkeypatch):
    overrides = ["method=snfs", *BASE, "epochs=2", "method.update_at=step", "method.delta_t=5",
                 "method.redistribute=none"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides, masked_state=False)
    assert len(cls.updates) == 8
    for record in cls.updates:
        check_update(cls.method, record)
        assert {n: int(m.sum()) for n, m in record["after"]["masks"].items()} == record["before"]["counts"]


def test_itop_rate(compose_config, tmp_path, monkeypatch):
    overrides = ["method=itop", *BASE, "epochs=2", "method.delta_t=5"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    method = cls.method
    assert cls.update_steps == list(range(4, 43, 5))  # after every delta_t steps, as the reference
    for record in cls.updates:
        check_update(method, record)
    events = read_events(tmp_path)
    assert [e["step"] for e in events] == [t + 1 for t in cls.update_steps]
    rates = [e["itop_rate"] for e in events]
    numel = sum(m.numel() for m in method.maskset.masks.values())
    initial = 1 - sum(method.layer_zeros(SPARSITY).values()) / numel
    assert initial == pytest.approx(0.1, abs=1e-3)
    assert rates[0] > initial and all(a <= b for a, b in zip(rates, rates[1:])) and rates[-1] <= 1
    # R_s counts every weight ever active: the union of the masks seen at every update, and the initial one
    fired = {n: m.clone() for n, m in cls.updates[0]["before"]["masks"].items()}
    for record, rate in zip(cls.updates, rates):
        for n in fired:
            fired[n] |= record["after"]["masks"][n]
        assert rate == pytest.approx(sum(int(m.sum()) for m in fired.values()) / numel, abs=1e-12)
    dynamics = summary["dynamics"]
    assert dynamics["itop_rate"] == rates[-1] and dynamics["mask_updates"] == len(events)
    layers = summary["masks"]["layers"]
    weighted = sum(dynamics["itop_rate_layers"][n] * layers[n]["numel"] for n in layers) / numel
    assert weighted == pytest.approx(dynamics["itop_rate"], abs=1e-12)
    for n, rate in dynamics["itop_rate_layers"].items():
        assert rate == pytest.approx(int(fired[n].sum()) / fired[n].numel(), abs=1e-12)
        assert layers[n]["density"] <= rate <= 1


def test_itop_rate_is_constant_when_nothing_is_dropped(compose_config, tmp_path):
    overrides = ["method=itop", *BASE, "epochs=1", "method.delta_t=5", "method.alpha=1e-6",
                 "method.alpha_min=0", "method.drop_rounding=floor"]
    summary = run(compose_config(*overrides), tmp_path, overrides)
    events = read_events(tmp_path)
    assert len(events) == 4 and all(e["dropped"] == 0 and e["churn"] == 0 for e in events)
    density = 1 - summary["masks"]["sparsity"]
    assert all(e["itop_rate"] == pytest.approx(density, abs=1e-12) for e in events)
    assert summary["dynamics"]["itop_rate"] == pytest.approx(density, abs=1e-12)


def test_static_has_no_dynamics(compose_config, tmp_path):
    overrides = ["method=static", *BASE, "steps=3"]
    summary = run(compose_config(*overrides), tmp_path, overrides)
    assert "dynamics" not in summary and not read_events(tmp_path)


OPTIMIZERS = {
    "sgd": ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-3", "optimizer.nesterov=true"],
    "adam": ["optimizer=adam", "optimizer.lr=3e-3", "optimizer.weight_decay=1e-3"],
    "adamw": ["optimizer=adamw", "optimizer.lr=3e-3", "optimizer.weight_decay=0.05"],
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("method", ["rigl", "set", "itop"])
def test_pruned_state_is_zero_after_every_step(method, optimizer, compose_config, tmp_path, monkeypatch):
    overrides = [f"method={method}", *BASE, *OPTIMIZERS[optimizer], "steps=24", "method.delta_t=4",
                 "method.update_at=step"]
    cls, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)  # checks every step
    assert len(cls.updates) >= 4
    for record in cls.updates:
        check_update(cls.method, record)
    weights = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name, mask in load_masks(tmp_path / "masks" / "final.safetensors").items():
        assert torch.all(weights[name][~mask] == 0)


def test_default_rigl_runs_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("method=rigl", f"sparsity={SPARSITY}", "epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "rigl" and summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)
    assert 1 - SPARSITY < summary["dynamics"]["itop_rate"] <= 1
    assert [e["step"] for e in read_events(run_dir)] == [0]  # delta_t 100 > T_end = 33 steps


@pytest.mark.parametrize("method", ["rigl", "snfs"])
def test_crash_and_resume_is_bit_identical(method, compose_config, tmp_path, monkeypatch):
    """Masks, the fired mask R_s, SNFS momentum and optimizer state survive a crash: the resumed run ends
    identical; the crash falls after an update and the resumed part redoes one (step 25)."""
    overrides = [f"method={method}", f"sparsity={SPARSITY}", "epochs=2", "device=cpu", "checkpoint_every=5it",
                 "resume=auto", "model.dropout=0.1", "method.delta_t=5", "method.update_at=step"]
    reference = run(compose_config(*overrides), tmp_path / "reference", overrides)

    crashing_method = crashing(methods.METHODS[method], 28)
    monkeypatch.setitem(methods.METHODS, method, crashing_method)
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(*overrides), tmp_path / "crashed", overrides)
    resumed = run(compose_config(*overrides), tmp_path / "crashed", overrides)
    assert crashing_method.calls == 28 + 44 - 25
    assert resumed["final"] == reference["final"] and resumed["masks"] == reference["masks"]
    assert resumed["dynamics"] == reference["dynamics"] and resumed["flops"] == reference["flops"]
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("reference", "crashed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("masks", "fired") + (("momentum",) if method == "snfs" else ()):
        assert set(a["method"][key]) == set(b["method"][key])
        assert all(torch.equal(a["method"][key][k], b["method"][key][k]) for k in a["method"][key]), key
    assert a["method"]["updates"] == b["method"]["updates"] == reference["dynamics"]["mask_updates"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)
    assert events_without_time(tmp_path / "reference") == events_without_time(tmp_path / "crashed")

