"""``train_multiplier``: one recipe, trained longer (extended training; Kuznedelev et al. 2023, AC/DC's ep150/ep200
configs, ITOP's multiplier).

The run length (``epochs`` or ``steps``), the learning-rate milestones and ``cycle_start`` (and the warm-up with
``stretch_warmup``: AC/DC's ep150/ep200 configs keep their 5 warm-up epochs), and the method times its config class
lists in ``STRETCHED`` (GMP's ``start``/``end``) are multiplied. Everything given as a
fraction or percent of training (RigL/SET ``t_end``, ``end: 75%``) stretches by itself; intervals and phase
lengths stay (more RigL/SET updates and GMP events, more AC/DC cycles, as the authors' extended configs); points
that are not stretched on purpose stay (LTH's ``rewind_to``).

A run resumed with more ``epochs``/``steps`` (and nothing else changed) continues to the new length
(``refuse_unextendable``, ``continue_longer``), where neither the schedule nor the method ties what was trained so far to
the old length (each answers ``length_bound``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..methods.catalog import METHODS
from ..times import parse_interval

if TYPE_CHECKING:
    from ..training.trainer import Trainer

log = logging.getLogger(__name__)


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
    if cfg.stretch_warmup:
        schedule.warmup_epochs = cfg.schedule.warmup_epochs * factor
        schedule.warmup_steps = round(cfg.schedule.warmup_steps * factor)
    schedule.milestones = [m * factor for m in cfg.schedule.milestones]
    schedule.cycle_start = cfg.schedule.cycle_start * factor
    for key in getattr(OmegaConf.get_type(cfg.method), "STRETCHED", ()):
        out.method[key] = stretch_time(f"method.{key}", cfg.method[key], factor)
    return out


def stretch_time(key: str, text: str, factor: float) -> str:
    """An epoch or step time multiplied (``'2ep'`` x 2 = ``'4ep'``); a percent of training stays as it is."""
    time = parse_interval(key, text, allow_percent=True)
    return text if time.unit == "%" else f"{round(time.count * factor)}{time.unit}"


def refuse_unextendable(cfg: DictConfig) -> None:
    """ConfigError (one line) when the schedule or the method ties what the run trained to its old length: resumed
    with a longer one, it would not be what a run of that length trains."""
    for bound in (OmegaConf.to_object(cfg.schedule).length_bound(), METHODS[cfg.method.name].length_bound(cfg.method)):
        if bound is not None:
            raise ConfigError(f"{_length(cfg)}: this run cannot be extended, {bound}; start a new run of the length "
                              "(train_multiplier=2 stretches the recipe) or from its weights (init_from=<its run dir>)")


def continue_longer(trainer: Trainer, config: dict) -> None:
    """Extend the restored run to the trainer's (longer) length: a finished run continues where its training ended;
    ConfigError (one line, nothing changed) when it cannot."""
    length, trained_to = _length(config), trainer.trained_to
    if trainer.stopped_early is not None:
        raise ConfigError(f"{length}: this run stopped early ({trainer.stopped_early['reason']}), so it is not "
                          "extended; start a new run from its weights, e.g. init_from=<its run dir>")
    if trainer.finished and trained_to is None:
        raise ConfigError(f"{length}: this run's checkpoint was written by a sparsetrain that could not extend runs; "
                          "start a new run from its weights, e.g. init_from=<its run dir>")
    done = trained_to["position"]["step"] if trainer.finished else trainer.pos.step
    if trainer.finished and done % trainer.steps_per_epoch:
        raise ConfigError(f"{length}: this run ended inside an epoch (at step {done}, its last epoch closed early), so "
                          "it cannot continue as a longer run would; start a new run of the longer length")
    if done >= trainer.p.total_steps:
        raise ConfigError(f"{length} is {trainer.p.total_steps} steps, and the run has done {done}; give a longer one")
    if trainer.finished:
        trainer.reopen()
    trainer.extended.append({"at_step": done, "steps": trainer.p.total_steps})
    log.info("extending the run from step %d to %d steps", done, trainer.p.total_steps)


def _length(cfg: Any) -> str:
    """``steps=600`` or ``epochs=30``: the key that sets the run's length."""
    return f"steps={cfg['steps']}" if cfg["steps"] is not None else f"epochs={cfg['epochs']}"
