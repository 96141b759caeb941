"""From a command line to a checked config: composition and preflight, used by the CLI and the Python API.

Before Hydra starts, ``preflight`` composes the config from the command line and runs the checks, so that a
bad value, an unknown option or a bad ``resume`` ends with one line naming the key and no file written. It also
turns ``resume=<run dir>`` into a run in that directory, with the run's original overrides when the command line
gives no result-relevant ones.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import re
from pathlib import Path
from typing import Any, Iterator

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..data.catalog import DATASETS
from ..errors import ConfigError, first_line
from ..runs.files import checkpoint_path
from ..runs.lock import first_process, refuse_if_locked
from ..runs.lock import take as take_lock
from ..runs.record import read_run_record
from ..runs.resume import refuse_if_changed, refuse_to_overwrite, resumable_run_dir
from ..tasks.checks import check_task
from .checks import validate
from .overrides import check_syntax, composition_message, example, refuse_added_keys
from .schema import register_configs

CONFIG_MODULE = "sparsetrain.configs"
CONFIG_NAME = "train"


def compose_run(overrides: list[str]) -> tuple[DictConfig, Path]:
    """The checked job config of ``overrides`` (as ``sparsetrain <overrides>`` runs it) and its run directory."""
    register_configs()  # the records registered in this process are options too
    extra = claim(overrides, multirun=False)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=overrides + extra, return_hydra_config=True)
    return OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), Path(cfg.hydra.run.dir)


def compose_group(group: str, option: str, values: dict[str, Any]) -> DictConfig:
    """The ``group=option`` node as a run composes it (schema and defaults), with ``values`` merged in."""
    register_configs()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=[f"{group}={option}"])[group]
    try:
        return OmegaConf.merge(cfg, values)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or "option"
        given = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(given, [str(name) for name in cfg.keys()], n=1)
        hint = f"; did you mean {close[0]}?" if close and close[0] != given else ""
        raise ConfigError(f"{key}: {first_line(error)}{hint} ({group}={option}; see sparsetrain --help "
                          f"{group}={option})") from None


def check(cfg: DictConfig, config: dict | None = None) -> None:
    """Every check that needs no data or model: value ranges, then the method's options (and, given the resolved
    run ``config``, the method's checks against it)."""
    refuse_unset_required(cfg)
    validate(cfg)
    from ..methods.build import check_method  # imports torch
    from ..models.zoo import check_model_config

    try:
        check_method(OmegaConf.to_object(cfg.method), cfg.sparsity, start_masks=cfg.init_from is not None,
                     config=config)
        check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
        dataset_check = DATASETS.record(cfg.dataset.name, key="dataset.name").checker()
        if dataset_check is not None:
            dataset_check(cfg.dataset)
        check_task(cfg.task)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.init_from is not None:
        from ..runner.init_from import init_source

        init_source(cfg.init_from)
    if cfg.finetune.rank_from:
        from ..runner.finetune import read_drift_table

        read_drift_table(cfg.finetune.rank_from)


# examples for the keys a preset requires (``requires``)
REQUIRED_EXAMPLES = {"init_from": "outputs/2026-11-25/14-03-11", "task.distill.teacher": "outputs/2026-11-25/14-03-11"}


def refuse_unset_required(cfg: DictConfig) -> None:
    """ConfigError naming the first key of ``requires`` (set by a preset) that is still null."""
    for key in cfg.requires:
        if OmegaConf.select(cfg, key) is None:
            raise ConfigError(f"{key} is required by this preset; e.g. {key}={REQUIRED_EXAMPLES.get(key, '<value>')}")


def preflight(overrides: list[str], multirun: bool) -> list[str]:
    """Check every job's config before Hydra runs; return overrides to add (for ``resume=<dir>``)."""
    return _checked(overrides, multirun)[0]


def claim(overrides: list[str], multirun: bool) -> list[str]:
    """``preflight``, then, for a single run, take its directory's lock for this process (the first under torchrun)
    before Hydra writes there: a second process aimed at the directory is refused with nothing touched. The
    overrides returned pin the directory, so Hydra writes to the one locked."""
    extra, run_dir = _checked(overrides, multirun)
    if run_dir is None or not first_process():
        return extra
    take_lock(run_dir)
    if not any(_key(o) == "hydra.run.dir" for o in [*overrides, *extra]):
        extra = [*extra, f"hydra.run.dir={run_dir}"]
    return extra


def _checked(overrides: list[str], multirun: bool) -> tuple[list[str], Path | None]:
    """(overrides to add, the run directory of a single run) once every job's config passes the checks."""
    check_syntax(overrides)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        parsed = _parsed(overrides)
        refuse_added_keys(parsed, set(loader().list_groups("")))
        if multirun:
            for job in _job_samples(parsed):
                _compose_checked(job)
            return [], None
        _refuse_sweeps(parsed)
        cfg = _compose_checked(overrides, run_checks=False)  # resume=<dir>: checked with the run's overrides
        if cfg.resume in (None, "auto"):
            with _as_config_errors(overrides):
                check(cfg, _plain(cfg))
        return _resume_overrides(cfg, parsed, overrides)


