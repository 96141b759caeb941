"""Dense training: no masks. The baseline every sparse method is compared against."""

from __future__ import annotations

from .base import Method


class Dense(Method):
    name = "dense"

    def __init__(self, cfg, sparsity: float) -> None:
        if sparsity != 0.0:
            raise ValueError(
                f"sparsity={sparsity} has no effect with method=dense; use sparsity=0 or a sparse method, "
                "e.g. method=rigl"
            )
        super().__init__(cfg, sparsity)
