"""Masked language modelling: ``model(**inputs)`` (every named tensor but ``labels``) gives token logits
(batch, length, vocabulary), or an object with ``.logits``; ``labels`` holds the original token at masked
positions and -100 elsewhere (the masking itself is the data's job). The loss is the cross-entropy over the
masked positions (as a Hugging Face masked-LM head computes it), optionally plus a hidden-state loss to a frozen
teacher (TAMT's KD and MLM+KD objectives, ``distill.py``); evaluation reports the masked-LM loss, its perplexity
and the masked-token accuracy, the "best" being the lowest loss by default."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Task, call_model, logits_of, output_logits, split_labels
from .distill import Distillation

IGNORE = -100  # the label of a position that is not scored


class MaskedLM(Task):
    name = "masked_lm"
    metrics = ("loss", "perplexity", "accuracy")

    def __init__(self, *, distillation: Distillation | None = None, metric: str | None = None) -> None:
        self.choose_metric(metric, self.metrics)
        self.distillation = distillation  # hidden states only: a masked-LM output has no class logits

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return logits_of(model, split_labels(batch)[0])

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs, labels = split_labels(batch)
        options = {} if self.distillation is None else self.distillation.model_options
        output = call_model(model, inputs, **options)
        logits, labels = self.scored(output_logits(output), labels)
        # the mean over the scored positions, 0 (not NaN) for a batch without any
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
        loss = loss / labels.ne(IGNORE).sum().clamp(min=1)
        return loss if self.distillation is None else self.distillation.loss(output, inputs, loss)

    def scored(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, vocabulary), labels (N,)) of every position a label may score: each token's own."""
        return logits.flatten(0, -2), labels.flatten()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], Any]) -> dict:
        was_training = model.training
        model.eval()
        totals = None  # loss sum, masked tokens, correct tokens
        for batch in batches:
            inputs, labels = split_labels(batch)
            with autocast():
                logits = logits_of(model, inputs)
            logits, labels = self.scored(logits, labels)
            scored = labels.ne(IGNORE)
            stats = torch.stack((F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum").double(),
                                 scored.sum().double(), (logits.argmax(-1).eq(labels) & scored).sum().double()))
            totals = stats if totals is None else totals + stats
        model.train(was_training)
        loss_sum, count, correct = totals.tolist()  # the one host read
        loss = loss_sum / count
        return {"loss": loss, "perplexity": float(torch.tensor(loss, dtype=torch.float64).exp()),
                "accuracy": correct / count}
