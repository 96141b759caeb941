"""Layer-density distributions against a golden vector of the RigL code's ERK."""

from __future__ import annotations

import math

import pytest

from sparsetrain.sparsity.distribution import DISTRIBUTIONS, layer_densities, zeros_per_layer

TOY = {"conv1": (64, 3, 3, 3), "conv2": (128, 64, 3, 3), "fc": (10, 128)}
SIZES = {name: math.prod(shape) for name, shape in TOY.items()}
TOTAL = sum(SIZES.values())  # 76,736

# (distribution, S, densities conv1/conv2/fc, overall density, zeros conv1/conv2/fc). The doc allows ±1 on the
# zero counts; this implementation hits every count (and every density to 1e-6) exactly, so the test asserts equality.
GOLDEN = [
    ("erk", 0.5, (1.0, 0.479601, 1.0), 0.5, (0, 38_368, 0)),
    ("erk", 0.8, (1.0, 0.167372, 1.0), 0.20001, (0, 61_388, 0)),
    ("erk", 0.9, (0.996741, 0.063363, 1.0), 0.100005, (5, 69_056, 0)),
    ("erk", 0.95, (0.398759, 0.025349, 1.0), 0.050016, (1_038, 71_859, 0)),
    ("er", 0.8, (1.0, 0.171071, 0.786927), 0.20001, (0, 61_115, 272)),
    ("er", 0.9, (1.0, 0.074683, 0.343544), 0.100005, (0, 68_221, 840)),
]


@pytest.mark.parametrize(("distribution", "sparsity", "densities", "overall", "zeros"), GOLDEN)
def test_golden_vector(distribution, sparsity, densities, overall, zeros):
    got = layer_densities(TOY, sparsity, distribution)
    assert list(got) == list(TOY)
    assert [got[n] for n in TOY] == pytest.approx(densities, abs=1e-6)
    assert sum(got[n] * SIZES[n] for n in TOY) / TOTAL == pytest.approx(overall, abs=1e-6)
    assert tuple(zeros_per_layer(TOY, got).values()) == zeros


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
def test_budget_over_free_layers(distribution, sparsity):
    """Zeros over the non-fixed layers equal the reference budget Σ floor(S·N_l) less under one per layer (the
    mask's own floor), hence S·N within two per layer."""
    shapes = {"first": (16, 3, 3, 3), **TOY}
    got = layer_densities(shapes, sparsity, distribution, fixed={"first": 1.0})
    assert got["first"] == 1.0
    assert all(0.0 <= d <= 1.0 for d in got.values())
    zeros = zeros_per_layer(shapes, got)
    assert zeros["first"] == 0
    budget = sum(math.floor(sparsity * SIZES[n]) for n in TOY)
    assert 0 <= budget - sum(zeros[n] for n in TOY) < len(TOY)
    assert abs(sum(zeros[n] for n in TOY) - sparsity * TOTAL) < 2 * len(TOY)


def test_uniform_with_dense_first_layer():
    got = layer_densities(TOY, 0.9, "uniform", fixed={"conv1": 1.0})
    assert got == {"conv1": 1.0, "conv2": pytest.approx(0.1), "fc": pytest.approx(0.1)}
    assert zeros_per_layer(TOY, got) == {"conv1": 0, "conv2": math.floor(0.9 * 73_728), "fc": 1_152}


def test_fixed_layers_leave_the_budget():
    """A fixed layer keeps its density and the rest solve for S over themselves only (reference 'custom' map)."""
    got = layer_densities(TOY, 0.9, "erk", fixed={"fc": 0.5})
    assert got["fc"] == 0.5
    alone = layer_densities({n: TOY[n] for n in ("conv1", "conv2")}, 0.9, "erk")
    assert got["conv1"] == alone["conv1"] and got["conv2"] == alone["conv2"]


def test_erk_power_zero_is_uniform():
    got = layer_densities(TOY, 0.9, "erk", erk_power=0.0)
    # Equal up to the floor rounding of the budget (3 weights in 76,736).
    assert list(got.values()) == pytest.approx([0.1] * 3, abs=1e-4)
    assert len(set(got.values())) == 1


def test_cap_loop_iterations():
    """No cap for equal scores; one cap (fc) at S=0.9; two (fc, then conv1) at S=0.8."""
    same = {"a": (8, 8), "b": (8, 8)}
    assert layer_densities(same, 0.75, "erk") == {"a": 0.25, "b": 0.25}
    one = layer_densities(TOY, 0.9, "erk")
    assert one["fc"] == 1.0 and one["conv1"] < 1.0
    two = layer_densities(TOY, 0.8, "erk")
    assert two["fc"] == 1.0 and two["conv1"] == 1.0 and two["conv2"] < 1.0


def test_cap_makes_all_tied_layers_dense_at_once():
    shapes = {"small1": (4, 4), "small2": (4, 4), "big": (256, 256)}
    got = layer_densities(shapes, 0.5, "erk")
    assert got["small1"] == got["small2"] == 1.0
    assert zeros_per_layer(shapes, got)["big"] == math.floor(0.5 * 65_536) + 2 * 8  # takes the smalls' zeros


def test_zero_sparsity_is_dense():
    for distribution in DISTRIBUTIONS:
        assert set(layer_densities(TOY, 0.0, distribution).values()) == {1.0}


def test_er_reads_pytorch_dims_0_and_1():
    """ER ignores the kernel; ERK's sum/prod score is layout-invariant."""
    er = layer_densities({"a": (32, 16, 3, 3), "b": (64, 32, 3, 3)}, 0.9, "er")
    er_1x1 = layer_densities({"a": (32, 16, 1, 1), "b": (64, 32, 1, 1)}, 0.9, "er")
    ratio = ((32 + 16) / (32 * 16)) / ((64 + 32) / (64 * 32))
    assert er["a"] / er["b"] == pytest.approx(ratio)
    assert er_1x1["a"] / er_1x1["b"] == pytest.approx(ratio)
    pytorch = layer_densities({"a": (32, 16, 3, 3), "b": (64, 32, 5, 5)}, 0.9, "erk")
    tf = layer_densities({"a": (3, 3, 16, 32), "b": (5, 5, 32, 64)}, 0.9, "erk")
    assert pytorch == pytest.approx(tf)


def test_zeros_per_layer_exact():
    shapes = {"a": (10,), "b": (10,), "c": (10,), "d": (7, 3)}
    assert zeros_per_layer(shapes, {"a": 0.5, "b": 1.0, "c": 0.9, "d": 0.0}) == {"a": 5, "b": 0, "c": 1, "d": 21}


def test_errors():
    message = r"^method\.distribution='x' is not a distribution; choose one of: uniform, er, erk$"
    with pytest.raises(ValueError, match=message):
        layer_densities(TOY, 0.9, "x")
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            layer_densities(TOY, bad, "erk")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="conv1"):
            layer_densities(TOY, 0.9, "uniform", fixed={"conv1": bad})
    with pytest.raises(ValueError, match="nope"):
        layer_densities(TOY, 0.9, "erk", fixed={"nope": 1.0})
