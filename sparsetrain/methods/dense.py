"""Dense training: no masks. The baseline every sparse method is compared against; it ignores ``sparsity`` (so it can
share a sweep over it) and records sparsity 0."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method, RunContext


class Dense(Method):
    name = "dense"

    def __init__(self, cfg, sparsity: float) -> None:
        super().__init__(cfg, 0.0)

    def setup(self, ctx: RunContext) -> None:
        if ctx.init_masks is not None:
            zeros = sum(int((~mask).sum()) for mask in ctx.init_masks.values())
            raise ConfigError(f"init_from is sparse ({zeros} masked weights) and method=dense would fill its zeros; "
                              "fine-tune it with its masks fixed, e.g. method=static init_from=<the same source>")
        super().setup(ctx)
