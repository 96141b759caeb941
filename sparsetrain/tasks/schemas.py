"""The ``task`` section's schema (torch-free): which task, its "best" metric, distillation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DistillConfig:
    """Knowledge distillation from a frozen teacher (sparsetrain/tasks/distill.py); off without a teacher."""

    teacher: Optional[str] = None  # a finished run directory (its model and final weights), or self (the starting model)
    teacher_target: Optional[str] = None  # or the import path of a factory returning the teacher (weights loaded)
    temperature: float = 2.0  # softmax temperature of teacher and student logits
    hardness: float = 1.0  # the logit KL weighs hardness, the task's own loss 1 - hardness (also without logits)
    logits: bool = True  # distil the class logits (KL at `temperature`); false: hidden states only
    hidden_weight: float = 0.0  # weight of the hidden-state loss (TAMT: mean over layers of 1 - cosine; 0: off)
    teacher_mode: str = "eval"  # eval (dropout off) | train (dropout on: TAMT-KD's teacher, never put in eval mode)


@dataclass
class TaskConfig:
    name: str = "auto"  # auto (the data's task: sequence_classification for glue, masked_lm for text, else image_classification) | image_classification | sequence_classification | masked_lm | causal_lm | translation (model.head=seq2seq_lm)
    distill: DistillConfig = field(default_factory=DistillConfig)  # knowledge distillation (off without a teacher)
    metric: Optional[str] = None  # the "best" metric; default the data's (GLUE: its headline) | top1 | accuracy (pearson for regression) | loss (mlm) | perplexity (causal_lm) | bleu (translation)
    beam: int = 4  # translation: beam size of the BLEU translations (1: greedy)
    length_penalty: float = 1.0  # translation: beam scores divided by length ** length_penalty (fairseq's lenpen)
    max_len_a: float = 0.0  # translation: at most max_len_a * source length + max_len_b generated tokens (fairseq's)
    max_len_b: int = 200  # translation: see max_len_a
    bleu_lowercase: bool = False  # translation: case-insensitive BLEU (sacrebleu -lc, as GaP's WMT14 scores)