def _parsed(overrides: list[str]) -> list[Override]:
    """Hydra's parse of the overrides; ConfigError naming the key of the first one it cannot parse."""
    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(overrides)
    except (HydraException, ValueError) as error:
        for arg in overrides:
            try:
                parser.parse_overrides([arg])
            except (HydraException, ValueError) as own:
                key, cfg = _key(arg), _example_config(overrides)
                known = cfg is not None and OmegaConf.select(cfg, key, default=None) is not None
                shown = example(cfg, key) if known else "sparsity=0.9"
                raise ConfigError(f"{key}: cannot read {arg!r} ({first_line(own)}); e.g. {shown}") from None
        raise ConfigError(f"{first_line(error)}; an override is key=value, e.g. sparsity=0.9") from None


def _refuse_sweeps(parsed: list[Override]) -> None:
    """A comma list (``sparsity=0.8,0.9``) asks for one run per value: that is a sweep, started with -m."""
    for override in parsed:
        if override.is_sweep_override():
            text = override.input_line
            raise ConfigError(f"{text} lists several values: a sweep runs one job per value with -m, "
                              f"e.g. sparsetrain -m {text}")


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
    with _as_config_errors(overrides):
        cfg = compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        if run_checks:
            check(cfg, _plain(cfg))
    return cfg


@contextlib.contextmanager
def _as_config_errors(overrides: list[str]) -> Iterator[None]:
    """Hydra's and OmegaConf's errors while composing or checking ``overrides``, as one-line ConfigErrors."""
    try:
        yield
    except MissingConfigException as error:
        raise ConfigError(missing_option(error, overrides)) from None
    except (HydraException, OmegaConfBaseException) as error:
        message = composition_message(error, lambda: _example_config(overrides))
        raise ConfigError(message or composition_error(error)) from None


def _example_config(overrides: list[str]) -> DictConfig | None:
    """The config of the command line's group choices alone (``method=rigl``): where examples come from."""
    groups = set(loader().list_groups(""))
    choices = [o for o in overrides if _key(o) in groups and "," not in o]
    try:
        return compose(config_name=CONFIG_NAME, overrides=choices)
    except (HydraException, OmegaConfBaseException):
        return None


def loader():
    return GlobalHydra.instance().config_loader()


def _resume_overrides(cfg: DictConfig, parsed: list[Override], overrides: list[str]) -> tuple[list[str], Path]:
    """For a single run: refuse to overwrite a checkpoint; point ``resume=<dir>`` at its run directory. Returns the
    overrides to add and the run directory."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not any(o.key_or_group == "hydra.run.dir" for o in parsed):
        raise ConfigError("under torchrun every process must write to the same run directory: set hydra.run.dir, "
                          "e.g. hydra.run.dir=outputs/ddp_run")
    from ..runner.extend import refuse_unextendable

    resume = cfg.resume
    run_dir = Path(cfg.hydra.run.dir)
    refuse_if_locked(run_dir)
    if resume is None:
        refuse_to_overwrite(run_dir)
        return [], run_dir
    if resume == "auto":
        if checkpoint_path(run_dir).is_file():
            record = read_run_record(run_dir)
            refuse_if_changed(record["config"], _plain(cfg), run_dir, _baseline(record),
                              functools.partial(refuse_unextendable, cfg))
        return [], run_dir
    run_dir = resumable_run_dir(resume)
    refuse_if_locked(run_dir)
    record = read_run_record(run_dir)
    given = {o.key_or_group for o in parsed}
    # the run's own overrides (data location included) where the command line does not repeat or change them,
    # so a refusal names only the keys the command line changed
    extra = [o for o in record["overrides"] if _key(o) not in given and _key(o) != "resume"
             and not _key(o).startswith("hydra.")]
    cfg = _compose_checked(extra + overrides)
    refuse_if_changed(record["config"], _plain(cfg), run_dir, _baseline(record),
                      functools.partial(refuse_unextendable, cfg))
    if "hydra.run.dir" not in given:
        extra += [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    return extra, run_dir


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


def missing_option(error: MissingConfigException, overrides: list[str]) -> str:
    """``method=nosuch`` -> one line with the group's options and an example."""
    group = next((_key(o) for o in overrides if error.missing_cfg_file and error.missing_cfg_file.startswith(
        _key(o) + "/")), None)
    if group is None:
        return first_line(error)
    value = error.missing_cfg_file.split("/", 1)[1]
    options = loader().get_group_options(group)
    options = [o for o in options if not o.startswith("base_")]
    return f"{group}={value} is not an option; choose one of: {', '.join(options)} (e.g. {group}={options[0]})"


def composition_error(error: Exception) -> str:
    """The innermost OmegaConf/Hydra message on one line, with the key it concerns."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    key = getattr(cause, "full_key", None)
    text = first_line(cause)
    if key and ("not in struct" in str(cause) or "Could not override" in str(error)):
        return f"{key} is not a config key (see `sparsetrain --cfg job` for the keys); to add one use +{key}=..."
    if key:
        return f"{key}: {text}"
    existing = re.search(r"An item is already at '([^']+)'", str(error))
    if existing:
        return f"{existing.group(1)} exists already: set it without a +, e.g. {existing.group(1)}=..."
    return first_line(error)
