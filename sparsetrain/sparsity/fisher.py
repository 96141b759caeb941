"""oBERT's second-order pruning (Kurtic et al., EMNLP 2022; WoodFisher, Singh & Alistarh, NeurIPS 2020): the inverse
of a block-diagonal empirical Fisher, the OBS saliency of every weight (or group of weights) and the OBS update of
the weights that remain.

A layer's weights (in the order of ``patterns.matrix``: a linear layer's rows one after another) are cut into blocks
of ``B`` consecutive weights. Each block's Fisher is ``F = λI + (1/m) Σ g gᵀ`` over ``m`` gradients, and its inverse
is built one gradient at a time by the Sherman-Morrison formula from ``F⁻¹ = I/λ`` (the authors'
``EmpiricalBlockFisherInverse``): memory ``d · B`` numbers for ``d`` weights. As the authors' ``OBSPruningParamsScorer``:

* one weight: saliency ``w² / (2 [F⁻¹]_ii)``; pruning a set ``Q`` of weights at once updates the rest by the sum of the
  single-weight updates, ``δw = -F⁻¹ (w_Q / diag(F⁻¹)_Q)``, and sets ``w_Q`` to zero;
* a group of ``q`` consecutive weights (oBERT's 4-block): saliency ``½ w_Gᵀ (F⁻¹_GG)⁻¹ w_G`` on each of them, and the
  update ``δw = -F⁻¹ ((F⁻¹_GG)⁻¹ w_G)`` summed over the pruned groups.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = torch.finfo(torch.float32).eps  # keeps a saliency finite where [F⁻¹]_ii underflows (the authors')


class BlockFisherInverse:
    """The inverse of ``λI + (1/m) Σ g gᵀ`` restricted to blocks of ``block`` consecutive weights of a layer."""

    def __init__(self, numel: int, block: int, damp: float, num_grads: int, device: torch.device) -> None:
        self.numel, self.block, self.num_grads = numel, block, num_grads
        self.blocks = math.ceil(numel / block)
        self.inverse = (torch.eye(block, device=device) / damp).repeat(self.blocks, 1, 1)

    def add(self, grad: Tensor) -> None:
        """Add one gradient (flat, in the layer's weight order): ``F⁻¹ -= F⁻¹g gᵀF⁻¹ / (m + gᵀF⁻¹g)`` per block."""
        g = self._blocked(grad)
        inverse_g = torch.einsum("bij,bj->bi", self.inverse, g)
        inverse_g /= (self.num_grads + torch.einsum("bi,bi->b", g, inverse_g)).sqrt()[:, None]
        self.inverse.baddbmm_(inverse_g[:, :, None], inverse_g[:, None, :], alpha=-1)

    def diag(self) -> Tensor:
        return self.inverse.diagonal(dim1=1, dim2=2).flatten()[:self.numel]

    def mul(self, vector: Tensor) -> Tensor:
        """``F⁻¹ v`` for a flat ``v`` in the layer's weight order."""
        return torch.bmm(self.inverse, self._blocked(vector)[:, :, None]).flatten()[:self.numel]

    def group_inverses(self, size: int) -> Tensor:
        """The ``size`` x ``size`` diagonal sub-blocks of ``F⁻¹``, one per group of ``size`` consecutive weights:
        (numel / size, size, size); ``size`` divides ``block``."""
        groups = [self.inverse[:, i:i + size, i:i + size] for i in range(0, self.block, size)]
        return torch.stack(groups, dim=1).reshape(-1, size, size)[:self.numel // size]

    def nbytes(self) -> int:
        return self.inverse.numel() * self.inverse.element_size()

    def _blocked(self, flat: Tensor) -> Tensor:
        padded = torch.zeros(self.blocks * self.block, dtype=self.inverse.dtype, device=self.inverse.device)
        padded[:self.numel] = flat
        return padded.view(self.blocks, self.block)


def obs_saliency(weights: Tensor, inverse: BlockFisherInverse, group: int = 1) -> tuple[Tensor, Tensor | None]:
    """(saliency of every weight, flat; and for groups the solved ``(F⁻¹_GG)⁻¹ w_G`` the update reuses, else None)."""
    if group == 1:
        return weights.square() / (2.0 * inverse.diag() + EPS), None
    grouped = weights.view(-1, group)
    solved = torch.linalg.solve(inverse.group_inverses(group), grouped)
    saliency = 0.5 * (grouped * solved).sum(1)
    return saliency[:, None].expand(-1, group).flatten(), solved.flatten()


def obs_update(weights: Tensor, inverse: BlockFisherInverse, pruned: Tensor, solved: Tensor | None = None) -> Tensor:
    """The weights after pruning the flat bool ``pruned`` (weights, or whole groups with ``solved`` from
    ``obs_saliency``): the OBS update of the others, the pruned ones set to zero."""
    if solved is None:
        removed = torch.where(pruned, weights / (inverse.diag() + EPS), 0.0)
    else:
        removed = torch.where(pruned, solved, 0.0)
    return torch.where(pruned, 0.0, weights - inverse.mul(removed))
