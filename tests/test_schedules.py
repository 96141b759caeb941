"""GMP cubic schedule (Zhu & Gupta 2017) against golden values computed from the paper's formula."""

from __future__ import annotations

import pytest

from sparsetrain.sparsity.schedules import cubic_sparsity, is_pruning_step

GMP = {"initial": 0.05, "final": 0.9, "start": 100, "end": 900, "frequency": 100}  # events 100, 200, …, 900
TIMING = {k: GMP[k] for k in ("start", "end", "frequency")}


def test_golden_values():
    assert cubic_sparsity(100, **GMP) == 0.05
    assert cubic_sparsity(900, **GMP) == 0.9
    assert cubic_sparsity(500, **GMP) == pytest.approx(0.9 + (0.05 - 0.9) / 8)  # halfway event, k/n = 1/2
    assert cubic_sparsity(300, **GMP) == pytest.approx(0.9 + (0.05 - 0.9) * 0.75**3)


def test_before_start_and_after_end():
    assert cubic_sparsity(0, **GMP) == cubic_sparsity(99, **GMP) == 0.05
    assert cubic_sparsity(901, **GMP) == cubic_sparsity(10**6, **GMP) == 0.9


def test_monotone_and_constant_between_events():
    values = [cubic_sparsity(t, **GMP) for t in range(1_100)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    for t in range(1_100):
        if not is_pruning_step(t, **TIMING) and t > 0:
            assert values[t] == values[t - 1]
    changes = [t for t in range(1, 1_100) if values[t] != values[t - 1]]
    assert changes == list(range(200, 901, 100))


def test_pruning_steps():
    assert [t for t in range(1_100) if is_pruning_step(t, **TIMING)] == list(range(100, 901, 100))


def test_end_not_a_multiple_reaches_final_at_last_multiple():
    gmp = {**GMP, "end": 950}  # events 100 … 900; 950 is not an event
    events = [t for t in range(1_100) if is_pruning_step(t, start=100, end=950, frequency=100)]
    assert events == list(range(100, 901, 100))
    assert cubic_sparsity(900, **gmp) == 0.9
    assert cubic_sparsity(500, **gmp) == pytest.approx(0.9 + (0.05 - 0.9) / 8)


def test_single_event_prunes_to_final():
    gmp = {**GMP, "start": 100, "end": 150}
    assert cubic_sparsity(99, **gmp) == 0.05
    assert cubic_sparsity(100, **gmp) == cubic_sparsity(150, **gmp) == 0.9
    assert [t for t in range(300) if is_pruning_step(t, start=100, end=150, frequency=100)] == [100]


def test_zero_initial_sparsity():
    gmp = {**GMP, "initial": 0.0}
    assert cubic_sparsity(100, **gmp) == 0.0
    assert cubic_sparsity(500, **gmp) == pytest.approx(0.9 * 7 / 8)


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"^sparsity=0\.5 is below method\.initial_sparsity=0\.8; GMP prunes from initial to final sparsity, "
        r"e\.g\. sparsity=0\.9$",
    ):
        cubic_sparsity(0, **{**GMP, "initial": 0.8, "final": 0.5})
    with pytest.raises(ValueError, match=r"^method\.start=10 is after method\.end=5"):
        cubic_sparsity(0, **{**GMP, "start": 10, "end": 5})
    with pytest.raises(ValueError, match=r"^method\.start=10 is after method\.end=5"):
        is_pruning_step(0, start=10, end=5, frequency=1)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"^method\.frequency"):
            cubic_sparsity(0, **{**GMP, "frequency": bad})
        with pytest.raises(ValueError, match=r"^method\.frequency"):
            is_pruning_step(0, start=0, end=10, frequency=bad)
    with pytest.raises(ValueError, match=r"^method\.initial_sparsity"):
        cubic_sparsity(0, **{**GMP, "initial": -0.1})
