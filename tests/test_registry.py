"""A method from a user's own package (the manual's example: one class file and one ``register_method`` call), found
by the command line through ``SPARSETRAIN_PLUGINS`` or an entry point, and used by the Python API; plus the
registries' own rules."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sparsetrain
from conftest import cli_command, cli_env, documented_code
from sparsetrain.compose.schema import register_configs
from sparsetrain.errors import ConfigError, DataError
from sparsetrain.methods.catalog import METHODS
from sparsetrain.methods.schemas import MaskedConfig
from sparsetrain.registry import Record, load_plugins
from sparsetrain.sparsity.distribution import layer_densities, zeros_per_layer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "your-own-code.md"
NAME = "magnitude_at_init"


def _documented_plugin() -> str:
    """The method module of the manual's "Your own method" section, as it is written there."""
    return documented_code(DOCS, "tests/test_registry.py")


@pytest.fixture
def isolated(monkeypatch):
    """A test's own registrations end with it: the method records and Hydra's method options are restored."""
    monkeypatch.setattr(METHODS, "_records", dict(METHODS._records))
    _restore_options(monkeypatch, "method")


def _restore_options(monkeypatch, group: str) -> None:
    """The group's options in Hydra's ConfigStore (the package's, registered first) come back after the test."""
    from hydra.core.config_store import ConfigStore

    register_configs()
    repo = ConfigStore.instance().repo
    monkeypatch.setitem(repo, group, dict(repo[group]))


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """``my_methods/magnitude.py`` in a folder of its own, outside the package."""
    root = tmp_path / "plugin"
    (root / "my_methods").mkdir(parents=True)
    (root / "my_methods" / "__init__.py").write_text("")
    (root / "my_methods" / "magnitude.py").write_text(_documented_plugin())
    return root


def _exact_per_layer(masks: dict[str, torch.Tensor], sparsity: float, initial: dict[str, torch.Tensor]) -> None:
    """Each layer holds exactly the uniform distribution's zeros, and they are its smallest starting weights."""
    shapes = {name: tuple(mask.shape) for name, mask in masks.items()}
    zeros = zeros_per_layer(shapes, layer_densities(shapes, sparsity, "uniform"))
    for name, mask in masks.items():
        assert int((~mask).sum()) == zeros[name], name
        magnitude = initial[name].abs().flatten()
        kept, pruned = magnitude[mask.flatten()], magnitude[~mask.flatten()]
        assert pruned.max() <= kept.min(), name


def _run_cli(plugin_dir: Path, run_dir: Path, env: dict[str, str]) -> dict:
    import subprocess

    command = cli_command(f"method={NAME}", "sparsity=0.9", "epochs=1", f"hydra.run.dir={run_dir}")
    result = subprocess.run(command, cwd=run_dir.parent, env={**cli_env(), **env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "summary.json").read_text())


def _initial_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The run's starting weights: the same model built under the run's seed (seed=0)."""
    from sparsetrain.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model("lenet300_100", (1, 8, 8), 10)
    return {name: p.detach() for name, p in model.named_parameters()}


def test_a_method_from_the_users_package_trains_from_the_command_line(plugin_dir, tmp_path):
    run_dir = tmp_path / "run"
    summary = _run_cli(plugin_dir, run_dir, {"PYTHONPATH": str(plugin_dir), "SPARSETRAIN_PLUGINS": "my_methods.magnitude"})
    assert summary["method"] == NAME and summary["masks"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    masks = {name: mask.bool() for name, mask in load_file(run_dir / "masks" / "final.safetensors").items()}
    _exact_per_layer(masks, 0.9, _initial_weights(run_dir))


def test_an_installed_package_is_found_through_its_entry_point(plugin_dir, monkeypatch, isolated):
    """The package's metadata (as pip installs it) names the module in the entry-point group sparsetrain.plugins."""
    info = plugin_dir / "my_methods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sparsetrain.plugins]\nmagnitude = my_methods.magnitude\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delitem(sys.modules, "my_methods.magnitude", raising=False)
    assert NAME not in METHODS
    assert load_plugins({}) == ["entry point magnitude = my_methods.magnitude"]
    assert METHODS.record(NAME).summary == "prune the smallest starting weights of each layer once"


