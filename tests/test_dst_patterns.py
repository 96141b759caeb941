"""Dynamic sparse training under patterns: every group keeps exactly its count after every mask update (rigl, set,
snfs, itop under nm and fanin), SRigL's constant fan-in over live neurons and its ablated all-zero neurons, a
bit-exact resume inside a fanin run, and one-line refusals for the patterns still not taken."""

from __future__ import annotations

import pytest
import torch

from conftest import crash_and_resume
from sparsetrain import methods
from sparsetrain.runner.run import run
from sparsetrain.sparsity import dst
from sparsetrain.sparsity.flat import FlatLayout
from sparsetrain.sparsity.patterns import groups, keep_count, matrix, select, tile_sums
from sparsetrain.training.graphs import HostReads
from test_patterns import holds, pattern

BASE = ["device=cpu", "model=lenet300_100", "checkpoint_every=0", "eval_every=0", "steps=30", "method.delta_t=5",
        "method.update_at=step", "method.tie_noise=0"]
SPARSITY = {"nm": "sparsity=0.5", "fanin": "sparsity=0.9"}


pytestmark = pytest.mark.usefixtures("one_thread")


def recording(cls):
    """``cls`` recording, around every mask update: the masks, |w| and grow scores before, the masks after, and
    the host reads (device syncs) of the update."""

    class Recording(cls):
        updates: list[dict] = []

        def update(self, step, scores):
            before = {"masks": {n: m.clone() for n, m in self.maskset.masks.items()},
                      "magnitude": {n: p.detach().abs().clone() for n, p in self.targets.params.items()},
                      "scores": {n: s.clone() for n, s in scores.items()}, "counts": dict(self.maskset.counts())}
            reads = []
            with HostReads(reads.append):
                super().update(step, scores)
            Recording.updates.append({"step": step, "method": self, **before, "reads": reads,
                                      "after": {n: m.clone() for n, m in self.maskset.masks.items()}})

    return Recording


def run_recorded(compose_config, monkeypatch, tmp_path, overrides):
    cfg = compose_config(*overrides)
    cls = recording(methods.METHODS[cfg.method.name])
    monkeypatch.setitem(methods.METHODS, cfg.method.name, cls)
    return cls.updates, run(cfg, tmp_path / "run", overrides)


