"""The optimizer from ``cfg.optimizer``, with weight decay optionally off for biases and normalisation parameters
(``optimizer.exempt_bias_norm``; rigl-reproducibility exempts them, OpenLTH and the RigL TF code do not)."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    options = OmegaConf.to_container(cfg, resolve=True)
    exempt = options.pop("exempt_bias_norm", False)
    factory = instantiate(options)
    if not exempt:
        return factory(model.parameters())
    decayed, exempted = decay_groups(model)
    return factory([{"params": decayed}, {"params": exempted, "weight_decay": 0.0}])


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Parameters with weight decay, and those without: every ``bias`` and every parameter of a normalisation
    layer (chosen by module type and parameter name, never by substring)."""
    decayed, exempted = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (exempted if isinstance(module, NORMS) or name == "bias" else decayed).append(param)
    return decayed, exempted
