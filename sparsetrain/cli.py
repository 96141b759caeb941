"""The ``sparsetrain`` command: a Hydra app with one-line errors for bad input.

Before Hydra starts, ``preflight`` composes the config from the command line and runs the checks, so that a
bad value, an unknown option or a bad ``resume`` ends with one line naming the key, exit status 2, and no
file written. It also turns ``resume=<run dir>`` into a run in that directory, with the run's original
overrides when the command line gives no result-relevant ones.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import ConfigError, register_configs, validate
from .overrides import check_syntax, composition_message, refuse_added_keys
from .runs.files import WriteError, checkpoint_path, remove_hydra_only_dir
from .runs.lock import first_process, refuse_if_locked
from .runs.record import read_run_record
from .runs.status import read_status, write_status
from .train.failures import RunFailure
from .train.interrupt import Interrupted, StopSignals, stop_outside_training_from_now
from .train.resume import refuse_if_changed, refuse_to_overwrite, resumable_run_dir

CONFIG_MODULE = "sparsetrain.configs"
CONFIG_NAME = "train"
MULTIRUN_FLAGS = ("-m", "--multirun")
HELP_FLAGS = ("-h", "--help")
FAILED_JOBS: list[str] = []  # run directories of this invocation's jobs that failed or diverged


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _app(cfg: DictConfig) -> dict | None:
    from .data import DataError  # torch loads only once the config is known to be good
    from .train.run import run

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
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
            remove_hydra_only_dir(run_dir)
            fail(str(error))
        return _job_failed(run_dir, RunFailure.status, str(error))
    except RunFailure as error:
        return _job_failed(run_dir, error.status, str(error), exit_now=not multirun)
    except WriteError as error:  # a full disk: the message names the file; the last checkpoint is intact
        return _job_failed(run_dir, RunFailure.status, str(error), exit_now=not multirun)


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


def check(cfg: DictConfig, config: dict | None = None) -> None:
    """Every check that needs no data or model: value ranges, then the method's options (and, given the resolved
    run ``config``, the method's checks against it)."""
    refuse_unset_required(cfg)
    validate(cfg)
    from .data.custom import check_dataset_config
    from .methods import build_method
    from .models import check_model_config
    from .tasks import check_task

    try:
        method = build_method(cfg.method, cfg.sparsity, start_masks=cfg.init_from is not None)
        if config is not None:
            method.check_config(config)
        check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
        check_dataset_config(cfg.dataset)
        check_task(cfg.task)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.init_from is not None:
        from .train.init_from import init_source

        init_source(cfg.init_from)
    if cfg.finetune.rank_from:
        from .train.finetune import read_drift_table

        read_drift_table(cfg.finetune.rank_from)


# examples for the keys a preset requires (``requires``)
REQUIRED_EXAMPLES = {"init_from": "outputs/2026-11-25/14-03-11", "task.distill.teacher": "outputs/2026-11-25/14-03-11"}


def refuse_unset_required(cfg: DictConfig) -> None:
    """ConfigError naming the first key of ``requires`` (set by a preset) that is still null."""
    for key in cfg.requires:
        if OmegaConf.select(cfg, key) is None:
            raise ConfigError(f"{key} is required by this preset; e.g. {key}={REQUIRED_EXAMPLES.get(key, '<value>')}")


def main() -> None:
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
    if all(arg in MULTIRUN_FLAGS or not arg.startswith("-") for arg in args):
        multirun = any(arg in MULTIRUN_FLAGS for arg in args)
        overrides = [arg for arg in args if arg not in MULTIRUN_FLAGS]
        try:
            extra = preflight(overrides, multirun)
        except ConfigError as error:
            fail(str(error))
        sys.argv = [sys.argv[0], *args, *extra]
    _app()
    if FAILED_JOBS:  # a sweep that went on past failed jobs still ends in an error
        sys.exit(1)


def print_help(overrides: list[str]) -> NoReturn:
    """``--help [GROUP=OPTION ...]``: options, keys with their descriptions, and a method's paper; exit 0."""
    from .help import render_help

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            text = render_help(overrides)
        except MissingConfigException as error:
            fail(_missing_option(error, overrides))
        except (HydraException, OmegaConfBaseException) as error:
            fail(_composition_error(error))
    print(text)
    sys.exit(0)


