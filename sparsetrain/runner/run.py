"""The composition root of a run: assemble the parts, restore or record, run the rounds, summarise.

``run`` holds the run directory's lock and applies the attempt rules; ``_run`` reads top to bottom as what a run
is. Each optional part (starting weights, trainable selection and drift, a teacher, extended training) is one
component assembled in ``assemble`` and reported in ``summary``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import textwrap
from pathlib import Path
from typing import Callable, Iterator

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, UserCodeError
from ..runs.checkpoint import load_run_checkpoint
from ..runs.distributed import close_distributed
from ..runs.files import STATUS_NAME, checkpoint_path, remove_hydra_only_dir, remove_temporaries
from ..runs.interrupt import StopSignals
from ..runs.lock import first_process, holds, run_dir_lock
from ..runs.record import read_run_record, write_run_record
from ..runs.resume import clear_attempt, refuse_if_changed, refuse_to_overwrite
from ..tasks.checks import resolve_task
from ..training.metrics import read_summary
from ..training.rounds import run_rounds
from .assemble import Parts, assemble
from .extend import continue_longer, extend, refuse_unextendable
from .process import Process, start_process
from .models import prunable
from .summary import describe, summarise

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
        except ConfigError as error:
            if writer and holds(run_dir) and not _traceback_logged(error, run_dir):
                remove_hydra_only_dir(run_dir)  # ours to remove: this process holds the lock
            raise
        finally:
            close_distributed()


def _traceback_logged(error: ConfigError, run_dir: Path) -> bool:
    """Write a UserCodeError's traceback to the run's log file (not to the terminal, which shows its one line), and
    name the file in the error; whether there was such a file."""
    files = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)
             and Path(handler.baseFilename).resolve().parent == run_dir.resolve()]
    if not isinstance(error, UserCodeError) or not files:
        return False
    cause = error.__cause__
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (error,),
                            (type(cause), cause, cause.__traceback__))
    for handler in files:
        handler.handle(record)
    error.log_file = files[0].baseFilename
    return True


def _run(cfg: DictConfig, run_dir: Path, overrides: list[str], stop: StopSignals) -> dict:
    cfg = extend(cfg)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if cfg.model.name == "hf":  # the patterns this run prunes by default (a decoder's, on a causal-LM head)
        config["model"]["prunable"] = prunable(cfg)
    resuming = checkpoint_path(run_dir).is_file()
    longer = functools.partial(refuse_unextendable, cfg)  # a resume that changes the length alone
    if resuming and (run_dir / "summary.json").is_file() and not refuse_if_changed(
            read_run_record(run_dir)["config"], config, run_dir, check_extension=longer):
        log.info("%s has finished already: %s", run_dir, run_dir / "summary.json")
        return read_summary(run_dir / "summary.json")
    if cfg.resume is not None and not resuming:
        log.info("resume=%s: %s holds no checkpoint yet, so this starts a new run", cfg.resume, run_dir)
    with _terminal_after_the_checks(), _warnings_kept() as warnings:
        process = start_process(cfg)
        parts = assemble(cfg, config, run_dir, process, stop, resuming)
        extended = resuming and _restore(parts, config, run_dir, process, longer)
    if not resuming and process.dist.is_main:
        write_run_record(run_dir, overrides, config)
        parts.drift.record(run_dir)
    if extended and process.dist.is_main:
        for finished in ("summary.json", "masks/final.safetensors"):  # no longer finished
            (run_dir / finished).unlink(missing_ok=True)
        write_run_record(run_dir, overrides, config)  # the new length
    describe(cfg, process.device, parts.model, parts.data, parts.method)
    run_rounds(parts.trainer)
    parts.trainer.write_final_masks()
    return summarise(cfg, run_dir, parts, process, warnings)


@contextlib.contextmanager
def _terminal_after_the_checks() -> Iterator[None]:
    """Hold the terminal's log lines back while the parts are assembled and checked against the data and the model:
    a refusal then shows its one line alone (the log file keeps every line); otherwise they follow at once."""
    consoles = [handler for handler in logging.getLogger().handlers
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    for handler in consoles:
        handler.addFilter(hold)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(hold)
    for record in dict.fromkeys(held):  # a record reaches each console once
        for handler in consoles:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextlib.contextmanager
def _warnings_kept() -> Iterator[list[str]]:
    """The warning lines the package logs inside the block (the run's start: summary.json's ``warnings``)."""
    handler = _Kept(logging.WARNING)
    logging.getLogger("sparsetrain").addHandler(handler)
    try:
        yield handler.lines
    finally:
        logging.getLogger("sparsetrain").removeHandler(handler)


class _Kept(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _restore(parts: Parts, config: dict, run_dir: Path, process: Process, longer: Callable[[], None]) -> bool:
    """Continue from the run's checkpoint, refused (one line) when it does not fit this config or model; True when
    the config changes the length alone (``longer`` refuses what cannot be extended): the run is extended."""
    state = load_run_checkpoint(checkpoint_path(run_dir), process.device)
    extended = refuse_if_changed(_with_resolved_task(state["config"], parts.data.task), config, run_dir,
                                 check_extension=longer)
    try:
        parts.trainer.load(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"resume: {checkpoint_path(run_dir)} does not fit this run ({type(error).__name__}: "
                          f"{textwrap.shorten(str(error), 120)}); e.g. resume=<an intact run directory>") from None
    if extended:
        continue_longer(parts.trainer, config)
    parts.drift.restore(run_dir, parts.model, process.device)
    pos = parts.trainer.pos
    log.info("resuming %s at round %d epoch %d batch %d (step %d)", run_dir, pos.round, pos.epoch, pos.batch, pos.step)
    return extended


def _with_resolved_task(config: dict, data_task: str | None) -> dict:
    """A recorded config with its task name resolved as this run resolves it (it recorded ``auto``)."""
    task = config.get("task")
    if not isinstance(task, dict) or "name" not in task:
        return config
    return {**config, "task": {**task, "name": resolve_task(task["name"], data_task)}}
