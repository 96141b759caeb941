"""Static sparse training: a fixed mask, random with exact per-layer counts from a distribution, or loaded from
a file or an earlier run (``method.mask_from``), trained without changes.

Paper: https://arxiv.org/abs/1911.11134; the authors' code: https://github.com/google-research/rigl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.masks import load_checked_masks
from .base import RunContext
from .masked import MaskedMethod

MASKS_IN_RUN = Path("masks") / "final.safetensors"
SPARSITY_TOLERANCE = 5e-5  # a sparsity given to 4 decimals names the mask's


class Static(MaskedMethod):
    name = "static"

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        return cfg.mask_from is None  # a loaded mask brings its own sparsity

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.mask_from is not None:
            mask_file(cfg.mask_from)

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.mask_file = mask_file(cfg.mask_from) if cfg.mask_from is not None else None
        self.given: dict[str, torch.Tensor] | None = None

    def setup(self, ctx: RunContext) -> None:
        """Loads and checks a given mask here, before the run writes anything: its sparsity is the run's."""
        super().setup(ctx)
        if self.mask_file is not None:
            self.given = load_checked_masks(self.mask_file, self.targets.params, "method.mask_from")
            refuse_other_sparsity(self.given, self.sparsity)

    def start_round(self, round_index: int) -> None:
        if self.given is None and self.ctx.init_masks is not None:
            return  # fine-tuning a sparse init_from source: its masks, installed at setup, stay fixed
        if self.given is None:
            masks = self.draw_random_masks(self.sparsity, self.ctx.seed)
        else:
            masks = self.given
        self.set_masks(masks)


def refuse_other_sparsity(masks: dict[str, torch.Tensor], sparsity: float) -> None:
    """ConfigError unless ``sparsity`` is the masks' own (zeros over all their entries, to 4 decimals)."""
    total = sum(mask.numel() for mask in masks.values())
    realised = 1.0 - float(sum(mask.sum() for mask in masks.values())) / total
    if abs(realised - sparsity) > SPARSITY_TOLERANCE:
        raise ConfigError(f"sparsity={sparsity} disagrees with the masks of method.mask_from, which are "
                          f"{realised:.4f} sparse; give theirs, e.g. sparsity={realised:.4f}")


def mask_file(text: str) -> Path:
    """A masks file, or the final masks of a run directory; ConfigError (one line) if there is none."""
    path = Path(text).expanduser()
    if not str(text).strip():
        raise ConfigError("method.mask_from='' is empty; give a masks file or a run directory, e.g. "
                          "method.mask_from=outputs/2026-11-25/14-03-11")
    if path.is_dir():
        path = path / MASKS_IN_RUN
    if not path.is_file():
        raise ConfigError(
            f"method.mask_from={text!r} is neither a masks .safetensors file nor a run directory with "
            f"{MASKS_IN_RUN}; e.g. method.mask_from=outputs/2026-11-25/14-03-11"
        )
    return path
