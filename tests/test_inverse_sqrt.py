"""``schedule=inverse_sqrt`` (fairseq's, the Transformer's): a linear warm-up over ``warmup_steps``, then
``sqrt(warmup_steps / step)``; a pure function of the step, not of the run's length; its refusals."""

from __future__ import annotations

import math

import pytest

from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.training.schedule import lr_factor


def _factor(compose_config, *overrides: str):
    cfg = compose_config("schedule=inverse_sqrt", *overrides).schedule
    return lambda step, total=1000: lr_factor(cfg, step, total, steps_per_epoch=10)


def test_inverse_sqrt_values(compose_config):
    factor = _factor(compose_config, "schedule.warmup_steps=4")
    assert [factor(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert [factor(s) for s in (4, 9, 16, 400)] == pytest.approx([1.0, math.sqrt(4 / 9), 0.5, 0.1])
    assert factor(100, total=200) == factor(100, total=10**6)  # the run's length plays no part: runs extend


def test_the_default_warmup_is_4000_steps_and_epochs_may_give_it(compose_config):
    assert compose_config("schedule=inverse_sqrt").schedule.warmup_steps == 4000
    factor = _factor(compose_config, "schedule.warmup_steps=0", "schedule.warmup_epochs=2")  # 20 steps
    assert factor(19) == pytest.approx(1.0) and factor(80) == pytest.approx(0.5)


@pytest.mark.parametrize(("overrides", "message"), [
    (["schedule.warmup_steps=0"], r"^schedule\.warmup_steps=0 must be positive with schedule=inverse_sqrt"),
    (["schedule.warmup_steps=-1"], r"^schedule\.warmup_steps=-1 must be >= 0"),
    (["schedule.warmup_epochs=1"], r"^schedule\.warmup_steps=4000 and schedule\.warmup_epochs both set the warm-up"),
])
def test_inverse_sqrt_refusals_are_one_line(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate(compose_config("schedule=inverse_sqrt", *overrides))
    assert "\n" not in str(error.value) and "e.g." in str(error.value)
