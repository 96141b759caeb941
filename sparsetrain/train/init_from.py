"""``init_from``: start a run from trained weights (a checkpoint, a run directory or an exported
``model.safetensors``), and from their masks when the source is sparse.

Masks come from the checkpoint's method state, or, for a safetensors export, from the zeros of its prunable
weights. A dense source (no masks, or all ones) gives weights only.

The source may be another head on the same body (a masked-LM run into a sequence classifier): the weights both
models hold with the same shape are loaded, the rest keep the new model's values (logged). Refused in one line only
when a prunable weight of the model (``model.prunable``, else every linear/conv weight) or a masked weight of the
source is missing or shaped differently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import ConfigError
from ..runs.checkpoint import load_checkpoint
from ..runs.files import checkpoint_path
from ..sparsity.targets import prunable_parameters

log = logging.getLogger(__name__)
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


def load_init(text: str, model: nn.Module, device: torch.device,
              prunable: Sequence[str] = ()) -> dict[str, torch.Tensor] | None:
    """Load the source's weights into ``model``; return its masks by weight name (None for a dense source).
    ``prunable``: the model's default prunable-weight patterns (empty: every linear and conv weight)."""
    path = init_source(text)
    selected = prunable_parameters(model, include=list(prunable))
    if path.suffix == ".safetensors":
        weights = load_file(path, device=str(device))
        masks = {name: weights[name] != 0 for name in selected if name in weights}
    else:
        state = load_checkpoint(path, device, key="init_from")  # damaged or code-running files: one line
        weights = state.get("model", state)
        masks = (state.get("method") or {}).get("masks") if "model" in state else None
    expected = model.state_dict()
    _check_fit(text, weights, expected, set(selected) | set(masks or {}))
    shared = {name: tensor for name, tensor in weights.items()
              if name in expected and tuple(tensor.shape) == tuple(expected[name].shape)}
    kept, ignored = sorted(set(expected) - set(shared)), sorted(set(weights) - set(shared))
    if kept or ignored:
        log.warning("init_from=%s: %d tensors left at the new model's values (%s), %d of the source not loaded (%s)",
                    text, len(kept), ", ".join(kept), len(ignored), ", ".join(ignored))
    model.load_state_dict(shared, strict=False)
    if not masks or all(bool(mask.all()) for mask in masks.values()):
        return None
    return {name: mask.to(device=device, dtype=torch.bool) for name, mask in masks.items()}


def _check_fit(text: str, weights: dict, expected: dict, required: set[str]) -> None:
    """ConfigError unless every ``required`` weight is in both the source and the model, with one shape."""
    missing = sorted(name for name in required if name not in weights or name not in expected)
    if missing:
        raise ConfigError(f"init_from={text!r} does not fit the model: {len(missing)} prunable or masked weights "
                          f"missing, e.g. {missing[:3]}; use weights of the same model, {EXAMPLE}")
    for name in sorted(required):
        tensor = weights[name]
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConfigError(f"init_from={text!r} does not fit the model: {name!r} has shape "
                              f"{tuple(tensor.shape)}, the model's {tuple(expected[name].shape)}; use weights of "
                              f"the same model, {EXAMPLE}")
