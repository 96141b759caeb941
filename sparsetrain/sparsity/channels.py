"""Output channels tied across layers, for the ``channel`` pattern, so that what it zeroes can be removed.

Torch-Pruning's dependency graph, traced on one example input, gives the layers whose output channels go
together: the convolutions feeding one residual addition, a convolution and the BatchNorm after it.
``coupled_channels`` reads from it the pruned weights that share one channel selection (``groups``) and the
per-channel parameters masked with their layer (``followers``: the layer's bias, the BatchNorm's weight and bias
right after it, so that a zeroed filter's output stays zero after its normalisation). A LayerNorm reads every
channel: a group with one (a transformer's residual stream) is left uncoupled, and it is never masked.
``select_coupled`` keeps one set of channels per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.layers import CHANNEL_LAYERS, output_channels
from .scores import top_mask

PER_CHANNEL = (*CHANNEL_LAYERS, _BatchNorm)  # the layers with parameters a removed output channel takes along


@dataclass(frozen=True)
class Coupling:
    groups: list[tuple[str, ...]] = field(default_factory=list)  # pruned weights whose output channels are tied
    followers: dict[str, tuple[nn.Parameter, str]] = field(default_factory=dict)  # name: (parameter, weight it follows)


def coupled_channels(model: nn.Module, inputs: Any, weights: dict[str, nn.Parameter]) -> Coupling:
    """The groups of ``weights`` with tied output channels (two or more each) and the per-channel parameters that
    follow a weight's channels, from Torch-Pruning's graph of ``model`` traced in eval mode on ``inputs``."""
    import torch_pruning as tp

    modes = {module: module.training for module in model.modules()}
    model.eval()  # the trace updates no BatchNorm statistics and draws no dropout
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, verbose=False)
    finally:
        for module, training in modes.items():
            module.training = training
    owner = {id(param): name for name, param in weights.items()}
    names = {module: name for name, module in model.named_modules()}
    groups = []
    for group in graph.get_all_groups(root_module_types=list(CHANNEL_LAYERS)):
        members = _tied_weights(graph, group, owner)
        if len(members) > 1:
            groups.append(members)
    return Coupling(groups, {**_biases(model, weights), **_norms(graph, names, owner)})


def _tied_weights(graph: Any, group: Any, owner: dict[int, str]) -> tuple[str, ...]:
    """The pruned weights among the layers whose outputs ``group`` removes; none unless every such layer with
    parameters is a convolution, linear layer or BatchNorm on the root's channel positions (a narrower or wider
    one: a zero-padding shortcut's chain, tied position by position)."""
    members = []
    for item in group.items:
        module = item.dep.target.module
        if not graph.is_out_channel_pruning_fn(item.dep.handler) or not any(True for _ in module.parameters(False)):
            continue  # inputs removed, or an operation without weights (addition, activation)
        if not isinstance(module, PER_CHANNEL) or item.idxs != item.root_idxs:
            return ()
        if isinstance(module, CHANNEL_LAYERS) and id(module.weight) in owner:
            members.append(owner[id(module.weight)])
    return tuple(members)


def _biases(model: nn.Module, weights: dict[str, nn.Parameter]) -> dict[str, tuple[nn.Parameter, str]]:
    """Each pruned convolution's or linear layer's bias, following its weight."""
    followers = {}
    for name in weights:
        prefix = name.rpartition(".")[0]
        module = model.get_submodule(prefix)
        if isinstance(module, CHANNEL_LAYERS) and module.weight is weights[name] and module.bias is not None:
            followers[f"{prefix}.bias" if prefix else "bias"] = (module.bias, name)
    return followers


def _norms(graph: Any, names: dict[nn.Module, str], owner: dict[int, str]) -> dict[str, tuple[nn.Parameter, str]]:
    """The weight and bias of each BatchNorm whose one input is a pruned layer's output, following that layer."""
    followers = {}
    for module, node in graph.module2node.items():
        if not isinstance(module, _BatchNorm) or not module.affine or len(node.inputs) != 1:
            continue
        source = node.inputs[0].module
        if isinstance(source, CHANNEL_LAYERS) and id(source.weight) in owner \
                and output_channels(source) == module.num_features:
            followers.update({f"{names[module]}.{key}": (param, owner[id(source.weight)])
                              for key, param in module.named_parameters(recurse=False)})
    return followers


def select_coupled(scores: dict[str, Tensor], keep: dict[str, int], groups: list[tuple[str, ...]]) -> dict[str, Tensor]:
    """Masks of the coupled layers in ``scores``: the pruned members of a group (``keep`` below their size) keep the
    same output channels, those whose scores summed over the members are highest (a group with one pruned member
    is left to the per-layer selection)."""
    masks = {}
    for group in groups:
        members = [name for name in group if name in scores and keep[name] < scores[name].numel()]
        if len(members) > 1:
            kept = _kept_positions({name: scores[name] for name in members}, keep)
            masks.update({name: kept[:len(score)].view(-1, *[1] * (score.dim() - 1)).expand(score.shape).contiguous()
                          for name, score in scores.items() if name in members})
    return masks


def _kept_positions(scores: dict[str, Tensor], keep: dict[str, int]) -> Tensor:
    """The channel positions a group keeps, per span of positions its members share (one span when their widths
    agree; a padding chain's stages otherwise): the span's highest pooled scores, as many as round(span width x
    the members' kept weights per channel / their fan-ins), so the group's sparsity is its layers' budgets' (ties
    to lower positions)."""
    widths = {name: len(score) for name, score in scores.items()}
    fan_in = {name: score.numel() // widths[name] for name, score in scores.items()}
    per_channel = {name: score.detach().flatten(1).sum(1) for name, score in scores.items()}
    bounds = sorted({0, *widths.values()})
    kept = []
    for start, end in zip(bounds, bounds[1:]):
        spanning = [name for name in scores if widths[name] >= end]
        weights = sum(Fraction(keep[name], widths[name]) for name in spanning)
        count = min(end - start, round((end - start) * weights / sum(fan_in[name] for name in spanning)))
        kept.append(top_mask(torch.stack([per_channel[name][start:end] for name in spanning]).sum(0), count))
    return torch.cat(kept)
