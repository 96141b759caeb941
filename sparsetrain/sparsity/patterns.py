"""Sparsity patterns (``method.pattern``, schema ``PatternConfig``): which sets of weights a mask keeps or removes together, so that the zeros have a shape a
kernel can use.

A weight is seen as a matrix (out, fan-in) with its fan-in ordered (kh, kw, in) for a convolution, so that
N:M groups and blocks run along the input channels (as NVIDIA's 2:4 kernels and Torch-Pruning read them):

* ``unstructured``: any weights (the default);
* ``nm``: in every group of ``m`` consecutive fan-in weights, exactly ``n`` are kept (density n/m);
* ``block``: whole ``block[0]`` x ``block[1]`` tiles of the matrix, kept or removed together;
* ``fanin``: every output unit keeps the same number of inputs (constant fan-in, SRigL's structure);
* ``channel``: whole output units (a linear layer's rows, a convolution's filters).

``keep_count`` rounds a layer's kept count to what the pattern can realise (a whole number of groups);
``select`` keeps the highest-scoring weights under the pattern, scoring a tile or a unit by the sum of its scores;
``groups`` / ``ungroup`` show an ``nm`` or ``fanin`` weight as one row per group whose count the pattern fixes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .scores import top_mask

PATTERNS = ("unstructured", "nm", "block", "fanin", "channel")
PAIRWISE_WIDTH = 8  # N:M groups up to this m are ranked by pairwise comparison, wider ones sorted


def matrix(weight: Tensor) -> Tensor:
    """The weight as (out, fan-in), a convolution's fan-in ordered (kh, kw, in)."""
    return weight.permute(0, *range(2, weight.dim()), 1).reshape(weight.shape[0], -1) if weight.dim() > 2 else weight


def unmatrix(mat: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of ``matrix`` for a tensor of ``shape``."""
    if len(shape) <= 2:
        return mat.reshape(shape)
    return mat.reshape(shape[0], *shape[2:], shape[1]).permute(0, len(shape) - 1, *range(1, len(shape) - 1))


def keep_count(pattern: Any, shape: torch.Size, keep: int) -> int:
    """``keep`` rounded to a whole number of what the pattern keeps together (``nm``: n/m of the layer, whatever
    ``keep``)."""
    numel = int(torch.Size(shape).numel())
    if pattern.name == "nm":
        return numel // pattern.m * pattern.n
    out, fan_in = shape[0], numel // shape[0]
    step = {"unstructured": 1, "block": pattern.block[0] * pattern.block[1], "fanin": out, "channel": fan_in}
    return min(numel, round(keep / step[pattern.name]) * step[pattern.name])


def misfit(pattern: Any, shape: torch.Size) -> str | None:
    """Why a layer of ``shape`` cannot take the pattern (None when it can)."""
    out, fan_in = shape[0], int(torch.Size(shape).numel() // shape[0])
    in_channels = shape[1] if len(shape) > 1 else fan_in
    if pattern.name == "nm" and in_channels % pattern.m:
        return f"its {in_channels} inputs are not a multiple of method.pattern.m={pattern.m}"
    if pattern.name == "block" and (out % pattern.block[0] or fan_in % pattern.block[1]):
        return f"its ({out}, {fan_in}) matrix is not tiled by method.pattern.block={list(pattern.block)}"
    return None


def groups(pattern: Any, tensor: Tensor) -> Tensor:
    """``tensor`` as one row per group whose count the pattern fixes: ``m`` consecutive inputs (``nm``) or an
    output's inputs (``fanin``)."""
    mat = matrix(tensor)
    return mat.reshape(-1, pattern.m) if pattern.name == "nm" else mat


def ungroup(rows: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of ``groups`` for a tensor of ``shape``."""
    return unmatrix(rows.reshape(shape[0], -1), shape)


def select(pattern: Any, scores: Tensor, keep: int) -> Tensor:
    """Bool mask of ``scores``' shape keeping ``keep`` weights (a count ``keep_count`` gives) under the pattern:
    the highest scores, or the tiles / units whose scores sum highest; ties go to lower positions."""
    if pattern.name == "unstructured" or keep == scores.numel():  # a layer kept dense stays dense
        return top_mask(scores.detach().flatten(), keep).view(scores.shape)
    mat = matrix(scores.detach())
    out, fan_in = mat.shape
    if pattern.name == "nm":
        kept = top_in_groups(groups(pattern, mat), pattern.n).view(mat.shape)
    elif pattern.name == "fanin":
        kept = _top_in_rows(mat, keep // out)
    elif pattern.name == "channel":
        kept = top_mask(mat.sum(1), keep // fan_in)[:, None].expand(out, fan_in)
    else:
        tiles = tile_sums(pattern, scores.detach())
        chosen = top_mask(tiles.flatten(), keep // (pattern.block[0] * pattern.block[1])).view(tiles.shape)
        return untile(pattern, chosen, scores.shape)
    return unmatrix(kept.contiguous(), scores.shape)


def tile_sums(pattern: Any, tensor: Tensor) -> Tensor:
    """``tensor``'s sum over every ``block`` tile of its matrix: (out / block[0], fan-in / block[1])."""
    mat, (rows, cols) = matrix(tensor), pattern.block
    return mat.reshape(mat.shape[0] // rows, rows, mat.shape[1] // cols, cols).sum((1, 3))


def untile(pattern: Any, tiles: Tensor, shape: torch.Size) -> Tensor:
    """A tensor of ``shape`` holding each tile's value over the tile (inverse of ``tile_sums`` for a bool mask)."""
    rows, cols = pattern.block
    return unmatrix(tiles.repeat_interleave(rows, 0).repeat_interleave(cols, 1).contiguous(), shape)


def _top_in_rows(rows: Tensor, k: int) -> Tensor:
    """Bool mask keeping the ``k`` highest of every row, ties to lower columns (a stable sort)."""
    order = torch.sort(rows, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(rows, dtype=torch.bool).scatter_(1, order, True)


def top_in_groups(rows: Tensor, k: int) -> Tensor:
    """``_top_in_rows`` for the short rows of N:M groups without a sort (SR-STE selects at every step): each pair of
    columns compared once, an entry kept when fewer than ``k`` entries of its row rank above it (higher, or equal and
    to its left); rows wider than ``PAIRWISE_WIDTH`` are sorted."""
    width = rows.shape[1]
    if width > PAIRWISE_WIDTH:
        return _top_in_rows(rows, k)
    columns = rows.t().contiguous()
    above = torch.zeros_like(columns, dtype=torch.uint8)
    for i in range(width):
        for j in range(i + 1, width):
            ahead = columns[i] >= columns[j]
            above[j] += ahead
            above[i] += ~ahead
    return (above < k).t().contiguous()
