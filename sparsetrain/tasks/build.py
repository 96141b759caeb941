"""``build_task``: the task a run trains, from its record, with distillation from a teacher when there is one."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..factories import call_with
from .base import Task
from .catalog import TASKS
from .checks import check_distill_terms, check_task, resolve_task
from .distill import Distillation

# translation's generation options (tasks/schemas.TaskConfig), offered to a task whose signature takes them
GENERATION_OPTIONS = ("beam", "length_penalty", "max_len_a", "max_len_b", "bleu_lowercase")


def build_task(cfg: Any, *, label_smoothing: float, num_classes: int, prepare: Callable[[torch.Tensor], torch.Tensor],
               teacher: nn.Module | None = None, data_task: str | None = None, data_metric: str | None = None) -> Task:
    """The task of config ``task`` (``auto``: ``data_task``), distilling from ``teacher`` when there is one;
    ``task.metric`` defaults to ``data_metric`` on the data's own task. ValueError for a bad config."""
    check_task(cfg)
    name = resolve_task(cfg.name, data_task)
    distill = cfg.distill
    check_distill_terms(distill, name)
    distillation = None if teacher is None else Distillation(
        teacher, distill.temperature, distill.hardness, logits=distill.logits, hidden_weight=distill.hidden_weight,
        teacher_mode=distill.get("teacher_mode", "eval"))
    metric = cfg.get("metric") or (data_metric if name == data_task else None)
    if distillation is not None and distill.logits and num_classes == 1:
        raise ValueError(f"task.distill distils class logits and task.name={name} here has none (one "
                         "regression output); distil hidden states, e.g. task.distill.logits=false "
                         "task.distill.hidden_weight=1.0, or drop task.distill.teacher")
    offered = {"num_classes": num_classes, "label_smoothing": label_smoothing, "prepare": prepare,
               "distillation": distillation, "metric": metric,
               **{key: cfg[key] for key in GENERATION_OPTIONS if key in cfg}}
    task = call_with(TASKS[name], offered, {})
    task.name = name  # the registered name (a subclass of another task keeps its own)
    return task
