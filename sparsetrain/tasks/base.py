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
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


class Task(abc.ABC):
    name: str  # the ``task.name`` value
    best_metric: str  # the evaluation metric a round's "best" is chosen by (``task.metric``)
    higher_is_better: bool = True

    def choose_metric(self, metric: str | None, choices: tuple[str, ...]) -> None:
        """Make ``metric`` (None: the first of ``choices``) the "best" metric; ValueError (one line) if it is not
        one of ``choices``. Loss and perplexity are better lower, every other metric higher."""
        metric = metric or choices[0]
        if metric not in choices:
            raise ValueError(f"task.metric={metric!r} is not a metric of task.name={self.name} here; choose one "
                             f"of: {', '.join(choices)} (e.g. task.metric={choices[0]})")
        self.best_metric, self.higher_is_better = metric, metric not in LOWER_IS_BETTER

    @abc.abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The model's output (logits) for ``batch``, fed the task's way (also used to count FLOPs)."""

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


def split_labels(batch: Batch) -> tuple[Any, torch.Tensor | None]:
    """(model inputs, labels) of a batch: named tensors without ``labels`` (None without them), or the
    (inputs, targets) pair."""
    if isinstance(batch, dict):
        return {key: value for key, value in batch.items() if key != "labels"}, batch.get("labels")
    inputs, labels = batch
    return inputs, labels


def call_model(model: nn.Module, inputs: Any, **options: Any) -> Any:
    """``model(**inputs, **options)`` for named tensors, else ``model(inputs)``."""
    return model(**inputs, **options) if isinstance(inputs, dict) else model(inputs)


def output_logits(output: Any) -> torch.Tensor:
    """A model output's ``.logits`` when it has them (Hugging Face model outputs), else the output; float32."""
    return getattr(output, "logits", output).float()


def logits_of(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The float32 logits of ``model`` fed ``inputs`` (``call_model``)."""
    return output_logits(call_model(model, inputs))
