"""Sparsification methods, one file each, behind the hooks of ``base.Method``; ``build_method`` picks one."""

from __future__ import annotations

from typing import Any

from .base import Method, RunContext
from .dense import Dense
from .gmp import GMP
from .grasp import GraSP
from .itop import ITOP
from .lth import LTH
from .oneshot import OneShot
from .rigl import RigL
from .set import SET
from .snfs import SNFS
from .snip import SNIP
from .static import Static
from .synflow import SynFlow

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Dense, Static, GMP, OneShot, SNIP, GraSP, SynFlow, LTH, RigL, SET, SNFS, ITOP)
}


def build_method(cfg: Any, sparsity: float) -> Method:
    """The method named by ``cfg.name``; ValueError (one line) for an unknown name or a bad option."""
    try:
        cls = METHODS[cfg.name]
    except KeyError:
        raise ValueError(f"method.name={cfg.name!r} is not a method; choose one of: {', '.join(sorted(METHODS))}")
    return cls(cfg, sparsity)


__all__ = ["METHODS", "Method", "RunContext", "build_method"]
