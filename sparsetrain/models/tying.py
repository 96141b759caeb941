"""Tied weights: one parameter that several modules hold (an MLM decoder and the word embeddings), and untying one
of its names by giving that module a parameter of its own."""

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
