"""``init_from``: start a run from trained weights (a checkpoint, a run directory or an exported
``model.safetensors``), and from their masks when the source is sparse.

Masks come from the checkpoint's method state, or, for a safetensors export, from the zeros of its prunable
weights. A dense source (no masks, or all ones) gives weights only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import ConfigError
from ..sparsity.targets import prunable_parameters
from .checkpoint import load_checkpoint
from .files import checkpoint_path

EXAMPLE = "e.g. init_from=outputs/2026-11-25/14-03-11 or init_from=<run>/export/model.safetensors"


def init_source(text: str) -> Path:
    """The file ``init_from`` names; ConfigError (one line) when there is none."""
    path = Path(text).expanduser()
    if path.is_dir():
        path = checkpoint_path(path)
    if not path.is_file() or path.suffix not in (".pt", ".safetensors"):
        raise ConfigError(f"init_from={text!r} is neither a checkpoint (.pt), a run directory with "
                          f"checkpoints/last.pt nor a model.safetensors export; {EXAMPLE}")
    return path


def load_init(text: str, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor] | None:
    """Load the source's weights into ``model``; return its masks by weight name (None for a dense source)."""
    path = init_source(text)
    if path.suffix == ".safetensors":
        weights = load_file(path, device=str(device))
        masks = {name: weights[name] != 0 for name in prunable_parameters(model) if name in weights}
    else:
        state = load_checkpoint(path, device, key="init_from")  # damaged or code-running files: one line
        weights = state.get("model", state)
        masks = (state.get("method") or {}).get("masks") if "model" in state else None
    _check_fit(text, weights, model.state_dict())
    model.load_state_dict(weights)
    if not masks or all(bool(mask.all()) for mask in masks.values()):
        return None
    return {name: mask.to(device=device, dtype=torch.bool) for name, mask in masks.items()}


def _check_fit(text: str, weights: dict, expected: dict) -> None:
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        raise ConfigError(f"init_from={text!r} does not fit the model: missing {missing[:3]}, unexpected "
                          f"{extra[:3]}; use weights of the same model, {EXAMPLE}")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConfigError(f"init_from={text!r} does not fit the model: {name!r} has shape "
                              f"{tuple(tensor.shape)}, the model's {tuple(expected[name].shape)}; use weights of "
                              f"the same model, {EXAMPLE}")
