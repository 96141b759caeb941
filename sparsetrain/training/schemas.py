"""The ``optimizer`` and ``schedule`` groups' schemas (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

CLIP_MODES = ("global", "per_tensor")  # optimizer.clip_mode (see training/clipping.py)


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1  # peak learning rate (the schedule scales it)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty (added to the gradient)
    exempt_bias_norm: bool = False  # true: no weight decay on biases and normalisation parameters
    clip_grad_norm: float = 0.0  # > 0: gradients scaled to at most this norm before each step (0: no clipping)
    clip_mode: str = "global"  # global (one norm over every trained gradient) | per_tensor (each tensor's own: BertAdam)


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3  # peak learning rate (the schedule scales it)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # running-average coefficients
    eps: float = 1e-8  # added to the denominator
    weight_decay: float = 0.0  # Adam: L2 penalty in the gradient; AdamW: decoupled decay
    exempt_bias_norm: bool = False  # true: no weight decay on biases and normalisation parameters
    clip_grad_norm: float = 0.0  # > 0: gradients scaled to at most this norm before each step (0: no clipping)
    clip_mode: str = "global"  # global (one norm over every trained gradient) | per_tensor (each tensor's own: BertAdam)


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class BertAdamConfig(AdamConfig):
    _target_: str = "sparsetrain.training.bert_adam.BertAdam"  # Adam without bias correction, decoupled decay (BERT's)
    eps: float = 1e-6
    weight_decay: float = 0.01


@dataclass
class ScheduleConfig:
    """Learning-rate factor as a function of the step; see ``train/schedule.py``."""

    name: str = MISSING  # constant | cosine | linear | multistep | cyclic_linear | inverse_sqrt (set by the schedule= option)
    warmup_epochs: float = 0.0  # linear warm-up from 0 over these epochs (any schedule)
    warmup_steps: int = 0  # ... or over these optimizer steps (instead of warmup_epochs; inverse_sqrt's unit)
    step_at: str = "step"  # step (the rate changes every step) | epoch (at epoch starts: a scheduler stepped at epoch ends, AC/DC's)
    milestones: list[float] = field(default_factory=list)  # multistep: epochs at which the rate is multiplied by gamma
    gamma: float = 0.1  # multistep: the factor at each milestone
    final_lr_fraction: float = 0.0  # cosine and linear: the rate at the end, as a fraction of lr
    cycle_epochs: float = 0.0  # cyclic_linear: epochs per cycle (the pruning interval for LR rewinding)
    cycle_start: float = 0.0  # cyclic_linear: epoch the cycles start at; before it, one linear decay

    def length_bound(self) -> str | None:
        """Why the rate at a step depends on the run's total length (then a run cannot be extended), or None."""
        if self.name in LENGTH_BOUND_SCHEDULES:
            return f"schedule={self.name} decays the learning rate to its end, so every step's rate depends on it"
        return None


@dataclass
class EarlyStopConfig:
    """Stop training when the task's headline metric stops improving."""

    patience: Optional[int] = None  # evaluations without improvement (val split, else test) before training stops; null/0 = off
    min_delta: float = 0.0  # a smaller change of the headline metric is no improvement


SCHEDULES = ("constant", "cosine", "linear", "multistep", "cyclic_linear", "inverse_sqrt")
LENGTH_BOUND_SCHEDULES = ("cosine", "linear")  # the rate at a step depends on the run's total length
