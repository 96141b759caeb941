"""GaP, cyclic: the schedule and partitions as pure functions, the invariants in training."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import crash_and_resume
from sparsetrain import methods
from sparsetrain.methods.build import build_method
from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.sparsity.phases import balanced_partitions, cyclic_gap, parallel_gap
from sparsetrain.runner.run import run


def test_cyclic_schedule_has_one_dense_partition_at_a_time():
    schedule = cyclic_gap(3, 2, 10, 40)
    assert [s.grow for s in schedule] == [0, 1, 2, 0, 1, 2, 0, None]
    assert [s.prune for s in schedule] == [None, 0, 1, 2, 0, 1, 2, 0]  # the partition dense in the step before
    assert [s.length for s in schedule] == [10] * 7 + [40]
    assert all(s.prune == before.grow for before, s in zip(schedule, schedule[1:]))


def test_balanced_partitions_are_contiguous_and_even():
    assert balanced_partitions([100] * 6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert balanced_partitions([1000, 10, 10, 10], 2) == [[0], [1, 2, 3]]
    assert balanced_partitions([5, 1, 1, 1, 1, 1], 3) == [[0], [1, 2], [3, 4, 5]]  # cuts nearest 10/3 and 20/3
    with pytest.raises(ValueError, match="method.num_partitions=4"):
        balanced_partitions([1, 2, 3], 4)


# ---- in training (LeNet-300-100: 3 prunable layers; 22 steps an epoch) ---------------------------------------
SPARSITY = 0.9
RUN = ["method=gap", f"sparsity={SPARSITY}", "epochs=1", "device=cpu", "method.rounds=1", "method.finetune=100%"]


def _checked(cls):
    class Checked(cls):
        dense_seen: list[tuple[int, int | None]] = []
        grown_checked = 0

        def start_round(self, round_index):
            super().start_round(round_index)
            self.current = round_index
            grow = self.schedule[round_index].grow
            if round_index > 0 and grow is not None:
                state = self.ctx.optimizer.state
                for name in self.partitions[grow]:
                    param = self.targets.params[name]
                    assert torch.all(param[self.before[name]] == 0)  # grown weights re-enter at zero
                    assert all(not torch.is_tensor(v) or torch.all(v == 0) for v in state.get(param, {}).values())
                    Checked.grown_checked += 1

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            masks, params, round_index = self.maskset.masks, self.targets.params, self.current
            target = self.layer_zeros(SPARSITY)
            dense = [j for j, group in enumerate(self.partitions) if all(bool(masks[n].all()) for n in group)]
            assert dense == ([] if self.dense_partition(round_index) is None else [self.dense_partition(round_index)])
            for j, group in enumerate(self.partitions):
                for name in group:
                    if j not in dense:
                        assert int((~masks[name]).sum()) == target[name], (round_index, name)
                    assert torch.all(params[name][~masks[name]] == 0)
            self.before = {name: ~mask.clone() for name, mask in masks.items()}
            Checked.dense_seen.append((round_index, dense[0] if dense else None))

    return Checked


@pytest.mark.parametrize("partitions", [[], ["method.partitions=['1.weight|5.weight','3.weight']",
                                               "method.distribution=erk"]])
def test_one_partition_dense_at_every_step_and_exact_counts(partitions, compose_config, tmp_path, monkeypatch):
    cls = _checked(methods.METHODS["gap"])
    monkeypatch.setitem(methods.METHODS, "gap", cls)
    overrides = [*RUN, *partitions] if partitions else [*RUN, "method.num_partitions=3"]
    summary = run(compose_config(*overrides), tmp_path, overrides)
    k = 2 if partitions else 3
    expected = [*range(k), 0, None]  # one cycle, then the fine-tuning
    assert [d for _, d in sorted(set(cls.dense_seen))] == expected
    assert len(cls.dense_seen) == summary["steps"] * (k + 2) and cls.grown_checked > 0
    assert summary["masks"]["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)
    densities = [layer["density"] for layer in summary["masks"]["layers"].values()]
    if partitions:  # ERK: non-uniform per-layer targets
        assert max(densities) > 0.5 and min(densities) < 0.1
    else:
        assert densities == pytest.approx([0.1] * 3, abs=1e-3)
    assert (tmp_path / "gap_steps.csv").is_file() and len(summary["rounds"]) == k + 2


def test_finetune_length_and_lr_restart(compose_config, tmp_path):
    overrides = [*RUN, "method.num_partitions=2", "method.finetune=2ep", "schedule=linear"]
    run(compose_config(*overrides), tmp_path, overrides)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [(e["round"], e["epoch"], e["lr"]) for e in events if e["event"] == "train"]
    assert [(r, e) for r, e, _ in train] == [(0, 1), (1, 1), (2, 1), (3, 1), (3, 2)]
    first = {e["round"]: e["step"] for e in events if e["event"] == "gap_step"}
    assert first == {0: 0, 1: 0, 2: 0, 3: 0}  # every GaP step restarts the step counter and the schedule


def test_partitions_must_cover_every_layer_once(compose_config, tmp_path):
    overrides = [*RUN, "method.partitions=['1.weight','3.weight']"]
    with pytest.raises(ConfigError, match=r"in none: \['5.weight'\]"):
        run(compose_config(*overrides), tmp_path, overrides)


def test_crash_and_resume_inside_a_gap_step_is_bit_identical(compose_config, tmp_path, monkeypatch):
    crash_after = 30  # 22 steps an epoch: inside GaP step 1
    overrides = [*RUN, "method.num_partitions=2", "checkpoint_every=5it", "resume=auto", "model.dropout=0.1"]
    crash_and_resume(compose_config, tmp_path, monkeypatch, "gap", overrides, crash_after)


def test_cifar_preset_is_a_valid_gap_run(compose_config):
    cfg = compose_config("+experiment=gap_resnet20_cifar10")
    validate(cfg)
    method = build_method(cfg.method, cfg.sparsity)
    assert (method.k, method.rounds, cfg.epochs, cfg.method.finetune) == (4, 4 * 2 + 2, 10, "40ep")


# ---- P-GaP, its replicas one after another ------------------------------------------------------------------
PARALLEL = [*RUN, "method.mode=parallel", "method.num_partitions=2", "model.dropout=0.1"]


def test_parallel_schedule_grows_each_partition_in_its_replica():
    schedule = parallel_gap(3, 2, 10, 40)
    assert [s.grow for s in schedule] == [0, 1, 2, 0, 1, 2, None]
    assert [s.combine for s in schedule] == [False, False, True, False, False, True, False]
    assert all(s.prune is None for s in schedule) and schedule[-1].length == 40
    on_rank_1 = parallel_gap(3, 2, 10, 40, replica=1)  # torchrun: one training per cycle, each ending in the combine
    assert [(s.grow, s.combine, s.length) for s in on_rank_1] == [(1, True, 10), (1, True, 10), (None, False, 40)]


def test_combine_copies_partition_i_from_replica_i_before_the_reprune(compose_config, tmp_path, monkeypatch):
    seen = {"starts": [], "finals": [], "combined": [], "pruned": []}

    class Recording(methods.METHODS["gap"]):
        def start_round(self, round_index):
            super().start_round(round_index)
            seen["partitions"] = self.partitions
            seen["starts"].append((round_index, {k: v.clone() for k, v in self.ctx.model.state_dict().items()},
                                   {k: v.clone() for k, v in self.shared["model"].items()}))

        def end_round(self, round_index):
            seen["finals"].append({k: v.clone() for k, v in self.ctx.model.state_dict().items()})
            super().end_round(round_index)
            if self.schedule[round_index].combine:
                seen["pruned"].append(({k: v.clone() for k, v in self.ctx.model.state_dict().items()},
                                       {k: v.clone() for k, v in self.maskset.masks.items()}))

        def combine(self, replicas):
            combined = super().combine(replicas)
            seen["combined"].append({k: v.clone() for k, v in combined.items()})
            return combined

    monkeypatch.setitem(methods.METHODS, "gap", Recording)
    summary = run(compose_config(*PARALLEL), tmp_path, PARALLEL)
    assert len(seen["partitions"]) == 2
    (combined,), ((pruned, masks),) = seen["combined"], seen["pruned"]
    for i, group in enumerate(seen["partitions"]):
        for name in group:
            bias = name.replace("weight", "bias")
            assert torch.equal(combined[name], seen["finals"][i][name])  # bit for bit from replica i
            assert torch.equal(combined[bias], seen["finals"][i][bias])
            assert not torch.equal(seen["finals"][1 - i][name], seen["finals"][i][name])
            assert int((~masks[name]).sum()) == round(0.9 * masks[name].numel())  # every layer back at its target
            assert torch.equal(pruned[name], combined[name] * masks[name])
    for round_index, start, shared in seen["starts"][:2]:  # both replicas start from the shared sparse model
        assert all(torch.equal(start[k], shared[k]) for k in shared)
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-4) and len(summary["rounds"]) == 3


@pytest.mark.parametrize("combine", ["block", "average"])
def test_a_batchnorm_travels_with_its_layers_block(compose_config, tmp_path, monkeypatch, combine):
    """ResNet-20's BatchNorms (weight, bias, running statistics) come bit for bit from the replica that grew the
    convolution before them (``combine=block``, the authors'), or are averaged over the replicas (``average``)."""
    seen = {}

    class Recording(methods.METHODS["gap"]):
        def combine(self, replicas):
            combined = super().combine(replicas)
            seen.update(replicas=replicas, combined=combined, partitions=self.partitions)
            return combined

    monkeypatch.setitem(methods.METHODS, "gap", Recording)
    overrides = ["method=gap", "method.mode=parallel", "method.num_partitions=2", "method.rounds=1",
                 f"method.combine={combine}", "method.finetune=2it", "sparsity=0.8", "model=resnet20",
                 "dataset=synthetic", "dataset.image_size=8", "dataset.train_size=64", "dataset.test_size=16",
                 "batch_size=16", "steps=4", "eval_every=0", "device=cpu"]
    run(compose_config(*overrides), tmp_path, overrides)
    replicas, combined = seen["replicas"], seen["combined"]
    owner = {name.rpartition(".")[0]: i for i, group in enumerate(seen["partitions"]) for name in group}
    norms = [(name, owner.get(name.replace("bn", "conv").rpartition(".")[0])) for name in combined
             if ".bn" in name and name.replace("bn", "conv").rpartition(".")[0] in owner]
    assert len({i for _, i in norms}) == 2 and any(name.endswith("running_mean") for name, _ in norms)
    for name, i in norms:
        if combine == "block":  # only the owning replica hands it in
            assert torch.equal(combined[name], replicas[i][name]) and name not in replicas[1 - i], name
        elif combined[name].is_floating_point():
            assert torch.equal(combined[name], torch.stack([r[name] for r in replicas]).mean(0)), name
    if combine == "average":  # the replicas' norms moved apart, so where each comes from matters
        assert any(not torch.equal(replicas[0][name], replicas[1][name]) for name, _ in norms)


def test_crash_and_resume_inside_a_replica_is_bit_identical(compose_config, tmp_path, monkeypatch):
    crash_after = 30  # 22 steps an epoch: inside replica 1, with replica 0's hand-in in the method state
    overrides = [*PARALLEL, "checkpoint_every=5it", "resume=auto"]
    crash_and_resume(compose_config, tmp_path, monkeypatch, "gap", overrides, crash_after)
