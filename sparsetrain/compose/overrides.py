"""Command-line overrides checked before Hydra parses them, and Hydra's errors as one line with an example.

Every message names the key and shows a valid ``key=value``: the value comes from the config the command line
selects (its groups), so ``epochs=abc`` answers ``e.g. epochs=20`` and ``method=rigl method.delta_t=x`` answers
``e.g. method.delta_t=100``. No torch import.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Callable

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..methods.catalog import METHODS
from ..runs.record import flatten

_KEY = re.compile(r"^(\+{0,2}|~)[A-Za-z_][A-Za-z0-9_.@/\-]*$")
FIXED_BY_GROUP = ("method.name",)  # set by the group's YAML: an override would pair a name with another schema
PATH_KEYS = ("hydra.run.dir", "hydra.sweep.dir")
PASS_ADDED_KEYS = {("model", "custom"), ("model", "torchvision"), ("dataset", "custom")}  # added keys reach the factory


def check_syntax(args: list[str]) -> None:
    """ConfigError for an argument that is not ``key=value`` (or ``~key``) with an ASCII key."""
    for arg in args:
        key, sep, value = arg.partition("=")
        if not key:
            raise ConfigError(f"{arg!r} has no key; an override is key=value, e.g. sparsity=0.9")
        if not _KEY.match(key):
            raise ConfigError(f"{key!r} is not a config key (letters, digits, _ . / - only); e.g. sparsity=0.9")
        if not sep and not key.startswith("~"):
            raise ConfigError(f"{key} has no value; an override is key=value, e.g. sparsity=0.9")
        if not value.isascii() and not value[:1] in "'\"":
            raise ConfigError(f"{key}={value} holds non-ASCII characters: quote the value, e.g. {key}='{value}'")
        if key.lstrip("+") in PATH_KEYS and not value.strip():
            raise ConfigError(f"{key.lstrip('+')}= is empty; give a directory, e.g. {key.lstrip('+')}=outputs/run1")


def refuse_added_keys(parsed: list[Override], groups: set[str]) -> None:
    """``+key=value`` may add a config group (``+experiment=...``), a Hydra setting, or a key of a ``custom`` model or
    dataset or a ``torchvision`` model (it reaches the factory), never another config key: the run would silently
    ignore it. Names like ``method.name`` belong to their group."""
    custom = {o.key_or_group for o in parsed
              if isinstance(o.value(), str) and (o.key_or_group, o.value()) in PASS_ADDED_KEYS}
    for override in parsed:
        key = override.key_or_group
        if override.is_add() or override.is_force_add():
            if key not in groups and not key.startswith("hydra.") and key.split(".")[0] not in custom:
                raise ConfigError(f"+{key} is not a config key and would be ignored; set an existing key, e.g. "
                                  "sparsity=0.9 (see `sparsetrain --cfg job` for the keys)")
        if key in FIXED_BY_GROUP:
            group = key.split(".")[0]
            raise ConfigError(f"{key} is set by the {group} group; choose the {group} instead, e.g. {group}=rigl")


def composition_message(error: Exception, example_config: Callable[[], DictConfig | None]) -> str | None:
    """One line for an OmegaConf error about a key (wrong type, unknown key), with an example; None otherwise."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    key = getattr(cause, "full_key", None)
    if not key:
        return None
    cfg = example_config()
    text = " ".join(str(cause).splitlines()[0].split())
    if "not in struct" in str(cause) or "Could not override" in str(error) or "not in '" in str(cause):
        if cfg is not None and OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
            return f"{key} cannot be removed: every key has a value; e.g. {example(cfg, key)}"
        others = _methods_with(key)
        if others and cfg is not None:
            name, shown = others[0]
            return (f"{key} is not a key of method={cfg.method.name}; the methods with it: "
                    f"{', '.join(n for n, _ in others)} (e.g. method={name} {shown})")
        close = difflib.get_close_matches(key, _keys(cfg), n=1) if cfg is not None else []
        if close:
            return f"{key} is not a config key; did you mean {close[0]}? e.g. {example(cfg, close[0])}"
        return f"{key} is not a config key (see `sparsetrain --cfg job` for the keys); e.g. sparsity=0.9"
    shown = f"e.g. {example(cfg, key)}" if cfg is not None else "see `sparsetrain --cfg job`"
    return f"{key}: {text}; {shown}"


def _methods_with(key: str) -> list[tuple[str, str]]:
    """(method, ``key=<its default>``) of every registered method whose schema has the option ``key``
    (``method.<option>``)."""
    group, _, option = key.partition(".")
    if group != "method" or not option:
        return []
    found = []
    for record in METHODS.records():
        field = {f.name: f for f in dataclasses.fields(record.schema)}.get(option)
        if field is not None:
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            found.append((record.name, _assignment(key, default)))
    return found


def _assignment(key: str, value: object) -> str:
    """``key=value`` as a command line writes it; a group of options (a schema) by its first option."""
    while dataclasses.is_dataclass(value):
        first = dataclasses.fields(value)[0].name
        key, value = f"{key}.{first}", getattr(value, first)
    return f"{key}={literal(value)}"


def example(cfg: DictConfig, key: str) -> str:
    """``key=<its value in cfg>`` as a command line would write it."""
    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, DictConfig) or value is None:
        return f"{key}=null" if value is None else f"{key}=..."
    return f"{key}={literal(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)}"


def literal(value: object) -> str:
    """A value as a command line writes it (``null``, ``true``, ``[a,b]``, an enum by its name)."""
    if isinstance(value, list):
        return f"[{','.join(literal(v) for v in value)}]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(getattr(value, "name", value))


class _Absent:
    pass


_ABSENT = _Absent()


def _keys(cfg: DictConfig) -> list[str]:
    return list(flatten(OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)))
