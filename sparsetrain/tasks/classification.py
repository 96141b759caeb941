"""Image classification: ``model(x)`` gives logits; cross-entropy (optionally label-smoothed, optionally
distilled) to train; top-1 (the default "best" metric), top-5 accuracy and the loss to evaluate."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import nn

from .base import Task
from .distill import Distillation


class ImageClassification(Task):
    name = "image_classification"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0,
                 prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
                 distillation: Distillation | None = None, metric: str | None = None) -> None:
        self.choose_metric(metric, ("top1", "top5", "loss") if num_classes > 5 else ("top1", "loss"))
        self.num_classes = num_classes
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # the training loss
        self.eval_criterion = nn.CrossEntropyLoss()  # evaluation: plain cross-entropy
        self.prepare = prepare  # the input layout (channels_last)
        self.distillation = distillation

    def forward(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(self.prepare(batch[0]))

    def train_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        x = self.prepare(x)
        logits = model(x).float()
        loss = self.criterion(logits, y)
        if self.distillation is not None:
            loss = self.distillation.loss(logits, x, loss)
        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 autocast: Callable[[], Any]) -> dict:
        """Mean loss, top-1 and (with more than 5 classes) top-5 accuracy over all batches."""
        was_training = model.training
        model.eval()
        totals, count = None, 0
        for x, y in batches:
            with autocast():
                logits = model(self.prepare(x)).float()
            hits = logits.topk(min(5, self.num_classes), dim=1).indices.eq(y.unsqueeze(1))
            stats = torch.stack((self.eval_criterion(logits, y).double() * len(y), hits[:, 0].sum().double(),
                                 hits.any(dim=1).sum().double()))
            totals = stats if totals is None else totals + stats
            count += len(y)
        model.train(was_training)
        loss_sum, correct1, correct5 = totals.tolist()
        result = {"loss": loss_sum / count, "top1": correct1 / count}
        if self.num_classes > 5:
            result["top5"] = correct5 / count
        return result
