"""Which parameters are prunable, and which of them a method must keep at a fixed density.

Prunable: the ``weight`` of every Conv/Linear module, selected by module type (never by name substring, which
would also catch normalisation weights). Biases and normalisation parameters are never masked.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from ..config import ConfigError

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
    """Prunable weights, with ``dense_layers`` (names, patterns or aliases, see ``match_layers``) fixed at density 1
    and each ``layer_density`` entry ``"pattern:density"`` fixing the matching layers at that density.

    Raises ConfigError (one line, naming the key) for a malformed entry or a pattern that matches no weight.
    """
    params = prunable_parameters(model)
    fixed: dict[str, float] = {}
    for pattern in dense_layers:
        for name in match_layers(params, pattern, "method.dense_layers"):
            fixed[name] = 1.0
    for entry in layer_density:
        pattern, density = parse_layer_value(entry, "method.layer_density", "method.layer_density=[conv1.weight:0.5]")
        for name in match_layers(params, pattern, "method.layer_density"):
            fixed[name] = density
    return Targets(params=params, fixed=fixed)


def parse_layer_value(entry: str, key: str, example: str) -> tuple[str, float]:
    """``"pattern:value"`` with a value in [0, 1]; ConfigError naming ``key`` otherwise."""
    pattern, _, text = str(entry).rpartition(":")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not pattern or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} entry {entry!r} is not 'pattern:value' with a value in [0, 1]; e.g. {example}")
    return pattern, value


def match_layers(params: dict[str, nn.Parameter], pattern: str, key: str) -> list[str]:
    """Names of the prunable weights matching ``pattern``: an fnmatch pattern, or ``first``, ``last``, ``conv``
    (every convolution), ``linear`` (every linear layer); ConfigError naming ``key`` if none match."""
    names = list(params)
    aliases = {
        "first": names[:1],
        "last": names[-1:],
        "conv": [name for name, p in params.items() if p.dim() > 2],
        "linear": [name for name, p in params.items() if p.dim() == 2],
    }
    matched = aliases.get(pattern) or fnmatch.filter(names, pattern)
    if not matched:
        raise ConfigError(
            f"{key}: {pattern!r} matches no prunable weight; use first, last, conv, linear, or a name such as "
            f"{names[0]!r}, e.g. {key}=[first]"
        )
    return matched
