"""GLUE metrics on device tensors (0-dim float64 results; no host read), equal to scikit-learn's
``accuracy_score``, ``f1_score`` (binary, positive class 1), ``matthews_corrcoef`` and scipy's ``pearsonr`` /
``spearmanr`` (ties get their average rank)."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(predictions: Tensor, labels: Tensor) -> Tensor:
    return predictions.eq(labels).double().mean()


def binary_f1(predictions: Tensor, labels: Tensor) -> Tensor:
    """F1 of class 1: 2 TP / (2 TP + FP + FN); 0 when there is no positive prediction nor label."""
    predicted, actual = predictions.eq(1), labels.eq(1)
    true_positives = (predicted & actual).sum().double()
    denominator = predicted.sum().double() + actual.sum().double()
    return torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)


def matthews(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Multiclass Matthews correlation from the confusion matrix (Gorodkin's R_K); 0 when undefined."""
    confusion = torch.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes).double()
    true_counts, predicted_counts = confusion.sum(1), confusion.sum(0)
    samples, correct = confusion.sum(), confusion.trace()
    numerator = correct * samples - predicted_counts @ true_counts
    denominator = ((samples**2 - predicted_counts @ predicted_counts) * (samples**2 - true_counts @ true_counts)).sqrt()
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), 0.0)


def pearson(x: Tensor, y: Tensor) -> Tensor:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return (x @ y) / (x.norm() * y.norm())


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks, tied values sharing their average rank (scipy's ``rankdata(method="average")``)."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    return (last - (counts.double() - 1) / 2)[inverse]


def spearman(x: Tensor, y: Tensor) -> Tensor:
    return pearson(average_ranks(x), average_ranks(y))
