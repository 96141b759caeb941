"""The interface between the trainer and a kind of problem: how a batch reaches the model, the training loss,
the evaluation metrics and which of them is "best". The trainer and the training step call it and know no task
by name; a task knows no method."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import nn

Batch = tuple[torch.Tensor, ...] | dict[str, torch.Tensor]  # a made batch: (inputs, targets) or named tensors


class Task(abc.ABC):
    best_metric: str  # the evaluation metric a round's "best" is chosen by
    higher_is_better: bool = True

    @abc.abstractmethod
    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss of ``batch`` (a 0-dim float32 tensor), forward pass included; runs under the step's
        autocast and possibly inside a captured graph, so it reads nothing on the host."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], Any]) -> dict:
        """Metrics over all ``batches`` (``loss`` among them), the model in eval mode."""

    def better(self, scores: dict, best: dict) -> bool:
        """Whether ``scores`` beat ``best`` on ``best_metric``."""
        new, old = scores[self.best_metric], best[self.best_metric]
        return new > old if self.higher_is_better else new < old

    def describe(self, scores: dict) -> str:
        """A short log line of the scores."""
        return f"loss {scores['loss']:.4f} {self.best_metric} {scores[self.best_metric]:.4f}"
