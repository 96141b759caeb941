"""The optimizer from ``cfg.optimizer`` over the parameters a run trains (``finetune.trainable``; the others are
frozen: ``requires_grad`` off, not in the optimizer), with weight decay optionally off for biases and normalisation
parameters (``optimizer.exempt_bias_norm``; rigl-reproducibility exempts them, OpenLTH and the RigL TF code do not)."""

from __future__ import annotations

from collections.abc import Collection

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def build_optimizer(cfg: DictConfig, model: nn.Module,
                    trainable: Collection[str] | None = None) -> torch.optim.Optimizer:
    """The optimizer over the parameters named in ``trainable`` (all when None), always built from param-group
    dicts (a group may be empty: a method may train only parameters it adds in its setup)."""
    options = OmegaConf.to_container(cfg, resolve=True)
    exempt = options.pop("exempt_bias_norm", False)
    for key in ("clip_grad_norm", "clip_mode"):  # the step's, not the optimizer's (training/clipping.py)
        options.pop(key, None)
    factory = instantiate(options)
    chosen = freeze_others(model, trainable)
    if not exempt:
        return factory([{"params": [p for p in model.parameters() if p in chosen]}])
    decayed, exempted = decay_groups(model)
    return factory([{"params": [p for p in decayed if p in chosen]},
                    {"params": [p for p in exempted if p in chosen], "weight_decay": 0.0}])


def freeze_others(model: nn.Module, trainable: Collection[str] | None) -> set[nn.Parameter]:
    """Turn off ``requires_grad`` of every parameter not named in ``trainable``; the trained ones."""
    chosen = set()
    for name, param in model.named_parameters():
        if trainable is None or name in trainable:
            chosen.add(param)
        else:
            param.requires_grad_(False)
    return chosen


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Parameters with weight decay, and those without: every ``bias`` and every parameter of a normalisation
    layer (chosen by module type and parameter name, never by substring)."""
    decayed, exempted = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (exempted if isinstance(module, NORMS) or name == "bias" else decayed).append(param)
    return decayed, exempted
