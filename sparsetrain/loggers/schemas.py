"""The loggers' names and the ``wandb`` section's schema (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class WandbConfig:
    """Weights & Biases (``logger=[jsonl,wandb]``, needs ``pip install wandb``)."""

    project: str = "sparsetrain"  # W&B project
    entity: Optional[str] = None  # W&B team or user (default: yours)
    mode: str = "offline"  # offline (files under <run dir>/wandb, no network; `wandb sync` later) | online


LOGGERS = ("jsonl", "csv", "tensorboard", "wandb")
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "sparsetrain[tb]"), "wandb": ("wandb", "sparsetrain[wandb]")}
