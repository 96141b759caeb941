"""What goes wrong outside sparsetrain, said in one line: a user's model factory that raises, a failed download, a
dataset.root one level off, a hub model offline, torchvision weights missing from the cache. CPU only, no network."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import torch
import torchvision

import sparsetrain
from nlp_fixtures import glue_overrides, write_glue
from sparsetrain.errors import ConfigError, DataError, UserCodeError
from sparsetrain.models.zoo import build_configured_model
from sparsetrain.runs.files import HYDRA_ONLY
from test_data import build, config, random_cifar, write_cifar, write_mnist

SQUEEZENET_FILE = "squeezenet1_1-b8a52dc0.pth"  # the file name of torchvision's SqueezeNet1_1_Weights.DEFAULT


@pytest.fixture
def offline(monkeypatch):
    """No network for urllib (torchvision's datasets and torch.hub download with it)."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)


@pytest.mark.parametrize("factory, during, first_line", [
    ("raising_net", "while building the model", "bad layer sizes for 10 classes"),
    ("fixed_input_net", "on the first batch (inputs of shape (1, 8, 8))",
     "mat1 and mat2 shapes cannot be multiplied (1x64 and 100x10)"),
])
def test_a_factory_that_raises_is_one_line_with_its_traceback_in_the_log(cli_in_process, tmp_path, factory, during,
                                                                        first_line):
    run_dir = tmp_path / "run"
    status, _, err = cli_in_process(tmp_path, "model=custom", f"model._target_=user_code.{factory}", "steps=1",
                                    f"hydra.run.dir={run_dir}")
    log_file = run_dir / "sparsetrain.log"
    assert status == 2 and err.splitlines() == [
        f"error: model._target_='user_code.{factory}' raised RuntimeError {during}: {first_line} "
        f"(traceback: {log_file})"]
    log = log_file.read_text()
    assert "Traceback (most recent call last)" in log and f"RuntimeError: {first_line}" in log
    assert {path.name for path in run_dir.iterdir()} <= HYDRA_ONLY  # nothing of a run: only the log is of use
    with pytest.raises(UserCodeError) as raised:  # no log file in this process: no directory left
        sparsetrain.train(["model=custom", f"model._target_=user_code.{factory}", "steps=1",
                           f"hydra.run.dir={tmp_path / 'api'}"])
    assert isinstance(raised.value.__cause__, RuntimeError) and not (tmp_path / "api").exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_failed_download_leaves_no_new_directory(tmp_path, offline, name):
    with pytest.raises(DataError, match=r"^dataset\.download=true could not fetch"):
        build(config(name, root=str(tmp_path / "new" / "data"), download=True))
    assert list(tmp_path.iterdir()) == []


def test_a_root_one_level_off_is_named_instead_of_downloading(tmp_path, monkeypatch, offline):
    write_mnist(tmp_path / "data")
    root = tmp_path / "data" / "MNIST"
    with pytest.raises(DataError) as raised:
        build(config("mnist", root=str(root), download=True))
    assert str(raised.value) == (f"dataset.root='{root}': found MNIST's files one level up; "
                                 f"e.g. dataset.root={tmp_path / 'data'}")
    assert {path.name for path in root.iterdir()} == {"raw"}  # no download began
    write_cifar(tmp_path / "cifar" / "mine", monkeypatch, random_cifar(10, 0), random_cifar(5, 1))
    with pytest.raises(DataError) as raised:
        build(config("cifar10", root=str(tmp_path / "cifar"), download=True))
    assert str(raised.value) == (f"dataset.root='{tmp_path / 'cifar'}': found CIFAR-10's files one level down; "
                                 f"e.g. dataset.root={tmp_path / 'cifar' / 'mine'}")


def test_a_hub_name_offline_is_one_line_naming_the_model(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import huggingface_hub

    name = "made-up-org/made-up-model"
    expected = (f"model.name_or_path='{name}': not in the local cache and the Hugging Face hub cannot be reached; "
                "e.g. model.name_or_path=/path/to/a/local/model")
    cfg = {"source": "hf", "name": "hf", "name_or_path": name, "config": None, "head": "auto"}
    with pytest.raises(ConfigError) as raised:  # HF_HUB_OFFLINE=1 (conftest)
        build_configured_model(cfg, (8,), 2, "sequence_classification")
    assert str(raised.value) == expected
    write_glue(tmp_path, "sst2", train=8, dev=8)
    with pytest.raises(DataError) as raised:  # the tokenizer is the model's own: the model is named
        sparsetrain.train([*glue_overrides(name, tmp_path, tmp_path / "run"), "steps=1"])
    assert str(raised.value) == expected
    asked = []  # without HF_HUB_OFFLINE: one request that gets no answer, then the cache alone (no retries)

    def unanswered(self, repo_id, **kwargs):
        asked.append(repo_id)
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unanswered)
    with pytest.raises(ConfigError) as raised:
        build_configured_model(cfg, (8,), 2, "sequence_classification")
    assert str(raised.value) == expected and asked == [name]


def test_torchvision_weights_come_from_the_cache(tmp_path, monkeypatch, offline):
    from sparsetrain.compose.command_line import preflight

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = {"source": "torchvision", "name": "squeezenet1_1", "weights": "DEFAULT", "init": "paper"}
    with pytest.raises(ConfigError) as raised:
        sparsetrain.train(["model=torchvision", "model.name=squeezenet1_1", "model.weights=DEFAULT",
                           "dataset=synthetic", "dataset.image_size=32", f"hydra.run.dir={tmp_path / 'run'}"])
    file = tmp_path / "hub" / "checkpoints" / SQUEEZENET_FILE
    assert str(raised.value).startswith(f"model.weights='DEFAULT': {file} is not in torchvision's cache and cannot be "
                                        "downloaded (<urlopen error no network>)")
    assert not (tmp_path / "run").exists()
    torch.manual_seed(1)
    weights = torchvision.models.squeezenet1_1().state_dict()  # 1000 classes, as torchvision's file
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, file)
    model = build_configured_model(cfg, (3, 32, 32), 10).state_dict()
    assert model["classifier.1.weight"].shape == (10, 512, 1, 1)  # a new head for 10 classes, the rest loaded
    assert all(torch.equal(model[key], value) for key, value in weights.items() if not key.startswith("classifier"))
    model = build_configured_model(cfg, (3, 32, 32), 1000).state_dict()
    assert all(torch.equal(model[key], value) for key, value in weights.items())
    with pytest.raises(ConfigError, match=r"^model\.weights='NOPE' is not a weights name of torchvision's resnet18; "
                                          r"choose one of: IMAGENET1K_V1, DEFAULT \(e\.g\. model\.weights=DEFAULT\)$"):
        preflight(["model=torchvision", "model.weights=NOPE"], multirun=False)
