"""Assemble a run's parts from its config: data, model, starting weights, optimizer, method, task and the trainer
around them, in the order that makes the run a function of its seed (the model is built right after the data)."""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.batches import Data
from ..data.build import build_data
from ..errors import ConfigError
from ..loggers.build import build_loggers
from ..methods.base import Method, RunContext
from ..methods.build import build_method
from ..runs.distributed import Distributed
from ..runs.interrupt import StopSignals
from ..seeds import derive_seed
from ..sparsity.flops import TrainingFlops, layer_flops
from ..tasks.base import Task
from ..tasks.build import build_task
from ..tasks.checks import resolve_task
from ..times import parse_interval
from ..training.metrics import MetricsLog
from ..training.clipping import gradient_clipping
from ..training.optimizer import build_optimizer
from ..training.step import StepParts, TrainStep, choose_path
from ..training.trainer import Trainer, TrainerParts
from .drift import Drift, drift_enabled
from .finetune import Selection, select_trainable
from .init_from import load_init
from .models import build_model, fresh_weights, on_first_batch, prunable, starting_model, user_error
from .process import Process
from .teacher import load_teacher

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What the composition root drives and summarises."""

    data: Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: Method
    task: Task
    trainer: Trainer
    selection: Selection  # the parameters the optimizer trains (finetune.trainable and the L0-close layers)
    drift: Drift
    dense_flops: tuple[int, dict[str, int]]  # forward FLOPs per example of the dense model, in all and per layer


def assemble(cfg: DictConfig, config: dict, run_dir: Path, process: Process, stop: StopSignals,
             resuming: bool) -> Parts:
    """Every part of the run, the method set up; ``config`` (the resolved config) gets the task the data declares."""
    device, dist = process.device, process.dist
    data = build_data(cfg.dataset, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size, device=device,
                      seed=cfg.seed)
    task_name = resolve_task(cfg.task.name, data.task)
    config["task"]["name"] = task_name  # recorded resolved: a resume compares the task the data declares now
    model = build_model(cfg.model, data, task_name).to(device)
    init_masks = load_init(cfg.init_from, model, device, prunable(cfg)) if cfg.init_from and not resuming else None
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.rank > 0:  # same initialisation on every rank, own dropout draws
        torch.manual_seed(derive_seed("rank", cfg.seed, dist.rank))
    selection = select_trainable(cfg.finetune, model)
    optimizer = build_optimizer(cfg.optimizer, model, selection.names)
    drift = Drift(drift_enabled(cfg.finetune.drift, cfg.init_from) and dist.is_main, model, resuming)
    method = user_error(build_method, cfg.method, cfg.sparsity, start_masks=cfg.init_from is not None)
    data_parallel = _data_parallel(cfg, dist, method)
    step_dist = dist if data_parallel else Distributed()
    total_steps = cfg.steps or cfg.epochs * len(data.train)
    _warn_unreached_milestones(cfg.schedule, len(data.train), total_steps)
    step_path, why = choose_path(cfg.step_graph.value, device, step_dist, cfg.compile, optimizer,
                                 data.train.static_shapes)
    log.info("training step: %s (%s)", step_path.replace("_", " "), why)
    prepare = _channels_last if channels_last else _identity
    autocast = _autocast(cfg.precision.value, device)
    teacher = user_error(load_teacher, cfg.task.distill, data.in_shape, data.num_classes, device,
                         functools.partial(starting_model, cfg, data, task_name, device), task_name)
    if teacher is not None and channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    task = user_error(build_task, cfg.task, label_smoothing=cfg.label_smoothing, num_classes=data.num_classes,
                      prepare=prepare, teacher=teacher, data_task=data.task, data_metric=data.metric)
    example = data.example_batch(device)
    dense_flops = layer_flops(model, forward=on_first_batch(cfg.model, data, lambda net: task.forward(net, example)))
    train_step = TrainStep(
        StepParts(model=model, step_model=model,  # DDP and compile wrap it after the method's setup, below
                  optimizer=optimizer, method=method, task=task, make_batch=data.train.make, autocast=autocast,
                  dist=step_dist, clip=gradient_clipping(cfg.optimizer)),
        step_path,
    )
    trainer = Trainer(TrainerParts(
        config=config, run_dir=run_dir, model=model, optimizer=optimizer, method=method, data=data,
        train_step=train_step, task=task, autocast=autocast,
        schedule=OmegaConf.to_object(cfg.schedule),  # a plain dataclass: read every step, DictConfig is slow
        total_steps=total_steps, eval_every=parse_interval("eval_every", cfg.eval_every),
        checkpoint_every=parse_interval("checkpoint_every", cfg.checkpoint_every),
        metrics=_metrics(cfg, run_dir, total_steps, config, dist), flops=TrainingFlops(*dense_flops), dist=dist,
        log_every=parse_interval("log_every", cfg.log_every),
        keep_checkpoint_every=parse_interval("keep_checkpoint_every", cfg.keep_checkpoint_every),
        keep_checkpoints=cfg.keep_checkpoints, early_stop=OmegaConf.to_object(cfg.early_stop), stop=stop,
        masks_at=frozenset(cfg.masks_at),
    ))
    method.setup(RunContext(
        model=model, optimizer=optimizer, train_batches=data.train, loss_fn=task.train_loss, in_shape=data.in_shape,
        seed=cfg.seed, device=device, steps_per_epoch=len(data.train), total_steps=total_steps,
        lr_factor=trainer.lr_factor, run_dir=run_dir, log=trainer.log_event,
        fresh_weights=functools.partial(fresh_weights, cfg.model, data, task_name), config=config,
        num_classes=data.num_classes, init_masks=init_masks, example=example, dist=dist,
    ))
    _warn_no_mask_update(method, total_steps)
    train_step.reset()  # the method's setup may have changed the optimizer's param groups (mask scores)
    # wrapped after the method's setup, which may change which parameters need gradients (a learned mask's weights)
    step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if data_parallel else model
    train_step.p.step_model = torch.compile(step_model) if cfg.compile else step_model
    return Parts(data, model, optimizer, method, task, trainer, selection, drift, dense_flops)


def _data_parallel(cfg: DictConfig, dist: Distributed, method: Method) -> bool:
    """Whether the ranks train one model on shards of each batch (else each its own model on full batches)."""
    data_parallel = dist.enabled and method.data_parallel
    if data_parallel and cfg.batch_size % dist.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} is the global batch and must divide evenly over "
                          f"{dist.world_size} processes; e.g. batch_size={dist.world_size * 64}")
    if method.sparsity != cfg.sparsity:
        log.warning("method=%s ignores sparsity=%s: trained dense, recorded as sparsity 0", method.name, cfg.sparsity)
    return data_parallel


def _warn_no_mask_update(method: Method, total_steps: int) -> None:
    """One warning line when the method plans mask updates of which none comes in this run (it trains static)."""
    updates = method.mask_updates()
    if updates is not None and not updates.at:
        log.warning("method=%s makes no mask update in %d steps: %s; e.g. %s", method.name, total_steps,
                    updates.schedule, updates.fix)


def _warn_unreached_milestones(schedule: DictConfig, steps_per_epoch: int, total_steps: int) -> None:
    """One warning line when a multistep schedule's milestones lie past the end of training (it never decays)."""
    late = [m for m in schedule.milestones if round(m * steps_per_epoch) >= total_steps]
    if schedule.name == "multistep" and late:
        epochs = total_steps / steps_per_epoch
        log.warning("schedule.milestones=%s: %s lie past the run's %g epochs, where the learning rate never gets; "
                    "e.g. schedule.milestones=[%g,%g]", list(schedule.milestones), late, epochs,
                    round(epochs / 2, 1), round(epochs * 3 / 4, 1))


def _metrics(cfg: DictConfig, run_dir: Path, total_steps: int, config: dict, dist: Distributed) -> MetricsLog:
    """metrics.jsonl (rank 0 only), mirrored to the configured loggers."""
    names = [*cfg.logger, *(["tensorboard"] if cfg.tensorboard else [])]
    loggers = build_loggers(names, run_dir, total_steps, config, cfg.wandb) if dist.is_main else None
    return MetricsLog(run_dir / "metrics.jsonl", enabled=dist.is_main, mirror=loggers)


def _autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    if precision == "bf16":
        # no weight-cast cache: its tensors would outlive a graph capture
        return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
