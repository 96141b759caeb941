"""Dense training: no masks. The baseline every sparse method is compared against; it ignores ``sparsity`` (so it can
share a sweep over it) and records sparsity 0."""

from __future__ import annotations

from .base import Method


class Dense(Method):
    name = "dense"

    def __init__(self, cfg, sparsity: float) -> None:
        super().__init__(cfg, 0.0)
