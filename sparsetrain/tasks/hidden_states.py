"""TAMT's hidden-state distillation loss (Liu et al. 2022, ``rep_loss_type=full_cosine``): the mean over the
transformer layers of the mean over tokens of 1 - cos(student state, teacher state), the embedding output
(Hugging Face ``hidden_states[0]``) excluded.

Tokens are those of the attention mask: padding positions carry no text, so a batch's loss does not depend on how
much of it is padding (TAMT averages over every position of its padded blocks; on ``dataset=text`` blocks, which
are padded only at the very end of the corpus, the two agree). 1 - cos(s, t) is computed as
|s/|s| - t/|t||^2 / 2, equal for non-zero vectors and exactly 0 when the states are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hidden_state_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                      attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The loss of ``student`` and ``teacher`` hidden states (each L + 1 tensors (batch, tokens, width), the
    embedding output first) over the tokens where ``attention_mask`` is non-zero (None: every token); float32."""
    if len(student) != len(teacher):
        raise ValueError(f"task.distill.hidden_weight: the student has {len(student) - 1} layers and the teacher "
                         f"{len(teacher) - 1}; distil from a teacher of the same depth, e.g. task.distill.teacher=self")
    weights = None if attention_mask is None else attention_mask.float()
    total = None
    for s, t in zip(student[1:], teacher[1:]):
        distance = (F.normalize(s.float(), dim=-1) - F.normalize(t.float(), dim=-1)).pow(2).sum(-1) / 2
        layer = distance.mean() if weights is None else (distance * weights).sum() / weights.sum().clamp(min=1)
        total = layer if total is None else total + layer
    return total / (len(student) - 1)
