"""The cyclic_linear learning-rate schedule, alone and as GMP's learning-rate rewinding (oBERT's recipe)."""

from __future__ import annotations

import json
import math

import pytest

from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.runner.run import run
from sparsetrain.training.schedule import lr_factor

SPE = 10  # steps per epoch


def _factor(compose_config, *overrides):
    cfg = compose_config("schedule=cyclic_linear", *overrides).schedule
    return lambda step: lr_factor(cfg, step, total_steps=100, steps_per_epoch=SPE)


def test_cyclic_linear_values(compose_config):
    factor = _factor(compose_config, "schedule.cycle_epochs=2", "schedule.cycle_start=1",
                     "schedule.final_lr_fraction=0.1")
    # before the cycles: one linear decay over epoch 0; then 1 -> 0.1 over every 20 steps, restarting at 10, 30, ...
    assert [factor(s) for s in (0, 5)] == pytest.approx([1.0, 0.55])
    assert [factor(s) for s in (10, 15, 29, 30, 50, 99)] == pytest.approx([1.0, 0.775, 1 - 0.9 * 19 / 20, 1.0, 1.0,
                                                                          1 - 0.9 * 9 / 20])


def test_cyclic_linear_with_warmup_and_no_lead_in(compose_config):
    factor = _factor(compose_config, "schedule.cycle_epochs=1", "schedule.warmup_epochs=0.5")
    assert [factor(s) for s in (0, 4, 5, 9, 10, 19)] == pytest.approx([0.2, 1.0, 0.5, 0.1, 1.0, 0.1])


def test_cyclic_linear_needs_a_cycle_length(compose_config):
    with pytest.raises(ConfigError, match="schedule.cycle_epochs=0.0 must be positive"):
        validate(compose_config("schedule=cyclic_linear", "schedule.cycle_epochs=0"))


def test_gmp_with_lr_rewinding_restarts_the_rate_at_every_pruning_step(compose_config, tmp_path):
    overrides = ["+experiment=gmp_lr_rewinding", "sparsity=0.9", "epochs=5", "device=cpu", "eval_every=0"]
    cfg = compose_config(*overrides)
    summary = run(cfg, tmp_path, overrides)
    spe = summary["steps_per_epoch"]
    factor = lambda step: lr_factor(cfg.schedule, step, summary["steps"], spe)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    prunes = [e for e in events if e["event"] == "prune"]
    assert [e["step"] for e in prunes] == [spe, 2 * spe, 3 * spe, 4 * spe]  # from epoch 1, every epoch to 80 % of 5
    assert prunes[0]["sparsity"] == pytest.approx(0.7, abs=1e-4)  # the oBERT recipe's init_sparsity at once
    prunes = [e["step"] for e in prunes]
    for step in prunes:
        assert factor(step) == 1.0 and factor(step - 1) == pytest.approx(0.1 + 0.9 / spe)
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-4)


def test_epoch_stepping_follows_acdcs_schedulers(compose_config):
    """schedule.step_at=epoch: the warm-up at 0.2, 0.4, ... (epoch e at (e + 1) / 5), a milestone effective from the
    epoch after it, the cosine at each epoch's value (CosineLR: 0.5 (1 + cos(pi (e - 5) / 95))), constant within an
    epoch."""
    spe = 10
    multistep = compose_config("+experiment=acdc_resnet20_cifar10", "schedule.warmup_epochs=5").schedule
    factor = lambda cfg, epoch, offset=0: lr_factor(cfg, epoch * spe + offset, 200 * spe, spe)
    assert [factor(multistep, e) for e in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert (factor(multistep, 65), factor(multistep, 66, 9), factor(multistep, 126)) == pytest.approx((1.0, 0.1, 0.01))
    cosine = compose_config("+experiment=acdc_resnet50_imagenet").schedule  # 100 epochs
    for epoch in (5, 50, 99):
        expected = 0.5 * (1 + math.cos(math.pi * (epoch - 5) / 95))
        first, last = (lr_factor(cosine, epoch * spe + offset, 100 * spe, spe) for offset in (0, spe - 1))
        assert first == last == pytest.approx(expected)
