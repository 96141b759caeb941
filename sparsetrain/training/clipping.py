"""Gradient clipping before each optimizer step (``optimizer.clip_grad_norm``, ``optimizer.clip_mode``): the gradients
the optimizer is about to apply scaled so that their norm is at most ``clip_grad_norm``, either one norm over every
trained gradient (``global``: ``torch.nn.utils.clip_grad_norm_``, the HF Trainer's ``max_grad_norm``) or each tensor's
own (``per_tensor``: BertAdam's ``max_grad_norm``). The scale is ``min(1, max_norm / (norm + 1e-6))`` as torch's, all
on the device (no host read), so a captured step holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


@dataclass(frozen=True)
class GradientClipping:
    max_norm: float
    mode: str = "global"

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip, in place, the gradients of every parameter in ``optimizer``'s groups."""
        grads = [param.grad for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
        if not grads:
            return
        if self.mode == "global":
            scales = [torch.nn.utils.get_total_norm(grads, foreach=True)]
        else:
            scales = torch._foreach_norm(grads)
        torch._foreach_add_(scales, EPS)
        torch._foreach_reciprocal_(scales)
        torch._foreach_mul_(scales, self.max_norm)
        torch._foreach_clamp_max_(scales, 1.0)
        torch._foreach_mul_(grads, scales * len(grads) if self.mode == "global" else scales)


def gradient_clipping(optimizer_cfg: Any) -> GradientClipping | None:
    """The clipping ``optimizer.clip_grad_norm`` and ``optimizer.clip_mode`` ask for (None: off; the keys are
    checked before a run starts)."""
    max_norm = optimizer_cfg.get("clip_grad_norm", 0.0)
    return GradientClipping(max_norm, optimizer_cfg.get("clip_mode", "global")) if max_norm else None
