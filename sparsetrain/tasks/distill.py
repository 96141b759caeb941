"""Knowledge distillation: the student's loss mixed with terms that pull it towards a frozen teacher.

loss = hardness * T^2 * KL(softmax(teacher / T) || softmax(student / T))   (with ``logits``; Hinton et al. 2015)
     + (1 - hardness) * task loss
     + hidden_weight * hidden-state loss                                    (TAMT, ``hidden_states.py``)

The oBERT recipe uses the logits with hardness 1.0 and temperature 2.0; TAMT's objectives on a text corpus are
KD = the hidden-state loss alone (no logits, hardness 1) and MLM+KD = the masked-LM loss plus it (hardness 0).
The teacher runs without gradients, under the step's autocast, once per step for both terms, in eval mode or
(``teacher_mode=train``) with its dropout on, as TAMT-KD's teacher.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import call_model, output_logits
from .hidden_states import hidden_state_loss


class Distillation:
    def __init__(self, teacher: nn.Module, temperature: float, hardness: float, *, logits: bool = True,
                 hidden_weight: float = 0.0, teacher_mode: str = "eval") -> None:
        if hidden_weight and not _takes_hidden_states(teacher):
            raise ValueError(f"task.distill.hidden_weight needs a model called with output_hidden_states=True (a "
                             f"Hugging Face transformer); the teacher, a {type(teacher).__name__}, takes no such "
                             "argument; e.g. task.distill.hidden_weight=0")
        self.teacher = teacher.train(teacher_mode == "train").requires_grad_(False)
        self.temperature = temperature
        self.hardness = hardness
        self.logits = logits
        self.hidden_weight = hidden_weight
        # what the student (and the teacher) must be asked for: the hidden states, for the hidden-state loss
        self.model_options = {"output_hidden_states": True} if hidden_weight else {}

    def loss(self, student_output: Any, teacher_inputs: Any, task_loss: torch.Tensor) -> torch.Tensor:
        """The loss of ``student_output`` (logits, or a Hugging Face output with ``.logits`` and, for the
        hidden-state loss, ``.hidden_states``) given the teacher's inputs (a tensor, or named tensors fed as
        ``teacher(**inputs)``), mixed with ``task_loss``."""
        with torch.no_grad():
            teacher_output = call_model(self.teacher, teacher_inputs, **self.model_options)
        loss = (1.0 - self.hardness) * task_loss
        if self.logits:
            t = self.temperature
            kl = F.kl_div(F.log_softmax(output_logits(student_output) / t, dim=-1),
                          F.log_softmax(output_logits(teacher_output) / t, dim=-1),
                          reduction="batchmean", log_target=True)
            loss = loss + self.hardness * t * t * kl
        if self.hidden_weight:
            mask = teacher_inputs.get("attention_mask") if isinstance(teacher_inputs, dict) else None
            loss = loss + self.hidden_weight * hidden_state_loss(student_output.hidden_states,
                                                                 teacher_output.hidden_states, mask)
        return loss


def _takes_hidden_states(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``output_hidden_states`` (by name, or through ``**kwargs``)."""
    parameters = inspect.signature(model.forward).parameters.values()
    return any(p.name == "output_hidden_states" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
