"""BertAdam (the original BERT optimizer, as TAMT's knowledge-distillation script uses it): Adam without bias
correction, with weight decay added to the update (decoupled, as AdamW); its per-tensor gradient clipping is the
step's (``optimizer.clip_mode=per_tensor``, ``training/clipping.py``). Per parameter, with g its gradient::

    m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;  p ← p − lr·(m / (√v + ε) + weight_decay·p)

Without the bias correction the first updates are larger than Adam's: (1 − β1^t) / √(1 − β2^t) times, 3.2x at
step 1."""

from __future__ import annotations

import torch


class BertAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p] = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            grads = [p.grad for p in params]
            exp_avg = [self.state[p]["exp_avg"] for p in params]
            exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
            beta1, beta2 = group["betas"]
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
            denominators = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_add_(denominators, group["eps"])
            updates = torch._foreach_div(exp_avg, denominators)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss
