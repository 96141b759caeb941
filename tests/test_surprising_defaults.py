"""Defaults that surprise: a method that plans no mask update in the run says so, a multi-round method's start line
gives the steps of all its rounds, mask training learns on the default run, flat features train on the default model,
and AC/DC's refusal at the default length suggests phases that fit."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sparsetrain
from sparsetrain.errors import ConfigError
from sparsetrain.methods.catalog import METHODS
from sparsetrain.runner.run import run

UPDATE_EVENTS = ("mask_update", "prune")


@pytest.mark.parametrize(("method", "options", "planned"), [
    ("rigl", {"delta_t": 7, "decay": "constant"}, 4),  # after steps 0, 7, 14 and 21: t_end 75 % of 30
    ("set", {}, 2),  # epoch ends at steps 10 and 20, not after the last
    ("snfs", {"update_at": "step", "delta_t": 4}, 7),
    ("itop", {"delta_t": 7}, 4),
    ("itop", {}, 0),  # delta_t 4000
    ("gmp", {"frequency": "4it", "end": "50%"}, 4),  # after 0, 4, 8 and 12 steps
    ("gmp", {"start": "5ep", "end": "6ep"}, 0),
])
def test_the_planned_mask_updates_are_the_ones_made(method, options, planned):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inputs, labels = torch.randn(128, 20), torch.randint(0, 3, (128,))
    sparsifier = sparsetrain.sparsify(model, optimizer, method, 0.5, total_steps=30, steps_per_epoch=10, **options)
    updates = sparsifier.method.mask_updates()
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        sparsifier.step()
    made = [event for event in sparsifier.events if event["event"] in UPDATE_EVENTS]
    assert len(updates.at) == len(made) == planned


@pytest.mark.parametrize("method", ["dense", "static", "snip", "mask_training"])
def test_a_method_whose_updates_cannot_miss_the_run_plans_none(method):
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(8, 20), torch.randint(0, 3, (8,)))]
    sparsifier = sparsetrain.sparsify(model, optimizer, method, 0.0 if method == "dense" else 0.5, total_steps=30,
                                      batches=batches)
    assert sparsifier.method.mask_updates() is None


def test_a_run_without_a_planned_mask_update_says_so_in_one_line_and_in_the_summary(compose_config, tmp_path, caplog):
    """SET updates at epoch ends but the last: one epoch trains the static mask; two epochs update once."""
    with caplog.at_level(logging.WARNING, logger="sparsetrain"):
        short = run(compose_config("method=set", "sparsity=0.9", "epochs=1", "device=cpu"), tmp_path / "short", [])
        longer = run(compose_config("method=set", "sparsity=0.9", "epochs=2", "device=cpu"), tmp_path / "longer", [])
    line = ("method=set makes no mask update in 22 steps: they come at the end of every epoch but the last "
            "(method.update_at=epoch_end); e.g. method.update_at=step method.delta_t=2, or epochs=2")
    assert [message for message in caplog.messages if "mask update" in message] == [line]
    assert short["warnings"] == [line] and short["dynamics"]["mask_updates"] == 0
    assert longer["warnings"] == [] and longer["dynamics"]["mask_updates"] == 1
    assert json.loads((tmp_path / "short" / "summary.json").read_text())["warnings"] == [line]


def test_the_start_line_of_a_multi_round_method_counts_every_round(compose_config, tmp_path, caplog):
    """GaP trains 1 + 3 partitions x 1 cycle GaP steps of the run's 5 steps, then a fine-tuning of 200 % of one."""
    overrides = ["method=gap", "sparsity=0.5", "steps=5", "method.rounds=1", "method.finetune=200%", "device=cpu",
                 "log_every=1it"]
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        run(compose_config(*overrides), tmp_path, overrides)
    (line,) = [message for message in caplog.messages if "steps of batch" in message]
    assert line.endswith("30 steps of batch 64 in 5 rounds (4 x 5 + 10 steps; set by steps, method.num_partitions, "
                         "method.rounds, method.finetune)")
    events = [json.loads(text) for text in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len([event for event in events if event["event"] == "train_step"]) == 30


def test_mask_training_learns_a_mask_on_the_default_run(compose_config, tmp_path):
    """The default score learning rate moves the scores under the default SGD run (TAMT's 5e-5 and resets every 1000
    steps leave about the OMP mask of the random weights: 35 % top-1 in 5 epochs at sparsity 0.9, 83 % now); the TAMT
    preset keeps the authors' values."""
    summary = run(compose_config("method=mask_training", "sparsity=0.9", "epochs=5", "device=cpu"), tmp_path, [])
    assert summary["final"]["test"]["top1"] > 0.7
    preset = compose_config("+experiment=tamt_bert_mlm").method
    assert (preset.score_lr, preset.reset_every) == (5e-5, 1000)


def _flat_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 256), ("test", 64)):
        x = torch.randn(n, 5, generator=generator)
        np.savez(tmp_path / f"{split}.npz", x=x.numpy(), y=(x[:, 0] > 0).long().numpy())
    return [f"dataset.train_file={tmp_path / 'train.npz'}", f"dataset.test_file={tmp_path / 'test.npz'}"]