def preflight(overrides: list[str], multirun: bool) -> list[str]:
    """Check every job's config before Hydra runs; return overrides to add (for ``resume=<dir>``)."""
    check_syntax(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except (HydraException, ValueError) as error:
        raise ConfigError(f"{_first_line(error)}; an override is key=value, e.g. sparsity=0.9") from None
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        refuse_added_keys(parsed, set(_loader().list_groups("")))
        if multirun:
            for job in _job_samples(parsed):
                _compose_checked(job)
            return []
        cfg = _compose_checked(overrides, run_checks=False)  # resume=<dir>: checked with the run's overrides
        if cfg.resume in (None, "auto"):
            _compose_checked(overrides)
        return _resume_overrides(cfg, parsed, overrides)


def _job_samples(parsed: list[Override]) -> list[list[str]]:
    """One override list per sweep value (other sweeps at their first value): each value composed once."""
    choices = [_values(o) for o in parsed]
    base = [values[0] for values in choices]
    jobs = [base]
    for index, values in enumerate(choices):
        jobs += [base[:index] + [value] + base[index + 1 :] for value in values[1:]]
    return jobs


def _values(override: Override) -> list[str]:
    key = override.get_key_element()
    if not override.is_sweep_override():
        return [f"{key}={override.get_value_element_as_str()}"]
    return [f"{key}={value}" for value in override.sweep_string_iterator()]


def _compose_checked(overrides: list[str], run_checks: bool = True) -> DictConfig:
    try:
        cfg = compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        if run_checks:
            check(cfg, _plain(cfg))
    except MissingConfigException as error:
        raise ConfigError(_missing_option(error, overrides)) from None
    except (HydraException, OmegaConfBaseException) as error:
        message = composition_message(error, lambda: _example_config(overrides))
        raise ConfigError(message or _composition_error(error)) from None
    return cfg


def _example_config(overrides: list[str]) -> DictConfig | None:
    """The config of the command line's group choices alone (``method=rigl``): where examples come from."""
    groups = set(_loader().list_groups(""))
    choices = [o for o in overrides if _key(o) in groups and "," not in o]
    try:
        return compose(config_name=CONFIG_NAME, overrides=choices)
    except (HydraException, OmegaConfBaseException):
        return None


def _loader():
    return GlobalHydra.instance().config_loader()


def _resume_overrides(cfg: DictConfig, parsed: list[Override], overrides: list[str]) -> list[str]:
    """For a single run: refuse to overwrite a checkpoint; point ``resume=<dir>`` at its run directory."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not any(o.key_or_group == "hydra.run.dir" for o in parsed):
        raise ConfigError("under torchrun every process must write to the same run directory: set hydra.run.dir, "
                          "e.g. hydra.run.dir=outputs/ddp_run")
    resume = cfg.resume
    run_dir = Path(cfg.hydra.run.dir)
    refuse_if_locked(run_dir)
    if resume is None:
        refuse_to_overwrite(run_dir)
        return []
    if resume == "auto":
        if checkpoint_path(run_dir).is_file():
            record = read_run_record(run_dir)
            refuse_if_changed(record["config"], _plain(cfg), run_dir, _baseline(record))
        return []
    run_dir = resumable_run_dir(resume)
    refuse_if_locked(run_dir)
    record = read_run_record(run_dir)
    given = {o.key_or_group for o in parsed}
    # the run's own overrides (data location included) where the command line does not repeat or change them,
    # so a refusal names only the keys the command line changed
    extra = [o for o in record["overrides"] if _key(o) not in given and _key(o) != "resume"
             and not _key(o).startswith("hydra.")]
    cfg = _compose_checked(extra + overrides)
    refuse_if_changed(record["config"], _plain(cfg), run_dir, _baseline(record))
    if "hydra.run.dir" not in given:
        extra += [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    return extra


def _baseline(record: dict) -> dict:
    """The config the run's own command line composes to with this version of sparsetrain: the values of keys added
    after the run started, had it started today ({}: it no longer composes, so every added key counts as changed)."""
    own = [o for o in record["overrides"] if _key(o) != "resume" and not _key(o).startswith("hydra.")]
    try:
        return _plain(_compose_checked(own, run_checks=False))
    except ConfigError:
        return {}


def _plain(cfg: DictConfig) -> dict:
    """The resolved job config without Hydra's own node, as stored in run.yaml and checkpoints."""
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    return OmegaConf.to_container(job, resolve=True, enum_to_str=True)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _missing_option(error: MissingConfigException, overrides: list[str]) -> str:
    """``method=nosuch`` -> one line with the group's options and an example."""
    group = next((_key(o) for o in overrides if error.missing_cfg_file and error.missing_cfg_file.startswith(
        _key(o) + "/")), None)
    if group is None:
        return _first_line(error)
    value = error.missing_cfg_file.split("/", 1)[1]
    options = _loader().get_group_options(group)
    options = [o for o in options if not o.startswith("base_")]
    return f"{group}={value} is not an option; choose one of: {', '.join(options)} (e.g. {group}={options[0]})"


def _composition_error(error: Exception) -> str:
    """The innermost OmegaConf/Hydra message on one line, with the key it concerns."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    key = getattr(cause, "full_key", None)
    text = _first_line(cause)
    if key and ("not in struct" in str(cause) or "Could not override" in str(error)):
        return f"{key} is not a config key (see `sparsetrain --cfg job` for the keys); to add one use +{key}=..."
    if key:
        return f"{key}: {text}"
    return _first_line(error)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__

