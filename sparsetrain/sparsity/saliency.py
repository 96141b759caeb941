"""Pruning-at-initialisation saliency scores, and the exact top-k mask selection they feed.

* SNIP: Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019.
* GraSP: Wang, Zhang & Grosse, "Picking Winning Tickets Before Training by Preserving Gradient Flow", ICLR 2020.
* SynFlow: Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively
  conserving synaptic flow", NeurIPS 2020.

``params`` is the ordered ``{name: weight Parameter}`` of the prunable weights, and every score or mask dict
uses its keys in its order. Every score here is oriented so that **higher means keep**, so ``keep_top``
turns any of them into masks.

The functions leave the model as they found it: gradients come from ``torch.autograd.grad`` (no ``.grad``
field is written), buffers (BatchNorm running statistics updated by train-mode forwards) are restored, the
train/eval mode is left alone (SNIP and GraSP run in the mode the caller set), the global RNGs are forked so
dropout does not advance them, and SynFlow works on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .fisher import BlockFisherInverse
from .patterns import matrix
from .scores import top_mask

Batches = Iterable  # made batches: (inputs, targets) pairs or dicts of named tensors, as ``loss_fn`` takes them
LossFn = Callable[[nn.Module, object], Tensor]  # the training loss of (model, batch), e.g. a task's train_loss


def pair_loss(criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """The ``LossFn`` of ``criterion(model(inputs), targets)`` for (inputs, targets) batches."""
    return lambda model, batch: criterion(model(batch[0]), batch[1])


class _Tempered(nn.Module):
    """``model``'s logits (or its output's ``.logits``) divided by ``temperature``."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        output = self.model(*args, **kwargs)
        return getattr(output, "logits", output) / self.temperature


def snip_scores(model: nn.Module, params: dict[str, nn.Parameter], batches: Batches,
                loss_fn: LossFn) -> dict[str, Tensor]:
    """Connection sensitivity ``|∂L/∂w ⊙ w|`` at the current weights, the gradient summed over ``batches``."""
    weights = list(params.values())
    with _untouched(model):
        grads = _summed_grads(model, weights, batches, loss_fn)
    return {name: (g * w.detach()).abs() for name, w, g in zip(params, weights, grads)}


def grasp_scores(model: nn.Module, params: dict[str, nn.Parameter], batches: Batches, loss_fn: LossFn, *,
                 temperature: float = 200.0) -> dict[str, Tensor]:
    """GraSP scores returned as ``w ⊙ Hg``, so larger is better: the negation of the paper's ``S(-w) = -w ⊙ Hg``.

    ``g`` is the gradient of ``loss_fn`` (logits divided by ``temperature``, as in the authors' code) summed over
    ``batches`` and ``Hg`` the Hessian-gradient product (both with respect to the prunable weights only),
    computed by double backpropagation through each batch's gradient dotted with the detached ``g``. The paper
    removes the weights with the largest ``S``; to first order, removing weight ``q`` changes the squared
    gradient norm ``|g|²`` by ``-2 w_q (Hg)_q``, so the weights kept here (largest ``w ⊙ Hg``) are the ones
    whose removal would reduce gradient flow the most, exactly the complement of what the paper prunes.
    ``batches`` is iterated twice (materialised as a list).
    """
    weights = list(params.values())
    batches = list(batches)
    with _untouched(model):
        g = _summed_grads(model, weights, batches, loss_fn, temperature)
        hg = [torch.zeros_like(w) for w in weights]
        for batch in batches:
            grads = _grads(model, weights, batch, loss_fn, temperature, create_graph=True)
            dot = sum((gi * ri).sum() for gi, ri in zip(g, grads))
            for acc, h in zip(hg, torch.autograd.grad(dot, weights, materialize_grads=True)):
                acc += h
    return {name: w.detach() * h for name, w, h in zip(params, weights, hg)}


def fisher_inverses(model: nn.Module, params: dict[str, nn.Parameter], masks: dict[str, Tensor], batches: Batches,
                    loss_fn: LossFn, *, block: int, damp: float, num_grads: int) -> dict[str, BlockFisherInverse]:
    """oBERT's block-diagonal empirical Fisher inverse of each weight (``fisher.py``) from ``num_grads`` gradients, one
    per batch of ``batches`` (masked: a pruned weight's gradient is 0), in the weight matrix's order
    (``patterns.matrix``); the model in eval mode meanwhile (the authors'), then in its mode again."""
    weights = list(params.values())
    inverses = {name: BlockFisherInverse(w.numel(), block, damp, num_grads, w.device) for name, w in params.items()}
    training, seen = model.training, 0
    model.eval()
    try:
        with _untouched(model):
            for batch in itertools.islice(batches, num_grads):
                for (name, inverse), g in zip(inverses.items(), _grads(model, weights, batch, loss_fn)):
                    inverse.add(matrix(g * masks[name]).flatten().float())
                seen += 1
    finally:
        model.train(training)
    if seen < num_grads:
        raise ValueError(f"{num_grads} gradients asked for, the batches gave {seen}")
    return inverses


