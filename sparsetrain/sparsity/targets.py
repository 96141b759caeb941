"""Which parameters are prunable, and which of them a method must keep at a fixed density.

Prunable: the ``weight`` of every Conv/Linear module, selected by module type (never by name substring, which
would also catch normalisation weights). Biases and normalisation parameters are never masked.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

PRUNABLE_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class Targets:
    """The prunable weights in model order, and the densities fixed by the user (excluded from the budget)."""

    params: dict[str, nn.Parameter]
    fixed: dict[str, float]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self.params.items()}

    @property
    def budgeted(self) -> list[str]:
        """The layers the global sparsity target is spread over."""
        return [name for name in self.params if name not in self.fixed]


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {
        f"{module_name}.weight" if module_name else "weight": module.weight
        for module_name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES)
    }


def select_targets(model: nn.Module, dense_layers: list[str], layer_density: list[str]) -> Targets:
    """Prunable weights, with ``dense_layers`` (names, fnmatch patterns, or ``first``/``last``) fixed at density 1
    and each ``layer_density`` entry ``"pattern:density"`` fixing the matching layers at that density.

    Raises ValueError (one line, naming the key) for a malformed entry or a pattern that matches no weight.
    """
    params = prunable_parameters(model)
    names = list(params)
    fixed: dict[str, float] = {}
    for pattern in dense_layers:
        for name in _match(names, pattern, "method.dense_layers"):
            fixed[name] = 1.0
    for entry in layer_density:
        pattern, density = _parse_density(entry)
        for name in _match(names, pattern, "method.layer_density"):
            fixed[name] = density
    return Targets(params=params, fixed=fixed)


def _parse_density(entry: str) -> tuple[str, float]:
    pattern, _, value = str(entry).rpartition(":")
    try:
        density = float(value)
    except ValueError:
        density = -1.0
    if not pattern or not 0.0 <= density <= 1.0:
        raise ValueError(
            f"method.layer_density entry {entry!r} is not 'pattern:density' with a density in [0, 1]; "
            "e.g. method.layer_density=[conv1.weight:0.5]"
        )
    return pattern, density


def _match(names: list[str], pattern: str, key: str) -> list[str]:
    aliases = {"first": names[:1], "last": names[-1:]}
    matched = aliases.get(pattern) or fnmatch.filter(names, pattern)
    if not matched:
        raise ValueError(
            f"{key}: {pattern!r} matches no prunable weight; use first, last, or a name such as {names[0]!r}"
        )
    return matched
