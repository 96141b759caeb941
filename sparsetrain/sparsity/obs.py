"""SparseGPT's layer solver (Frantar & Alistarh, ICML 2023): prune a weight matrix so that its outputs on the
calibration inputs change least, by Optimal Brain Surgeon updates in one pass over the columns.

For a weight matrix ``W`` (out, in) and the Gram matrix ``H = 2/n Σ x xᵀ`` of its inputs (dampened by ``damp`` times
its mean diagonal), the columns are visited left to right; the weights pruned in a column are set to zero and the
error is spread over the row's later columns through the inverse Hessian of the columns not yet visited. The
upper Cholesky factor ``U`` of ``H⁻¹`` holds every such inverse at once: row ``i`` of ``U``, divided by ``U[i, i]``, is
the OBS update of column ``i`` given the columns after it, and ``U[i, i]² = [H_F⁻¹]_ii``. As the authors' code
(``SparseGPT.fasterprune``): columns in lazy batches of ``blocksize`` (the updates inside a batch applied at once to
the columns after it), the mask of a batch chosen adaptively when the batch starts, from the then-updated weights'
saliency ``w² / U[i, i]²`` (unstructured), or ``n`` of every ``m`` columns kept per row as the pass reaches the group
(N:M); columns whose inputs are always zero have their weights pruned first.

Departure: the authors prune the weights at or below the batch's ``sparsity`` quantile (at least one more than
``sparsity`` of the batch); here each batch prunes exactly its share of the layer's zero count (in proportion to
its width), so the layer has exactly the count the run asked for.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sparsegpt_prune(weight: Tensor, gram: Tensor, zeros: int, nm: tuple[int, int] | None = None,
                    blocksize: int = 128, damp: float = 0.01) -> tuple[Tensor, Tensor, float]:
    """(pruned and updated weight, bool mask of the kept weights, OBS error estimate Σ (w - q)² / (2 U_ii²)) of a
    matrix ``weight`` (out, in) with input Gram matrix ``gram`` (in, in): ``zeros`` weights pruned (unstructured),
    or with ``nm`` = (n, m) exactly n of every m consecutive columns kept in every row."""
    rows, columns = weight.shape
    w = weight.detach().clone().float()
    hessian = gram.detach().clone().float()
    dead = hessian.diagonal() == 0
    hessian[dead, dead] = 1.0
    w[:, dead] = 0.0
    hessian.diagonal().add_(damp * hessian.diagonal().mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(hessian))
    upper = torch.linalg.cholesky(inverse, upper=True)
    pruned = torch.zeros_like(w, dtype=torch.bool)
    loss = torch.zeros((), dtype=torch.float32, device=w.device)
    for start in range(0, columns, blocksize):
        end = min(start + blocksize, columns)
        block, block_upper = w[:, start:end].clone(), upper[start:end, start:end]
        diagonal = block_upper.diagonal()
        errors = torch.zeros_like(block)
        block_pruned = torch.zeros_like(block, dtype=torch.bool)
        if nm is None:
            share = zeros * end // columns - zeros * start // columns
            block_pruned.view(-1)[_lowest(block.square() / diagonal.square(), share)] = True
        for i in range(end - start):
            if nm is not None and i % nm[1] == 0:
                group = slice(i, i + nm[1])
                saliency = block[:, group].square() / diagonal[group].square()
                lowest = torch.sort(saliency, dim=1, stable=True).indices[:, :nm[1] - nm[0]]
                block_pruned[:, group].scatter_(1, lowest, True)
            column = block[:, i]
            kept = torch.where(block_pruned[:, i], 0.0, column)
            error = (column - kept) / diagonal[i]
            loss += error.square().sum() / 2
            block[:, i:] -= error[:, None] * block_upper[i, i:][None, :]
            block[:, i] = kept
            errors[:, i] = error
        w[:, start:end] = block
        pruned[:, start:end] = block_pruned
        w[:, end:] -= errors @ upper[start:end, end:]
    return w, ~pruned, float(loss)


def _lowest(scores: Tensor, count: int) -> Tensor:
    """Flat indices of the ``count`` lowest ``scores``, ties to lower positions."""
    return torch.sort(scores.flatten(), stable=True).indices[:count]
