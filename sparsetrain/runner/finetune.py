"""Which parameters the optimizer trains (``finetune.trainable``, ``finetune.rank_from``/``top_layers``).

A pattern is an fnmatch pattern over ``model.named_parameters()`` names (``*`` also matches dots), ``re:<regex>``
(``re.search``) or ``head``: the parameters of the last module, in registration order, that holds parameters
of its own (a classifier defined last). L0-close mode: ``rank_from`` names a finished run whose ``summary.json``
holds a drift table; of the weight tensors (two or more dimensions) that ``trainable`` does not already name, the
``top_layers`` that moved most there (relative L2) are trained too, each with the other parameters of its module
(a layer = a module's weight and bias).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..sparsity.targets import match_names
from .drift import ranking_value

KEY = "finetune.trainable"
log = logging.getLogger(__name__)


def trainable_names(model: nn.Module, patterns: list[str]) -> list[str]:
    """The parameter names (model order) the ``patterns`` select; ConfigError naming finetune.trainable for a
    pattern that selects none."""
    names = [name for name, _ in model.named_parameters()]
    aliases = {"head": head_names(model)}
    chosen: set[str] = set()
    for pattern in patterns:
        matched = match_names(names, str(pattern), KEY, aliases)
        if not matched:
            raise ConfigError(f"{KEY}: {str(pattern)!r} matches no parameter; use head, an fnmatch pattern or "
                              f"re:<regex> over names such as {names[-1]!r}, e.g. {KEY}=[head,{names[0]}]")
        chosen.update(matched)
    return [name for name in names if name in chosen]


def head_names(model: nn.Module) -> list[str]:
    """The parameters of the last module that holds parameters of its own."""
    owners = [prefix for prefix, module in model.named_modules() if any(True for _ in module.parameters(False))]
    return layer_names(model, owners[-1]) if owners else []


def layer_names(model: nn.Module, prefix: str) -> list[str]:
    """The names of the parameters module ``prefix`` holds itself (its weight and bias)."""
    module = model.get_submodule(prefix)
    return [f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters(recurse=False)]


def read_drift_table(rank_from: str) -> list[dict]:
    """The drift table of the run in ``rank_from``; ConfigError (one line) when there is none."""
    path = Path(rank_from).expanduser() / "summary.json"
    example = "e.g. finetune.rank_from=<a finished run of init_from=<pretrained> steps=200 finetune.drift=true>"
    try:
        rows = json.loads(path.read_text()).get("drift")
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"finetune.rank_from={rank_from!r} holds no readable summary.json (a finished run); "
                          f"{example}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and {"name", "shape", "relative_l2"} <= row.keys()
                                             for row in rows) or not rows:
        raise ConfigError(f"finetune.rank_from={rank_from!r}: its summary.json has no drift table (run it with "
                          f"finetune.drift=true); {example}")
    return rows


def ranked_layers(model: nn.Module, rank_from: str, top_layers: int, trained: set[str]) -> tuple[list[str], list[str]]:
    """The ``top_layers`` weight tensors outside ``trained`` that moved most in ``rank_from``'s drift table, and the
    parameters of their modules; ConfigError for a table of another model or too few weight tensors."""
    rows = read_drift_table(rank_from)
    names = [name for name, _ in model.named_parameters()]
    if sorted(row["name"] for row in rows) != sorted(names):
        other = sorted({row["name"] for row in rows} ^ set(names))
        raise ConfigError(f"finetune.rank_from={rank_from!r} is a run of another model (its drift table and this "
                          f"model differ in {other[:3]}); e.g. finetune.rank_from=<a run of this model>")
    weights = sorted((row for row in rows if len(row["shape"]) >= 2 and row["name"] not in trained),
                     key=lambda row: -ranking_value(row))
    if top_layers > len(weights):
        raise ConfigError(f"finetune.top_layers={top_layers} but {rank_from!r} ranks {len(weights)} weight tensors "
                          f"that finetune.trainable leaves frozen; e.g. finetune.top_layers={max(1, len(weights))}")
    chosen = [row["name"] for row in weights[:top_layers]]
    layers = {name for weight in chosen for name in layer_names(model, weight.rpartition(".")[0])}
    return chosen, [name for name in names if name in layers]


@dataclass(frozen=True)
class Selection:
    """What a run trains: parameter names in model order (None: every parameter), and the weight tensors that
    ``rank_from`` chose."""

    names: list[str] | None
    ranked: list[str]


def select_trainable(finetune: Any, model: nn.Module) -> Selection:
    """The parameters ``finetune`` (the config section) selects, logged when some stay frozen."""
    patterns = [str(pattern) for pattern in finetune.trainable]
    if patterns == ["*"] and not finetune.rank_from:
        return Selection(names=None, ranked=[])
    names = set(trainable_names(model, patterns))
    ranked: list[str] = []
    if finetune.rank_from:
        ranked, layers = ranked_layers(model, finetune.rank_from, finetune.top_layers, names)
        names.update(layers)
        log.info("finetune.rank_from: the %d other weight tensors that moved most in %s: %s", len(ranked),
                 finetune.rank_from, ", ".join(ranked))
    ordered = [name for name, _ in model.named_parameters() if name in names]
    log.info("training %d of %d parameter tensors (the rest frozen at their starting values): %s", len(ordered),
             sum(1 for _ in model.parameters()), ", ".join(ordered) or "none")
    return Selection(names=ordered, ranked=ranked)


def optimized_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameters the optimizer updates (a method may have taken some out in its setup), in model order."""
    held = {id(param) for group in optimizer.param_groups for param in group["params"]}
    return [name for name, param in model.named_parameters() if id(param) in held]


def finetune_summary(model: nn.Module, trained: list[str], selection: Selection, rank_from: str | None) -> dict:
    """summary.json's ``finetune`` entry: what was trained and frozen, and the ranking it came from."""
    sizes = {name: param.numel() for name, param in model.named_parameters()}
    return {
        "trainable": trained,
        "trainable_parameters": sum(sizes[name] for name in trained),
        "frozen_parameters": sum(sizes.values()) - sum(sizes[name] for name in trained),
        "rank_from": rank_from,
        "ranked": selection.ranked,
    }
