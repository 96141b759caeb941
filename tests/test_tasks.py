"""Tasks beyond image classification: sequence classification / regression and masked language modelling on
dict batches (named tensors) from a user's dataset and model (tests/user_code.py), trained by sparse methods,
captured, resumed, scored by GLUE metrics equal to scikit-learn / scipy, and the best checkpoint by
``task.metric``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from torch import nn

import sparsetrain
from conftest import cli_command, cli_env, events_without_time, kill_at_first_checkpoint
from sparsetrain.data.schemas import CustomDatasetConfig
from sparsetrain.errors import ConfigError
from sparsetrain.data.build import build_data
from sparsetrain.sparsity.flops import layer_flops
from sparsetrain.tasks.masked_lm import MaskedLM
from sparsetrain.tasks.sequence import SequenceClassification
from sparsetrain.training.step import TrainStep
from user_code import text_classifier

TESTS = Path(__file__).resolve().parent
CLASSIFY = ["model=custom", "model._target_=user_code.text_classifier", "dataset=custom",
            "dataset._target_=user_code.sentences", "task.name=sequence_classification", "batch_size=16"]
MLM = ["model=custom", "model._target_=user_code.token_predictor", "dataset=custom",
       "dataset._target_=user_code.masked_sentences", "task.name=masked_lm", "batch_size=16"]
RIGL = ["method=rigl", "sparsity=0.5", "method.delta_t=4", "method.modules=[linear,embedding]"]
GMP = ["method=gmp", "sparsity=0.5", "method.frequency=4it"]


def _train(run_dir: Path, *overrides: str) -> dict:
    return sparsetrain.train([*overrides, f"hydra.run.dir={run_dir}"])


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def _assert_exact_masks(run_dir: Path, summary: dict) -> None:
    """Every masked weight is zero and each layer keeps exactly its recorded density."""
    state = _checkpoint(run_dir)
    masks = state["method"]["masks"]
    assert set(masks) == set(summary["masks"]["layers"])
    for name, mask in masks.items():
        assert torch.all(state["model"][name][~mask] == 0), name
        layer = summary["masks"]["layers"][name]
        assert int(mask.sum()) == round(layer["density"] * layer["numel"]), name


@pytest.mark.parametrize(("task", "method"), [(CLASSIFY, RIGL), (CLASSIFY, GMP), (MLM, RIGL), (MLM, GMP)],
                         ids=["classify-rigl", "classify-gmp", "mlm-rigl", "mlm-gmp"])
def test_each_task_trains_sparse_with_exact_masks(tmp_path, task, method, monkeypatch):
    checked = []
    update = TrainStep._update

    def update_then_check(self, step, advance):  # every masked weight is zero after every step
        update(self, step, advance)
        params = self.p.method.targets.params
        assert all(torch.all(params[name][~mask] == 0) for name, mask in self.p.method.masks().items())
        checked.append(step)

    monkeypatch.setattr(TrainStep, "_update", update_then_check)
    summary = _train(tmp_path / "run", *task, *method, "epochs=2")
    assert len(checked) == 2 * 10
    _assert_exact_masks(tmp_path / "run", summary)
    assert summary["masks"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    metrics = {"accuracy", "f1", "matthews", "loss"} if task is CLASSIFY else {"loss", "perplexity", "accuracy"}
    assert set(summary["final"]["test"]) == metrics
    if method is RIGL:
        assert "embed.weight" in summary["masks"]["layers"] and summary["dynamics"]["mask_updates"] >= 2


@pytest.mark.parametrize("resident_mb", [64, 0], ids=["resident", "dataloader"])
def test_dict_batches_on_the_captured_step_equal_eager(tmp_path, resident_mb):
    data = [*CLASSIFY, *RIGL, "epochs=2", f"dataset.resident_mb={resident_mb}", "dataset.num_workers=0"]
    eager = _train(tmp_path / "eager", *data, "step_graph=off")
    captured = _train(tmp_path / "captured", *data, "step_graph=on")
    a, b = _checkpoint(tmp_path / "eager"), _checkpoint(tmp_path / "captured")
    assert all(torch.equal(tensor, b["model"][name]) for name, tensor in a["model"].items())
    assert eager["final"] == captured["final"]


def test_lottery_rounds_of_a_text_task_tabulate_its_metric(tmp_path):
    summary = _train(tmp_path / "run", *CLASSIFY, "method=lth", "method.levels=2", "sparsity=0", "epochs=1")
    assert [row["weights_remaining_pct"] for row in summary["round_table"]] == pytest.approx([100, 81.25, 66.25])
    header = (tmp_path / "run" / "lottery.csv").read_text().splitlines()[0].split(",")
    assert "final_test_accuracy" in header and "best_test_accuracy" in header
    assert [row["final_test_accuracy"] for row in summary["round_table"]] == \
        [result["final"]["test"]["accuracy"] for result in summary["rounds"]]


def test_dict_batch_run_killed_and_resumed_is_bit_identical(tmp_path):
    overrides = [*MLM, *RIGL, "epochs=2", "checkpoint_every=4it", "dataset.resident_mb=0",
                 "dataset.num_workers=0"]  # the DataLoader path
    kill_at_first_checkpoint(cli_command(*overrides, "hydra.run.dir=killed"), tmp_path / "killed", tmp_path,
                             env={**cli_env(), "PYTHONPATH": str(TESTS)})
    sparsetrain.train([f"resume={tmp_path / 'killed'}", "dataset.num_workers=2"])  # batches need no worker count
    _train(tmp_path / "reference", *overrides)  # one thread here as in the killed process (conftest)
    expected, actual = _checkpoint(tmp_path / "reference"), _checkpoint(tmp_path / "killed")
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
    assert events_without_time(tmp_path / "killed") == events_without_time(tmp_path / "reference")


def test_dict_items_resident_or_through_workers_give_the_same_batches():
    def data(resident_mb: int):
        cfg = OmegaConf.merge(OmegaConf.structured(CustomDatasetConfig),
                              {"_target_": "user_code.sentences", "resident_mb": resident_mb, "num_workers": 1,
                               "val_size": 32, "num_classes": 3})
        with open_dict(cfg):
            cfg.num_labels = 3  # a key the user added: passed to the factory
        return build_data(cfg, batch_size=16, eval_batch_size=20, device=torch.device("cpu"), seed=5)

    resident, loaded = data(64), data(0)
    assert resident.in_shape == loaded.in_shape == (6,) and resident.num_classes == loaded.num_classes == 3
    assert type(resident.train).__name__ == "DictTrainBatches" and type(loaded.train).__name__ == "FolderTrainBatches"
    for a, b in [*zip(resident.train.epoch(1), loaded.train.epoch(1)), *zip(resident.test, loaded.test)]:
        assert a.keys() == b.keys() == {"input_ids", "attention_mask", "labels"}
        assert all(torch.equal(a[key], b[key]) for key in a)
    plans = list(loaded.train.plans(1, start_batch=4))  # a resumed epoch: the same batch 4
    assert all(torch.equal(x, y) for x, y in zip(loaded.train.make(plans[0]).values(),
                                                 list(resident.train.epoch(1))[4].values()))


class _Echo(nn.Module):
    """Returns the logits the batch carries: hand-made predictions through the task's evaluation."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


