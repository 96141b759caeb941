"""All prunable layers as one flat vector, so a mask update is a few large operations instead of a dozen small
ones per layer (on a GPU each launch costs microseconds; ResNet-50 has 54 prunable layers).

Each layer is flattened in its memory order (a view, no copy: a channels_last convolution weight is read as
N, H, W, C), and the layers are concatenated in order. Tensors laid out like the reference parameters (their
masks, gradients, optimizer buffers) line up entry by entry; others are copied into that layout first.
"""

from __future__ import annotations

import torch


class FlatLayout:
    """The memory-order flattening of a list of reference tensors, and views back into their shapes."""

    def __init__(self, references: list[torch.Tensor]) -> None:
        self.references = references
        self.orders = [_memory_order(t) for t in references]
        self.sizes = [t.numel() for t in references]
        self.offsets = [0]
        for size in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + size)
        self.numel = sum(self.sizes)

    def flat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """One 1-D tensor of every layer in memory order (a new tensor)."""
        return torch.cat([self._memory_view(i, t) for i, t in enumerate(tensors)])

    def segments(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Layer ``i`` of ``flat`` as a 1-D view (memory order)."""
        return list(flat.split(self.sizes))

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Layer ``i`` of ``flat`` as a view with the reference's shape and strides."""
        views = []
        for segment, reference, order in zip(self.segments(flat), self.references, self.orders):
            stored = segment.view([reference.shape[d] for d in order])
            views.append(stored.permute(_inverse(order)))
        return views

    def _memory_view(self, index: int, tensor: torch.Tensor) -> torch.Tensor:
        reference = self.references[index]
        if tensor.stride() != reference.stride():
            tensor = torch.empty_like(reference, dtype=tensor.dtype).copy_(tensor)
        return tensor.permute(self.orders[index]).view(-1)


def _memory_order(tensor: torch.Tensor) -> list[int]:
    """The dimensions from outermost to innermost in memory; the permuted tensor is contiguous."""
    order = sorted(range(tensor.dim()), key=lambda d: (-tensor.stride(d), d))
    if not tensor.permute(order).is_contiguous():
        raise ValueError(f"a tensor with strides {tensor.stride()} is not dense in any dimension order")
    return order


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, dim in enumerate(order):
        inverse[dim] = position
    return inverse
