"""The range and consistency checks Hydra cannot do on a composed config (one line each: the key and an example)."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from ..errors import ConfigError
from ..loggers.schemas import LOGGER_PACKAGES, LOGGERS
from ..times import parse_interval
from ..training.schemas import CLIP_MODES, SCHEDULES
from .schema import StepGraph


def check_sparsity(sparsity: float) -> None:
    """ConfigError (one line) unless ``sparsity`` is a fraction of zeros in [0, 1): the command line's and the API's
    one check of it."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity={sparsity} must be in [0, 1) (the fraction of zeros); e.g. sparsity=0.9")


def validate(cfg: Any) -> None:
    """Range and consistency checks on a composed config; raises ConfigError with a one-line message."""
    check_sparsity(cfg.sparsity)
    checks = [
        (cfg.epochs >= 1, "epochs", "must be a positive integer", "epochs=10"),
        (cfg.train_multiplier > 0, "train_multiplier", "must be positive", "train_multiplier=2"),
        (all(step >= 1 for step in cfg.masks_at), "masks_at", "lists steps taken, each >= 1", "masks_at=[11000,17000]"),
        (cfg.steps is None or cfg.steps >= 1, "steps", "must be a positive integer or null", "steps=50000"),
        (cfg.batch_size >= 1, "batch_size", "must be a positive integer", "batch_size=128"),
        (cfg.eval_batch_size >= 1, "eval_batch_size", "must be a positive integer", "eval_batch_size=1000"),
        (0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)", "label_smoothing=0.1"),
        (cfg.dataset.val_size >= 0, "dataset.val_size", "must be >= 0", "dataset.val_size=5000"),
        (cfg.dataset.num_workers >= 0, "dataset.num_workers", "must be >= 0", "dataset.num_workers=8"),
        (math.isfinite(cfg.optimizer.lr) and cfg.optimizer.lr > 0, "optimizer.lr", "must be positive and finite",
         "optimizer.lr=0.1"),
        (cfg.schedule.name in SCHEDULES, "schedule.name", f"must be one of {', '.join(SCHEDULES)}",
         "schedule=cosine"),
        (cfg.schedule.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0", "schedule.warmup_epochs=5"),
        (cfg.schedule.get("warmup_steps", 0) >= 0, "schedule.warmup_steps", "must be >= 0", "schedule.warmup_steps=4000"),
        (not (cfg.schedule.get("warmup_steps", 0) and cfg.schedule.warmup_epochs), "schedule.warmup_steps",
         "and schedule.warmup_epochs both set the warm-up; give one", "schedule.warmup_epochs=0"),
        (cfg.schedule.name != "inverse_sqrt" or cfg.schedule.get("warmup_steps", 0) > 0
         or cfg.schedule.warmup_epochs > 0, "schedule.warmup_steps", "must be positive with schedule=inverse_sqrt "
         "(the rate is sqrt(warmup_steps / step) after it)", "schedule.warmup_steps=4000"),
        (cfg.schedule.get("step_at", "step") in ("step", "epoch"), "schedule.step_at", "must be step or epoch",
         "schedule.step_at=epoch"),
        (list(cfg.schedule.milestones) == sorted(cfg.schedule.milestones), "schedule.milestones",
         "must be increasing epochs", "schedule.milestones=[80,120]"),
        (cfg.schedule.name != "multistep" or len(cfg.schedule.milestones) > 0, "schedule.milestones",
         "needs at least one epoch with schedule=multistep", "schedule.milestones=[80,120]"),
        (cfg.schedule.name != "cyclic_linear" or cfg.schedule.cycle_epochs > 0, "schedule.cycle_epochs",
         "must be positive with schedule=cyclic_linear", "schedule.cycle_epochs=4"),
        (cfg.schedule.cycle_start >= 0, "schedule.cycle_start", "must be >= 0", "schedule.cycle_start=2"),
        (0.0 <= cfg.model.dropout < 1.0, "model.dropout", "must be in [0, 1)", "model.dropout=0.3"),
        (cfg.dataset.image_size >= 8, "dataset.image_size", "must be >= 8", "dataset.image_size=32"),
        (cfg.dataset.channels >= 1, "dataset.channels", "must be >= 1", "dataset.channels=3"),
        (cfg.dataset.num_classes >= 2, "dataset.num_classes", "must be >= 2", "dataset.num_classes=10"),
        (cfg.dataset.train_size >= 1, "dataset.train_size", "must be >= 1", "dataset.train_size=50000"),
        (cfg.dataset.test_size >= 1, "dataset.test_size", "must be >= 1", "dataset.test_size=10000"),
    ]
    checks += _limits(cfg)
    for ok, key, rule, example in checks:
        if not ok:
            raise ConfigError(f"{key}={_show(cfg, key)} {rule}; e.g. {example}")
    if cfg.compile and cfg.step_graph == StepGraph.on:
        raise ConfigError("step_graph=on cannot be combined with compile=true (torch.compile has its own graphs); "
                          "e.g. step_graph=auto compile=true")
    parse_interval("eval_every", cfg.eval_every)
    parse_interval("checkpoint_every", cfg.checkpoint_every)
    if parse_interval("log_every", cfg.log_every).unit == "ep" and str(cfg.log_every).strip() != "0":
        raise ConfigError(f"log_every={cfg.log_every!r} must be in steps (epochs have their own line); "
                          "e.g. log_every=100it")
    parse_interval("keep_checkpoint_every", cfg.keep_checkpoint_every)
    if cfg.keep_checkpoints is not None and cfg.keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints={cfg.keep_checkpoints} must be a positive number or null (keep all); "
                          "e.g. keep_checkpoints=3")
    if cfg.early_stop.patience is not None and cfg.early_stop.patience < 0:
        raise ConfigError(f"early_stop.patience={cfg.early_stop.patience} must be >= 0 (0 or null: off); "
                          "e.g. early_stop.patience=5")
    if not (math.isfinite(cfg.early_stop.min_delta) and cfg.early_stop.min_delta >= 0):
        raise ConfigError(f"early_stop.min_delta={cfg.early_stop.min_delta} must be >= 0 and finite; "
                          "e.g. early_stop.min_delta=0.001")
    _validate_daily_use(cfg)
    _validate_finetune(cfg.finetune)


