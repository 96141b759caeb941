"""Channel-pruned models made physically smaller: output channels that are zero wherever they go are removed,
with the inputs that read them, through Torch-Pruning's dependency graph (a BatchNorm after a removed
convolution channel loses it too; the model's output layer keeps its width).

A zero-padding shortcut (a CIFAR ResNet's option A, ``PadShortcut``) ties the residual stages into one chain
whose widths grow: Torch-Pruning maps channels through the padding by position, so a position is removed where
every layer of the chain as wide as it is zero there, and each padding then adds as many fewer channels as it
lost positions."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..models.layers import CHANNEL_LAYERS, output_channels
from ..models.resnet_cifar import PadShortcut



def shrink_channels(model: nn.Module, example_inputs: torch.Tensor) -> int:
    """Remove, in place, every output channel of ``model``'s convolutions and linear layers whose output is zero
    in every layer coupled to it (the convolutions and linear layers weight and bias zero, the BatchNorms mapping
    zero to zero), the output layer aside; return the number of channels removed (counted at each group's widest
    layer)."""
    output_layer = _output_layer(model, example_inputs)
    with _traced_pads(model) as pads:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    plans = []
    for group in graph.get_all_groups(ignored_layers=[output_layer], root_module_types=list(CHANNEL_LAYERS)):
        root, handler = _widest(graph, group)
        full = graph.get_pruning_group(root, handler, list(range(output_channels(root))))
        chained = {pad: span for pad, (*span, grad_fn) in pads.items()
                   if any(graph.module2node[item.dep.target.module].grad_fn is grad_fn for item in full.items)}
        idxs = _zero_channels(graph, full, output_channels(root), bool(chained))
        if idxs:
            plans.append((root, handler, idxs, chained))
    for root, handler, idxs, chained in plans:
        _prune(graph, graph.get_pruning_group(root, handler, idxs), chained)
    return sum(len(idxs) for _, _, idxs, _ in plans)


@contextmanager
def _traced_pads(model: nn.Module) -> Iterator[dict[nn.Module, tuple[int, int, object]]]:
    """Each zero-padding shortcut's (input channels, output channels, output grad_fn) in the forwards run inside."""
    pads = {}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        pads[module] = (inputs[0].shape[1], output.shape[1], output.grad_fn)

    hooks = [module.register_forward_hook(record) for module in model.modules() if isinstance(module, PadShortcut)]
    try:
        yield pads
    finally:
        for hook in hooks:
            hook.remove()


def _output_layer(model: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
    """The convolution or linear layer the forward runs last."""
    called = []
    hooks = [module.register_forward_hook(lambda module, *_: called.append(module))
             for module in model.modules() if isinstance(module, CHANNEL_LAYERS)]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return called[-1]


def _in_width(module: nn.Module) -> int | None:
    """Input channels of a convolution, linear layer or BatchNorm (None for any other module)."""
    if isinstance(module, _ConvNd):
        return module.in_channels
    return module.in_features if isinstance(module, nn.Linear) else output_channels(module)


def _widest(graph: tp.DependencyGraph, group: tp.Group) -> tuple[nn.Module, object]:
    """The widest convolution or linear layer whose outputs ``group`` removes, and its pruning function."""
    items = [item for item in group.items if isinstance(item.dep.target.module, CHANNEL_LAYERS)
             and graph.is_out_channel_pruning_fn(item.dep.handler)]
    item = max(items, key=lambda item: output_channels(item.dep.target.module))
    return item.dep.target.module, item.dep.handler


def _zero_channels(graph: tp.DependencyGraph, group: tp.Group, width: int, chained: bool) -> list[int]:
    """The root channels of ``group`` zero in every layer whose outputs the group removes; none if the group
    removes outputs of a layer with parameters that is no convolution, linear layer or BatchNorm (a LayerNorm's
    statistics read every channel), or of a narrower one outside a padding shortcut's chain (``chained``), or if
    a layer of a chain reads it flattened to other than a multiple of its width."""
    removable, narrowest = set(range(width)), width
    for item in group.items:
        module = item.dep.target.module
        if chained and item.idxs != item.root_idxs and _in_width(module) is not None and _in_width(module) % width:
            return []
        if not graph.is_out_channel_pruning_fn(item.dep.handler) or not any(True for _ in module.parameters(False)):
            continue  # inputs removed, or an operation without weights (addition, concatenation, activation)
        if output_channels(module) is None or (output_channels(module) != width and not chained):
            return []
        zero, narrowest = _zero_outputs(module), min(narrowest, output_channels(module))
        removable -= {root for index, root in zip(item.idxs, item.root_idxs) if index < len(zero) and not zero[index]}
    if removable >= set(range(narrowest)):
        removable.discard(0)  # every layer keeps one channel
    return sorted(removable)


def _prune(graph: tp.DependencyGraph, group: tp.Group, chained: dict[nn.Module, tuple[int, int]]) -> None:
    """Remove the group's channels; in a padding shortcut's chain, from each layer those within its width (a
    layer reading the chain flattened: the root's positions times its features per channel, which Torch-Pruning
    counts from the chain's narrowest width), and from each padding the positions past its input."""
    if not chained:
        group.prune()
        return
    roots = group.items[0].root_idxs
    span = output_channels(group.items[0].dep.target.module)
    for item in group.items:
        module = item.dep.target.module
        width = output_channels(module) if graph.is_out_channel_pruning_fn(item.dep.handler) else _in_width(module)
        if width is None:
            item.dep(item.idxs)  # an operation without weights
        elif item.idxs == item.root_idxs:
            item.dep([index for index in item.idxs if index < width])
        else:
            step = width // span
            item.dep([root * step + offset for root in roots for offset in range(step)])
    for pad, (start, end) in chained.items():
        pad.extra -= sum(start <= root < end for root in roots)


def _zero_outputs(module: nn.Module) -> torch.Tensor:
    """Per output channel: whether the layer's output there is zero (for a BatchNorm: on a zero input)."""
    with torch.no_grad():
        if isinstance(module, _BatchNorm):
            scale = (module.running_var + module.eps).rsqrt() * (1 if module.weight is None else module.weight)
            shift = -module.running_mean * scale + (0 if module.bias is None else module.bias)
            return shift == 0
        zero = (module.weight == 0).flatten(1).all(1)
        return zero if module.bias is None else zero & (module.bias == 0)