def synflow_masks(model: nn.Module, params: dict[str, nn.Parameter], in_shape: tuple[int, int, int],
                  keep: dict[str, int] | int, *, iterations: int = 100,
                  select: Callable[[dict[str, Tensor], Any], dict[str, Tensor]] | None = None) -> dict[str, Tensor]:
    """Iterative SynFlow pruning (data-free) down to ``keep`` weights; returns bool masks.

    On a float64 deep copy of the model in eval mode with every floating parameter and buffer replaced by its
    absolute value, each round feeds an all-ones input of shape ``(1, *in_shape)``, scores the currently
    masked weights by ``|∂R/∂w ⊙ w|`` with ``R`` the summed output, and keeps the top scores. The kept
    count follows the exponential schedule ``n · d^(k/iterations)``, ``k = 1..iterations``, with ``d`` the
    final density: globally when ``keep`` is an int (total kept weights), per layer when it is a dict of
    per-layer counts. Pruned weights stay pruned. ``iterations=1`` is single-shot SynFlow. ``select(scores, counts)``
    replaces the top-k of each round (a sparsity pattern's selection).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    names = {id(p): name for name, p in model.named_parameters()}
    net = copy.deepcopy(model).double().eval()
    copies = dict(net.named_parameters())
    weights = [copies[names[id(p)]] for p in params.values()]
    with torch.no_grad():
        for t in itertools.chain(net.parameters(), net.buffers()):
            if t.is_floating_point():
                t.abs_()
        magnitudes = [w.detach().clone() for w in weights]
    sizes = {name: p.numel() for name, p in params.items()}
    if isinstance(keep, Mapping) and keep.keys() != sizes.keys():
        raise ValueError(f"per-layer keep names {sorted(keep)} do not match the params' {sorted(sizes)}")
    ones = torch.ones((1, *in_shape), dtype=torch.float64, device=weights[0].device)
    masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in zip(params, magnitudes)}
    with _rng_forked(net):
        for k in range(1, iterations + 1):
            with torch.no_grad():
                for w, mag, mask in zip(weights, magnitudes, masks.values()):
                    w.copy_(mag * mask)
            grads = torch.autograd.grad(net(ones).sum(), weights, materialize_grads=True)
            with torch.no_grad():  # -inf ranks pruned weights below every live one, zero scores included
                scores = {name: (g * w).abs().masked_fill_(~mask, -torch.inf)
                          for (name, mask), w, g in zip(masks.items(), weights, grads)}
            if isinstance(keep, Mapping):
                count = {name: _scheduled(sizes[name], keep[name], k, iterations) for name in params}
            else:
                count = _scheduled(sum(sizes.values()), keep, k, iterations)
            masks = (select or keep_top)(scores, count)
    return masks


def keep_top(scores: dict[str, Tensor], keep: int | dict[str, int], checked: bool = True) -> dict[str, Tensor]:
    """Bool masks keeping exactly the ``keep`` largest scores: globally across all layers when ``keep`` is an
    int, per layer when it is a dict of counts. Ties are broken by position (earlier layer in ``scores``
    order, then lower flat index, wins). ``checked=False`` skips the NaN check, a host read (a learned mask's
    every-step binarisation, which must stay capturable)."""
    top = _top if checked else top_mask
    if isinstance(keep, Mapping):
        if keep.keys() != scores.keys():
            raise ValueError(f"per-layer keep names {sorted(keep)} do not match the scores' {sorted(scores)}")
        return {name: top(s.detach().flatten(), operator.index(keep[name])).view(s.shape) for name, s in scores.items()}
    flat = torch.cat([s.detach().flatten() for s in scores.values()])
    kept = top(flat, operator.index(keep)).split([s.numel() for s in scores.values()])
    return {name: m.view(s.shape) for (name, s), m in zip(scores.items(), kept)}


def _top(flat: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D tensor, ties at the threshold going to lower indices."""
    if not 0 <= k <= flat.numel():
        raise ValueError(f"cannot keep {k} of {flat.numel()} weights")
    if torch.isnan(flat).any():
        raise ValueError("saliency scores contain NaN")
    return top_mask(flat, k)


def _scheduled(total: int, keep: int, k: int, iterations: int) -> int:
    """Kept count after round ``k`` of the exponential schedule ``total · (keep/total)^(k/iterations)``."""
    if not 0 <= operator.index(keep) <= total:
        raise ValueError(f"cannot keep {keep} of {total} weights")
    return round(total * (keep / total) ** (k / iterations)) if total else 0


def _grads(model: nn.Module, weights: list[Tensor], batch: object, loss_fn: LossFn,
           temperature: float = 1.0, create_graph: bool = False) -> tuple[Tensor, ...]:
    loss = loss_fn(model if temperature == 1.0 else _Tempered(model, temperature), batch)
    return torch.autograd.grad(loss, weights, create_graph=create_graph, materialize_grads=True)


def _summed_grads(model: nn.Module, weights: list[Tensor], batches: Batches, loss_fn: LossFn,
                  temperature: float = 1.0) -> list[Tensor]:
    total, seen = [torch.zeros_like(w) for w in weights], False
    for batch in batches:
        for acc, g in zip(total, _grads(model, weights, batch, loss_fn, temperature)):
            acc += g
        seen = True
    if not seen:
        raise ValueError("no batches given")
    return total


@contextlib.contextmanager
def _rng_forked(model: nn.Module) -> Iterator[None]:
    """Fork the CPU RNG and that of every CUDA device the model lives on (restored on exit); grad enabled,
    whatever the caller's mode."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    devices = sorted({t.device.index for t in tensors if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        yield


@contextlib.contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Run with forked RNGs and grad enabled, and restore every buffer (BatchNorm running statistics) afterwards."""
    saved = [(b, b.clone()) for b in model.buffers()]
    try:
        with _rng_forked(model):
            yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)
