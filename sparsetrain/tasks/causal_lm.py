"""Causal language modelling (next-token prediction): ``model(**inputs)`` (every named tensor but ``labels``) gives
token logits (batch, length, vocabulary), or an object with ``.logits``; ``labels`` are the input tokens, -100 where
not scored (padding). The logits at position t predict the label at t + 1 (the shift is the task's, as a Hugging Face
``*ForCausalLM`` does it with ``labels``), so the training loss is the model's own LM loss: the mean cross-entropy over
the scored next tokens of the batch (optionally plus a hidden-state loss to a frozen teacher, ``distill.py``).

Evaluation sums the token NLL and counts the scored tokens over every batch of the split, then reports the mean
token NLL (``loss``), its exponential (``perplexity``, not a mean of per-batch perplexities) and the next-token
accuracy; the "best" is the lowest perplexity by default."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, call_model, logits_of, output_logits, split_labels
from .masked_lm import IGNORE, MaskedLM


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, vocabulary), labels (N,)) of every next-token prediction: position t's logits, t + 1's label."""
    return logits[:, :-1].flatten(0, -2), labels[:, 1:].flatten()


class CausalLM(MaskedLM):
    name = "causal_lm"
    metrics = ("perplexity", "loss", "accuracy")

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs, labels = split_labels(batch)
        options = {} if self.distillation is None else self.distillation.model_options
        output = call_model(model, inputs, **options)
        logits, labels = shifted(output_logits(output), labels)
        # the mean over the scored next tokens, 0 (not NaN) for a batch without any
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
        loss = loss / labels.ne(IGNORE).sum().clamp(min=1)
        return loss if self.distillation is None else self.distillation.loss(output, inputs, loss)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], Any]) -> dict:
        was_training = model.training
        model.eval()
        totals = None  # NLL sum, scored tokens, correct next tokens
        for batch in batches:
            inputs, labels = split_labels(batch)
            with autocast():
                logits = logits_of(model, inputs)
            logits, labels = shifted(logits, labels)
            scored = labels.ne(IGNORE)
            stats = torch.stack((F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum").double(),
                                 scored.sum().double(), (logits.argmax(-1).eq(labels) & scored).sum().double()))
            totals = stats if totals is None else totals + stats
        model.train(was_training)
        nll_sum, count, correct = totals.tolist()  # the one host read
        loss = nll_sum / count
        return {"loss": loss, "perplexity": float(torch.tensor(loss, dtype=torch.float64).exp()),
                "accuracy": correct / count}
