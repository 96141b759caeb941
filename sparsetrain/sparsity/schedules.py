"""Gradual magnitude pruning (GMP) schedule of Zhu & Gupta (2017) as pure functions of the step.

Pruning events fall at ``start + k·frequency`` for ``k = 0 … n``, ``n = (end − start) // frequency``; event ``k``
has sparsity ``final + (initial − final)·(1 − k/n)^3``. When ``frequency`` does not divide ``end − start``, the
last event is the last multiple before ``end`` and the schedule reaches ``final`` there (the span is
``n·frequency``); with ``n = 0`` the single event at ``start`` prunes straight to ``final``.
"""

from __future__ import annotations


def cubic_sparsity(step: int, *, initial: float, final: float, start: int, end: int, frequency: int) -> float:
    """Sparsity in force at ``step``: set by the latest event at or before it; ``initial`` before ``start``."""
    if not 0.0 <= initial < 1.0:
        raise ValueError(f"method.initial_sparsity={initial} is outside [0, 1); e.g. method.initial_sparsity=0")
    if final < initial:
        raise ValueError(
            f"sparsity={final} is below method.initial_sparsity={initial}; "
            "GMP prunes from initial to final sparsity, e.g. sparsity=0.9"
        )
    n = _event_count(start, end, frequency)
    if step < start:
        return initial
    if n == 0:
        return final
    weight = (1.0 - min((step - start) // frequency, n) / n) ** 3
    return weight * initial + (1.0 - weight) * final  # = final + (initial − final)·weight, exact at both ends


def is_pruning_step(step: int, *, start: int, end: int, frequency: int) -> bool:
    """Whether ``step`` is a pruning event (``start``, ``start + frequency``, … up to ``end``)."""
    n = _event_count(start, end, frequency)
    return start <= step <= start + n * frequency and (step - start) % frequency == 0


def _event_count(start: int, end: int, frequency: int) -> int:
    if frequency <= 0:
        raise ValueError(f"method.frequency={frequency} must be positive; e.g. method.frequency=100")
    if start > end:
        raise ValueError(f"method.start={start} is after method.end={end}; e.g. method.start=0 method.end={end}")
    return (end - start) // frequency