def test_a_method_from_the_users_package_through_the_python_api(plugin_dir, tmp_path, monkeypatch, isolated):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delitem(sys.modules, "my_methods.magnitude", raising=False)
    importlib.import_module("my_methods.magnitude")

    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsifier = sparsetrain.sparsify(model, optimizer, method=NAME, sparsity=0.8, total_steps=5)
    _exact_per_layer(sparsifier.masks, 0.8, initial)
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(8, 20)).pow(2).mean().backward()
        sparsifier.step()
    for name, mask in sparsifier.masks.items():
        assert not dict(model.named_parameters())[name][~mask].any()

    summary = sparsetrain.train([f"method={NAME}", "sparsity=0.9", "epochs=1", f"hydra.run.dir={tmp_path / 'api'}"])
    masks = {name: mask.bool() for name, mask in load_file(tmp_path / "api" / "masks" / "final.safetensors").items()}
    assert summary["method"] == NAME
    _exact_per_layer(masks, 0.9, _initial_weights(tmp_path / "api"))


def test_a_plugin_that_does_not_import_is_one_line():
    with pytest.raises(ConfigError, match=r"^plugin SPARSETRAIN_PLUGINS=no_such_pkg does not import "
                                          r"\(ModuleNotFoundError: .*\); e\.g\. SPARSETRAIN_PLUGINS="):
        load_plugins({"SPARSETRAIN_PLUGINS": "no_such_pkg"})


def test_a_name_is_registered_once_and_unknown_names_list_the_choices(isolated):
    record = METHODS.record("rigl")
    assert METHODS.register(record) is record  # the same record again: no change
    with pytest.raises(ValueError, match="method=rigl is registered already"):
        sparsetrain.register_method(name="rigl", schema=MaskedConfig, target="my.Rigl", summary="another")
    with pytest.raises(ConfigError, match=r"^method='nosuch' is not a method; choose one of: acdc, dense, .*"
                                          r"\(e\.g\. method=rigl\)$"):
        METHODS.record("nosuch")
    with pytest.raises(ValueError, match="schema must be a dataclass"):
        METHODS.register(Record("mine", dict, "my.Mine", "not a dataclass schema"))
    from sparsetrain.data.catalog import DATASETS

    with pytest.raises(DataError, match=r"dataset='svhn' is not a dataset; .*\(e\.g\. dataset=digits\)"):
        DATASETS.record("svhn")


def test_a_dataset_and_a_task_of_ones_own_train_through_the_api(tmp_path, monkeypatch):
    """``register_dataset`` and ``register_task``: the same calls the package makes for its own."""
    from sparsetrain.data.catalog import DATASETS
    from sparsetrain.data.schemas import SyntheticConfig
    from sparsetrain.tasks.catalog import TASKS
    from sparsetrain.tasks.classification import ImageClassification

    for registry in (DATASETS, TASKS):
        monkeypatch.setattr(registry, "_records", dict(registry._records))
    _restore_options(monkeypatch, "dataset")

    class ErrorRate(ImageClassification):
        """Image classification whose headline metric is the loss (lower is better)."""

    sparsetrain.register_dataset(name="tiny_images", schema=SyntheticConfig, summary="64 random 16x16 images",
                                 target="sparsetrain.data.build.build_synthetic")
    sparsetrain.register_task(name="loss_first", target=ErrorRate, summary="classification, best by loss",
                              metrics=("loss", "top1"), hidden_states=False)
    summary = sparsetrain.train(["dataset=tiny_images", "dataset.train_size=64", "dataset.test_size=32",
                                 "dataset.image_size=16", "model=lenet5", "task.name=loss_first", "task.metric=loss",
                                 "method=static", "sparsity=0.5", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert summary["dataset"] == "tiny_images" and summary["task"] == "loss_first" and summary["metric"] == "loss"
    with pytest.raises(ConfigError, match=r"task\.metric='top5' is not a metric of task\.name=loss_first"):
        sparsetrain.train(["dataset=tiny_images", "task.name=loss_first", "task.metric=top5",
                           f"hydra.run.dir={tmp_path / 'refused'}"])
