"""``sparsetrain --help``: real options only, one described line per key, and each method's paper."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from conftest import run_cli
from sparsetrain import methods
from sparsetrain.compose.schema import register_configs
from sparsetrain.loggers.schemas import WandbConfig
from sparsetrain.cli.help import GROUPS, field_help, render_help

KEY_LINE = re.compile(r"^  ([\w.]+)=(\S*)\s*(.*)$")


def _help(*overrides: str) -> str:
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        return render_help(list(overrides))


def test_help_lists_real_options_and_describes_every_key(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    text = result.stdout
    assert "base_" not in text
    assert re.search(r"^  method\s+(\w+, )*\[dense\], (\w+, )*gmp, ", text, re.M)
    keys = [KEY_LINE.match(line) for line in text.splitlines() if KEY_LINE.match(line)]
    names = {m.group(1) for m in keys}
    assert {"sparsity", "log_every", "threads", "logger", "wandb.mode", "model.dropout", "optimizer.lr",
            "schedule.warmup_epochs", "method.name"} <= names
    undescribed = [m.group(1) for m in keys if not m.group(3)]
    assert not undescribed


def test_help_for_one_method_shows_its_keys_defaults_and_paper():
    text = _help("method=rigl")
    assert re.search(r"^  method\.delta_t=100\s+steps between mask updates", text, re.M)
    assert re.search(r"^  method\.alpha=0\.3\s+\S", text, re.M)
    assert "https://arxiv.org/abs/1911.11134" in text and "@inproceedings{evci2020rigl," in text
    assert f"method=rigl: {methods.METHODS.record('rigl').summary}" in text
    assert "The authors' code: https://github.com/google-research/rigl" in text
    assert "method.levels" not in text  # another method's key
    lth = _help("method=lth", "optimizer=adam")
    assert "method.levels=null" in lth and "optimizer.betas=[0.9,0.999]" in lth and "1803.03635" in lth


def test_help_refuses_an_unknown_option_in_one_line(tmp_path):
    result = run_cli("--help", "method=nosuch", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: method=nosuch is not an option") and result.stderr.count("\n") == 1


def test_every_schema_field_has_a_description():
    """Every key's help line comes from its field's comment; nodes (groups, wandb) are described by their keys."""
    register_configs()  # the schemas, whichever test this process ran before (pytest-xdist spreads them)
    store = ConfigStore.instance().repo
    schemas = [OmegaConf.get_type(store["base_train.yaml"].node), WandbConfig]
    for group in GROUPS:
        schemas += [OmegaConf.get_type(entry.node) for entry in store[group].values()]
    for schema in schemas:
        described = field_help(schema)
        keys = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_") and f.name not in GROUPS
                and not dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None)]
        assert keys and not [key for key in keys if key not in described], schema.__name__


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_names_its_paper_with_bibtex_and_its_authors_code(name):
    record = methods.METHODS.record(name)
    for paper in record.papers:
        assert paper.url.startswith("https://") and paper.citation
        assert re.match(r"@\w+\{\w+,\n", paper.bibtex) and paper.bibtex.count("{") == paper.bibtex.count("}")
        assert re.search(r"^\s+title = \{.+", paper.bibtex, re.M) and re.search(r"^\s+year = \{\d{4}\}", paper.bibtex,
                                                                                 re.M)
    assert (record.papers and record.code) or name == "dense"
    assert all(url.startswith("https://github.com/") for url in record.code)


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_file_names_its_paper_and_the_authors_code(name):
    """The class's module docstring cites the first paper (its first author) and links the authors' code."""
    record = methods.METHODS.record(name)
    doc = sys.modules[methods.METHODS[name].__module__].__doc__
    assert all(paper.url in doc for paper in record.papers[:1]) and all(url in doc for url in record.code), name
