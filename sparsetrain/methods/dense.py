"""Dense training: no masks. The baseline every sparse method is compared against."""

from __future__ import annotations

from ..config import ConfigError
from .base import Method, RunContext


class Dense(Method):
    name = "dense"

    def __init__(self, cfg, sparsity: float) -> None:
        if sparsity != 0.0:
            raise ValueError(
                f"sparsity={sparsity} has no effect with method=dense; use sparsity=0 or a sparse method"
            )
        super().__init__(cfg, sparsity)

    def setup(self, ctx: RunContext) -> None:
        if ctx.init_masks is not None:
            zeros = sum(int((~mask).sum()) for mask in ctx.init_masks.values())
            raise ConfigError(f"init_from is sparse ({zeros} masked weights) and method=dense would fill its zeros; "
                              "fine-tune it with its masks fixed, e.g. method=static init_from=<the same source>")
        super().setup(ctx)
