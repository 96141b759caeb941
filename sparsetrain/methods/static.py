"""Static sparse training: a fixed mask, random with exact per-layer counts from a distribution, or loaded from
a file or an earlier run (``method.mask_from``), trained without changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..sparsity.masks import load_checked_masks, random_masks
from .masked import MaskedMethod

MASKS_IN_RUN = Path("masks") / "final.safetensors"


class Static(MaskedMethod):
    name = "static"

    def uses_sparsity(self) -> bool:
        return self.cfg.mask_from is None  # a loaded mask brings its own sparsity

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.mask_file = mask_file(cfg.mask_from) if cfg.mask_from else None

    def start_round(self, round_index: int) -> None:
        if self.mask_file is None and self.ctx.init_masks is not None:
            return  # fine-tuning a sparse init_from source: its masks, installed at setup, stay fixed
        if self.mask_file is None:
            masks = random_masks(self.targets.shapes, self.layer_zeros(self.sparsity), self.ctx.seed, self.ctx.device)
        else:
            masks = load_checked_masks(self.mask_file, self.targets.params, "method.mask_from")
        self.set_masks(masks)


def mask_file(text: str) -> Path:
    """A masks file, or the final masks of a run directory; ConfigError (one line) if there is none."""
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / MASKS_IN_RUN
    if not path.is_file():
        raise ConfigError(
            f"method.mask_from={text!r} is neither a masks .safetensors file nor a run directory with "
            f"{MASKS_IN_RUN}; e.g. method.mask_from=outputs/2026-11-25/14-03-11"
        )
    return path
