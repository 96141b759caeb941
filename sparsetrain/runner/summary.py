"""What a finished run reports: summary.json (final and best metrics, masks, FLOPs, provenance, the optional parts'
reports), the round table of a multi-round method, and the run's description at the start."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from ..data.batches import Data
from ..methods.base import Method
from ..provenance import provenance
from ..report.rounds import write_round_table
from ..runs.distributed import Distributed
from ..sparsity.flops import inference_flops
from ..training.metrics import write_summary
from ..training.trainer import Trainer
from .assemble import Parts
from .finetune import finetune_summary, optimized_names
from .process import Process

log = logging.getLogger(__name__)


def summarise(cfg: DictConfig, run_dir: Path, parts: Parts, process: Process, warnings: list[str]) -> dict:
    """The run's summary, with each optional part's report and the ``warnings`` its start gave; rank 0 writes it
    (and the round table)."""
    model, method, trainer, dist = parts.model, parts.method, parts.trainer, process.dist
    summary = _summary(cfg, run_dir, trainer, model, parts.data, process.device, parts.dense_flops)
    summary["warnings"] = warnings
    trained = optimized_names(model, parts.optimizer)
    if parts.selection.names is not None:
        summary["finetune"] = finetune_summary(model, trained, parts.selection, cfg.finetune.rank_from)
    parts.drift.summarise(summary, model, set(trained))
    if dist.enabled:
        summary["distributed"] = _rank_checksums(dist, model, method)
    if not dist.is_main:
        return summary
    if method.rounds > 1:
        summary["round_table"] = write_round_table(run_dir, method.table_name, trainer.results, _title(summary),
                                                   method.name)
    write_summary(run_dir / "summary.json", summary)
    trainer.p.metrics.mirror.finish(summary)
    log.info("done: test %s, %s", parts.task.describe(summary["final"]["test"]), run_dir / "summary.json")
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
        "stopped_early": last.get("stopped_early"),  # early_stop.patience ended training: step, epoch, reason
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
    if trainer.extended:
        summary["extended"] = trainer.extended
    return summary


def _title(summary: dict) -> str:
    """``lenet300_100 on mnist, lth, 2 epochs (44 steps) per round``: what a plot of the run shows."""
    per_round = " per round" if summary.get("rounds") else ""
    return (f"{summary['model']} on {summary['dataset']}, {summary['method']}, {summary['epochs']} epochs "
            f"({summary['steps']} steps){per_round}")


def describe(cfg: DictConfig, device: torch.device, model: nn.Module, data: Data, method: Method) -> None:
    """The run at its start in one line: model, data, method, device and the steps planned over all rounds."""
    params = sum(p.numel() for p in model.parameters())
    lengths = [method.round_steps(i) - method.round_start_step(i) for i in range(method.rounds)]
    log.info(
        "%s on %s (%d train, %s val, %d test samples, %d classes) with method %s on %s: %d parameters, "
        "%d steps of batch %d%s", cfg.model.name, cfg.dataset.name, data.train.num_samples,
        data.val.num_samples if data.val is not None else 0, data.test.num_samples, data.num_classes,
        method.name, _device_text(device), params, sum(lengths), data.train.batch_size, _rounds_text(cfg, method, lengths),
    )


def _rounds_text(cfg: DictConfig, method: Method, lengths: list[int]) -> str:
    """`` in 8 rounds (7 x 440 + 1760 steps; set by epochs, method.rounds)`` for a multi-round method, else empty."""
    if len(lengths) == 1:
        return ""
    runs = [(length, len(list(group))) for length, group in itertools.groupby(lengths)]
    parts = " + ".join(f"{count} x {length}" if count > 1 else str(length) for length, count in runs)
    keys = ", ".join(("steps" if cfg.steps else "epochs", *method.round_keys))
    return f" in {len(lengths)} rounds ({parts} steps; set by {keys})"


def _device_text(device: torch.device) -> str:
    """``cpu (2 threads)``; another device as torch names it (``cuda:0``)."""
    if device.type != "cpu":
        return str(device)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def _rank_checksums(dist: Distributed, model: nn.Module, method: Method) -> dict:
    """Per-rank checksums of the final weights and masks: equal on every rank when the ranks stayed in sync."""
    with torch.no_grad():
        weights = float(sum(p.double().abs().sum() for p in model.parameters()))
        masks = method.masks() or {}
        positions = int(sum(m.flatten().nonzero().sum() for m in masks.values())) if masks else 0
    return {"world_size": dist.world_size, "weight_checksums": dist.gather(weights),
            "mask_checksums": dist.gather(positions)}
