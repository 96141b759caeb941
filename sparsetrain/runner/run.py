"""One run from a composed config: build data, model, optimizer and method, train every round, summarise."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError
from ..times import parse_interval
from ..data.batches import Data
from ..data.build import build_data
from ..loggers.build import build_loggers
from ..methods.base import Method, RunContext
from ..methods.build import build_method
from ..models.zoo import build_configured_model
from ..provenance import provenance
from ..runs.checkpoint import load_run_checkpoint
from ..runs.distributed import Distributed, close_distributed, init_distributed
from ..runs.files import STATUS_NAME, checkpoint_path, remove_hydra_only_dir, remove_temporaries
from ..runs.lock import first_process, run_dir_lock
from ..runs.record import read_run_record, write_run_record
from ..seeds import derive_seed
from .drift import drift_enabled, drift_rows, format_drift, load_start, save_start, snapshot
from .extend import extend
from .finetune import finetune_summary, optimized_names, select_trainable
from .init_from import load_init
from ..runs.interrupt import StopSignals
from ..training.metrics import MetricsLog, read_summary, write_summary
from ..training.optimizer import build_optimizer
from ..runs.resume import clear_attempt, refuse_if_changed, refuse_to_overwrite
from ..training.rounds import run_rounds
from ..training.step import StepParts, TrainStep, choose_path
from ..report.rounds import write_round_table
from ..sparsity.flops import TrainingFlops, inference_flops, layer_flops
from .teacher import load_teacher
from ..training.trainer import Trainer, TrainerParts
from ..tasks.build import build_task
from ..tasks.checks import resolve_task

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], stop: StopSignals | None = None) -> dict:
    """Train (or resume) the run in ``run_dir`` and return its summary (also written to summary.json).

    The run holds the directory's lock throughout; temporary files of a killed write are removed, and the
    outputs of an earlier attempt that never checkpointed are refused (no ``resume``) or cleared. A refusal
    (ConfigError) leaves no directory that holds nothing but the lock (and Hydra's own files)."""
    run_dir = Path(run_dir)
    writer = first_process()
    with run_dir_lock(run_dir) if writer else contextlib.nullcontext():
        try:
            if writer:
                remove_temporaries(run_dir)
                if cfg.resume is None:
                    refuse_to_overwrite(run_dir)
                elif not checkpoint_path(run_dir).is_file():
                    clear_attempt(run_dir)
                (run_dir / STATUS_NAME).unlink(missing_ok=True)  # a new attempt: an earlier failure no longer stands
            summary = _run(cfg, run_dir, overrides, stop or StopSignals())
            close_distributed(finished=True)
            return summary
        except ConfigError:
            if writer:
                remove_hydra_only_dir(run_dir)  # ours to remove: this process holds the lock
            raise
        finally:
            close_distributed()


def _run(cfg: DictConfig, run_dir: Path, overrides: list[str], stop: StopSignals) -> dict:
    cfg = extend(cfg)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    resuming = checkpoint_path(run_dir).is_file()
    summary_path = run_dir / "summary.json"
    if resuming and summary_path.is_file():
        refuse_if_changed(read_run_record(run_dir)["config"], config, run_dir)
        log.info("%s has finished already: %s", run_dir, summary_path)
        return read_summary(summary_path)
    device = _resolve_device(cfg.device.value)
    dist = init_distributed(device.type)
    if dist.enabled:
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_main:
            logging.getLogger("sparsetrain").setLevel(logging.WARNING)
    _configure_determinism(cfg.deterministic, device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or cpu_threads())
    _seed_everything(cfg.seed)

    data = build_data(
        cfg.dataset, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size, device=device, seed=cfg.seed
    )
    task_name = resolve_task(cfg.task.name, data.task)
    config["task"]["name"] = task_name  # recorded resolved: a resume compares the task the data declares now
    model = _user_error(_build_model, cfg.model, data, task_name).to(device)
    init_masks = load_init(cfg.init_from, model, device, _prunable(cfg)) if cfg.init_from and not resuming else None
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.rank > 0:  # same initialisation on every rank, own dropout draws
        torch.manual_seed(derive_seed("rank", cfg.seed, dist.rank))
    selection = select_trainable(cfg.finetune, model)
    optimizer = build_optimizer(cfg.optimizer, model, selection.names)
    drift = drift_enabled(cfg.finetune.drift, cfg.init_from) and dist.is_main
    start = snapshot(model) if drift and not resuming else None  # before the method's setup (masks)
    method = _user_error(build_method, cfg.method, cfg.sparsity, start_masks=cfg.init_from is not None)
    data_parallel = dist.enabled and method.data_parallel  # else each rank trains its own model on full batches
    if data_parallel and cfg.batch_size % dist.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} is the global batch and must divide evenly over "
                          f"{dist.world_size} processes; e.g. batch_size={dist.world_size * 64}")
    step_dist = dist if data_parallel else Distributed()
    if method.sparsity != cfg.sparsity:
        log.warning("method=%s ignores sparsity=%s: trained dense, recorded as sparsity 0", method.name, cfg.sparsity)
    total_steps = cfg.steps or cfg.epochs * len(data.train)
    step_path, why = choose_path(cfg.step_graph.value, device, step_dist, cfg.compile, optimizer,
                                 data.train.static_shapes)
    log.info("training step: %s (%s)", step_path.replace("_", " "), why)
    logger_names = [*cfg.logger, *(["tensorboard"] if cfg.tensorboard else [])]
    loggers = build_loggers(logger_names, run_dir, total_steps, config, cfg.wandb) if dist.is_main else None
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=dist.is_main, mirror=loggers)
    prepare = _channels_last if channels_last else _identity
    autocast = _autocast(cfg.precision.value, device)
    teacher = _user_error(load_teacher, cfg.task.distill, data.in_shape, data.num_classes, device,
                          functools.partial(_starting_model, cfg, data, task_name, device), task_name)
    if teacher is not None and channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    task = _user_error(build_task, cfg.task, label_smoothing=cfg.label_smoothing, num_classes=data.num_classes,
                       prepare=prepare, teacher=teacher, data_task=data.task, data_metric=data.metric)
    example = data.example_batch(device)
    dense_flops = layer_flops(model, forward=lambda net: task.forward(net, example))
    train_step = TrainStep(
        StepParts(model=model, step_model=model,  # DDP and compile wrap it after the method's setup, below
                  optimizer=optimizer, method=method, task=task, make_batch=data.train.make, autocast=autocast,
                  dist=step_dist),
        step_path,
    )
    parts = TrainerParts(
        config=config,
        run_dir=run_dir,
        model=model,
        optimizer=optimizer,
        method=method,
        data=data,
        train_step=train_step,
        task=task,
        autocast=autocast,
        schedule=OmegaConf.to_object(cfg.schedule),  # a plain dataclass: read every step, DictConfig is slow
        total_steps=total_steps,
        eval_every=parse_interval("eval_every", cfg.eval_every),
        checkpoint_every=parse_interval("checkpoint_every", cfg.checkpoint_every),
        metrics=metrics,
        flops=TrainingFlops(*dense_flops),
        dist=dist,
        log_every=parse_interval("log_every", cfg.log_every),
        keep_checkpoint_every=parse_interval("keep_checkpoint_every", cfg.keep_checkpoint_every),
        stop=stop,
    )
    trainer = Trainer(parts)
    method.setup(
        RunContext(
            model=model, optimizer=optimizer, train_batches=data.train, loss_fn=task.train_loss, in_shape=data.in_shape,
            sparsity=cfg.sparsity,
            seed=cfg.seed, device=device, steps_per_epoch=len(data.train), total_steps=total_steps,
            lr_factor=trainer.lr_factor, run_dir=run_dir, log=trainer.log_event,
            fresh_weights=functools.partial(_fresh_weights, cfg.model, data, task_name), config=config,
            num_classes=data.num_classes, init_masks=init_masks, example=example, dist=dist,
        )
    )
    train_step.reset()  # the method's setup may have changed the optimizer's param groups (mask scores)
    # wrapped after the method's setup, which may change which parameters need gradients (a learned mask's weights)
    step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if data_parallel else model
    train_step.p.step_model = torch.compile(step_model) if cfg.compile else step_model
    if resuming:
        state = load_run_checkpoint(checkpoint_path(run_dir), device)
        refuse_if_changed(_with_resolved_task(state["config"], data.task), config, run_dir)
        try:
            trainer.load(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"resume: {checkpoint_path(run_dir)} does not fit this run ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:120]}); e.g. resume=<an intact run directory>") from None
        if drift:
            start = load_start(run_dir, model, device)
        pos = trainer.pos
        log.info("resuming %s at round %d epoch %d batch %d (step %d)", run_dir, pos.round, pos.epoch, pos.batch,
                 pos.step)
    elif dist.is_main:
        write_run_record(run_dir, overrides, config)
        if start is not None:
            save_start(run_dir, start)  # before the first checkpoint: a resumed run compares with the same start
    _describe(cfg, device, model, data, method, total_steps)
    run_rounds(trainer)
    trainer.write_final_masks()
    summary = _summary(cfg, run_dir, trainer, model, data, device, dense_flops)
    trained = optimized_names(model, optimizer)
    if selection.names is not None:
        summary["finetune"] = finetune_summary(model, trained, selection, cfg.finetune.rank_from)
    if start is not None:
        summary["drift"] = drift_rows(model, start, set(trained))
        log.info("distance from the starting weights:\n%s", format_drift(summary["drift"]))
    if dist.enabled:
        summary["distributed"] = _rank_checksums(dist, model, method)
    if not dist.is_main:
        return summary
    if method.rounds > 1:
        summary["round_table"] = write_round_table(run_dir, method.table_name, trainer.results, _title(summary),
                                                     method.name)
    write_summary(summary_path, summary)
    loggers.finish(summary)
    log.info("done: test %s, %s", task.describe(summary["final"]["test"]), run_dir / "summary.json")
    return summary


