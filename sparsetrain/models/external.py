"""Models from outside the zoo: any torchvision classification model by name, or a user's factory by ``_target_``."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..factories import call_with, locate

CUSTOM_EXAMPLE = "my_pkg.nets.make_net"
_SCHEMA_KEYS = {"name", "source", "_target_", "depth", "width", "dropout", "stem", "shortcut", "init"}
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
    model = call_with(factory, {"num_classes": num_classes, "in_shape": tuple(in_shape)}, user_options(cfg))
    if not isinstance(model, nn.Module):
        raise ValueError(f"model._target_={cfg['_target_']!r} returned a {type(model).__name__}, not a "
                         f"torch.nn.Module; make the factory return the network, e.g. model._target_={CUSTOM_EXAMPLE}")
    return model


def torchvision_names() -> list[str]:
    import torchvision.models  # slow to import

    return torchvision.models.list_models(module=torchvision.models)


def check_torchvision(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        raise ValueError(f"model.name={name!r} is not a torchvision classification model; choose one of "
                         f"torchvision.models.list_models(module=torchvision.models), e.g. model.name=resnet18")


def build_torchvision(cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)``: random initialisation, no download."""
    from torchvision.models import get_model

    check_torchvision(cfg["name"])
    if in_shape[0] != 3:
        raise ValueError(f"model.name={cfg['name']!r} (torchvision) takes 3-channel images but the dataset has "
                         f"{in_shape[0]}; use a 3-channel dataset, e.g. dataset=cifar10")
    return get_model(cfg["name"], weights=None, num_classes=num_classes, **user_options(cfg))