def test_flat_features_train_on_the_default_model(compose_config, tmp_path):
    overrides = ["dataset=tensors", *_flat_files(tmp_path), "epochs=3", "device=cpu"]
    summary = run(compose_config(*overrides), tmp_path / "run", overrides)
    assert summary["model"] == "lenet300_100" and summary["in_shape"] == [5]
    assert summary["parameters"] == 5 * 300 + 300 + 300 * 100 + 100 + 100 * 2 + 2
    assert summary["final"]["test"]["top1"] > 0.8


def test_a_convolutional_model_refuses_flat_features_in_one_line(compose_config, tmp_path):
    overrides = ["dataset=tensors", *_flat_files(tmp_path), "model=lenet5", "epochs=1", "device=cpu"]
    with pytest.raises(ConfigError, match=re.escape("model.name='lenet5' needs image inputs (channels, height, "
                                                    "width), got shape (5,); e.g. model=lenet300_100")):
        run(compose_config(*overrides), tmp_path / "run", overrides)


def test_acdc_phases_left_null_take_the_imagenet_schedules_shares_of_any_run(compose_config, tmp_path):
    """10 / 5 / 5 / 15 % of the run (at least one epoch each but the warm-up): 3 epochs run 0 / 1 / 1 / 1; given phase
    lengths that do not fit are refused with the shares as the example."""
    with pytest.raises(ConfigError, match=r"e\.g\. method\.warmup_epochs=0 method\.final_epochs=1 \(or leave them null"):
        run(compose_config("method=acdc", "sparsity=0.9", "epochs=3", "device=cpu", "method.warmup_epochs=10",
                           "method.final_epochs=15"), tmp_path / "refused", [])
    fitted = ["method=acdc", "sparsity=0.9", "epochs=3", "device=cpu"]
    summary = run(compose_config(*fitted), tmp_path / "fitted", fitted)
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert summary["dynamics"]["phases"] == {"warmup_epochs": 0, "compressed_epochs": 1, "decompressed_epochs": 1,
                                             "final_epochs": 1}


@pytest.fixture(scope="module")
def trained_default(tmp_path_factory) -> Path:
    """The default run trained dense: the model the one-shot pruners of trained models start from."""
    run_dir = tmp_path_factory.mktemp("trained_default") / "dense"
    sparsetrain.train(["method=dense", "device=cpu", "eval_every=0", f"hydra.run.dir={run_dir}"])
    return run_dir


@pytest.mark.parametrize("name", [record.name for record in METHODS.records() if record.name != "dense"])
def test_every_masked_method_runs_at_sparsity_0_9_with_the_default_length(compose_config, tmp_path, name, request):
    """``sparsetrain method=<name> sparsity=0.9`` on the default run (N:M methods: their own n/m), evaluation off;
    a method that prunes a trained model without training (SparseGPT, Wanda) starts from the default run trained."""
    from sparsetrain.methods.sparsegpt import SparseGPT

    sparsity = 0.5 if compose_config(f"method={name}").method.get("pattern", {}).get("name") == "nm" else 0.9
    overrides = [f"method={name}", f"sparsity={sparsity}", "device=cpu", "eval_every=0"]
    if issubclass(METHODS[name], SparseGPT):
        overrides.append(f"init_from={request.getfixturevalue('trained_default')}")
    summary = run(compose_config(*overrides), tmp_path / name, overrides)
    assert summary["final"]["test"]["top1"] > 0.5  # digits: learned well above chance (0.1)
