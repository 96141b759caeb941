"""Tasks: how a batch reaches the model, the loss, the metrics and which one is "best" (see ``base.Task``)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .base import Task
from .classification import ImageClassification
from .distill import Distillation
from .masked_lm import MaskedLM
from .sequence import SequenceClassification

TASKS = ("auto", "image_classification", "sequence_classification", "masked_lm")
METRICS = {"image_classification": ("top1", "top5", "loss"),
           "sequence_classification": ("accuracy", "f1", "matthews", "pearson", "spearman", "loss"),
           "masked_lm": ("loss", "perplexity", "accuracy")}  # per task; which apply can depend on the data
METRICS["auto"] = tuple(dict.fromkeys(name for names in METRICS.values() for name in names))


def resolve_task(name: str, data_task: str | None) -> str:
    """``task.name``, where ``auto`` is the task the data declares (image classification when it declares none)."""
    return name if name != "auto" else data_task or "image_classification"


def check_task(cfg: Any) -> None:
    """ValueError (one line) for an unknown task or distillation values out of range."""
    if cfg.name not in TASKS:
        raise ValueError(f"task.name={cfg.name!r} is not a task; choose one of: {', '.join(TASKS)} "
                         "(e.g. task.name=image_classification)")
    metric = cfg.get("metric")
    if metric is not None and metric not in METRICS[cfg.name]:
        raise ValueError(f"task.metric={metric!r} is not a metric of task.name={cfg.name}; choose one of: "
                         f"{', '.join(METRICS[cfg.name])} (e.g. task.metric={METRICS[cfg.name][0]})")
    if cfg.distill.temperature <= 0:
        raise ValueError(f"task.distill.temperature={cfg.distill.temperature} must be positive; "
                         "e.g. task.distill.temperature=2.0")
    if not 0.0 <= cfg.distill.hardness <= 1.0:
        raise ValueError(f"task.distill.hardness={cfg.distill.hardness} must be in [0, 1]; "
                         "e.g. task.distill.hardness=1.0")
    if cfg.distill.teacher is not None and cfg.distill.teacher_target is not None:
        raise ValueError("task.distill.teacher and task.distill.teacher_target are both set; give one, "
                         "e.g. task.distill.teacher=outputs/dense_run")


def build_task(cfg: Any, *, label_smoothing: float, num_classes: int, prepare: Callable[[torch.Tensor], torch.Tensor],
               teacher: nn.Module | None = None, data_task: str | None = None, data_metric: str | None = None) -> Task:
    """The task of config ``task`` (``auto``: ``data_task``), distilling from ``teacher`` when there is one;
    ``task.metric`` defaults to ``data_metric`` on the data's own task. ValueError for a bad config."""
    check_task(cfg)
    name = resolve_task(cfg.name, data_task)
    distillation = None if teacher is None else Distillation(teacher, cfg.distill.temperature, cfg.distill.hardness)
    metric = cfg.get("metric") or (data_metric if name == data_task else None)
    if distillation is not None and (name == "masked_lm" or num_classes == 1):
        raise ValueError(f"task.distill distils class logits and task.name={name} here has none (masked "
                         "tokens or one regression output); drop task.distill.teacher, or distil a classifier, "
                         "e.g. task.name=sequence_classification")
    if name == "masked_lm":
        return MaskedLM(metric=metric)
    if name == "sequence_classification":
        return SequenceClassification(num_classes, label_smoothing=label_smoothing, distillation=distillation,
                                      metric=metric)
    return ImageClassification(num_classes, label_smoothing=label_smoothing, prepare=prepare,
                               distillation=distillation, metric=metric)


__all__ = ["METRICS", "TASKS", "Task", "build_task", "check_task", "resolve_task"]
