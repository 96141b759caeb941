"""Sparsification methods, one file each, behind the hooks of ``base.Method``; ``build_method`` picks one."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .acdc import ACDC
from .base import Method, RunContext
from .dense import Dense
from .gap import GaP
from .gmp import GMP
from .grasp import GraSP
from .itop import ITOP
from .lth import LTH
from .mask_training import MaskTraining
from .oneshot import OneShot
from .rigl import RigL
from .set import SET
from .snfs import SNFS
from .snip import SNIP
from .static import Static
from .synflow import SynFlow

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Dense, Static, GMP, OneShot, SNIP, GraSP, SynFlow, LTH, RigL, SET, SNFS, ITOP, ACDC, GaP,
                                   MaskTraining)
}


def build_method(cfg: Any, sparsity: float, *, start_masks: bool = False) -> Method:
    """The method named by ``cfg.name``; ValueError (one line) for an unknown name, a bad option, or a zero target
    for a method whose target ``sparsity`` is (unless the run starts from the masks of ``start_masks``)."""
    try:
        cls = METHODS[cfg.name]
    except KeyError:
        raise ValueError(f"method.name={cfg.name!r} is not a method; choose one of: {', '.join(sorted(METHODS))}")
    method = cls(_plain(cfg), sparsity)
    if sparsity == 0.0 and not start_masks and method.uses_sparsity():
        raise ValueError(f"sparsity=0.0 with method={method.name} would train a dense model under a sparse method's "
                         "name; give the target, e.g. sparsity=0.9 (or method=dense for the baseline)")
    return method


def _plain(cfg: Any) -> Any:
    """A structured config as its dataclass: hooks read it at every step, and a DictConfig read costs ~10 us."""
    if isinstance(cfg, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        return OmegaConf.to_object(cfg)
    return cfg


__all__ = ["METHODS", "Method", "RunContext", "build_method"]
