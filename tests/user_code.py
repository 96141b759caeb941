"""A user's own code, imported by ``_target_`` in the tests' runs (the subprocess gets this folder on PYTHONPATH)."""

from __future__ import annotations

import math

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset, TensorDataset


def tiny_net(in_shape: tuple[int, ...], num_classes: int, hidden: int = 16) -> nn.Module:
    """A conv + linear network with a bias-free conv, a norm and a dropout, like many users' networks."""
    channels, height, width = in_shape
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * height * width, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, num_classes),
    )


def not_a_module(num_classes: int) -> str:
    return f"{num_classes} classes"


def digits(limit: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's digits as float (1, 8, 8) images in [0, 1] and int labels: (train, test) datasets."""
    data = load_digits()
    images = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    labels = torch.tensor(data.target, dtype=torch.int64)
    if limit:
        images, labels = images[:limit], labels[:limit]
    split = math.ceil(len(labels) * 0.8)
    return TensorDataset(images[:split], labels[:split]), TensorDataset(images[split:], labels[split:])


class _Bare(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(3)


def bare_items() -> tuple[Dataset, Dataset]:
    """A dataset whose items are tensors, not (input, target) pairs."""
    return _Bare(), _Bare()
