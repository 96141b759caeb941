"""The task section's checks (torch-free): a known task and metric, distillation terms that fit the task,
translation's generation options."""

from __future__ import annotations

import math
from typing import Any

from .catalog import AUTO, TASKS, metrics_of, task_names


def resolve_task(name: str, data_task: str | None) -> str:
    """``task.name``, where ``auto`` is the task the data declares (image classification when it declares none)."""
    return name if name != AUTO else data_task or "image_classification"


def check_task(cfg: Any) -> None:
    """ValueError (one line) for an unknown task or distillation values out of range."""
    if cfg.name not in task_names():
        raise ValueError(f"task.name={cfg.name!r} is not a task; choose one of: {', '.join(task_names())} "
                         "(e.g. task.name=image_classification)")
    metric, metrics = cfg.get("metric"), metrics_of(cfg.name)
    if metric is not None and metric not in metrics:
        raise ValueError(f"task.metric={metric!r} is not a metric of task.name={cfg.name}; choose one of: "
                         f"{', '.join(metrics)} (e.g. task.metric={metrics[0]})")
    if cfg.distill.temperature <= 0:
        raise ValueError(f"task.distill.temperature={cfg.distill.temperature} must be positive; "
                         "e.g. task.distill.temperature=2.0")
    if not 0.0 <= cfg.distill.hardness <= 1.0:
        raise ValueError(f"task.distill.hardness={cfg.distill.hardness} must be in [0, 1]; "
                         "e.g. task.distill.hardness=1.0")
    if cfg.distill.get("teacher_mode", "eval") not in ("eval", "train"):
        raise ValueError(f"task.distill.teacher_mode={cfg.distill.teacher_mode!r} must be eval or train; "
                         "e.g. task.distill.teacher_mode=train")
    if cfg.distill.teacher is not None and cfg.distill.teacher_target is not None:
        raise ValueError("task.distill.teacher and task.distill.teacher_target are both set; give one, "
                         "e.g. task.distill.teacher=outputs/dense_run")
    if cfg.name != AUTO:  # else checked once the data has said its task (build_task)
        check_distill_terms(cfg.distill, cfg.name)
    if cfg.name == "translation" and "beam" in cfg:  # label_smoothing: the run's checks (compose/checks.py)
        check_translation(0.0, cfg.beam, cfg.length_penalty, cfg.max_len_a, cfg.max_len_b)


def check_distill_terms(distill: Any, task: str) -> None:
    """The distillation terms fit ``task`` and have a teacher (ValueError, one line)."""
    record = TASKS.record(task, key="task.name")
    has_teacher = distill.teacher is not None or distill.teacher_target is not None
    if distill.hidden_weight < 0:
        raise ValueError(f"task.distill.hidden_weight={distill.hidden_weight} must be >= 0; "
                         "e.g. task.distill.hidden_weight=1.0")
    if distill.hidden_weight and not has_teacher:
        raise ValueError(f"task.distill.hidden_weight={distill.hidden_weight} needs a teacher; "
                         "e.g. task.distill.teacher=self (the model as the run starts it)")
    if distill.hidden_weight and not record.hidden_states:
        raise ValueError(f"task.distill.hidden_weight needs a transformer's hidden states and task.name={task} "
                         "feeds model(x); e.g. task.distill.hidden_weight=0")
    if has_teacher and not record.logits and distill.logits:
        raise ValueError(f"task.distill distils class logits (task.distill.logits=true) and task.name={task} has "
                         "none; distil hidden states, e.g. task.distill.logits=false task.distill.hidden_weight=1.0")
    if has_teacher and not distill.logits and not distill.hidden_weight:
        raise ValueError("task.distill has a teacher but distils nothing (task.distill.logits=false, "
                         "hidden_weight=0); e.g. task.distill.hidden_weight=1.0")


def check_translation(label_smoothing: float, beam: int, length_penalty: float, max_len_a: float,
                      max_len_b: int) -> None:
    """ValueError (one line) for translation options out of range."""
    checks = [
        (0.0 <= label_smoothing < 1.0, f"label_smoothing={label_smoothing} must be in [0, 1)", "label_smoothing=0.1"),
        (isinstance(beam, int) and beam >= 1, f"task.beam={beam} must be an integer >= 1 (1: greedy)", "task.beam=4"),
        (math.isfinite(length_penalty), f"task.length_penalty={length_penalty} must be finite",
         "task.length_penalty=1.0"),
        (max_len_a >= 0, f"task.max_len_a={max_len_a} must be >= 0", "task.max_len_a=0"),
        (isinstance(max_len_b, int) and max_len_b >= 0, f"task.max_len_b={max_len_b} must be an integer >= 0",
         "task.max_len_b=200"),
    ]
    for ok, message, example in checks:
        if not ok:
            raise ValueError(f"{message}; e.g. {example}")