def _summary(cfg: DictConfig, run_dir: Path, trainer: Trainer, model: nn.Module, data: Data,
             device: torch.device, dense_flops: tuple[int, dict[str, int]]) -> dict:
    last = trainer.results[-1]
    method = trainer.p.method
    report = trainer.mask_report()
    total_dense, per_layer = dense_flops
    summary = {
        "run_dir": str(run_dir),
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "method": cfg.method.name,
        "sparsity": trainer.p.method.sparsity,
        "seed": cfg.seed,
        "task": trainer.p.task.name,  # task.name resolved (auto: the data's)
        "metric": trainer.p.task.best_metric,  # the headline metric ("best", sweep tables)
        "final": last["final"],
        "best": last["best"],
        "early_stop": last["early_stop"],
        "best_checkpoint": last.get("best_checkpoint"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "in_shape": list(data.in_shape),
        "num_classes": data.num_classes,
        "preprocess": data.preprocess,
        "flops": {
            "inference_dense": total_dense,
            "inference_sparse": inference_flops(total_dense, per_layer, method.densities() or {}),
            "training": trainer.p.flops.total,
            "counting": "forward FLOPs per example (multiply-add = 2); training FLOPs of the whole run as in the "
                        "RigL paper, Appendix H",
        },
        "steps": trainer.p.total_steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "epochs": trainer.epochs,
        "wall_time_s": round(trainer.elapsed(), 3),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **provenance(),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
    if report is not None:
        summary["masks"] = {
            **report,
            "unmasked_parameters": sum(p.numel() for p in model.parameters()) - sum(
                layer["numel"] for layer in report["layers"].values()),
        }
    dynamics = method.summary()
    if dynamics:
        summary["dynamics"] = dynamics
    if method.rounds > 1:
        summary["rounds"] = trainer.results
    return summary


def _title(summary: dict) -> str:
    """``lenet300_100 on mnist, lth, 2 epochs (44 steps) per round``: what a plot of the run shows."""
    per_round = " per round" if summary.get("rounds") else ""
    return (f"{summary['model']} on {summary['dataset']}, {summary['method']}, {summary['epochs']} epochs "
            f"({summary['steps']} steps){per_round}")


def _describe(cfg: DictConfig, device: torch.device, model: nn.Module, data: Data, method: Method,
              total_steps: int) -> None:
    params = sum(p.numel() for p in model.parameters())
    log.info(
        "%s on %s (%d train, %s val, %d test samples, %d classes) with method %s on %s: %d parameters, "
        "%d steps of batch %d", cfg.model.name, cfg.dataset.name, data.train.num_samples,
        data.val.num_samples if data.val is not None else 0, data.test.num_samples, data.num_classes,
        method.name, device, params, total_steps, cfg.batch_size,
    )


def _rank_checksums(dist: Distributed, model: nn.Module, method: Method) -> dict:
    """Per-rank checksums of the final weights and masks: equal on every rank when the ranks stayed in sync."""
    with torch.no_grad():
        weights = float(sum(p.double().abs().sum() for p in model.parameters()))
        masks = method.masks() or {}
        positions = int(sum(m.flatten().nonzero().sum() for m in masks.values())) if masks else 0
    return {"world_size": dist.world_size, "weight_checksums": dist.gather(weights),
            "mask_checksums": dist.gather(positions)}


def _fresh_weights(model_cfg: DictConfig, data: Data, task: str, seed: int) -> dict:
    """A new random initialisation of the model's architecture from ``seed`` (a pretrained model's too), without
    touching the global RNG: what a re-initialising control (LTH ``random_reinit``) trains."""
    return _seeded_model(model_cfg, data, task, seed, pretrained=False).state_dict()


def _starting_model(cfg: DictConfig, data: Data, task: str, device: torch.device) -> nn.Module:
    """A second copy of the model as this run starts it (built under ``seed``, then ``init_from``), resumed or
    not; the global RNG is untouched."""
    model = _seeded_model(cfg.model, data, task, cfg.seed).to(device)
    if cfg.init_from:
        load_init(cfg.init_from, model, device, _prunable(cfg))
    return model


def _prunable(cfg: DictConfig) -> list[str]:
    """The model's default prunable-weight patterns (``model.prunable``; empty: every linear and conv weight)."""
    return list(cfg.model.get("prunable") or [])


def _seeded_model(model_cfg: DictConfig, data: Data, task: str, seed: int, pretrained: bool = True) -> nn.Module:
    """The model built as ``run`` builds it after seeding with ``seed``, in a forked RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_model(model_cfg, data, task, pretrained)


def _build_model(model_cfg: DictConfig, data: Data, task: str, pretrained: bool = True) -> nn.Module:
    return build_configured_model(OmegaConf.to_container(model_cfg, resolve=True), data.in_shape, data.num_classes,
                                  task, pretrained)


def _with_resolved_task(config: dict, data_task: str | None) -> dict:
    """A recorded config with its task name resolved as this run resolves it (it recorded ``auto``)."""
    task = config.get("task")
    if not isinstance(task, dict) or "name" not in task:
        return config
    return {**config, "task": {**task, "name": resolve_task(task["name"], data_task)}}


def _user_error(build: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call a builder whose ValueErrors are bad config values, and report them as such."""
    try:
        return build(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def cpu_threads() -> int:
    """Torch threads for a CPU run: OMP_NUM_THREADS when set, else the CPUs this process may run on."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; e.g. device=cpu or device=auto")
    return torch.device(name)


def _configure_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    if precision == "bf16":
        # no weight-cast cache: its tensors would outlive a graph capture
        return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
