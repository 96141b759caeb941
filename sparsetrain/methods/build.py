"""``build_method``: the method a ``method`` config names, checked, then built from its registered class."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .base import Method
from .catalog import METHODS


def check_method(cfg: Any, sparsity: float, *, start_masks: bool = False, config: dict | None = None) -> type[Method]:
    """The class of method ``cfg.name`` after every check that needs no model (given the resolved run ``config``,
    those against it too); ValueError (one line) for an unknown name, a bad option, or a zero target for a method
    whose target ``sparsity`` is (unless the run starts from the masks of ``start_masks``)."""
    if cfg.name not in METHODS:
        METHODS.record(cfg.name, key="method.name")  # raises: not a method, with the choices
    cls = METHODS[cfg.name]
    cls.check(cfg, sparsity)
    if sparsity == 0.0 and not start_masks and cls.uses_sparsity(cfg):
        raise ValueError(f"sparsity=0.0 with method={cfg.name} would train a dense model under a sparse method's "
                         "name; give the target, e.g. sparsity=0.9 (or method=dense for the baseline)")
    if config is not None:
        cls.check_config(cfg, config)
    return cls


def build_method(cfg: Any, sparsity: float, *, start_masks: bool = False) -> Method:
    """The checked method of ``cfg`` (see ``check_method``), its options as the schema's dataclass."""
    cfg = _plain(cfg)
    return check_method(cfg, sparsity, start_masks=start_masks)(cfg, sparsity)


def _plain(cfg: Any) -> Any:
    """A structured config as its dataclass: hooks read it at every step, and a DictConfig read costs ~10 us."""
    if isinstance(cfg, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        return OmegaConf.to_object(cfg)
    return cfg
