"""The open runner: a model and a dataset from the user's own module (by ``_target_``), torchvision models by name,
tensor files, prunable-weight patterns, distillation, and one-line errors for bad ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import prune

import sparsetrain
from conftest import cli_command, cli_env, events_without_time, kill_at_first_checkpoint
from sparsetrain.errors import ConfigError
from sparsetrain.errors import DataError
from sparsetrain.export import export
from sparsetrain.models.zoo import build_model
from sparsetrain.runner.run import run
from sparsetrain.sparsity.masks import format_report, mask_report
from sparsetrain.sparsity.targets import prunable_parameters, select_targets
from sparsetrain.tasks.classification import ImageClassification
from sparsetrain.tasks.distill import Distillation

TESTS = Path(__file__).resolve().parent  # user_code.py lives here
USER = ["model=custom", "model._target_=user_code.tiny_net", "+model.hidden=12",
        "dataset=custom", "dataset._target_=user_code.digits"]


def _train(run_dir: Path, *overrides: str) -> dict:
    return sparsetrain.train([*USER, *overrides, f"hydra.run.dir={run_dir}"])


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def _user_env() -> dict:
    return {**cli_env(), "PYTHONPATH": str(TESTS)}


def test_custom_model_and_data_train_rigl_on_the_captured_step(tmp_path):
    rigl = ["method=rigl", "sparsity=0.8", "epochs=2", "method.delta_t=5"]
    eager = _train(tmp_path / "eager", *rigl, "step_graph=off")
    captured = _train(tmp_path / "captured", *rigl, "step_graph=on")
    assert eager["model"] == "custom" and eager["dataset"] == "custom" and eager["in_shape"] == [1, 8, 8]
    assert eager["dynamics"]["mask_updates"] > 3
    assert eager["masks"]["sparsity"] == pytest.approx(0.8, abs=0.002)  # ERK: floor((1 - d_l) N_l) per layer
    a, b = _checkpoint(tmp_path / "eager"), _checkpoint(tmp_path / "captured")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert eager["final"] == captured["final"]


@pytest.mark.parametrize("method", [["method=lth", "method.levels=2", "sparsity=0"],
                                    ["method=gmp", "sparsity=0.75", "method.frequency=5it"]])
def test_custom_model_and_data_with_pruning_methods(tmp_path, method):
    summary = _train(tmp_path / "run", *method, "epochs=2")
    if "method=lth" in method:
        remaining = [r["weights_remaining"] for r in summary["rounds"]]
        assert len(remaining) == 3 and remaining[0] == 1.0
        assert remaining[1] == pytest.approx(0.8, abs=0.01) and remaining[2] == pytest.approx(0.64, abs=0.01)
    else:
        assert summary["masks"]["sparsity"] == pytest.approx(0.75, abs=1e-3)


def test_custom_run_killed_and_resumed_is_bit_identical(tmp_path):
    overrides = ["method=rigl", "sparsity=0.8", "method.delta_t=5", "epochs=3", "checkpoint_every=7it"]
    kill_at_first_checkpoint(cli_command(*USER, *overrides, "hydra.run.dir=killed"), tmp_path / "killed", tmp_path,
                             env=_user_env())
    assert 0 < _checkpoint(tmp_path / "killed")["position"]["step"] < 3 * 17  # killed mid-run
    sparsetrain.train([f"resume={tmp_path / 'killed'}"])
    _train(tmp_path / "reference", *overrides)  # one thread here as in the killed process (conftest)
    expected, actual = _checkpoint(tmp_path / "reference"), _checkpoint(tmp_path / "killed")
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
    assert torch.equal(expected["method"]["masks"]["4.weight"], actual["method"]["masks"]["4.weight"])
    assert events_without_time(tmp_path / "killed") == events_without_time(tmp_path / "reference")


def test_bad_user_code_is_refused_in_one_line(tmp_path):
    result = subprocess.run(cli_command("model=custom", "model._target_=user_code.nosuch", "hydra.run.dir=run"),
                            cwd=tmp_path, env=_user_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: model._target_='user_code.nosuch' does not resolve (AttributeError: module 'user_code' has no "
        "attribute 'nosuch'); e.g. model._target_=my_pkg.nets.make_net"]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="returned a str, not a torch.nn.Module"):
        sparsetrain.train(["model=custom", "model._target_=user_code.not_a_module", "steps=1",
                           f"hydra.run.dir={tmp_path / 'not_module'}"])
    with pytest.raises(DataError, match=r"items must be \(input, target\) pairs .* got Tensor"):
        sparsetrain.train(["dataset=custom", "dataset._target_=user_code.bare_items", "steps=1",
                           f"hydra.run.dir={tmp_path / 'bare'}"])
    with pytest.raises(ConfigError, match="does not resolve"):
        sparsetrain.train(["dataset=custom", "dataset._target_=nosuch_package.data", "steps=1",
                           f"hydra.run.dir={tmp_path / 'nosuch'}"])


def test_torchvision_model_by_name(tmp_path):
    summary = sparsetrain.train([
        "model=torchvision", "model.name=resnet18", "dataset=synthetic", "dataset.image_size=32",
        "dataset.train_size=32", "dataset.test_size=16", "batch_size=16", "steps=2", "method=static",
        "sparsity=0.5", "method.exclude=[conv1.weight]", f"hydra.run.dir={tmp_path / 'run'}"])
    reference = torchvision.models.resnet18(num_classes=10)
    assert summary["parameters"] == sum(p.numel() for p in reference.parameters())
    layers = summary["masks"]["layers"]
    assert "fc.weight" in layers and "layer4.1.conv2.weight" in layers and "conv1.weight" not in layers
    assert summary["masks"]["unmasked"] == {"conv1.weight": [64, 3, 7, 7]}


def test_tensor_files_with_a_validation_file(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 96), ("val", 32), ("test", 40)):
        x = torch.randn(n, 5, generator=generator)
        np.savez(tmp_path / f"{split}.npz", x=x.numpy(), y=(x[:, 0] > 0).long().numpy())
    summary = sparsetrain.train([
        "dataset=tensors", f"dataset.train_file={tmp_path / 'train.npz'}", f"dataset.val_file={tmp_path / 'val.npz'}",
        f"dataset.test_file={tmp_path / 'test.npz'}", "model=custom", "model._target_=torch.nn.Linear",
        "+model.in_features=5", "+model.out_features=2", "batch_size=16", "epochs=3", "method=gmp", "sparsity=0.5",
        f"hydra.run.dir={tmp_path / 'run'}"])
    assert summary["in_shape"] == [5] and summary["num_classes"] == 2
    assert set(summary["final"]) == {"val", "test"} and summary["final"]["test"]["top1"] > 0.7


def _patterned() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.encoder = nn.ModuleDict({"conv": nn.Conv1d(8, 8, 3), "norm": nn.LayerNorm(8),
                                          "query": nn.Linear(8, 8), "key": nn.Linear(8, 8)})
            self.head = nn.Linear(8, 3)

    return Net()


@pytest.mark.parametrize(("options", "expected"), [
    ({}, ["encoder.conv.weight", "encoder.query.weight", "encoder.key.weight", "head.weight"]),
    ({"modules": ["linear", "embedding"]}, ["embed.weight", "encoder.query.weight", "encoder.key.weight",
                                            "head.weight"]),
    ({"include": ["encoder.*"], "exclude": ["*.key.weight"]}, ["encoder.conv.weight", "encoder.query.weight"]),
    ({"include": [r"re:\.(query|key)\."]}, ["encoder.query.weight", "encoder.key.weight"]),
    ({"exclude": ["first", "last"]}, ["encoder.query.weight", "encoder.key.weight"]),
    ({"modules": ["conv1d"]}, ["encoder.conv.weight"]),
])
def test_include_exclude_patterns_select_exactly(options, expected):
    assert list(prunable_parameters(_patterned(), **options)) == expected


def test_bad_patterns_and_the_density_table():
    model = _patterned()
    with pytest.raises(ConfigError, match="method.include: 'nosuch' matches no prunable weight"):
        prunable_parameters(model, include=["nosuch"])
    with pytest.raises(ConfigError, match="method.modules"):
        prunable_parameters(model, modules=["lstm"])
    with pytest.raises(ConfigError, match="method.exclude leaves no prunable weight"):
        prunable_parameters(model, exclude=["*"])
    targets = select_targets(model, ["last"], [], exclude=["encoder.conv.weight"])
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in targets.params.items()}
    report = mask_report(masks, {name: 1.0 for name in masks}, targets.fixed, {"encoder.conv.weight": [8, 8, 3]})
    table = format_report(report)
    assert "encoder.conv.weight" in table and "(not prunable)" in table and "head.weight" in table


def test_exported_resnet50_loads_into_torchvision_with_custom_from_mask(tmp_path):
    torch.manual_seed(0)
    in_shape = (3, 32, 32)
    model = build_model("resnet50", in_shape, 10, stem="imagenet")
    masks = {name: torch.rand(p.shape) < 0.2 for name, p in prunable_parameters(model).items()}
    with torch.no_grad():
        for name, param in prunable_parameters(model).items():
            param.mul_(masks[name])
    from safetensors.torch import save_file

    (tmp_path / "masks").mkdir()
    save_file(masks, tmp_path / "masks" / "final.safetensors")
    (tmp_path / "checkpoints").mkdir()
    config = {"model": {"name": "resnet50", "depth": None, "width": None, "dropout": 0.0, "stem": "imagenet"}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "checkpoints" / "last.pt")
    (tmp_path / "summary.json").write_text(json.dumps({"in_shape": list(in_shape), "num_classes": 10}))
    export(tmp_path, tmp_path / "export", force=False)

    stock = torchvision.models.resnet50(num_classes=10)
    for name, mask in masks.items():
        prune.custom_from_mask(stock.get_submodule(name.rsplit(".", 1)[0]), "weight", mask)
    stock.load_state_dict(torch.load(tmp_path / "export" / "pruned_state_dict.pt", weights_only=True))
    x = torch.randn(2, *in_shape)
    assert torch.equal(stock.eval()(x), model.eval()(x))
    assert float((stock.fc.weight == 0).float().mean()) > 0.7


def test_distillation_loss():
    teacher = nn.Linear(4, 3)
    kd = Distillation(teacher, temperature=2.0, hardness=1.0)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(5, 4)
    with torch.no_grad():
        same = kd.loss(teacher(x), x, torch.tensor(7.0))
    assert same.abs().item() < 1e-6  # the student equals the teacher: no distillation loss, task loss unused
    student = torch.randn(5, 3)
    t_prob = torch.softmax(teacher(x).detach() / 2, dim=1)
    manual = (t_prob * (t_prob.log() - torch.log_softmax(student / 2, dim=1))).sum(1).mean() * 4
    half = Distillation(teacher, temperature=2.0, hardness=0.5)
    torch.testing.assert_close(half.loss(student, x, torch.tensor(3.0)), 0.5 * manual + 1.5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_teacher_runs_with_dropout_only_in_train_mode(mode):
    """TAMT-KD's teacher is never put in eval mode (teacher_mode=train): its dropout draws differ between calls."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    kd = Distillation(teacher, temperature=1.0, hardness=1.0, teacher_mode=mode)
    x, student = torch.randn(8, 4), torch.randn(8, 3)
    losses = [kd.loss(student, x, torch.tensor(0.0)) for _ in range(2)]
    assert teacher.training == (mode == "train") and not any(p.requires_grad for p in teacher.parameters())
    assert torch.equal(losses[0], losses[1]) == (mode == "eval")


