"""Model zoo: ``build_model`` constructs a network by name for a dataset's input shape and classes."""

from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from functools import partial

from torch import nn

from . import convnets, vgg
from .init import apply_init
from .external import build_custom, build_torchvision, check_custom, check_torchvision, model_label
from .lenet import LeNet5
from .mlp import LeNet300100
from .resnet import STEMS, resnet
from .resnet_cifar import cifar_resnet
from .wrn import wide_resnet

__all__ = ["MODEL_NAMES", "build_configured_model", "build_model", "check_model_config", "model_label"]


@dataclass(frozen=True)
class _Spec:
    build: Callable[..., nn.Module]  # build(in_shape, num_classes, **{option: value for option in options})
    options: frozenset[str] = frozenset()  # subset of depth, width, dropout, stem, shortcut
    min_size: int = 1  # smallest input height/width in pixels
    flat: bool = False  # takes inputs of any shape (it flattens them first): flat features too


_MODELS: dict[str, _Spec] = {
    "lenet300_100": _Spec(LeNet300100, frozenset({"dropout"}), flat=True),
    "lenet5": _Spec(LeNet5, frozenset({"dropout"}), min_size=12),
    **{name: _Spec(partial(convnets.ConvNet, plan), frozenset({"dropout"}), min_size=2 ** plan.count("M"))
       for name, plan in convnets.PLANS.items()},
    **{name: _Spec(partial(vgg.VGG, plan), min_size=2 ** plan.count("M")) for name, plan in vgg.PLANS.items()},
    **{f"resnet{depth}": _Spec(partial(cifar_resnet, depth), frozenset({"shortcut"})) for depth in (20, 32, 56)},
    **{f"resnet{depth}": _Spec(partial(resnet, depth), frozenset({"stem"})) for depth in (18, 34, 50)},
    "wrn": _Spec(wide_resnet, frozenset({"depth", "width", "dropout"})),
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_MODELS))


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int, *,
                depth: int | None = None, width: int | None = None,
                dropout: float = 0.0, stem: str = "auto", shortcut: str = "auto") -> nn.Module:
    """Build model ``name`` for inputs of shape (channels, height, width) (any shape for a model that flattens its
    input, e.g. flat features ``(D,)``) and ``num_classes`` outputs.

    Raises ValueError naming the offending config key for unknown models, options the model
    does not use, invalid option values and inputs smaller than the model supports.
    """
    spec = _MODELS.get(name)
    if spec is None:
        raise ValueError(f"model.name={name!r} is not a model; choose one of: {', '.join(MODEL_NAMES)}")
    if stem not in STEMS:
        raise ValueError(f"model.stem={stem!r} is not a stem; choose one of: {', '.join(STEMS)} (e.g. model.stem=auto)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.dropout={dropout!r} must be in [0, 1); e.g. model.dropout=0.3")
    given = {"depth": depth, "width": width, "dropout": dropout, "stem": stem, "shortcut": shortcut}
    unset = {"depth": None, "width": None, "dropout": 0.0, "stem": "auto", "shortcut": "auto"}
    for key, value in given.items():
        if key not in spec.options and value != unset[key]:
            options = ", ".join(spec.options) or "none"
            raise ValueError(f"model.{key} is not used by model {name} (its options: {options}); drop it, "
                             f"e.g. model={name}")
    if not in_shape or min(in_shape) < 1:
        raise ValueError(f"input shape must have positive sizes, got {in_shape}")
    if len(in_shape) != 3 and not spec.flat:
        raise ValueError(f"model.name={name!r} needs image inputs (channels, height, width), got shape "
                         f"{tuple(in_shape)}; e.g. model=lenet300_100, which flattens any input")
    if len(in_shape) == 3 and min(in_shape[1:]) < spec.min_size:
        raise ValueError(f"model.name={name!r} needs inputs of at least {spec.min_size}x{spec.min_size} px, "
                         f"got {in_shape[1]}x{in_shape[2]}; e.g. dataset.image_size={spec.min_size}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return spec.build(tuple(in_shape), num_classes, **{key: given[key] for key in spec.options})


def build_configured_model(cfg: Any, in_shape: tuple[int, ...], num_classes: int, task: str | None = None,
                           pretrained: bool = True, special_ids: dict[str, int] | None = None) -> nn.Module:
    """The model of a ``model`` config: from the zoo, ``source: torchvision`` (by name), ``source: custom``
    (``_target_``), initialised by ``model.init``, or ``source: hf`` (a transformers model with the head of
    ``task``, initialised its own way); ``pretrained=False``: a pretrained model's architecture at random, for
    controls that re-initialise; ``special_ids``: a tokenizer's pad / eos / bos ids, for a transformers
    encoder-decoder. ValueError naming the key for a bad one, UserCodeError for a factory that raises."""
    source = cfg.get("source", "zoo")
    if source == "hf":
        from .hf import build_hf  # transformers is slow to import

        return build_hf(cfg, num_classes, task, pretrained, special_ids)
    if source == "custom":
        model = build_custom(cfg, in_shape, num_classes)
    elif source == "torchvision":
        model = build_torchvision(cfg, in_shape, num_classes, pretrained)
    else:
        model = build_model(cfg["name"], in_shape, num_classes, depth=cfg.get("depth"), width=cfg.get("width"),
                            dropout=cfg.get("dropout", 0.0), stem=cfg.get("stem", "auto"),
                            shortcut=cfg.get("shortcut", "auto"))
    apply_init(model, cfg.get("init", "paper"))
    return model


def check_model_config(cfg: Any) -> None:
    """The checks that need no data: a custom factory resolves, a torchvision name exists."""
    source = cfg.get("source", "zoo")
    if source == "custom":
        check_custom(cfg)
    elif source == "hf":
        from .hf import check_hf

        check_hf(cfg)
    elif source == "torchvision":
        check_torchvision(cfg)
