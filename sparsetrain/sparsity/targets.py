"""Which parameters are prunable, and which of them a method must keep at a fixed density.

Prunable: the ``weight`` of every module of the chosen types (Conv1d/2d/3d and Linear by default; Embedding
optional), selected by module type (never by name substring, which would also catch normalisation weights),
then narrowed by ``include``/``exclude`` name patterns. Biases and normalisation parameters are never masked.
Every method selects its weights here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError

MODULE_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear,),
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "conv1d": (nn.Conv1d,),
    "conv2d": (nn.Conv2d,),
    "conv3d": (nn.Conv3d,),
    "embedding": (nn.Embedding,),
}
DEFAULT_MODULES = ("linear", "conv")
SELECTABLE_MODULES = tuple({cls for types in MODULE_TYPES.values() for cls in types})


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


def prunable_parameters(model: nn.Module, modules: Sequence[str] = DEFAULT_MODULES, include: Sequence[str] = (),
                        exclude: Sequence[str] = ()) -> dict[str, nn.Parameter]:
    """The ``weight`` of every module of the ``modules`` types (keys of MODULE_TYPES), in model order, kept if it
    matches an ``include`` pattern (all when there is none) and no ``exclude`` pattern (see ``match_layers``).

    A weight shared by several modules (tied embeddings) is listed once, under its first name.
    """
    unknown = [kind for kind in modules if kind not in MODULE_TYPES]
    if unknown or not modules:
        raise ConfigError(f"method.modules={list(modules)} must list module types from {', '.join(MODULE_TYPES)}; "
                          "e.g. method.modules=[linear,conv]")
    types = tuple(cls for kind in modules for cls in MODULE_TYPES[kind])
    params: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, types) and isinstance(weight, nn.Parameter) and \
                all(weight is not seen for seen in params.values()):
            params[weight_name(module_name)] = weight
    if include:
        chosen = {name for pattern in include for name in match_layers(params, pattern, "method.include")}
        params = {name: p for name, p in params.items() if name in chosen}
    if exclude:
        dropped = {name for pattern in exclude for name in match_layers(params, pattern, "method.exclude")}
        params = {name: p for name, p in params.items() if name not in dropped}
    if not params:
        raise ConfigError("method.exclude leaves no prunable weight; exclude fewer layers, e.g. method.exclude=[last]")
    return params


def weight_name(module_name: str) -> str:
    """The parameter name of a module's weight (``"weight"`` for the root module)."""
    return f"{module_name}.weight" if module_name else "weight"


def select_targets(model: nn.Module, dense_layers: list[str], layer_density: list[str], *,
                   modules: Sequence[str] = DEFAULT_MODULES, include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> Targets:
    """Prunable weights (``prunable_parameters``), with ``dense_layers`` (names, patterns or aliases, see
    ``match_layers``) fixed at density 1 and each ``layer_density`` entry ``"pattern:density"`` fixing the matching
    layers at that density.

    Raises ConfigError (one line, naming the key) for a malformed entry or a pattern that matches no weight.
    """
    params = prunable_parameters(model, modules, include, exclude)
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
    """Names of the prunable weights matching ``pattern``: an fnmatch pattern, ``re:<regex>`` (``re.search``), or
    ``first``, ``last``, ``conv`` (every convolution), ``linear`` (every linear layer); ConfigError naming ``key``
    if none match."""
    names = list(params)
    aliases = {
        "first": names[:1],
        "last": names[-1:],
        "conv": [name for name, p in params.items() if p.dim() > 2],
        "linear": [name for name, p in params.items() if p.dim() == 2],
    }
    matched = match_names(names, pattern, key, aliases)
    if not matched:
        raise ConfigError(
            f"{key}: {pattern!r} matches no prunable weight; use first, last, conv, linear, or a name such as "
            f"{names[0]!r}, e.g. {key}=[first]"
        )
    return matched


def match_names(names: list[str], pattern: str, key: str, aliases: dict[str, list[str]]) -> list[str]:
    """The ``names`` an alias, ``re:<regex>`` (``re.search``) or fnmatch ``pattern`` selects (maybe none);
    ConfigError naming ``key`` for a malformed regular expression."""
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as error:
            raise ConfigError(f"{key}: {pattern!r} is not a regular expression ({error}); e.g. 're:^layer[12]\\.'")
        return [name for name in names if regex.search(name)]
    return aliases.get(pattern) or fnmatch.filter(names, pattern)
