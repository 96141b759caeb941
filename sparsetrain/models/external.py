"""Models from outside the zoo: any torchvision classification model by name, or a user's factory by ``_target_``."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import UserCodeError, first_line
from ..factories import call_user, call_with, locate

log = logging.getLogger(__name__)

CUSTOM_EXAMPLE = "my_pkg.nets.make_net"
BUILDING = "while building the model"
_SCHEMA_KEYS = {"name", "source", "_target_", "depth", "width", "dropout", "stem", "shortcut", "init", "weights"}
_UNSET = {"depth": None, "width": None, "dropout": 0.0, "stem": "auto"}


def user_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """The keys a user added to the model config, and the zoo options they set: passed to the factory."""
    added = {key: value for key, value in cfg.items() if key not in _SCHEMA_KEYS}
    given = {key: cfg[key] for key, unset in _UNSET.items() if key in cfg and cfg[key] != unset}
    return {**given, **added}


def check_custom(cfg: dict[str, Any]) -> None:
    """The factory's import path resolves (before anything is built or written); ValueError otherwise."""
    locate("model._target_", cfg["_target_"], CUSTOM_EXAMPLE)


def build_custom(cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``model._target_(**options)``, with ``num_classes`` and ``in_shape`` when its signature takes them."""
    factory = locate("model._target_", cfg["_target_"], CUSTOM_EXAMPLE)
    model = call_user(model_label(cfg), BUILDING, call_with, factory,
                      {"num_classes": num_classes, "in_shape": tuple(in_shape)}, user_options(cfg))
    if not isinstance(model, nn.Module):
        raise ValueError(f"model._target_={cfg['_target_']!r} returned a {type(model).__name__}, not a "
                         f"torch.nn.Module; make the factory return the network, e.g. model._target_={CUSTOM_EXAMPLE}")
    return model


def torchvision_names() -> list[str]:
    import torchvision.models  # slow to import

    return torchvision.models.list_models(module=torchvision.models)


def model_label(cfg: dict[str, Any]) -> str:
    """The key and value that chose the model's code: what a message about its failure names."""
    source = cfg.get("source", "zoo")
    if source == "custom":
        return f"model._target_={cfg['_target_']!r}"
    if source == "hf":
        return f"model.name_or_path={cfg['name_or_path']!r}" if cfg.get("name_or_path") else "model.config"
    return f"model.name={cfg['name']!r}" + (" (torchvision)" if source == "torchvision" else "")


def check_torchvision(cfg: dict[str, Any]) -> None:
    """The name is a torchvision classification model, and ``model.weights`` one of its weights."""
    name = cfg["name"]
    if name not in torchvision_names():
        raise ValueError(f"model.name={name!r} is not a torchvision classification model; choose one of "
                         f"torchvision.models.list_models(module=torchvision.models), e.g. model.name=resnet18")
    if cfg.get("weights") is not None:
        _weights(name, cfg["weights"])
        if cfg.get("init", "paper") != "paper":
            raise ValueError(f"model.init={cfg['init']!r} would replace model.weights={cfg['weights']!r}; keep "
                             "the model's own initialisation, e.g. model.init=paper")


def build_torchvision(cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int,
                      pretrained: bool = True) -> nn.Module:
    """``torchvision.models.get_model(name, weights=model.weights, num_classes=...)``: the weights (read from
    torch.hub's cache under ``TORCH_HOME``, downloaded there if missing), or at random (``model.weights=null`` or
    ``pretrained=False``). For another number of classes than the weights', the classifier starts at random."""
    from torchvision.models import get_model

    check_torchvision(cfg)
    name = cfg["name"]
    if in_shape[0] != 3:
        raise ValueError(f"model.name={name!r} (torchvision) takes 3-channel images but the dataset has "
                         f"{in_shape[0]}; use a 3-channel dataset, e.g. dataset=cifar10")
    weights = _weights(name, cfg["weights"]) if pretrained and cfg.get("weights") is not None else None
    if weights is None:
        return call_user(model_label(cfg), BUILDING, get_model, name, weights=None, num_classes=num_classes,
                         **user_options(cfg))
    classes = len(weights.meta["categories"])
    try:
        model = call_user(model_label(cfg), BUILDING, get_model, name, weights=weights, num_classes=classes,
                          **user_options(cfg))
    except UserCodeError as error:
        if not isinstance(error.__cause__, OSError):
            raise
        file = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
        raise ValueError(f"model.weights={cfg['weights']!r}: {file} is not in torchvision's cache and cannot be "
                         f"downloaded ({first_line(error.__cause__)}); put the file there (the cache is "
                         "$TORCH_HOME/hub/checkpoints) or train from scratch, e.g. model.weights=null") from None
    if classes != num_classes:
        fresh = get_model(name, weights=None, num_classes=num_classes, **user_options(cfg))
        replaced = _replace_mismatched(model, fresh)
        log.info("model.weights=%s: %s start at random for %d classes (the weights have %d)", cfg["weights"],
                 ", ".join(replaced), num_classes, classes)
    return model


def _weights(name: str, key: str) -> Any:
    """The member ``key`` (``DEFAULT``, ``IMAGENET1K_V1``, ...) of the weights enum of torchvision model ``name``."""
    from torchvision.models import get_model_weights

    members = get_model_weights(name).__members__
    if key not in members:
        raise ValueError(f"model.weights={key!r} is not a weights name of torchvision's {name}; choose one of: "
                         f"{', '.join(members)} (e.g. model.weights=DEFAULT)")
    return members[key]


def _replace_mismatched(model: nn.Module, fresh: nn.Module) -> list[str]:
    """Put ``fresh``'s modules into ``model`` where their parameters' shapes differ (the classifier, for another
    number of classes); their names."""
    shapes = {key: value.shape for key, value in fresh.state_dict().items()}
    names = sorted({key.rpartition(".")[0] for key, value in model.state_dict().items() if value.shape != shapes[key]})
    for path in names:
        parent, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent), child, fresh.get_submodule(path))
    return names
