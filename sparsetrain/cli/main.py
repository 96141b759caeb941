"""The ``sparsetrain`` command: a Hydra app with one-line errors for bad input.

Before Hydra starts, ``compose.command_line.claim`` composes the config from the command line and runs the
checks, so that a bad value, an unknown option or a bad ``resume`` ends with one line naming the key, exit status
2, and no file written; then a single run takes its directory's lock, before Hydra writes there. It also turns
``resume=<run dir>`` into a run in that directory, with the run's original overrides when the command line gives
no result-relevant ones.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra import initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra._internal.utils import get_args_parser
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ..compose.command_line import CONFIG_MODULE, CONFIG_NAME, check, claim, composition_error, missing_option
from ..compose.schema import register_configs
from ..cores import available_cpus, passive_wait, share_cores
from ..errors import ConfigError, DataError, RunFailure, WriteError
from ..runs.files import checkpoint_path, remove_hydra_only_dir
from ..runs.interrupt import Interrupted, StopSignals, stop_outside_training_from_now
from ..runs.lock import first_process, holds, release_all
from ..runs.resume import resumable_run_dir
from ..runs.status import read_status, write_status

MULTIRUN_FLAGS = ("-m", "--multirun")
HELP_FLAGS = ("-h", "--help")
FAILED_JOBS: list[str] = []  # run directories of this invocation's jobs that failed or diverged


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _app(cfg: DictConfig) -> dict | None:
    from ..runner.run import run  # torch loads only once the config is known to be good

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        share_cores(_parallel_jobs(hydra_cfg.launcher))  # before torch loads in this job's process
    if multirun and cfg.resume is None:
        cfg.resume = "auto"  # a re-run sweep continues unfinished jobs and skips finished ones
    run_dir = Path(hydra_cfg.runtime.output_dir)
    stop = StopSignals()
    try:
        check(cfg)
        if cfg.resume not in (None, "auto"):
            run_dir = resumable_run_dir(cfg.resume)
        recorded = read_status(run_dir) if multirun and not cfg.retry_failed else None
        if recorded is not None:
            return _job_failed(run_dir, recorded["status"], f"{recorded['error']} (recorded earlier; add "
                               "retry_failed=true to run it again)", record=False)
        with stop.installed():
            return run(cfg, run_dir, list(hydra_cfg.overrides.task), stop)
    except Interrupted as interrupted:
        _stopped(interrupted, run_dir, stop)
    except (ConfigError, DataError) as error:
        if not multirun:
            if holds(run_dir) and getattr(error, "log_file", None) is None:  # ours, and no traceback kept in it
                remove_hydra_only_dir(run_dir)
            fail(str(error))
        return _job_failed(run_dir, RunFailure.status, str(error))
    except RunFailure as error:
        return _job_failed(run_dir, error.status, str(error), exit_now=not multirun)
    except WriteError as error:  # a full disk: the message names the file; the last checkpoint is intact
        return _job_failed(run_dir, RunFailure.status, str(error), exit_now=not multirun)


def _parallel_jobs(launcher: DictConfig) -> int:
    """How many of a sweep's jobs the launcher runs at once on this machine (joblib's ``n_jobs``; -1 = every CPU)."""
    jobs = launcher.get("n_jobs") or 1
    return jobs if jobs > 0 else available_cpus() + 1 + jobs


def _stopped(interrupted: Interrupted, run_dir: Path, stop: StopSignals) -> NoReturn:
    """One line with the command that resumes; then the launcher's own handler (submitit requeues), then exit."""
    name = signal.Signals(interrupted.signum).name
    resume = f"sparsetrain resume={shlex.quote(str(run_dir.resolve()))}"
    if interrupted.saved:
        print(f"stopped by {name}: checkpoint written to {checkpoint_path(run_dir)}; resume with: {resume}",
              file=sys.stderr)
    elif checkpoint_path(run_dir).is_file():
        print(f"stopped by {name} without a new checkpoint; resume from the last one with: {resume}",
              file=sys.stderr)
    else:
        print(f"stopped by {name} before any checkpoint was written; nothing to resume", file=sys.stderr)
    handler = stop.launcher_handler(interrupted.signum)
    if handler is not None:
        handler(interrupted.signum, None)
    sys.exit(interrupted.exit_status)


def _job_failed(run_dir: Path, status: str, error: str, record: bool = True, exit_now: bool = False) -> dict:
    """Record a run that failed or diverged (status.json), print one line; a sweep goes on with its next job."""
    if record and first_process():
        with contextlib.suppress(OSError):  # a full disk may not take this file either
            write_status(run_dir, status, error)
    FAILED_JOBS.append(str(run_dir))
    print(f"error: {error}" if exit_now else f"error: job {run_dir} {status}: {error}", file=sys.stderr)
    if exit_now:
        sys.exit(1)
    return {"status": status, "error": error, "run_dir": str(run_dir)}


def main() -> None:
    passive_wait()  # before torch loads
    stop_outside_training_from_now()  # during training, StopSignals takes over: a checkpoint, then the stop
    try:
        _main()
    except Interrupted as interrupted:
        print(f"stopped by {signal.Signals(interrupted.signum).name} outside training (no checkpoint written)",
              file=sys.stderr)
        sys.exit(interrupted.exit_status)


def _main() -> None:
    register_configs()  # before any Hydra mode (--info defaults reads the schemas before the config package loads)
    args = sys.argv[1:]
    if any(arg in HELP_FLAGS for arg in args):
        print_help([arg for arg in args if not arg.startswith("-")])
    _, unknown = get_args_parser().parse_known_args(args)
    if unknown:
        fail(f"{unknown[0]} is not a flag of sparsetrain; settings are key=value overrides, e.g. sparsity=0.9 "
             "(the flags: sparsetrain --hydra-help)")
    if all(arg in MULTIRUN_FLAGS or not arg.startswith("-") for arg in args):
        multirun = any(arg in MULTIRUN_FLAGS for arg in args)
        overrides = [arg for arg in args if arg not in MULTIRUN_FLAGS]
        try:
            extra = claim(overrides, multirun)
        except ConfigError as error:
            fail(str(error))
        sys.argv = [sys.argv[0], *args, *extra]
    try:
        _app()
    finally:
        release_all()  # the run directory this command claimed
    if FAILED_JOBS:  # a sweep that went on past failed jobs still ends in an error
        sys.exit(1)


def print_help(overrides: list[str]) -> NoReturn:
    """``--help [GROUP=OPTION ...]``: options, keys with their descriptions, and a method's paper; exit 0."""
    from .help import render_help

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            text = render_help(overrides)
        except MissingConfigException as error:
            fail(missing_option(error, overrides))
        except (HydraException, OmegaConfBaseException) as error:
            fail(composition_error(error))
    print(text)
    sys.exit(0)


