"""``sparsetrain --help [GROUP=OPTION ...]``: the real options of each config group and one line per key.

A key's line is its default and the comment that documents its field in the schema (``schemas.py`` beside each
family), so the schemas stay the one place a key is described. ``--help method=rigl`` shows that method's keys, what
it does, its papers with BibTeX entries and the authors' code.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ..compose.overrides import literal
from ..methods.catalog import METHODS

GROUPS = ("model", "dataset", "optimizer", "schedule", "method")
INTERNAL = ("_target_", "_partial_")
_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")

USAGE = """\
sparsetrain: sparse neural-network training, configured by KEY=VALUE overrides (Hydra).

  sparsetrain method=rigl sparsity=0.9          one run (outputs/<date>/<time>/)
  sparsetrain -m method=rigl,set sparsity=0.8,0.9 seed=0,1   a sweep (multirun/<name>/)
  sparsetrain --help method=rigl                one method's keys, defaults and paper (also model=, optimizer=, ...)
  sparsetrain --cfg job [KEY=VALUE ...]         the composed config; --hydra-help: Hydra's own flags
"""


def field_help(schema: type) -> dict[str, str]:
    """``{field: description}`` from the trailing comments of a dataclass's field lines, the subclass winning."""
    described: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        for line in inspect.getsource(cls).splitlines():
            match = _FIELD_COMMENT.match(line)
            if match:
                described[match.group(1)] = match.group(2).strip()
    return described


def render_help(overrides: list[str]) -> str:
    """The help text for the config composed from ``overrides`` (inside an initialised Hydra config module)."""
    cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    chosen = dict(cfg.hydra.runtime.choices)
    loader = GlobalHydra.instance().config_loader()
    lines = [USAGE, "Config groups (GROUP=OPTION; the option in use in brackets):"]
    for group in (*GROUPS, "experiment"):
        options = [o for o in loader.get_group_options(group) if not o.startswith("base_")]
        shown = [f"[{o}]" if o == chosen.get(group) else o for o in options]
        prefix = "+experiment" if group == "experiment" else group
        lines.append(f"  {prefix:<12} {', '.join(shown)}")
    lines += ["", "Keys (KEY=default  description):"]
    lines += _keys(cfg, "", skip=(*GROUPS, "hydra"))
    for group in GROUPS:
        lines += ["", f"{group}={chosen[group]}:"]
        lines += _keys(cfg[group], f"{group}.")
    method = chosen["method"]
    if any(o.split("=", 1)[0] == "method" for o in overrides):
        lines += ["", *paper_lines(method)]
    else:
        lines += ["", "Each method's keys and paper: sparsetrain --help method=<name>"]
    return "\n".join(lines)


def paper_lines(method: str) -> list[str]:
    """What a method does, the papers it follows (with BibTeX) and the authors' code."""
    if method not in METHODS.names():
        return [f"method={method}: not a registered method"]
    record = METHODS.record(method)
    lines = [f"method={method}: {record.summary}"]
    if record.papers:
        lines.append("It follows:")
    for paper in record.papers:
        lines += [f"  {paper.citation}", f"  {paper.url}", *paper.bibtex.splitlines()]
    lines += [f"The authors' code: {url}" for url in record.code]
    return lines


def key_rows(node: DictConfig, prefix: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(key, default, description) of every key under ``node``, nested sections flattened to dotted keys."""
    schema = OmegaConf.get_type(node)
    described = field_help(schema) if schema is not None and dataclasses.is_dataclass(schema) else {}
    values = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    rows = []
    for key, value in values.items():
        if key in skip or key in INTERNAL:
            continue
        if isinstance(node[key], DictConfig):
            rows += key_rows(node[key], f"{prefix}{key}.")
            continue
        rows.append((f"{prefix}{key}", literal(value), described.get(key, "")))
    return rows


def _keys(node: DictConfig, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    rows = key_rows(node, prefix, skip)
    return [f"  {f'{key}={value}':<36} {description}".rstrip() for key, value, description in rows]
