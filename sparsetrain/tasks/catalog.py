"""Every task the package ships, one record each (torch-free): what ``task.name=<name>`` selects.

A task's class is built as ``cls(num_classes=..., label_smoothing=..., prepare=..., distillation=..., metric=...)``
and translation's generation options (``beam=..., length_penalty=..., max_len_a=..., max_len_b=...``), each keyword
passed only where its signature takes it. A user's package adds its own with
``sparsetrain.register_task(name=..., target=..., summary=..., metrics=(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import Record, Registry
from .schemas import TaskConfig

AUTO = "auto"  # task.name=auto: the task the data declares (image classification when it declares none)


@dataclass(frozen=True)
class TaskRecord(Record):
    metrics: tuple[str, ...] = ()  # the names task.metric may choose from (which apply can depend on the data)
    logits: bool = True  # the model's output has class logits (logit distillation applies)
    hidden_states: bool = True  # the model is called with named inputs and can return hidden states


TASKS: Registry[TaskRecord] = Registry("task", "a task", example="image_classification")


def register_task(name: str, target: Any, summary: str, metrics: tuple[str, ...], logits: bool = True,
                  hidden_states: bool = True, page: str = "") -> TaskRecord:
    """Add task ``name``: ``target`` is its ``tasks.base.Task`` subclass (or the class's import path)."""
    return TASKS.register(TaskRecord(name, TaskConfig, target, summary, page=page, metrics=tuple(metrics),
                                     logits=logits, hidden_states=hidden_states))


def task_names() -> list[str]:
    """What ``task.name`` accepts."""
    return [AUTO, *TASKS.names()]


def metrics_of(name: str) -> tuple[str, ...]:
    """The metrics ``task.metric`` may choose for ``task.name=name`` (``auto``: those of every task)."""
    records = TASKS.records() if name == AUTO else [TASKS.record(name, key="task.name")]
    return tuple(dict.fromkeys(metric for record in records for metric in record.metrics))


register_task("image_classification", "sparsetrain.tasks.classification.ImageClassification",
              "model(x) to class logits; cross-entropy, top-1 and top-5", ("top1", "top5", "loss"),
              hidden_states=False)
register_task("sequence_classification", "sparsetrain.tasks.sequence.SequenceClassification",
              "model(**batch) to class logits or one regression output (GLUE)",
              ("accuracy", "f1", "matthews", "pearson", "spearman", "loss"), page="language-models.md")
register_task("masked_lm", "sparsetrain.tasks.masked_lm.MaskedLM",
              "masked-language-model loss on the masked tokens", ("loss", "perplexity", "accuracy"), logits=False,
              page="language-models.md")
register_task("causal_lm", "sparsetrain.tasks.causal_lm.CausalLM",
              "next-token loss of a decoder; perplexity over the scored tokens", ("perplexity", "loss", "accuracy"),
              logits=False, page="language-models.md")
register_task("translation", "sparsetrain.tasks.translation.Translation",
              "encoder-decoder: label-smoothed cross-entropy (fairseq's); BLEU (sacrebleu) of beam-search output",
              ("bleu", "loss", "perplexity"), logits=False, hidden_states=False, page="language-models.md")
