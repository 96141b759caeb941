"""User factories named by an import path (``_target_``): locate them, and call them with what they accept."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable

from .errors import ConfigError, DataError, UserCodeError, first_line


def locate(key: str, path: str, example: str) -> Callable[..., Any]:
    """The callable at import path ``path`` (``package.module.name``, or a nested attribute); ValueError (one line
    naming ``key``) if it does not resolve."""
    if path in (None, "", "???"):
        raise ValueError(f"{key} is not set; give the import path of your factory, e.g. {key}={example}")
    try:
        target = _import(str(path))
    except Exception as error:  # ImportError, AttributeError, or whatever the user's module raises on import
        cause = " ".join(f"{type(error).__name__}: {error}".split())
        raise ValueError(f"{key}={path!r} does not resolve ({cause}); e.g. {key}={example}") from None
    if not callable(target):
        raise ValueError(f"{key}={path!r} is a {type(target).__name__}, not a callable; e.g. {key}={example}")
    return target


def call_with(factory: Callable[..., Any], offered: dict[str, Any], options: dict[str, Any]) -> Any:
    """``factory(**options, **the offered arguments its signature takes)`` (all of them if it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: offer nothing
        parameters = []
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    names = {p.name for p in parameters}
    chosen = {key: value for key, value in offered.items() if takes_any or key in names}
    return factory(**options, **chosen)


def call_user(label: str, during: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, which runs the user's code; what it raises (other than a one-line ConfigError or
    DataError) becomes a UserCodeError naming ``label`` (the key that chose the code) and ``during`` (what was
    done), chained to the exception."""
    try:
        return call(*args, **kwargs)
    except (ConfigError, DataError):
        raise
    except Exception as error:
        detail = f": {first_line(error)}" if str(error).strip() else ""
        raise UserCodeError(f"{label} raised {type(error).__name__} {during}{detail}") from error


def _import(path: str) -> Any:
    """The object at ``path``: the longest importable module prefix, then attributes; a module in the working
    directory is found as ``python -m`` finds it (the directory is searched after the installed packages)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # this prefix is not a module: try a shorter one
            raise
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(f"no module named {parts[0]!r} (the path is package.module.callable)")
