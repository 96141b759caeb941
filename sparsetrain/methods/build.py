"""``build_method``: the method a ``method`` config names, built from its registered class."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .base import Method
from .catalog import METHODS


def build_method(cfg: Any, sparsity: float, *, start_masks: bool = False) -> Method:
    """The method named by ``cfg.name``; ValueError (one line) for an unknown name, a bad option, or a zero target
    for a method whose target ``sparsity`` is (unless the run starts from the masks of ``start_masks``)."""
    if cfg.name not in METHODS:
        METHODS.record(cfg.name, key="method.name")  # raises: not a method, with the choices
    method = METHODS[cfg.name](_plain(cfg), sparsity)
    if sparsity == 0.0 and not start_masks and method.uses_sparsity():
        raise ValueError(f"sparsity=0.0 with method={method.name} would train a dense model under a sparse method's "
                         "name; give the target, e.g. sparsity=0.9 (or method=dense for the baseline)")
    return method


def _plain(cfg: Any) -> Any:
    """A structured config as its dataclass: hooks read it at every step, and a DictConfig read costs ~10 us."""
    if isinstance(cfg, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        return OmegaConf.to_object(cfg)
    return cfg
