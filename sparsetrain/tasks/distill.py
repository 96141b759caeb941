"""Knowledge distillation: the student's loss mixed with a logit KL divergence to a frozen teacher.

loss = hardness * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - hardness) * task loss
(Hinton et al. 2015; the oBERT recipe uses hardness 1.0 and temperature 2.0). The teacher runs in eval mode,
without gradients, under the step's autocast.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import logits_of


class Distillation:
    def __init__(self, teacher: nn.Module, temperature: float, hardness: float) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.hardness = hardness

    def loss(self, student_logits: torch.Tensor, teacher_inputs: Any, task_loss: torch.Tensor) -> torch.Tensor:
        """The distillation loss of ``student_logits`` given the teacher's inputs (a tensor, or named tensors fed as
        ``teacher(**inputs)``, whose output may hold ``.logits``), mixed with ``task_loss``."""
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher, teacher_inputs)
        t = self.temperature
        kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                      reduction="batchmean", log_target=True)
        return self.hardness * t * t * kl + (1.0 - self.hardness) * task_loss