# ---- the drop/grow primitive ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nm", "fanin"])
def test_drop_grow_refills_every_group_with_its_top_grow_scores(name):
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(8, 16, generator=generator),
               torch.randn(6, 8, 3, 3, generator=generator).to(memory_format=torch.channels_last)]
    p = pattern(name)
    masks = [select(p, torch.rand(w.shape, generator=generator), keep_count(p, w.shape, w.numel() // 4))
             for w in weights]
    weights = [w * m for w, m in zip(weights, masks)]
    drops = [int(m.sum()) // 3 for m in masks]
    scores = [torch.rand(w.shape, generator=generator) for w in weights]
    layout = FlatLayout(weights)
    new, fresh = dst.drop_grow(layout, weights, masks, drops, drops, scores, None, p)
    for after, old, weight, score, drop in zip(layout.views(new), masks, weights, scores, drops):
        holds(name, after, int(old.sum()))
        removed = old & ~after
        assert 0 < int(removed.sum()) <= drop  # the layer-wide drop: among the `drop` smallest active |w|
        assert weight.abs()[removed].max() <= weight.abs()[old].sort().values[drop - 1]
        created, score_rows, rest = groups(p, after & ~old), groups(p, score), groups(p, ~after)
        for row in range(created.shape[0]):  # grown in a group: its top scores among what it did not keep
            if created[row].any() and rest[row].any():
                assert score_rows[row][created[row]].min() >= score_rows[row][rest[row]].max()
    assert torch.equal(fresh, new & ~layout.flat(masks))


def test_drop_grow_targets_empty_groups_first_and_trim_the_smallest():
    weight = torch.tensor([[5.0, 4.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]])
    mask = weight != 0
    scores = torch.tensor([[0.0, 0.0, 9.0, 1.0], [0.0, 0.0, 2.0, 8.0], [0.0, 0.0, 7.0, 7.0]])
    new, _ = dst.drop_grow(FlatLayout([weight]), [weight], [mask], [2], [2], [scores], None, pattern("fanin"),
                           [torch.tensor([1, 3, 0])])
    # row 2 (target 0) takes both drops; row 0 keeps its largest; row 1 grows its best
    assert new.view(3, 4).tolist() == [[True, False, False, False], [True, True, False, True], [False] * 4]


# ---- the methods in the training loop ------------------------------------------------------------------------------
@pytest.mark.parametrize("method,name,extra", [
    ("rigl", "fanin", []),
    ("rigl", "nm", []),
    ("set", "fanin", []),
    ("set", "nm", []),
    ("snfs", "fanin", ["method.redistribute=none"]),
    ("itop", "nm", ["method.growth=random"]),
])
def test_every_group_keeps_its_count_after_every_update(compose_config, tmp_path, monkeypatch, method, name, extra):
    overrides = [f"method={method}", f"method.pattern.name={name}", SPARSITY[name], *BASE, *extra]
    updates, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    assert len(updates) == summary["dynamics"]["mask_updates"] >= 5
    churned = 0
    for record in updates:
        cfg, instance = record["method"].cfg, record["method"]
        fraction = dst.drop_fraction(record["step"], alpha=cfg.alpha, alpha_min=cfg.alpha_min, decay=cfg.decay,
                                     end_step=instance.end_step)
        for layer, old in record["masks"].items():
            new, count, magnitude = record["after"][layer], record["counts"][layer], record["magnitude"][layer]
            holds(name, new, count)
            holds(name, old, count)
            drop = dst.drop_count(count, fraction, cfg.drop_rounding)
            removed = old & ~new
            assert int(removed.sum()) <= drop
            if removed.any():  # dropped by magnitude over the layer
                assert magnitude[removed].max() <= magnitude[old].sort().values[drop - 1]
            churned += int(removed.sum())
    assert churned > 0


@pytest.mark.parametrize("method,extra", [("rigl", []), ("set", []), ("snfs", ["method.redistribute=none"])])
def test_block_updates_drop_the_weakest_whole_tiles_and_keep_every_count(compose_config, tmp_path, monkeypatch, method,
                                                                         extra):
    """Under ``block`` a tile's magnitude is the sum of its |w|: the tiles an update removes are among the layer's
    weakest active ones (as many as the drop, in whole tiles), and every mask is whole tiles with the layer's count."""
    overrides = [f"method={method}", "method.pattern.name=block", "method.pattern.block=[2,4]", "sparsity=0.9", *BASE,
                 *extra]
    updates, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    assert len(updates) == summary["dynamics"]["mask_updates"] >= 5
    p, churned = pattern("block"), 0
    for record in updates:
        cfg, instance = record["method"].cfg, record["method"]
        fraction = dst.drop_fraction(record["step"], alpha=cfg.alpha, alpha_min=cfg.alpha_min, decay=cfg.decay,
                                     end_step=instance.end_step)
        for layer, old in record["masks"].items():
            new, count = record["after"][layer], record["counts"][layer]
            holds("block", new, count)
            holds("block", old, count)
            removed = tile_sums(p, old & ~new) > 0
            if removed.any():
                drop = instance.whole_tiles({layer: dst.drop_count(count, fraction, cfg.drop_rounding)})[layer] // 8
                sums = tile_sums(p, record["magnitude"][layer])
                assert sums[removed].max() <= sums[tile_sums(p, old) > 0].sort().values[drop - 1]
            churned += int(removed.sum())
    assert churned > 0


def test_an_update_under_a_pattern_reads_the_host_no_more_than_an_unstructured_one(compose_config, tmp_path,
                                                                                    monkeypatch):
    reads = {}
    for name in ("unstructured", "nm", "fanin"):
        overrides = ["method=rigl", f"method.pattern.name={name}", SPARSITY.get(name, "sparsity=0.9"), *BASE]
        updates, _ = run_recorded(compose_config, monkeypatch, tmp_path / name, overrides)
        reads[name] = [record["reads"] for record in updates]
    assert reads["nm"] == reads["fanin"] == reads["unstructured"] and reads["nm"][1] == ["tolist"]  # the log line


def test_srigl_keeps_a_constant_fan_in_over_live_neurons_and_ablates_whole_rows(compose_config, tmp_path,
                                                                                 monkeypatch):
    overrides = ["method=srigl", "sparsity=0.9", "method.gamma_sal=0.9", *BASE]
    updates, summary = run_recorded(compose_config, monkeypatch, tmp_path, overrides)
    method = updates[-1]["method"]
    output = list(method.targets.params)[-1]
    ablated_seen = 0
    for record in updates:
        for layer, new in record["after"].items():
            fan_ins = matrix(new).sum(1)
            live = fan_ins > 0
            budget = method.budget[layer]
            assert set(fan_ins[live].tolist()) == {budget // int(live.sum())}  # the budget over the live neurons
            if layer == output:
                assert live.all()
            ablated_seen += int((~live).sum())
    assert ablated_seen > 0 and summary["dynamics"]["ablated_neurons"][output] == 0
    for layer, mask in method.maskset.masks.items():  # ablated neurons hold no weights
        ablated = ~matrix(mask).any(1)
        assert summary["dynamics"]["ablated_neurons"][layer] == int(ablated.sum())
        assert torch.all(matrix(method.targets.params[layer].detach())[ablated] == 0)


def test_srigl_without_ablation_is_rigl_under_constant_fan_in(compose_config, tmp_path):
    common = ["sparsity=0.9", *BASE, "method.uniform_dense_first=false"]
    srigl = ["method=srigl", "method.gamma_sal=0", *common]
    rigl = ["method=rigl", "method.pattern.name=fanin", *common]
    a, b = (run(compose_config(*o), tmp_path / o[0], o) for o in (srigl, rigl))
    assert a["final"] == b["final"] and a["masks"] == b["masks"]


@pytest.mark.parametrize("method,extra", [("rigl", ["method.pattern.name=fanin", "method.tie_noise=1e-5"]),
                                          ("rigl", ["method.pattern.name=block", "method.pattern.block=[2,4]",
                                                    "method.tie_noise=1e-5"]),
                                          ("srigl", ["method.gamma_sal=0.9"])])
def test_resume_inside_a_pattern_constrained_run_is_bit_identical(compose_config, tmp_path, monkeypatch, method, extra):
    overrides = [f"method={method}", "sparsity=0.9", "steps=40", "device=cpu", "checkpoint_every=5it",
                 "resume=auto", "model.dropout=0.1", "method.delta_t=5", *extra]
    a, b = crash_and_resume(compose_config, tmp_path, monkeypatch, method, overrides, 18)
    assert a["method"]["updates"] == b["method"]["updates"] >= 5
    for key in ("masks", "fired"):
        assert all(torch.equal(a["method"][key][k], b["method"][key][k]) for k in a["method"][key])


@pytest.mark.parametrize("overrides,expected", [
    (["method=rigl", "sparsity=0.75", "method.pattern.name=channel"],
     "method=rigl cannot take method.pattern.name=channel (it takes unstructured, nm, fanin, block); e.g. "
     "method=static"),
    (["method=set", "sparsity=0.5", "method.pattern.name=channel"],
     "method=set cannot take method.pattern.name=channel"),
    (["method=srigl", "sparsity=0.5", "method.pattern.name=nm"],
     "method=srigl cannot take method.pattern.name=nm (it takes fanin)"),
    (["method=snfs", "sparsity=0.9", "method.pattern.name=fanin"],
     "method.redistribute=momentum moves growth across layers, but method.pattern.name=fanin fixes every layer's "
     "count; e.g. method.redistribute=none"),
    (["method=srigl", "sparsity=0.9", "method.gamma_sal=2"],
     "method.gamma_sal=2.0 must be a fraction of the fan-in in [0, 1]"),
])
def test_patterns_dst_cannot_take_are_refused_in_one_line(cli_in_process, tmp_path, overrides, expected):
    status, _, err = cli_in_process(tmp_path, *overrides)
    assert status == 2 and expected in err and err.count("\n") == 1 and not (tmp_path / "outputs").exists()
