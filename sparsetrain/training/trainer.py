"""The training loop: steps, evaluation, logging and checkpoint cadence, with method hooks.

The loop knows no method by name: after ``backward`` it asks the method whether to take the optimizer step,
and tells it when a step or an epoch ended. Position (round, epoch, batch, step), optimizer, method state,
RNG states and the metrics-file offset go into every checkpoint, so a run killed anywhere resumes to the
same bits (on CPU). The batch sequence is a pure function of (seed, epoch, batch), so it needs no state.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError
from ..times import Interval
from .schemas import EarlyStopConfig, ScheduleConfig
from ..data.batches import BatchPlan
from ..methods.base import Method
from ..runs.checkpoint import capture_rng, restore_rng, save_checkpoint
from ..runs.distributed import Distributed
from ..runs.files import atomic_write, checkpoint_path
from ..sparsity.flops import TrainingFlops
from ..sparsity.masks import format_report, mask_report, save_masks
from ..tasks.base import Task
from .best import best_path, save_best, selection_split
from ..errors import Diverged
from ..runs.interrupt import Interrupted, StopSignals
from .metrics import MetricsLog, write_summary
from .progress import LossWindow, Pace, format_duration, progress_line
from .schedule import lr_factor
from .step import TrainStep

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
DIVERGED_LOSS = 1e6  # an epoch's mean training loss above this counts as diverged (cross-entropy starts near ln C)


@dataclass
class Position:
    """Where training stands: ``step`` optimizer steps done in round ``round``; ``batch`` of ``epoch`` is next."""

    round: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    started: bool = False  # the round's start_round has run


@dataclass
class TrainerParts:
    """Everything the loop drives, built by ``runner.assemble``."""

    config: dict  # resolved config, stored in every checkpoint
    run_dir: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: Method
    data: Any  # sparsetrain.data.Data
    train_step: TrainStep  # one optimizer step, eager or from captured graphs
    task: Task  # evaluation metrics and which one is "best"
    autocast: Callable[[], Any]
    schedule: ScheduleConfig  # a plain dataclass, not a DictConfig: read at every step
    total_steps: int
    eval_every: Interval
    checkpoint_every: Interval
    metrics: MetricsLog
    flops: TrainingFlops  # training FLOPs of the run so far (RigL paper, Appendix H)
    dist: Distributed  # this process's rank; one process by default
    log_every: Interval  # running train loss, lr and sparsity: bar postfix, log line and a train_step event
    keep_checkpoint_every: Interval  # checkpoints also kept as checkpoints/step_*.pt
    keep_checkpoints: int | None  # the newest kept checkpoints left on disk (None: all)
    early_stop: EarlyStopConfig  # patience over evaluations of the headline metric (val split, else test)
    stop: StopSignals = field(default_factory=StopSignals)  # a preemption signal: checkpoint at the next step
    masks_at: frozenset[int] = frozenset()  # the steps after which the masks are also saved (masks/step_*.safetensors)


class Trainer:
    def __init__(self, parts: TrainerParts) -> None:
        self.p = parts
        self.pos = Position()
        self.steps_per_epoch = len(parts.data.train)
        self.epochs = math.ceil(parts.total_steps / self.steps_per_epoch)
        self.train_step = parts.train_step
        self.loss_count = 0
        self.results: list[dict] = []  # one entry per finished round
        self.round_result = self._empty_round_result()
        self.elapsed_before = 0.0
        self.clock_start = time.perf_counter()
        self.finished = False
        self.watch = _fresh_watch()  # early stopping: the headline metric's best and the evaluations since
        self.trained_to: dict | None = None  # where the last round's training ended: a longer run continues there
        self.extended: list[dict] = []  # each extension to a longer run: the steps done then and the new length
        self.window = LossWindow()  # the loss accumulator at the last logging point
        self.pace = Pace()
        self.tty = sys.stdout.isatty()

    # ---- the loop -------------------------------------------------------------------------------------
    def begin_round(self, start_step: int) -> None:
        """Start the round at ``start_step`` (its data order and learning rate from there; a rewound lottery
        ticket starts at the rewind step), with fresh optimizer state after the first round."""
        if self.pos.round > 0:
            self.p.optimizer.state.clear()
            self.train_step.reset()
        epoch, batch = divmod(start_step, self.steps_per_epoch)
        self.pos = Position(round=self.pos.round, epoch=epoch, batch=batch, step=start_step, started=True)
        self.watch = _fresh_watch()
        self.p.flops.begin_round()

    def write_round_outputs(self) -> None:
        """``round_XX/``: the round's results, metrics, trained weights and masks (for multi-round methods)."""
        p, index = self.p, self.pos.round
        round_dir = p.run_dir / f"round_{index:02d}"
        report = self.mask_report()
        if report is not None:
            self.round_result["weights_remaining"] = 1.0 - report["sparsity"]
        if not p.dist.is_main:
            return
        if report is not None:
            save_masks(round_dir / "masks.safetensors", p.method.masks())
        save_checkpoint(round_dir / "model.pt", p.model.state_dict())
        events = [line for line in p.metrics.lines() if json.loads(line)["round"] == index]
        atomic_write(round_dir / "metrics.jsonl", lambda handle: handle.write("".join(events).encode()))
        write_summary(round_dir / "summary.json", {"round": index, **self.round_result})

    def train_round(self) -> None:
        """Train from the current position to the end of the round, then evaluate."""
        pos, train = self.pos, self.p.data.train
        end = self.round_steps()
        if pos.step >= end:  # a round without training steps (one-shot pruning): its final evaluation only
            self._evaluate(final=True)
        while pos.step < end and self.stopped_early is None:
            bar = tqdm(
                total=self.steps_per_epoch, initial=pos.batch, desc=self._bar_label(), leave=False,
                disable=not self.tty, dynamic_ncols=True,
            )
            epoch_start = time.perf_counter()
            self.pace.restart(pos.step)
            for plan in train.plans(pos.epoch, pos.batch):
                self._step(plan)
                bar.update(1)
                if pos.step in self.p.masks_at:
                    self._save_step_masks()
                if self.p.log_every.due(step=pos.step, epoch_end=None):
                    self._log_progress(bar)
                if pos.step == end:
                    break
                if self.p.eval_every.due(step=pos.step, epoch_end=None):
                    self._evaluate()
                    if self.stopped_early is not None:
                        break
                if self.p.checkpoint_every.due(step=pos.step, epoch_end=None):
                    self.save()
                if self.p.keep_checkpoint_every.due(step=pos.step, epoch_end=None):
                    self.save(self._kept_path())
                self._stop_if_requested()
            bar.close()
            pos.epoch += 1
            pos.batch = 0
            final = pos.step == end or self.stopped_early is not None
            self._end_epoch(final=final, seconds=time.perf_counter() - epoch_start)
        self.trained_to = {"position": asdict(pos), "metrics_offset": self.p.metrics.offset()}

    @property
    def stopped_early(self) -> dict | None:
        """The early stop of the current round (or of the last one, once the run finished): step, epoch, reason."""
        return (self.results[-1] if self.finished else self.round_result).get("stopped_early")

    def reopen(self) -> None:
        """Continue a finished run's last round (extended to more steps) where its training ended, before the round's
        closing work (the density table, ``end_round``, the last checkpoint)."""
        self.round_result = {**self.results.pop(), "final": {}}
        self.pos = Position(**self.trained_to["position"])
        self.finished = False
        if self.p.dist.is_main:
            self.p.metrics.truncate(self.trained_to["metrics_offset"])

    def end_round(self) -> None:
        """Record the round's results and move to the next round (or finish), then checkpoint."""
        p = self.p
        if p.dist.enabled and not p.method.data_parallel and not p.method.same_model_on_every_rank(self.pos.round):
            p.flops.add_other_ranks(p.dist.gather(p.flops.round_total()))  # every rank's own model cost FLOPs
        self.results.append(self.round_result)
        self.round_result = self._empty_round_result()
        self.pos = Position(round=self.pos.round + 1)
        self.finished = self.pos.round == self.p.method.rounds
        self.save()

    def write_final_masks(self) -> None:
        """``masks/final.safetensors`` of a finished run (again on a resume that finds the run finished, so a kill
        between the last checkpoint and this file loses nothing)."""
        masks = self.p.method.masks()
        if self.finished and masks is not None and self.p.dist.is_main:
            save_masks(self.p.run_dir / "masks" / "final.safetensors", masks)

    def mask_report(self) -> dict | None:
        """Realised per-layer and global sparsity of the method's masks (None for a dense model)."""
        method = self.p.method
        masks = method.masks()
        if masks is None:
            return None
        unmasked = {name: list(p.shape) for name, p in self.p.model.named_parameters()
                    if p.dim() > 1 and name not in masks}
        return mask_report(masks, method.densities(), method.fixed_layers(), unmasked)

    def describe_masks(self, when: str = "start") -> None:
        """Print the per-layer density table (``when``: the start or the end of the round) and log it as a
        ``density`` event (global sparsity and each layer's density)."""
        report = self.mask_report()
        if report is None:
            return
        log.info("masks at the %s of round %d:\n%s", when, self.pos.round, format_report(report))
        layers = {name: layer["density"] for name, layer in report["layers"].items()}
        self.log_event({"event": "density", "when": when, "sparsity": report["sparsity"], **layers})

    def _sparsity(self) -> float:
        report = self.mask_report()
        return 0.0 if report is None else report["sparsity"]

    def _log_progress(self, bar: tqdm) -> None:
        """Read the loss accumulator (the only host read at a logging point) and report the running loss."""
        pos = self.pos
        loss_sum = float(self.p.dist.mean(self.train_step.loss_sum.clone()))
        loss = self.window.mean_since(loss_sum, self.loss_count)
        lr, sparsity = self.train_step.lr, self._sparsity()
        self.log_event({"event": "train_step", "loss": loss, "lr": lr, "sparsity": sparsity})
        rate = self.pace.rate(pos.step)
        if self.tty:
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.4g}", sparsity=f"{sparsity:.4f}", refresh=False)
        else:
            log.info(progress_line(self._bar_label(), pos.step, self.round_steps(), loss, lr, sparsity, rate,
                                   self.p.data.train.batch_size))

    def _step(self, plan: BatchPlan) -> None:
        p, step = self.p, self.pos.step
        self.train_step.set_lr_factor(p.method.schedule_factor(self.pos.round, step, self.lr_factor(step)))
        try:
            self.train_step(plan, step, self._advance)
        except (RuntimeError, ValueError):  # e.g. a method's top-k over NaN scores
            if not self._weights_finite():
                self._diverged(f"the weights are not finite at step {step}")
            raise
        p.flops.add_steps(1, p.data.train.batch_size, p.method.densities(),  # the global batch, every rank's share
                          dense_backward=p.method.dense_backward(step))
        self.loss_count += 1

    def _stop_if_requested(self) -> None:
        """A stop signal arrived (``p.stop``): checkpoint at this step boundary and raise ``Interrupted``."""
        if self.p.stop.requested is not None:
            self.save()
            raise Interrupted(self.p.stop.requested, saved=True)

    def _advance(self) -> None:
        self.pos.batch += 1
        self.pos.step += 1  # events the method logs from here are stamped with the steps done

    def lr_factor(self, step: int) -> float:
        """The configured schedule's learning-rate factor at ``step`` of a round."""
        return lr_factor(self.p.schedule, step, self.round_steps(), self.steps_per_epoch)

    def round_steps(self) -> int:
        """Optimizer steps of the current round (the run's length unless the method's rounds differ)."""
        return self.p.method.round_steps(self.pos.round)

    def _end_epoch(self, final: bool, seconds: float) -> None:
        pos = self.pos
        loss_sum = self.train_step.loss_sum
        train_loss = float(self.p.dist.mean(loss_sum)) / max(self.loss_count, 1)
        self.log_event({"event": "train", "loss": train_loss, "lr": self.train_step.lr})
        loss_sum.zero_()
        self.loss_count = 0
        self.window = LossWindow()
        if not math.isfinite(train_loss) or train_loss > DIVERGED_LOSS:
            self._diverged(f"train loss is {train_loss:.4g} in epoch {pos.epoch} (step {pos.step})")
        epoch_line = f"train loss {train_loss:.4f}, epoch time {format_duration(seconds)}"
        evaluated = self.stopped_early is not None  # the evaluation that stopped training, at this step
        if (final and not evaluated) or self.p.eval_every.due(step=pos.step, epoch_end=pos.epoch):
            self._evaluate(final=final, epoch_line=epoch_line)
        else:
            log.info("round %d epoch %d step %d: %s", pos.round, pos.epoch, pos.step, epoch_line)
        self.p.method.on_epoch_end(pos.epoch)  # after the evaluation: an epoch-end mask update follows it
        if not final and self.p.checkpoint_every.due(step=pos.step, epoch_end=pos.epoch):
            self.save()
        if self.p.keep_checkpoint_every.due(step=pos.step, epoch_end=pos.epoch):
            self.save(self._kept_path())

    # ---- evaluation and metrics ----------------------------------------------------------------------
    def _evaluate(self, final: bool = False, epoch_line: str | None = None) -> None:
        data, result = self.p.data, self.round_result
        described = [] if epoch_line is None else [epoch_line]
        selection, evaluated = selection_split(data.val is not None), {}
        for split, batches in (("val", data.val), ("test", data.test)):
            if batches is None:
                continue
            scores = self.p.task.evaluate(self.p.model, batches, self.p.autocast)
            for suffix, variant in (data.test_variants.items() if split == "test" else ()):  # e.g. MNLI mismatched
                scores.update({f"{name}_{suffix}": value for name, value in
                               self.p.task.evaluate(self.p.model, variant, self.p.autocast).items()})
            self.log_event({"event": "eval", "split": split, **scores})
            described.append(f"{split} {self.p.task.describe(scores)}")
            stamp = {"step": self.pos.step, "epoch": self.pos.epoch}
            best = result["best"].get(split)
            if best is None or self.p.task.better(scores, best):
                result["best"][split] = {**scores, **stamp}
            if split == "val" and (result["early_stop"] is None or scores["loss"] < result["early_stop"]["loss"]):
                result["early_stop"] = {**scores, **stamp}
            evaluated[split] = scores
            if split == selection:
                self._keep_if_best(split, scores, stamp)
        best = result["best_checkpoint"]
        if selection == "val" and "test" in evaluated and best is not None and best["step"] == self.pos.step:
            best["test"] = evaluated["test"]  # the test split scored by the best checkpoint (chosen on val)
        log.info("round %d epoch %d step %d: %s", self.pos.round, self.pos.epoch, self.pos.step, ", ".join(described))
        self._watch(selection, evaluated[selection])
        if final or self.stopped_early is not None:
            result["final"] = evaluated

    def _watch(self, split: str, scores: dict) -> None:
        """Early stopping: count the evaluations since the headline metric last improved by more than ``min_delta``
        (only those where the method may stop); after ``patience`` of them, training stops at this step."""
        patience, task, watch = self.p.early_stop.patience, self.p.task, self.watch
        if not patience or not self.p.method.may_stop(self.pos.step):
            return
        value = scores[task.best_metric]
        if watch["best"] is None or (value - watch["best"] if task.higher_is_better else watch["best"] - value) \
                > self.p.early_stop.min_delta:
            self.watch = {"best": value, "step": self.pos.step, "waited": 0}
            return
        watch["waited"] += 1
        if watch["waited"] < patience:
            return
        reason = (f"{split} {task.best_metric} has not improved on {watch['best']:.4g} (step {watch['step']}) "
                  f"for {patience} evaluations (early_stop.patience={patience})")
        self.round_result["stopped_early"] = {"step": self.pos.step, "epoch": self.pos.epoch, "reason": reason}
        log.info("stopped early at step %d: %s", self.pos.step, reason)

    def _keep_if_best(self, split: str, scores: dict, stamp: dict) -> None:
        """Write the best checkpoint when ``scores`` beat the round's best so far (a tie keeps the earlier one)."""
        task, best = self.p.task, self.round_result.get("best_checkpoint")
        if best is not None and not task.better(scores, best["scores"]):
            return
        self.round_result["best_checkpoint"] = {"split": split, "metric": task.best_metric,
                                                "value": scores[task.best_metric], "scores": scores, **stamp}
        if self.p.dist.is_main:
            path = best_path(self.p.run_dir, self.pos.round, self.p.method.rounds)
            save_best(path, self.p.model.state_dict(), self.p.method.masks(), split, task.best_metric, scores,
                      {"round": self.pos.round, **stamp})

    def log_event(self, event: dict) -> None:
        """Append ``event`` to metrics.jsonl, stamped with the position and the wall time."""
        pos = self.pos
        self.p.metrics(
            {**event, "round": pos.round, "epoch": pos.epoch, "step": pos.step, "time": round(self.elapsed(), 3)}
        )

    def _bar_label(self) -> str:
        rounds = self.p.method.rounds
        prefix = f"round {self.pos.round + 1}/{rounds} " if rounds > 1 else ""
        return f"{prefix}epoch {self.pos.epoch + 1}/{self.epochs}"

    @staticmethod
    def _empty_round_result() -> dict:
        return {"final": {}, "best": {}, "early_stop": None, "best_checkpoint": None, "stopped_early": None}

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.clock_start

    def _weights_finite(self) -> bool:
        """One host read: whether every weight, every tensor the optimizer trains besides them (a method's mask
        scores) and the loss accumulator are finite (at checkpoints and failures)."""
        trained = (param for group in self.p.optimizer.param_groups for param in group["params"])
        tensors = {id(t): t for t in (*self.p.model.parameters(), *trained, self.train_step.loss_sum)}  # each once
        return bool(torch.stack([t.detach().isfinite().all() for t in tensors.values()]).all())

    def _diverged(self, what: str) -> None:
        raise Diverged(f"training diverged in round {self.pos.round}: {what}; lower the learning rate, e.g. "
                       "optimizer.lr=0.01")

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _kept_path(self) -> Path:
        prefix = f"round_{self.pos.round:02d}_" if self.p.method.rounds > 1 else ""
        return self.p.run_dir / "checkpoints" / f"{prefix}step_{self.pos.step:07d}.pt"

    def _drop_old_kept(self, folder: Path) -> None:
        """With ``keep_checkpoints``, delete all but the newest of the kept checkpoints (after the newest was written)."""
        if self.p.keep_checkpoints is not None:
            for old in sorted(folder.glob("*step_*.pt"))[:-self.p.keep_checkpoints]:
                old.unlink()

    def save(self, path: Path | None = None) -> None:
        """The full training state, to ``checkpoints/last.pt`` (or ``path``: a kept copy, resumable as last.pt);
        never non-finite weights: that is divergence."""
        p = self.p
        if not self._weights_finite():
            self._diverged(f"the weights are not finite at step {self.pos.step}")
        own = {"model": p.model.state_dict(), "optimizer": p.optimizer.state_dict(), "method": p.method.state_dict()}
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": p.config,
            "position": asdict(self.pos),
            "finished": self.finished,
            **own,
            "rng": p.dist.gather(capture_rng()),  # one entry per rank
            "trainer": {
                "loss_sum": self.train_step.loss_sum,
                "loss_count": self.loss_count,
                "window": asdict(self.window),
                "results": self.results,
                "round_result": self.round_result,
                "elapsed": self.elapsed(),
                "metrics_offset": p.metrics.offset(),
                "flops": p.flops.state_dict(),
                "watch": self.watch,
                "trained_to": self.trained_to,
                "extended": self.extended,
            },
            "versions": {"torch": str(torch.__version__)},
        }
        if p.dist.enabled:  # what ranks 1.. hold differently: loss sums, FLOP counts (and models, if each its own)
            rank_state = {"loss_sum": self.train_step.loss_sum, "flops": p.flops.state_dict(),
                          **({} if p.method.data_parallel else own)}
            state["rank_states"] = p.dist.gather_states(rank_state)[1:]
        if not p.dist.is_main:
            return
        save_checkpoint(path or checkpoint_path(p.run_dir), state)
        if path is not None:
            self._drop_old_kept(path.parent)
            return
        masks = p.method.masks()
        if masks is not None:
            save_masks(p.run_dir / "masks" / "last.safetensors", masks)

    def _save_step_masks(self) -> None:
        """The masks after this step (``masks_at``), as ``masks/step_<N>.safetensors`` (``round<r>_step_<N>`` after
        the first round of a multi-round method)."""
        masks = self.p.method.masks()
        if masks is None or not self.p.dist.is_main:
            return
        prefix = f"round{self.pos.round}_" if self.pos.round else ""
        save_masks(self.p.run_dir / "masks" / f"{prefix}step_{self.pos.step:07d}.safetensors", masks)

    def load(self, state: dict) -> None:
        """Restore everything ``save`` stored; the RNG last, after every object is built."""
        p = self.p
        own = {**state, **state["rank_states"][p.dist.rank - 1]} if p.dist.rank > 0 and "rank_states" in state \
            else state
        p.model.load_state_dict(own["model"])
        p.optimizer.load_state_dict(own["optimizer"])
        self.train_step.reset()
        p.method.load_state_dict(own["method"])
        self.pos = Position(**state["position"])
        self.finished = state["finished"]
        trainer = state["trainer"]
        self.train_step.loss_sum.copy_(own.get("loss_sum", trainer["loss_sum"]))
        self.loss_count = trainer["loss_count"]
        self.window = LossWindow(**trainer.get("window", {}))
        self.results = trainer["results"]
        self.round_result = trainer["round_result"]
        self.elapsed_before = trainer["elapsed"]
        self.watch = trainer.get("watch", _fresh_watch())
        self.trained_to = trainer.get("trained_to")  # None in a checkpoint written before runs could be extended
        self.extended = trainer.get("extended", [])
        p.flops.load_state_dict(own.get("flops", trainer["flops"]))
        self.clock_start = time.perf_counter()
        if len(state["rng"]) != p.dist.world_size:
            raise ConfigError(f"the checkpoint was written by {len(state['rng'])} processes; resume it with as many "
                              f"(torchrun --nproc_per_node={len(state['rng'])})")
        if self.pos.step > 0:  # the rate of the last step taken: logged if the epoch ends before the next one
            step = self.pos.step - 1
            self.train_step.set_lr_factor(p.method.schedule_factor(self.pos.round, step, self.lr_factor(step)))
        if p.dist.is_main:
            p.metrics.truncate(trainer["metrics_offset"])
        restore_rng(state["rng"][p.dist.rank])


def _fresh_watch() -> dict:
    return {"best": None, "step": None, "waited": 0}
