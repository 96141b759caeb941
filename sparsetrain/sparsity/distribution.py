"""Per-layer densities for a global sparsity: uniform, ER and ERK (ERK as the RigL paper and code).

ER/ERK follow ``google-research/rigl`` ``sparse_utils.get_sparsities_erdos_renyi``: solve
``Σ_l eps·raw_l·N_l = Σ_l (N_l − floor(S·N_l))`` over the non-fixed layers, and while the largest ``eps·raw_l``
exceeds 1, make every layer with that largest ``raw_l`` dense and solve again.
"""

from __future__ import annotations

import math

DISTRIBUTIONS = ("uniform", "er", "erk")


def layer_densities(
    shapes: dict[str, tuple[int, ...]],
    sparsity: float,
    distribution: str,
    *,
    fixed: dict[str, float] | None = None,
    erk_power: float = 1.0,
) -> dict[str, float]:
    """Density of every layer in ``shapes`` (PyTorch layout, model order) for global sparsity ``sparsity``.

    ``sparsity`` is the target fraction of zeros over the layers not in ``fixed``; layers in ``fixed`` keep their
    given density and are left out of the budget (the reference's "custom" layers). ``erk_power`` scales the ERK
    score, ``raw_l = (sum(shape)/prod(shape)) ** erk_power`` (0 gives uniform); like the reference, ER ignores it
    and scores ``(n_in + n_out)/(n_in·n_out)`` from dims 0 and 1.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"method.distribution={distribution!r} is not a distribution; choose one of: {', '.join(DISTRIBUTIONS)}"
        )
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity} is outside [0, 1); e.g. sparsity=0.9")
    fixed = dict(fixed or {})
    for name, density in fixed.items():
        if name not in shapes:
            raise ValueError(f"fixed density given for {name!r}, which is not a maskable layer")
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"fixed density {density} of {name!r} is outside [0, 1]")
    free = [name for name in shapes if name not in fixed]
    if distribution == "uniform":
        solved = {name: 1.0 - sparsity for name in free}
    else:
        solved = _erdos_renyi({name: shapes[name] for name in free}, sparsity, distribution == "erk", erk_power)
    return {name: fixed[name] if name in fixed else solved[name] for name in shapes}


def zeros_per_layer(shapes: dict[str, tuple[int, ...]], densities: dict[str, float]) -> dict[str, int]:
    """Exact zero count of each mask, ``floor((1 − d_l)·N_l)``."""
    return {name: exact_zeros(math.prod(shape), densities[name]) for name, shape in shapes.items()}


def exact_zeros(numel: int, density: float) -> int:
    """``floor((1 − density)·numel)``, rounded to 1e-6 first so float error loses no zero."""
    return math.floor(round((1.0 - density) * numel, 6))


def _erdos_renyi(
    shapes: dict[str, tuple[int, ...]], sparsity: float, include_kernel: bool, power: float
) -> dict[str, float]:
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    if include_kernel:
        raw = {name: (sum(shape) / sizes[name]) ** power for name, shape in shapes.items()}
    else:
        raw = {name: (shape[0] + shape[1]) / (shape[0] * shape[1]) for name, shape in shapes.items()}
    dense: set[str] = set()
    eps = 0.0
    while len(dense) < len(shapes):
        sparse = [name for name in shapes if name not in dense]
        rhs = sum(sizes[n] - math.floor(sparsity * sizes[n]) for n in sparse)
        rhs -= sum(math.floor(sparsity * sizes[n]) for n in dense)
        eps = rhs / sum(raw[n] * sizes[n] for n in sparse)
        top = max(raw[n] for n in sparse)
        if eps * top <= 1.0:
            break
        dense.update(n for n in sparse if raw[n] == top)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