def test_distillation_from_a_run_directory(tmp_path):
    sparsetrain.train(["steps=20", f"hydra.run.dir={tmp_path / 'teacher'}"])
    summary = sparsetrain.train(["steps=20", "method=static", "sparsity=0.9",
                                 f"task.distill.teacher={tmp_path / 'teacher'}", f"hydra.run.dir={tmp_path / 'student'}"])
    plain = sparsetrain.train(["steps=20", "method=static", "sparsity=0.9", f"hydra.run.dir={tmp_path / 'plain'}"])
    assert summary["final"] != plain["final"]  # the teacher changed the loss
    with pytest.raises(ConfigError, match="task.distill.teacher='nosuch' is not a run directory"):
        sparsetrain.train(["steps=2", "task.distill.teacher=nosuch", f"hydra.run.dir={tmp_path / 'bad'}"])


def test_custom_data_resident_or_through_workers_gives_the_same_batches():
    from omegaconf import OmegaConf, open_dict

    from sparsetrain.data.schemas import CustomDatasetConfig
    from sparsetrain.data.build import build_data

    def batches(resident_mb: int, start: int = 0) -> list:
        cfg = OmegaConf.merge(OmegaConf.structured(CustomDatasetConfig),
                              {"_target_": "user_code.digits", "resident_mb": resident_mb, "num_workers": 0,
                               "val_size": 100})
        with open_dict(cfg):
            cfg.limit = 500  # a key the user added: passed to the factory
        data = build_data(cfg, batch_size=50, eval_batch_size=64, device=torch.device("cpu"), seed=3)
        assert data.in_shape == (1, 8, 8) and data.num_classes == 10 and data.val.num_samples == 100
        return list(data.train.epoch(1, start_batch=start))

    resident, loaded, resumed = batches(1024), batches(0), batches(0, start=5)
    assert len(resident) == len(loaded) == (400 - 100) // 50
    for (x, y), (x2, y2) in zip(resident, loaded):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert len(resumed) == 1 and torch.equal(loaded[5][0], resumed[0][0])


