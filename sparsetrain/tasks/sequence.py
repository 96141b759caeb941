"""Sequence classification and regression (GLUE): ``model(**inputs)`` (every named tensor but ``labels``) gives
logits, or an object with ``.logits``. With one label (``num_classes`` 1) it is regression: MSE to float labels,
scored by Pearson and Spearman correlation; else cross-entropy (optionally distilled from a teacher's logits
and hidden states),
scored by accuracy, Matthews correlation and, with two classes, F1 of class 1.

Evaluation keeps every prediction on the device and reads the host once, for the final metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import glue_metrics
from .base import Batch, Task, call_model, logits_of, output_logits, split_labels
from .distill import Distillation


class SequenceClassification(Task):
    name = "sequence_classification"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0, distillation: Distillation | None = None,
                 metric: str | None = None) -> None:
        self.num_classes = num_classes
        self.regression = num_classes == 1
        self.metrics = ("pearson", "spearman", "loss") if self.regression else \
            ("accuracy", "f1", "matthews", "loss") if num_classes == 2 else ("accuracy", "matthews", "loss")
        self.choose_metric(metric, self.metrics)
        self.label_smoothing = label_smoothing
        self.distillation = distillation

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return logits_of(model, split_labels(batch)[0])

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
              label_smoothing: float = 0.0) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(logits.squeeze(-1), labels.float(), reduction=reduction)
        return F.cross_entropy(logits, labels, reduction=reduction, label_smoothing=label_smoothing)

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs, labels = split_labels(batch)
        if self.distillation is None:
            return self._loss(logits_of(model, inputs), labels, label_smoothing=self.label_smoothing)
        output = call_model(model, inputs, **self.distillation.model_options)
        loss = self._loss(output_logits(output), labels, label_smoothing=self.label_smoothing)
        return self.distillation.loss(output, inputs, loss)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], Any]) -> dict:
        was_training = model.training
        model.eval()
        predictions, targets, loss_sum = [], [], None
        for batch in batches:
            inputs, labels = split_labels(batch)
            with autocast():
                logits = logits_of(model, inputs)
            loss = self._loss(logits, labels, reduction="sum").double()
            loss_sum = loss if loss_sum is None else loss_sum + loss
            predictions.append(logits.squeeze(-1) if self.regression else logits.argmax(-1))
            targets.append(labels)
        model.train(was_training)
        labels = torch.cat(targets)
        scores = {**self.scores(torch.cat(predictions), labels), "loss": loss_sum / len(labels)}
        values = torch.stack([scores[name] for name in self.metrics]).tolist()  # the one host read
        return dict(zip(self.metrics, values))

    def scores(self, predictions: torch.Tensor, labels: torch.Tensor) -> dict:
        """The metrics of ``predictions`` (device tensors, 0-dim)."""
        if self.regression:
            return {"pearson": glue_metrics.pearson(predictions, labels),
                    "spearman": glue_metrics.spearman(predictions, labels)}
        scores = {"accuracy": glue_metrics.accuracy(predictions, labels),
                  "matthews": glue_metrics.matthews(predictions, labels, self.num_classes)}
        if self.num_classes == 2:
            scores["f1"] = glue_metrics.binary_f1(predictions, labels)
        return scores
