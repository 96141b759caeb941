"""Registries: one record per pluggable thing (a method, a dataset, a task), torch-free.

A record names the thing, holds its schema (a dataclass whose field defaults are the only defaults of its
options), the import path of its implementation, and what the docs and ``--help`` show: a one-line summary,
the papers and the authors' code. The package registers its own records with the same calls a user's package
uses (``sparsetrain.register_method`` and its siblings); the config store, ``--help``, the builders and the
generated reference pages all read the records.

A user's package is found by the command line through the entry-point group ``sparsetrain.plugins`` or the
environment variable ``SPARSETRAIN_PLUGINS`` (comma-separated module names): importing the module registers its
records.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError
from .factories import locate

PLUGIN_GROUP = "sparsetrain.plugins"
PLUGIN_VARIABLE = "SPARSETRAIN_PLUGINS"


@dataclass(frozen=True)
class Paper:
    citation: str  # authors, title, venue and year on one line
    url: str
    bibtex: str


@dataclass(frozen=True)
class Record:
    """One pluggable thing: the option ``group=name`` selects its schema, with ``name`` set."""

    name: str
    schema: type  # a dataclass: its fields are the config keys, its defaults the only defaults
    target: Any  # the implementation (a class or a builder), or its import path (imported on first use)
    summary: str  # one line: what it does
    papers: tuple[Paper, ...] = ()
    code: tuple[str, ...] = ()  # the authors' code
    page: str = ""  # the docs page that documents it, relative to docs/ (e.g. methods/pruning.md)
    check: Any = None  # check(cfg) raising ValueError for a bad config, run before anything is written (or its path)

    def checker(self) -> Any:
        """The record's config check (imported on first use), or None."""
        if isinstance(self.check, str):
            return locate(f"{self.name} check", self.check, "my_pkg.mod.check")
        return self.check


R = TypeVar("R", bound=Record)


class Registry(MutableMapping[str, Any], Generic[R]):
    """The records of one config group, by name; as a mapping, name -> implementation (imported on first use).

    Setting ``registry[name] = cls`` replaces the implementation behind a name (a subclass that records what the
    method does, in a test); ``register`` adds a record.
    """

    def __init__(self, group: str, kind: str, example: str, error: type[Exception] = ConfigError) -> None:
        self.group = group  # the config group (method, dataset, task)
        self.kind = kind  # what a record is, for messages ("a method")
        self.example = example  # the option an unknown name's message suggests
        self.error = error  # what an unknown name raises
        self._records: dict[str, R] = {}
        self._implementations: dict[str, Any] = {}

    def register(self, record: R) -> R:
        if not dataclasses.is_dataclass(record.schema):
            raise ValueError(f"{self.group} {record.name!r}: schema must be a dataclass, got {record.schema!r}")
        known = self._records.get(record.name)
        if known is not None and known != record:
            raise ValueError(f"{self.group}={record.name} is registered already (target {known.target})")
        self._records[record.name] = record
        return record

    def record(self, name: str, key: str | None = None) -> R:
        """The record of ``name``; ``self.error`` (one line, naming ``key``) for an unknown one."""
        try:
            return self._records[name]
        except KeyError:
            raise self.error(f"{key or self.group}={name!r} is not {self.kind}; choose one of: "
                             f"{', '.join(self.names())} (e.g. {self.group}={self.example})") from None

    def records(self) -> list[R]:
        """Every record, sorted by name."""
        return [self._records[name] for name in self.names()]

    def names(self) -> list[str]:
        return sorted(self._records)

    def __getitem__(self, name: str) -> Any:
        if name in self._implementations:
            return self._implementations[name]
        if name not in self._records:
            raise KeyError(name)
        target = self._records[name].target
        return target if not isinstance(target, str) else locate(f"{self.group}={name}", target, "my_pkg.mod.Name")

    def __setitem__(self, name: str, implementation: Any) -> None:
        self._implementations[name] = implementation

    def __delitem__(self, name: str) -> None:
        del self._implementations[name]

    def __contains__(self, name: object) -> bool:
        """A registered or substituted name (without importing its implementation)."""
        return name in self._records or name in self._implementations

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._records, *self._implementations}))

    def __len__(self) -> int:
        return len({*self._records, *self._implementations})


def load_plugins(environ: dict[str, str] | None = None) -> list[str]:
    """Import the user's packages (entry points of ``sparsetrain.plugins`` and the modules named by
    ``SPARSETRAIN_PLUGINS``) so their records register; ConfigError (one line) if one fails to import."""
    environ = os.environ if environ is None else environ
    loaders: list[tuple[str, Callable[[], Any]]] = [
        (f"entry point {point.name} = {point.value}", point.load) for point in entry_points(group=PLUGIN_GROUP)]
    modules = [name.strip() for name in environ.get(PLUGIN_VARIABLE, "").split(",") if name.strip()]
    loaders += [(f"{PLUGIN_VARIABLE}={name}", lambda name=name: importlib.import_module(name)) for name in modules]
    for source, load in loaders:
        try:
            load()
        except Exception as error:  # the user's module: whatever it raises on import
            cause = " ".join(f"{type(error).__name__}: {error}".split())
            raise ConfigError(f"plugin {source} does not import ({cause}); e.g. {PLUGIN_VARIABLE}=my_pkg.methods") \
                from None
    return [source for source, _ in loaders]
