"""``init_from``: start a run from trained weights (a checkpoint, a run directory or an exported
``model.safetensors``), and from their masks when the source is sparse; or from a masks file alone
(``masks/final.safetensors``, ``masks/step_<N>.safetensors`` of ``masks_at``): the model's own starting weights under
those masks (TAMT's θ0 ⊙ M).

Masks come from the checkpoint's method state, or, for a safetensors export, from the zeros of its prunable
weights. A dense source (no masks, or all ones) gives weights only.

The source may be another head on the same body (a masked-LM run into a sequence classifier): the weights both
models hold with the same shape are loaded, the rest keep the new model's values (logged). Refused in one line only
when a prunable weight of the model (``model.prunable``, else every linear/conv weight) or a masked weight of the
source is missing or shaped differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..runs.weights import load_shared_weights, read_weights, weights_file
from ..sparsity.targets import prunable_parameters

EXAMPLE = "e.g. init_from=outputs/2026-11-25/14-03-11 or init_from=<run>/export/model.safetensors"


def init_source(text: str) -> Path:
    """The file ``init_from`` names; ConfigError (one line) when there is none."""
    return weights_file("init_from", text, EXAMPLE)


def load_init(text: str, model: nn.Module, device: torch.device,
              prunable: Sequence[str] = ()) -> dict[str, torch.Tensor] | None:
    """Load the source's weights into ``model``; return its masks by weight name (None for a dense source).
    ``prunable``: the model's default prunable-weight patterns (empty: every linear and conv weight)."""
    path = init_source(text)
    selected = prunable_parameters(model, include=list(prunable))
    weights, masks = read_weights(path, device, "init_from")
    if weights and all(tensor.dtype == torch.bool for tensor in weights.values()):  # a masks file: its masks
        check_masks_fit(model, weights, text)  # over the model's own starting weights
        return {name: mask.to(device) for name, mask in weights.items()}
    if path.suffix == ".safetensors":  # an export's masks are the zeros of its prunable weights
        masks = {name: weights[name] != 0 for name in selected if name in weights}
    load_shared_weights(model, weights, set(selected) | set(masks or {}), "init_from", text, EXAMPLE)
    if not masks or all(bool(mask.all()) for mask in masks.values()):
        return None
    return {name: mask.to(device=device, dtype=torch.bool) for name, mask in masks.items()}


def check_masks_fit(model: nn.Module, masks: dict[str, torch.Tensor], text: str) -> None:
    """ConfigError (one line) unless every mask names a parameter of ``model`` of its shape."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params or tuple(params[name].shape) != tuple(mask.shape):
            raise ConfigError(f"init_from={text!r}: mask {name!r} fits no parameter of the model; use masks saved by a "
                              f"run of the same model, {EXAMPLE}")
