"""Tied weights: one parameter that several modules hold (an MLM decoder and the word embeddings), and untying one
of its names by giving that module a parameter of its own (``mask_training``'s ``tied_weights=unmasked``; a model
rebuilt from such a run's weights is untied the same way)."""

from __future__ import annotations

import torch
from torch import nn


def tied_names(model: nn.Module) -> dict[str, str]:
    """Every further name of a parameter that several modules hold, mapped to its first name (the one
    ``named_parameters`` lists)."""
    first: dict[int, str] = {}
    tied = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied[name] = first[id(param)]
        else:
            first[id(param)] = name
    return tied


def untie_(model: nn.Module, name: str, value: torch.Tensor, requires_grad: bool = True) -> None:
    """Give the module that holds ``name`` a parameter of its own, a copy of ``value``."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[attr] = nn.Parameter(value.detach().clone(), requires_grad=requires_grad)


def untie_differing_(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Untie every name ``model`` ties to another whose value in ``weights`` differs from that other's (a run held
    them apart), so that loading ``weights`` keeps both; return those names."""
    differing = [name for name, first in tied_names(model).items()
                 if name in weights and first in weights and not torch.equal(weights[name], weights[first])]
    for name in differing:
        untie_(model, name, weights[name])
    return differing
