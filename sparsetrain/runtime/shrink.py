"""Channel-pruned models made physically smaller: output channels that are zero wherever they go are removed,
with the inputs that read them, through Torch-Pruning's dependency graph (a BatchNorm after a removed
convolution channel loses it too; the model's output layer keeps its width)."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

LAYERS = (_ConvNd, nn.Linear)  # the layers whose output channels are removed


def shrink_channels(model: nn.Module, example_inputs: torch.Tensor) -> int:
    """Remove, in place, every output channel of ``model``'s convolutions and linear layers whose output is zero
    in every layer coupled to it (the convolutions and linear layers weight and bias zero, the BatchNorms mapping
    zero to zero), the output layer aside; return the number of channels removed (counted at each group's root)."""
    output_layer = _output_layer(model, example_inputs)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    plans = []
    for group in graph.get_all_groups(ignored_layers=[output_layer], root_module_types=list(LAYERS)):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        idxs = _zero_channels(graph, graph.get_pruning_group(root, handler, range(_width(root))), _width(root))
        if idxs:
            plans.append((root, handler, idxs))
    for root, handler, idxs in plans:
        graph.get_pruning_group(root, handler, idxs).prune()
    return sum(len(idxs) for _, _, idxs in plans)


def _output_layer(model: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
    """The convolution or linear layer the forward runs last."""
    called = []
    hooks = [module.register_forward_hook(lambda module, *_: called.append(module))
             for module in model.modules() if isinstance(module, LAYERS)]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return called[-1]


def _width(module: nn.Module) -> int | None:
    """Output channels of a convolution, linear layer or BatchNorm (None for any other module)."""
    if isinstance(module, _ConvNd):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.num_features if isinstance(module, _BatchNorm) else None


def _zero_channels(graph: tp.DependencyGraph, group: tp.Group, width: int) -> list[int]:
    """The root channels of ``group`` zero in every layer whose outputs the group removes; none if the group
    removes outputs of a layer with parameters that is no convolution, linear layer or BatchNorm (a LayerNorm's
    statistics read every channel), or of one whose width differs from the root's (a channel-padding shortcut)."""
    removable = set(range(width))
    for item in group.items:
        module = item.dep.target.module
        if not graph.is_out_channel_pruning_fn(item.dep.handler) or not any(True for _ in module.parameters(False)):
            continue  # inputs removed, or an operation without weights (addition, concatenation, activation)
        if _width(module) != width:
            return []
        zero = _zero_outputs(module)
        removable -= {root for index, root in zip(item.idxs, item.root_idxs) if not zero[index]}
    return sorted(removable)[1:] if len(removable) == width else sorted(removable)  # a layer keeps one channel


def _zero_outputs(module: nn.Module) -> torch.Tensor:
    """Per output channel: whether the layer's output there is zero (for a BatchNorm: on a zero input)."""
    with torch.no_grad():
        if isinstance(module, _BatchNorm):
            scale = (module.running_var + module.eps).rsqrt() * (1 if module.weight is None else module.weight)
            shift = -module.running_mean * scale + (0 if module.bias is None else module.bias)
            return shift == 0
        zero = (module.weight == 0).flatten(1).all(1)
        return zero if module.bias is None else zero & (module.bias == 0)
