"""Trained weights from a checkpoint, a run directory or a ``model.safetensors`` export, into a model that may carry
another head on the same body (a masked-LM run into a sequence classifier).

The tensors both hold with one shape are loaded and the rest keep the model's values (logged); refused in one line
only when a weight the caller needs (its prunable or masked weights) is missing or shaped differently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import ConfigError
from .checkpoint import load_checkpoint
from .files import checkpoint_path

log = logging.getLogger(__name__)


def weights_file(key: str, text: str, example: str) -> Path:
    """The file ``key=text`` names (a run directory means its last checkpoint); ConfigError (one line) if none."""
    path = Path(text).expanduser()
    if path.is_dir():
        path = checkpoint_path(path)
    if not path.is_file() or path.suffix not in (".pt", ".pth", ".safetensors"):
        raise ConfigError(f"{key}={text!r} is neither a checkpoint (.pt, .pth), a run directory with "
                          f"checkpoints/last.pt nor a model.safetensors export; {example}")
    return path


def read_weights(path: Path, device: torch.device, key: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The weights in ``path`` and the masks its method state holds (None: an export, or a plain state dict)."""
    if path.suffix == ".safetensors":
        return load_file(path, device=str(device)), None
    state = load_checkpoint(path, device, key=key)  # damaged or code-running files: one line
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise ConfigError(f"{key}: {path} holds no model weights (a state dict of tensors); e.g. {key}=<a run "
                          "directory written by sparsetrain>")
    masks = (state.get("method") or {}).get("masks") if "model" in state else None
    return weights, masks


def load_shared_weights(model: nn.Module, weights: dict[str, torch.Tensor], required: Iterable[str], key: str,
                        text: str, example: str) -> None:
    """Load the tensors ``model`` and ``weights`` both hold with one shape; ConfigError unless every ``required``
    name is among them."""
    expected = model.state_dict()
    _check_fit(key, text, example, weights, expected, set(required))
    shared = {name: tensor for name, tensor in weights.items()
              if name in expected and tuple(tensor.shape) == tuple(expected[name].shape)}
    kept, ignored = sorted(set(expected) - set(shared)), sorted(set(weights) - set(shared))
    if kept or ignored:
        log.warning("%s=%s: %d tensors left at the new model's values (%s), %d of the source not loaded (%s)",
                    key, text, len(kept), ", ".join(kept), len(ignored), ", ".join(ignored))
    model.load_state_dict(shared, strict=False)


def _check_fit(key: str, text: str, example: str, weights: dict, expected: dict, required: set[str]) -> None:
    missing = sorted(name for name in required if name not in weights or name not in expected)
    if missing:
        raise ConfigError(f"{key}={text!r} does not fit the model: {len(missing)} prunable or masked weights "
                          f"missing, e.g. {missing[:3]}; use weights of the same model, {example}")
    for name in sorted(required):
        tensor = weights[name]
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConfigError(f"{key}={text!r} does not fit the model: {name!r} has shape {tuple(tensor.shape)}, "
                              f"the model's {tuple(expected[name].shape)}; use weights of the same model, {example}")
