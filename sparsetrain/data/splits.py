"""Fixed, seed-independent splits of a dataset (the digits test split and the validation hold-out)."""

from __future__ import annotations

import torch

from ..errors import DataError

SPLIT_SEED = 0


def fixed_split(num_samples: int, held_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out), each sorted, from ``torch.randperm`` with a CPU generator seeded 0.

    The held-out part is the first ``held_out`` entries of the permutation; the split never depends on the run seed.
    """
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[held_out:].sort().values, perm[:held_out].sort().values


def holdout(num_samples: int, val_size: int, dataset: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(train indices, validation indices or None when ``val_size`` is 0) of a training set of ``num_samples``."""
    if val_size == 0:
        return torch.arange(num_samples), None
    if not 0 < val_size < num_samples:
        raise DataError(
            f"dataset.val_size={val_size} must be in [0, {num_samples}) (the training set of dataset.name={dataset} "
            f"has {num_samples} samples); e.g. dataset.val_size={num_samples // 10}"
        )
    return fixed_split(num_samples, val_size)
