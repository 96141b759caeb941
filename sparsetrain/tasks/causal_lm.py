"""Causal language modelling (next-token prediction): ``model(**inputs)`` (every named tensor but ``labels``) gives
token logits (batch, length, vocabulary), or an object with ``.logits``; ``labels`` are the input tokens, -100 where
not scored (padding). The logits at position t predict the label at t + 1 (the shift is the task's, as a Hugging Face
``*ForCausalLM`` does it with ``labels``), so the training loss is the model's own LM loss: the mean cross-entropy over
the scored next tokens of the batch (optionally plus a hidden-state loss to a frozen teacher, ``distill.py``).

Evaluation sums the token NLL and counts the scored tokens over every batch of the split, then reports the mean
token NLL (``loss``), its exponential (``perplexity``, not a mean of per-batch perplexities) and the next-token
accuracy; the "best" is the lowest perplexity by default."""

from __future__ import annotations

import torch

from .masked_lm import MaskedLM


class CausalLM(MaskedLM):
    name = "causal_lm"
    metrics = ("perplexity", "loss", "accuracy")

    def scored(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, vocabulary), labels (N,)) of every next-token prediction: position t's logits, t + 1's label."""
        return logits[:, :-1].flatten(0, -2), labels[:, 1:].flatten()
