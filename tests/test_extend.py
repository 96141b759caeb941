"""``train_multiplier``: every schedule point of a recipe doubles at 2x; intervals and phase lengths stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsetrain.methods.build import build_method
from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.methods.base import RunContext
from sparsetrain.sparsity.phases import acdc_phase
from sparsetrain.runner.extend import extend
from sparsetrain.runner.run import run


def test_two_doubles_every_schedule_point(compose_config):
    cfg = compose_config("method=gmp", "schedule=multistep", "schedule.milestones=[5,8]", "schedule.warmup_epochs=1",
                         "method.start=2ep", "method.end=10ep", "method.frequency=1ep", "epochs=12", "steps=300",
                         "train_multiplier=2")
    long = extend(cfg)
    assert (long.epochs, long.steps) == (24, 600)
    assert list(long.schedule.milestones) == [10, 16] and long.schedule.warmup_epochs == 1  # kept, as AC/DC's ep200
    assert extend(compose_config("schedule.warmup_epochs=1", "train_multiplier=2", "stretch_warmup=true")
                  ).schedule.warmup_epochs == 2
    assert (long.method.start, long.method.end) == ("4ep", "20ep")
    assert long.method.frequency == "1ep"  # twice the events over twice the span
    assert extend(compose_config("method=gmp", "method.start=500it", "train_multiplier=2")).method.start == "1000it"
    assert extend(compose_config("method=gmp", "train_multiplier=2")).method.end == "75%"  # a fraction stretches itself
    cyclic = extend(compose_config("schedule=cyclic_linear", "schedule.cycle_start=2", "train_multiplier=2")).schedule
    assert cyclic.cycle_start == 4 and cyclic.cycle_epochs == 1  # rewinding stays at every pruning interval
    lth = extend(compose_config("method=lth", "method.rewind_to=500it", "train_multiplier=2"))
    assert lth.method.rewind_to == "500it"  # the rewinding point stays where it is
    assert extend(compose_config()).epochs == 20  # 1x: unchanged


def test_rigl_end_and_update_count_double(compose_config):
    def updates(multiplier):
        cfg = extend(compose_config("method=rigl", "sparsity=0.5", "method.delta_t=10", "steps=400",
                                    f"train_multiplier={multiplier}"))
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        method = build_method(cfg.method, cfg.sparsity)
        method.setup(RunContext(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_batches=None,
                                loss_fn=None, in_shape=(8,), seed=0, device=torch.device("cpu"),
                                steps_per_epoch=10, total_steps=cfg.steps, lr_factor=lambda step: 1.0,
                                run_dir=Path("."), log=lambda event: None, fresh_weights=lambda seed: {}))
        return method.end_step, sum(method.is_update_step(s) for s in range(1, cfg.steps))  # the updates after step 0

    (end, count), (long_end, long_count) = updates(1), updates(2)
    assert (long_end, long_count) == (2 * end, 2 * count)


def test_acdc_adds_cycles_as_the_authors_extended_configs():
    phases = dict(warmup=10, compressed=5, decompressed=5, final=15)

    def compressions(epochs):
        return sum(acdc_phase(e, epochs=epochs, **phases) == "compressed" != acdc_phase(e - 1, epochs=epochs, **phases)
                   for e in range(epochs))

    assert (compressions(100), compressions(200)) == (8, 18)  # ep100: 10..70 and 85; ep200: 10..170 and 185


def test_a_longer_gmp_run_prunes_at_the_stretched_steps(compose_config, tmp_path):
    overrides = ["method=gmp", "sparsity=0.8", "steps=20", "device=cpu", "method.start=5it", "method.end=15it",
                 "method.frequency=5it", "train_multiplier=2", "eval_every=0"]
    summary = run(compose_config(*overrides), tmp_path, overrides)
    assert summary["steps"] == 40
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "prune"] == [10, 15, 20, 25, 30]
    assert summary["masks"]["sparsity"] == pytest.approx(0.8, abs=1e-4)


def test_multiplier_must_be_positive(compose_config):
    with pytest.raises(ConfigError, match="train_multiplier=0.0 must be positive"):
        validate(compose_config("train_multiplier=0"))
