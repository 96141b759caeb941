"""``train_multiplier``: one recipe, trained longer (extended training; Kuznedelev et al. 2023, AC/DC's ep150/ep200
configs, ITOP's multiplier).

The run length (``epochs`` or ``steps``), the learning-rate warm-up, milestones and ``cycle_start``, and the method
times its config class lists in ``STRETCHED`` (GMP's ``start``/``end``) are multiplied. Everything given as a
fraction or percent of training (RigL/SET ``t_end``, ``end: 75%``) stretches by itself; intervals and phase
lengths stay (more RigL/SET updates and GMP events, more AC/DC cycles, as the authors' extended configs); points
that are not stretched on purpose stay (LTH's ``rewind_to``).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ..times import parse_interval


def extend(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every schedule point stretched by ``cfg.train_multiplier`` (``cfg`` itself when it is 1)."""
    factor = cfg.train_multiplier
    if factor == 1:
        return cfg
    out = cfg.copy()
    out.epochs = max(round(cfg.epochs * factor), 1)
    if cfg.steps is not None:
        out.steps = max(round(cfg.steps * factor), 1)
    schedule = out.schedule
    schedule.warmup_epochs = cfg.schedule.warmup_epochs * factor
    schedule.milestones = [m * factor for m in cfg.schedule.milestones]
    schedule.cycle_start = cfg.schedule.cycle_start * factor
    for key in getattr(OmegaConf.get_type(cfg.method), "STRETCHED", ()):
        out.method[key] = stretch_time(f"method.{key}", cfg.method[key], factor)
    return out


def stretch_time(key: str, text: str, factor: float) -> str:
    """An epoch or step time multiplied (``'2ep'`` x 2 = ``'4ep'``); a percent of training stays as it is."""
    time = parse_interval(key, text, allow_percent=True)
    return text if time.unit == "%" else f"{round(time.count * factor)}{time.unit}"