class _NamedInputsTask(ImageClassification):
    """A task fed named tensors, ``model(**inputs)``, as text tasks are (token ids, attention mask, labels)."""

    def train_loss(self, model, batch):
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        return self.criterion(model(**inputs).float(), batch["labels"])


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, input_ids, attention_mask):
        hidden = (self.embed(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return self.head(hidden)


@pytest.mark.parametrize("path", ["eager", "recorded_graph"])
def test_the_step_feeds_dict_batches_through_the_task(path):
    import contextlib

    from sparsetrain.runs.distributed import Distributed
    from sparsetrain.training.step import StepParts, TrainStep

    generator = torch.Generator().manual_seed(0)
    ids, mask = torch.randint(0, 20, (64, 5), generator=generator), torch.ones(64, 5)
    labels = ids[:, 0] % 3

    def make(plan):
        (index,) = plan
        return {"input_ids": ids[index], "attention_mask": mask[index], "labels": labels[index]}

    def train(path):
        torch.manual_seed(0)
        model = _TwoInputs()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        method = sparsetrain.sparsify(model, optimizer, "static", 0.5, total_steps=8,
                                      modules=["linear", "embedding"]).method
        step = TrainStep(StepParts(model=model, step_model=model, optimizer=optimizer, method=method,
                                   task=_NamedInputsTask(3), make_batch=make, autocast=contextlib.nullcontext,
                                   dist=Distributed()), path)
        for i in range(8):
            step((torch.arange(8 * i, 8 * i + 8),), i, lambda: None)
        return model, method, float(step.loss_sum)

    model, method, loss = train(path)
    reference, _, reference_loss = train("eager")
    assert set(method.masks()) == {"embed.weight", "head.weight"}
    assert all(torch.all(p[~m] == 0) for p, m in zip(method.targets.params.values(), method.masks().values()))
    assert loss == reference_loss and all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=custom"], r"model\._target_ is not set; give the import path of your factory"),
    (["dataset=custom"], r"dataset\._target_ is not set"),
    (["dataset=tensors", "dataset.test_file=t.npz"], r"dataset\.train_file is not set"),
    (["dataset=tensors", "dataset.train_file=nosuch.npz", "dataset.test_file=t.npz"],
     r"dataset\.train_file='nosuch\.npz' is not a file"),
    (["model=torchvision", "model.name=nosuch"], r"model\.name='nosuch' is not a torchvision classification model"),
    (["task.distill.temperature=0"], r"task\.distill\.temperature=0\.0 must be positive"),
])
def test_missing_or_bad_open_runner_keys_are_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        sparsetrain.train([*overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()


def test_a_factory_in_the_working_directory_is_found_as_python_m_would(tmp_path):
    """``sparsetrain`` (the installed command, not ``python -m``) run where ``mynets.py`` lies."""
    (tmp_path / "mynets.py").write_text("from torch import nn\n\n\ndef make_net(in_shape, num_classes):\n"
                                        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n")
    command = [str(Path(sys.executable).with_name("sparsetrain")), "model=custom", "model._target_=mynets.make_net",
               "epochs=1", "hydra.run.dir=run"]
    result = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["parameters"] == 64 * 10 + 10


def test_a_torchvision_model_takes_added_keys_and_an_existing_one_without_plus(compose_config):
    from sparsetrain.compose.command_line import preflight

    preflight(["model=torchvision", "model.name=mobilenet_v3_small", "+model.width_mult=0.5", "dataset=synthetic"],
              multirun=False)  # an added key reaches torchvision.models.get_model
    with pytest.raises(ConfigError, match=r"^model\.dropout exists already: set it without a \+, e\.g\. "
                                          r"model\.dropout="):
        preflight(["model=torchvision", "+model.dropout=0.3"], multirun=False)


def test_init_from_a_pth_state_dict(compose_config, tmp_path):
    """A plain ``torch.save(model.state_dict(), "weights.pth")`` starts the run (one step at a negligible rate)."""
    torch.manual_seed(1)
    saved = build_model("lenet300_100", (1, 8, 8), 10).state_dict()
    torch.save(saved, tmp_path / "weights.pth")
    overrides = [f"init_from={tmp_path / 'weights.pth'}", "steps=1", "optimizer.lr=1e-12", "device=cpu"]
    run(compose_config(*overrides), tmp_path / "run", overrides)
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.allclose(trained[name], saved[name], atol=1e-6) for name in saved)