def _evaluate(task, scores: torch.Tensor, labels: torch.Tensor) -> dict:
    batches = [{"scores": s, "labels": y} for s, y in zip(scores.split(7), labels.split(7))]
    return task.evaluate(_Echo(), batches, contextlib.nullcontext)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_classification_metrics_equal_scikit_learn(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    logits, labels = torch.randn(40, num_classes, generator=generator), torch.randint(0, num_classes, (40,),
                                                                                      generator=generator)
    scores = _evaluate(SequenceClassification(num_classes), logits, labels)
    predicted = logits.argmax(1).numpy()
    assert scores["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert scores["matthews"] == pytest.approx(matthews_corrcoef(labels, predicted), abs=1e-12)
    assert scores["loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    if num_classes == 2:
        assert scores["f1"] == pytest.approx(f1_score(labels, predicted), abs=1e-12)
    else:
        assert "f1" not in scores


def test_regression_metrics_equal_scipy():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (40,), generator=generator).float()  # ties: average ranks
    predictions = labels + torch.randn(40, generator=generator)
    predictions[:4] = predictions[4]  # ties among the predictions too
    scores = _evaluate(SequenceClassification(1), predictions[:, None], labels)
    assert set(scores) == {"pearson", "spearman", "loss"}
    assert scores["pearson"] == pytest.approx(pearsonr(predictions.double(), labels.double()).statistic, abs=1e-9)
    assert scores["spearman"] == pytest.approx(spearmanr(predictions.double(), labels.double()).statistic, abs=1e-9)
    assert scores["loss"] == pytest.approx(float(F.mse_loss(predictions, labels)), rel=1e-6)


def test_masked_lm_metrics():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, 9, generator=generator)
    labels = torch.randint(0, 9, (12, 5), generator=generator).masked_fill(torch.rand(12, 5, generator=generator) < 0.6,
                                                                            -100)
    scores = _evaluate(MaskedLM(), logits, labels)
    scored = labels != -100
    loss = F.cross_entropy(logits[scored], labels[scored])
    assert scores["loss"] == pytest.approx(float(loss), rel=1e-6)
    assert scores["perplexity"] == pytest.approx(float(loss.exp()), rel=1e-6)
    assert scores["accuracy"] == float((logits[scored].argmax(1) == labels[scored]).double().mean())


@pytest.mark.parametrize(("overrides", "metric", "pick"), [
    ([*MLM], "loss", min),
    ([*CLASSIFY, "task.metric=matthews"], "matthews", max),
    ([*CLASSIFY, "+dataset.num_labels=1"], "pearson", max),  # regression: pearson by default
])
def test_the_best_checkpoint_uses_the_configured_metric(tmp_path, overrides, metric, pick):
    summary = _train(tmp_path / "run", *overrides, "epochs=4", "eval_every=1ep", "method=static", "sparsity=0.5")
    evaluated = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    values = [event[metric] for event in evaluated if event.get("event") == "eval"]
    assert len(set(values)) > 1  # the evaluations differ, so the choice is seen
    best = summary["best_checkpoint"]
    assert best["metric"] == metric and best["value"] == pick(values)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert saved["scores"][metric] == best["value"]


@pytest.mark.parametrize(("overrides", "message"), [
    ([*CLASSIFY, "task.metric=top1"], r"task\.metric='top1' is not a metric of task\.name=sequence_classification"),
    (["task.name=nosuch"], r"task\.name='nosuch' is not a task"),
    ([*CLASSIFY, "task.metric=f1", "+dataset.num_labels=3"], r"task\.metric='f1' is not a metric .* here; "
                                                             r"choose one of: accuracy, matthews, loss"),
    ([*MLM, "task.distill.teacher_target=user_code.token_predictor"], r"task\.distill distils class logits"),
    ([*CLASSIFY, "method=grasp", "sparsity=0.5"], r"method\.samples_per_class=10 samples .* by class"),
    ([*CLASSIFY, "method=synflow", "sparsity=0.5"], r"method=synflow is data-free"),
])
def test_bad_task_keys_are_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _train(tmp_path / "run", *overrides, "steps=2")
    assert not (tmp_path / "run").exists()


def test_the_step_shards_every_named_tensor_under_torchrun():
    from sparsetrain.methods.dense import Dense
    from sparsetrain.runs.distributed import Distributed
    from sparsetrain.training.step import StepParts

    seen = []

    class Recording(SequenceClassification):
        def train_loss(self, model, batch):
            seen.append(batch)
            return super().train_loss(model, batch)

    model = text_classifier(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"input_ids": torch.arange(24).view(4, 6), "attention_mask": torch.ones(4, 6),
             "labels": torch.tensor([0, 1, 1, 0])}
    step = TrainStep(StepParts(model=model, step_model=model, optimizer=optimizer, method=Dense(None, 0.0),
                               task=Recording(2), make_batch=lambda plan: batch, autocast=contextlib.nullcontext,
                               dist=Distributed(rank=1, world_size=2)), "eager")
    step((torch.zeros(1),), 0, lambda: None)
    assert seen[0].keys() == batch.keys()
    assert all(torch.equal(seen[0][key], value[1::2]) for key, value in batch.items())


def test_flops_through_the_task_on_an_example_batch(tmp_path):
    summary = _train(tmp_path / "run", *CLASSIFY, "steps=2")
    model = text_classifier(2)
    example = {"input_ids": torch.ones(1, 6, dtype=torch.long), "attention_mask": torch.ones(1, 6)}
    total, per_layer = layer_flops(model, forward=lambda net: SequenceClassification(2).forward(net, example))
    assert per_layer == {"embed.weight": 0, "hidden.weight": 2 * 8 * 8, "head.weight": 2 * 8 * 2}
    assert summary["flops"]["inference_dense"] == total


def test_saliency_methods_score_through_the_task(tmp_path):
    snip = _train(tmp_path / "snip", *CLASSIFY, "method=snip", "sparsity=0.5", "steps=4")
    _assert_exact_masks(tmp_path / "snip", snip)
    grasp = _train(tmp_path / "grasp", *CLASSIFY, "method=grasp", "sparsity=0.5", "method.samples_per_class=0",
                   "steps=4")
    _assert_exact_masks(tmp_path / "grasp", grasp)
    assert not torch.equal(_checkpoint(tmp_path / "snip")["method"]["masks"]["hidden.weight"],
                           _checkpoint(tmp_path / "grasp")["method"]["masks"]["hidden.weight"])


def test_logit_distillation_on_sequence_classification(tmp_path):
    plain = _train(tmp_path / "plain", *CLASSIFY, "steps=10")
    distilled = _train(tmp_path / "kd", *CLASSIFY, "steps=10", "task.distill.teacher_target=user_code.text_classifier",
                       "task.distill.hardness=0.5")
    assert distilled["final"] != plain["final"]