def _validate_finetune(finetune: Any) -> None:
    """The finetune section's values and combinations (the patterns are checked against the model at build)."""
    if str(finetune.drift).lower() not in ("auto", "true", "false"):
        raise ConfigError(f"finetune.drift={finetune.drift!r} must be auto, true or false; e.g. finetune.drift=true")
    if finetune.top_layers < 0:
        raise ConfigError(f"finetune.top_layers={finetune.top_layers} must be >= 0; e.g. finetune.top_layers=2")
    if finetune.top_layers and not finetune.rank_from:
        raise ConfigError(f"finetune.top_layers={finetune.top_layers} needs the run that ranks the layers; "
                          "e.g. finetune.rank_from=<run dir with a drift table> finetune.top_layers=2")
    if finetune.rank_from and not finetune.top_layers:
        raise ConfigError("finetune.rank_from needs how many of its top layers to train; e.g. finetune.top_layers=2")
    if finetune.rank_from and "*" in list(finetune.trainable):
        raise ConfigError("finetune.rank_from trains the top layers plus finetune.trainable, and trainable=['*'] "
                          "trains every parameter; e.g. finetune.trainable=[head]")


def _validate_daily_use(cfg: Any) -> None:
    """Checks of the keys that shape a run's feedback and files, not its result."""
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} must be a positive integer or null (automatic); e.g. threads=4")
    unknown = [name for name in cfg.logger if name not in LOGGERS]
    if unknown:
        raise ConfigError(f"logger={list(cfg.logger)}: {unknown[0]!r} is not a logger; choose from "
                          f"{', '.join(LOGGERS)}, e.g. logger=[jsonl,csv]")
    for name in [*cfg.logger, *(["tensorboard"] if cfg.tensorboard else [])]:
        package, extra = LOGGER_PACKAGES.get(name, (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger={list(cfg.logger)}: {name} needs the {package} package "
                              f'(pip install "{extra}"); e.g. logger=[jsonl,csv]')
    if cfg.wandb.mode not in ("offline", "online"):
        raise ConfigError(f"wandb.mode={cfg.wandb.mode!r} must be offline or online; e.g. wandb.mode=offline")


MAX_EPOCHS = 100_000
MAX_STEPS = 10**9
MAX_SYNTHETIC_BYTES = 8 * 2**30  # synthetic images are held in memory (uint8)


def _limits(cfg: Any) -> list[tuple[bool, str, str, str]]:
    """Bounds that keep an absurd value from starting a run or a huge allocation; the optimizer's own ranges."""
    image_bytes = cfg.dataset.channels * cfg.dataset.image_size ** 2
    optimizer = cfg.optimizer
    betas = list(optimizer.get("betas", [0.9, 0.999]))
    return [
        (0 <= cfg.seed < 2**32, "seed", "must be in [0, 2^32)", "seed=0"),
        (cfg.epochs <= MAX_EPOCHS, "epochs", f"is absurd (at most {MAX_EPOCHS})", "epochs=200"),
        (cfg.steps is None or cfg.steps <= MAX_STEPS, "steps", f"is absurd (at most {MAX_STEPS})", "steps=50000"),
        (cfg.dataset.name != "synthetic" or cfg.dataset.train_size * image_bytes <= MAX_SYNTHETIC_BYTES,
         "dataset.train_size", "synthetic images would not fit in 8 GiB", "dataset.train_size=50000"),
        (cfg.dataset.name != "synthetic" or cfg.dataset.test_size * image_bytes <= MAX_SYNTHETIC_BYTES,
         "dataset.test_size", "synthetic images would not fit in 8 GiB", "dataset.test_size=10000"),
        (0.0 <= optimizer.get("momentum", 0.0) < 1.0, "optimizer.momentum", "must be in [0, 1)",
         "optimizer.momentum=0.9"),
        (optimizer.get("weight_decay", 0.0) >= 0, "optimizer.weight_decay", "must be >= 0",
         "optimizer.weight_decay=5e-4"),
        (len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas), "optimizer.betas", "must be two values in [0, 1)",
         "optimizer.betas=[0.9,0.999]"),
        (optimizer.get("eps", 1.0) > 0, "optimizer.eps", "must be positive", "optimizer.eps=1e-8"),
        (optimizer.get("clip_grad_norm", 0.0) >= 0, "optimizer.clip_grad_norm", "must be >= 0 (0: no clipping)",
         "optimizer.clip_grad_norm=1.0"),
        (optimizer.get("clip_mode", "global") in CLIP_MODES, "optimizer.clip_mode", "must be global or per_tensor",
         "optimizer.clip_mode=per_tensor"),
    ]


def _show(cfg: Any, dotted: str) -> str:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return repr(value) if isinstance(value, str) else str(value)
