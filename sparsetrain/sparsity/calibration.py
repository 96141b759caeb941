"""Calibration for one-shot pruning of a trained model (SparseGPT, Wanda): the statistics of every prunable layer's
inputs on a few calibration batches, gathered in sequence so that each layer sees the outputs of the layers before
it as already pruned (the authors' ``opt_sequential`` / ``prune_wanda``).

Two walks, one rule:

* a model with a list of repeated blocks holding every prunable layer (a transformer's ``layers``): the inputs of
  the first block are caught once (positional and keyword arguments: attention mask, positions), then block by
  block: run the block on its cached inputs with hooks gathering its layers' statistics, prune its layers (``prune``),
  run it again to get the inputs of the next block. Memory beyond the model: the cached block inputs and one block's
  statistics (``Calibration.cached_bytes`` / ``statistics_bytes``).
* any other model: layer by layer in the order of the forward pass, the model run on the calibration batches up to
  the layer (the forward stops there) with the earlier layers already pruned.

The statistics are a layer's input columns in the weight matrix's fan-in order (``patterns.matrix``: a convolution's
unfolded input ordered (kh, kw, in)): ``H = 2/n Σ x xᵀ`` over its ``n`` input rows (tokens, or positions of a
convolution) for SparseGPT, or only the diagonal for Wanda. The model runs in eval mode without gradients and, for a
transformers model, without its key/value cache; its mode and cache setting are restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Forward = Callable[[Any], Any]  # runs the model on one calibration batch (a task's loss of (model, batch))
Prune = Callable[[dict[str, "InputStats"]], None]  # prunes the named layers from their statistics


class _Stop(Exception):
    """Raised by a hook to end a forward pass once what it needed is caught."""


class InputStats:
    """Running statistics of one layer's inputs, its columns in the weight matrix's fan-in order."""

    def __init__(self, module: nn.Module, full: bool) -> None:
        self.module, self.full, self.rows = module, full, 0
        columns = module.weight[0].numel()
        shape = (columns, columns) if full else (columns,)
        self.sums = torch.zeros(shape, dtype=torch.float32, device=module.weight.device)

    def add(self, inputs: Tensor) -> None:
        x = input_columns(self.module, inputs)
        self.rows += x.shape[0]
        if self.full:
            self.sums.addmm_(x.t(), x)
        else:
            self.sums.add_(x.square().sum(0))

    def gram(self) -> Tensor:
        """``H = 2/n Σ x xᵀ`` (``full``) or its diagonal."""
        return self.sums * (2.0 / max(self.rows, 1))

    def nbytes(self) -> int:
        return self.sums.numel() * self.sums.element_size()


def input_columns(module: nn.Module, inputs: Tensor) -> Tensor:
    """``inputs`` of a linear layer or a 2-d convolution as rows of fan-in columns (float32), in the order of
    ``patterns.matrix``: one row per token (linear) or per output position (convolution, its unfolded patch)."""
    if isinstance(module, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1]).float()
    patches = F.unfold(inputs.float(), module.kernel_size, module.dilation, module.padding, module.stride)
    batch, _, positions = patches.shape
    patches = patches.view(batch, module.in_channels, -1, positions).transpose(1, 2)  # (N, kh*kw, in, L)
    return patches.reshape(batch, -1, positions).transpose(1, 2).reshape(batch * positions, -1)


def check_layer(name: str, module: nn.Module) -> str | None:
    """Why a layer cannot be calibrated (None when it can): only linear layers and plain 2-d convolutions."""
    if isinstance(module, nn.Linear):
        return None
    if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros" \
            and not isinstance(module.padding, str):
        return None
    return f"{name} is a {type(module).__name__}{' with groups' if isinstance(module, nn.Conv2d) else ''}"


@dataclass
class Calibration:
    """What a calibration walk did: its batches and input rows, and the memory it held beyond the model."""

    batches: int = 0
    walk: str = "layers"  # blocks (a transformer's list of blocks) | layers (the forward order)
    cached_bytes: int = 0  # block inputs kept between blocks
    statistics_bytes: int = 0  # the largest set of statistics held at once (one block's, or one layer's)
    layers: list[str] = field(default_factory=list)  # in the order pruned

    def summary(self) -> dict:
        return {"batches": self.batches, "walk": self.walk, "cached_bytes": self.cached_bytes,
                "statistics_bytes": self.statistics_bytes}


def calibrate_in_sequence(model: nn.Module, layers: dict[str, nn.Module], batches: list, forward: Forward,
                          prune: Prune, full: bool) -> Calibration:
    """Prune ``layers`` (name → module) in sequence: ``prune`` gets the statistics of the layers of one block (or of one
    layer) gathered with every earlier layer already pruned, and must prune them in place before the walk goes on."""
    record = Calibration(batches=len(batches))
    with _calibrating(model), torch.no_grad():
        blocks = block_list(model, layers)
        if blocks is None:
            _walk_layers(model, layers, batches, forward, prune, full, record)
        else:
            record.walk = "blocks"
            _walk_blocks(blocks, layers, batches, forward, prune, full, record)
    return record


def block_list(model: nn.Module, layers: dict[str, nn.Module]) -> nn.ModuleList | None:
    """The ``ModuleList`` whose entries hold every one of ``layers`` (a transformer's blocks), or None."""
    wanted = {id(module) for module in layers.values()}
    for candidate in model.modules():
        if isinstance(candidate, nn.ModuleList) and len(candidate) > 0:
            inside = {id(module) for block in candidate for module in block.modules()}
            if wanted <= inside:
                return candidate
    return None


def _walk_blocks(blocks: nn.ModuleList, layers: dict[str, nn.Module], batches: list, forward: Forward,
                 prune: Prune, full: bool, record: Calibration) -> None:
    inputs = _first_block_inputs(blocks[0], batches, forward)
    record.cached_bytes = sum(_nbytes(args) + _nbytes(kwargs) for args, kwargs in inputs)
    for block in blocks:
        members = {id(module) for module in block.modules()}
        names = [name for name, module in layers.items() if id(module) in members]
        stats = {name: InputStats(layers[name], full) for name in names}
        with _gathering(stats):
            for args, kwargs in inputs:
                block(*args, **kwargs)
        record.statistics_bytes = max(record.statistics_bytes, sum(s.nbytes() for s in stats.values()))
        prune(stats)
        record.layers += names
        inputs = [_next_inputs(args, kwargs, block(*args, **kwargs)) for args, kwargs in inputs]


def _first_block_inputs(block: nn.Module, batches: list, forward: Forward) -> list[tuple[tuple, dict]]:
    caught: list[tuple[tuple, dict]] = []

    def catch(module: nn.Module, args: tuple, kwargs: dict) -> None:
        caught.append((args, kwargs))
        raise _Stop

    handle = block.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in batches:
            with contextlib.suppress(_Stop):
                forward(batch)
    finally:
        handle.remove()
    if len(caught) != len(batches):
        raise RuntimeError("calibration: the model's forward did not reach its first block on every batch")
    return caught


def _next_inputs(args: tuple, kwargs: dict, output: Any) -> tuple[tuple, dict]:
    """A block's arguments with its hidden states replaced by the block's output (a tensor, or a tuple's first)."""
    hidden = output[0] if isinstance(output, (tuple, list)) else output
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _walk_layers(model: nn.Module, layers: dict[str, nn.Module], batches: list, forward: Forward, prune: Prune,
                 full: bool, record: Calibration) -> None:
    for name in _forward_order(layers, batches[0], forward):
        stats = {name: InputStats(layers[name], full)}
        with _gathering(stats, stop=True):
            for batch in batches:
                with contextlib.suppress(_Stop):
                    forward(batch)
        record.statistics_bytes = max(record.statistics_bytes, stats[name].nbytes())
        prune(stats)
        record.layers.append(name)


def _forward_order(layers: dict[str, nn.Module], batch: Any, forward: Forward) -> list[str]:
    """``layers`` in the order one forward pass calls them (a layer the pass never calls is refused)."""
    order: list[str] = []
    handles = [module.register_forward_pre_hook(lambda m, args, name=name: order.append(name) if name not in order
                                                else None) for name, module in layers.items()]
    try:
        forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in layers if name not in order]
    if missing:
        raise RuntimeError(f"calibration: the model's forward never calls {', '.join(missing)}")
    return order


@contextlib.contextmanager
def _gathering(stats: dict[str, InputStats], stop: bool = False) -> Iterator[None]:
    """Hooks adding each named layer's inputs to its statistics (``stop``: then ending the forward pass)."""

    def hook(stat: InputStats) -> Callable:
        def add(module: nn.Module, args: tuple) -> None:
            stat.add(args[0])
            if stop:
                raise _Stop
        return add

    handles = [stat.module.register_forward_pre_hook(hook(stat)) for stat in stats.values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _calibrating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode without a key/value cache, restored afterwards."""
    training, config = model.training, getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    model.eval()
    if use_cache is not None:
        config.use_cache = False
    try:
        yield
    finally:
        model.train(training)
        if use_cache is not None:
            config.use_cache = use_cache


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in a nested tuple / list / dict."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    return 0
