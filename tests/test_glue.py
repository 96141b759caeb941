"""GLUE with Hugging Face models, offline: a tiny random BERT on GLUE-format files written by the tests
(tests/nlp_fixtures.py). Metrics against scikit-learn / scipy, reading every file layout, the tokenisation cache,
the default prunable matrices under every kind of method, MNLI matched/mismatched, resume, bad keys."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from conftest import cli_command, cli_env, crash_and_resume
from nlp_fixtures import DEFAULT_MATRICES, glue_root, tiny_bert, write_glue  # noqa: F401 - fixtures
from nlp_fixtures import glue_overrides as overrides
from sparsetrain.api import train
from sparsetrain.errors import ConfigError
from sparsetrain.data import glue
from sparsetrain.errors import DataError
from sparsetrain.tasks.sequence import SequenceClassification


def glue_cfg(root: Path, tokenizer: Path, task: str, **options) -> object:
    values = {"name": "glue", "task": task, "root": str(root), "tokenizer": str(tokenizer), "max_seq_length": 24,
              "padding": "fixed", "cache_dir": None, "val_size": 0, **options}
    return OmegaConf.create(values)


def build(cfg, batch_size: int = 8):
    return glue.build_glue(cfg, batch_size=batch_size, eval_batch_size=16, device=torch.device("cpu"), seed=0)


# ---- metrics ----------------------------------------------------------------------------------------------------

def test_metrics_equal_scikit_learn_and_scipy():
    generator = torch.Generator().manual_seed(0)
    labels2, predictions2 = (torch.randint(0, 2, (101,), generator=generator) for _ in range(2))
    scores = SequenceClassification(2).scores(predictions2, labels2)
    assert scores["accuracy"].item() == pytest.approx(accuracy_score(labels2, predictions2), abs=1e-12)
    assert scores["f1"].item() == pytest.approx(f1_score(labels2, predictions2), abs=1e-12)
    assert scores["matthews"].item() == pytest.approx(matthews_corrcoef(labels2, predictions2), abs=1e-12)
    labels3, predictions3 = (torch.randint(0, 3, (97,), generator=generator) for _ in range(2))
    scores = SequenceClassification(3).scores(predictions3, labels3)
    assert scores["matthews"].item() == pytest.approx(matthews_corrcoef(labels3, predictions3), abs=1e-12)
    targets = torch.randint(0, 6, (50,), generator=generator).float() / 1.25  # ties, as STS-B's scores have
    outputs = targets + torch.randn(50, generator=generator)
    scores = SequenceClassification(1).scores(outputs, targets)
    assert scores["pearson"].item() == pytest.approx(pearsonr(outputs, targets)[0], abs=1e-6)
    assert scores["spearman"].item() == pytest.approx(spearmanr(outputs, targets)[0], abs=1e-6)


def test_mnli_scores_matched_and_mismatched_dev_like_scikit_learn(tiny_bert, glue_root, tmp_path):
    """The run's accuracy and accuracy_mm equal scikit-learn's on the final model's predictions for each dev file."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    summary = train(overrides(tiny_bert, glue_root, tmp_path / "run", "mnli", "steps=8", "eval_every=0"))
    assert summary["metric"] == "accuracy"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3, ignore_mismatched_sizes=True)
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    tokenizer, names = AutoTokenizer.from_pretrained(tiny_bert), ("entailment", "neutral", "contradiction")
    for split, suffix in (("dev_matched", ""), ("dev_mismatched", "_mm")):
        rows = list(csv.DictReader(open(glue_root / "MNLI" / f"{split}.tsv"), delimiter="\t"))
        encoded = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True,
                            max_length=24, padding="max_length", return_tensors="pt")
        with torch.no_grad():
            predicted = model.eval()(**encoded).logits.argmax(-1)
        truth = [names.index(r["gold_label"]) for r in rows]
        assert summary["final"]["test"][f"accuracy{suffix}"] == pytest.approx(accuracy_score(truth, predicted))
        assert summary["final"]["test"][f"matthews{suffix}"] == pytest.approx(matthews_corrcoef(truth, predicted))
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"accuracy", "accuracy_mm", "loss_mm"} <= set(next(e for e in events if e["event"] == "eval"))


# ---- reading GLUE files ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, column", [("cola", 1), ("sst2", 1), ("rte", 3), ("mrpc", 0), ("stsb", 9)])
def test_labels_are_read_from_each_original_layout(tiny_bert, glue_root, task, column):
    data = build(glue_cfg(glue_root, tiny_bert, task))
    rows = (glue_root / glue.TASKS[task].directory / "dev.tsv").read_text().splitlines()
    values = [row.split("\t")[column] for row in (rows if task == "cola" else rows[1:])]
    expected = [float(v) for v in values] if task == "stsb" else \
        [0 if v == "entailment" else 1 if v == "not_entailment" else int(v) for v in values]
    assert data.test.tensors["labels"].tolist() == pytest.approx(expected)
    assert data.num_classes == (1 if task == "stsb" else 2)
    assert data.task == "sequence_classification" and data.metric == glue.TASKS[task].metric


@pytest.mark.parametrize("extension", ["csv", "jsonl"])
def test_hub_column_exports_give_the_same_tensors_as_the_tsv_files(tiny_bert, glue_root, tmp_path, extension):
    """An export of the hub dataset (premise/hypothesis/label, label numbers) tokenises like the GLUE TSV files."""
    names = ("entailment", "neutral", "contradiction")
    for split, stem in (("train", "train"), ("dev_matched", "validation_matched"),
                        ("dev_mismatched", "validation_mismatched")):
        rows = [{"premise": r["sentence1"], "hypothesis": r["sentence2"], "label": names.index(r["gold_label"]),
                 "idx": i} for i, r in enumerate(csv.DictReader(open(glue_root / "MNLI" / f"{split}.tsv"),
                                                                delimiter="\t"))]
        path = tmp_path / "mnli" / f"{stem}.{extension}"
        path.parent.mkdir(exist_ok=True)
        if extension == "csv":
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    exported, original = build(glue_cfg(tmp_path, tiny_bert, "mnli")), build(glue_cfg(glue_root, tiny_bert, "mnli"))
    for a, b in ((exported.train.tensors, original.train.tensors), (exported.test.tensors, original.test.tensors),
                 (exported.test_variants["mm"].tensors, original.test_variants["mm"].tensors)):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_files_of_another_task_are_refused_with_one_line(tiny_bert, glue_root, tmp_path):
    (tmp_path / "MRPC").mkdir()
    for split in ("train", "dev"):  # SST-2's files where MRPC's belong
        (tmp_path / "MRPC" / f"{split}.tsv").write_text((glue_root / "SST-2" / f"{split}.tsv").read_text())
    with pytest.raises(DataError, match=r"MRPC/train.tsv has columns \['sentence', 'label'\], not those of GLUE MRPC"):
        build(glue_cfg(tmp_path, tiny_bert, "mrpc"))


def test_tokenisation_is_cached_and_redone_when_a_setting_changes(tiny_bert, tmp_path, monkeypatch):
    write_glue(tmp_path, "rte")
    calls = []
    real = glue.load_tokenizer

    class Counting:  # the tokenizer, recording the max_length of each call
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def __call__(self, *args, **kwargs):
            calls.append(kwargs["max_length"])
            return self.tokenizer(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

    def counting(name):
        return Counting(real(name))

    monkeypatch.setattr(glue, "load_tokenizer", counting)
    first = build(glue_cfg(tmp_path, tiny_bert, "rte"))
    assert calls == [24, 24] and len(list((tmp_path / ".sparsetrain_cache").glob("*.safetensors"))) == 2
    again = build(glue_cfg(tmp_path, tiny_bert, "rte"))
    assert calls == [24, 24]  # read back: the tokenizer was not called
    assert all(torch.equal(first.train.tensors[k], again.train.tensors[k]) for k in first.train.tensors)
    longer = build(glue_cfg(tmp_path, tiny_bert, "rte", max_seq_length=32))
    assert calls == [24, 24, 32, 32] and longer.test.tensors["input_ids"].shape[1] == 32
    (tmp_path / "RTE" / "dev.tsv").write_text((tmp_path / "RTE" / "dev.tsv").read_text().replace("w1 ", "w2 "))
    build(glue_cfg(tmp_path, tiny_bert, "rte"))
    assert calls == [24, 24, 32, 32, 24]  # only the changed file is tokenised again


def test_dynamic_padding_cuts_each_batch_after_its_longest_sequence(tiny_bert, glue_root):
    fixed = build(glue_cfg(glue_root, tiny_bert, "rte"))
    dynamic = build(glue_cfg(glue_root, tiny_bert, "rte", padding="dynamic"))
    assert not dynamic.train.static_shapes
    for a, b in zip(fixed.train.epoch(1), dynamic.train.epoch(1)):
        longest = int(a["attention_mask"].sum(1).max())
        assert b["input_ids"].shape == (8, longest) and longest < 24
        assert all(torch.equal(a[key][:, :longest] if a[key].dim() > 1 else a[key], b[key]) for key in a)
    assert [b["labels"].tolist() for b in dynamic.train.epoch(2, start_batch=3)] == \
        [b["labels"].tolist() for b in dynamic.train.epoch(2)][3:]


# ---- models and methods ------------------------------------------------------------------------------------------

def test_config_only_model_builds_the_head_of_the_task():
    from sparsetrain.models.zoo import build_configured_model

    cfg = {"source": "hf", "name": "hf", "name_or_path": None, "head": "auto", "config": {
        "model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32}}
    regression = build_configured_model(cfg, (8,), 1, "sequence_classification")
    assert type(regression).__name__ == "BertForSequenceClassification" and regression.config.num_labels == 1
    assert regression.config.problem_type == "regression"
    assert type(build_configured_model(cfg, (8,), 0, "masked_lm")).__name__ == "BertForMaskedLM"


def test_model_errors_are_one_line(monkeypatch):
    from sparsetrain.models import hf
    from sparsetrain.models.zoo import build_configured_model

    cfg = {"source": "hf", "name": "hf", "name_or_path": "no-such-org/no-such-model", "config": None, "head": "auto"}
    with pytest.raises(ValueError, match=r"^model.name_or_path='no-such-org/no-such-model': not in the local cache and "
                                         r"the Hugging Face hub cannot be reached") as error:
        build_configured_model(cfg, (8,), 2, "sequence_classification")  # offline: not in the cache
    assert "\n" not in str(error.value)
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r'transformers; pip install "sparsetrain\[nlp\]"$'):
        hf.check_hf(cfg)


@pytest.mark.parametrize("method, extra", [
    ("gmp", ["method.start=1it", "method.end=3it", "method.frequency=1it"]),
    ("oneshot", ["method.distribution=uniform"]),  # one global ranking
    ("rigl", ["method.delta_t=2", "method.distribution=uniform", "method.uniform_dense_first=false"]),
    ("static", ["method.distribution=uniform", "method.uniform_dense_first=false"]),
])
def test_every_kind_of_method_masks_exactly_the_default_matrices(tiny_bert, glue_root, tmp_path, method, extra):
    summary = train(overrides(tiny_bert, glue_root, tmp_path / "run", "rte", f"method={method}", "sparsity=0.5",
                              "steps=4", "eval_every=0", *extra))
    assert set(summary["masks"]["layers"]) == DEFAULT_MATRICES
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    from safetensors.torch import load_file

    masks = load_file(tmp_path / "run" / "masks" / "final.safetensors")
    assert set(masks) == DEFAULT_MATRICES
    zeros = {name: int((~mask.bool()).sum()) for name, mask in masks.items()}
    assert sum(zeros.values()) == sum(mask.numel() for mask in masks.values()) // 2  # the exact budget
    if method != "oneshot":  # layerwise and uniform: half of every matrix
        assert all(zeros[name] == mask.numel() // 2 for name, mask in masks.items())
    for name, mask in masks.items():
        assert torch.equal(weights[name] * mask.to(weights[name].dtype), weights[name])  # pruned weights are 0
    assert (weights["bert.embeddings.word_embeddings.weight"][1:] != 0).all()  # not prunable (row 0: [PAD])
    assert (weights["classifier.weight"] != 0).all()


def test_embeddings_and_classifier_are_prunable_by_pattern(tiny_bert, glue_root, tmp_path):
    summary = train(overrides(tiny_bert, glue_root, tmp_path / "run", "sst2", "method=oneshot", "sparsity=0.5",
                              "steps=4", "method.modules=[linear,embedding]",
                              "method.include=[bert.embeddings.word_embeddings.weight,classifier.weight]"))
    assert set(summary["masks"]["layers"]) == {"bert.embeddings.word_embeddings.weight", "classifier.weight"}


def test_glue_resume_is_bit_identical(tiny_bert, glue_root, compose_config, tmp_path, monkeypatch):
    run_overrides = overrides(tiny_bert, glue_root, None, "stsb", "method=rigl", "sparsity=0.5", "epochs=2",
                              "method.delta_t=2", "checkpoint_every=1it", "resume=auto")
    crash_and_resume(compose_config, tmp_path, monkeypatch, "rigl", run_overrides, crash_after=5)


# ---- bad keys ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, key", [
    (["dataset.task=glue"], "dataset.task='glue' is not a GLUE task"),
    (["dataset.padding=longest"], "dataset.padding='longest' must be fixed or dynamic"),
    (["model.name_or_path=null"], "model=hf needs model.name_or_path"),
    (["model.head=lm"], "model.head='lm' is not a head"),
    (["task.metric=top1"], "task.metric='top1' is not a metric of task.name=sequence_classification here"),
    (["model.name_or_path=/no/such/model", "dataset.tokenizer=/no/such/model"], "dataset.tokenizer='/no/such/model'"),
])
def test_bad_keys_are_one_line_and_write_nothing(tiny_bert, glue_root, tmp_path, bad, key):
    with pytest.raises((ConfigError, DataError)) as error:  # the command prints either as one line, exit 2
        train(overrides(tiny_bert, glue_root, tmp_path / "run", "sst2", "steps=1", *bad))
    assert key in str(error.value) and "\n" not in str(error.value) and "e.g. " in str(error.value)
    assert not (tmp_path / "run" / "run.yaml").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


# ---- sweep report ------------------------------------------------------------------------------------------------

def test_sweep_report_follows_the_headline_metric_and_lists_the_other_glue_metrics(tmp_path):
    """MRPC runs (headline f1): summary.csv and groups.csv columns, summary.md and the figure use f1; accuracy
    gets its own column."""
    import yaml

    from sparsetrain.report.sweep import accuracy_figure, collect, group, summarize

    sweep, values = tmp_path / "sweep", {}
    for sparsity in (0.5, 0.9):
        for seed in (0, 1):
            f1, accuracy = 0.8 - sparsity / 10 + seed / 100, 0.7 + seed / 100
            values[(sparsity, seed)] = f1
            job = sweep / f"sparsity={sparsity},seed={seed}"
            job.mkdir(parents=True)
            overrides = ["dataset=glue", "dataset.task=mrpc", "method=gmp", f"sparsity={sparsity}", f"seed={seed}"]
            (job / "run.yaml").write_text(yaml.safe_dump({"overrides": overrides, "config": {}}))
            (job / "summary.json").write_text(json.dumps({
                "method": "gmp", "model": "hf", "dataset": "glue", "sparsity": sparsity, "seed": seed, "metric": "f1",
                "final": {"test": {"f1": f1, "accuracy": accuracy, "matthews": 0.4, "loss": 0.5}},
                "best": {"test": {"f1": f1 + 0.01, "accuracy": accuracy, "step": 3}}}))
    summarize(sweep)
    rows = {(float(r["sparsity"]), int(r["seed"])): r for r in csv.DictReader(open(sweep / "summary.csv"))}
    assert all(float(rows[key]["final_test_f1"]) == value for key, value in values.items())
    assert float(rows[(0.9, 1)]["final_test_accuracy"]) == 0.71 and rows[(0.9, 1)]["metric"] == "f1"
    groups = {float(g["sparsity"]): g for g in csv.DictReader(open(sweep / "groups.csv"))}
    assert float(groups[0.9]["final_test_f1_mean"]) == pytest.approx((values[(0.9, 0)] + values[(0.9, 1)]) / 2)
    assert "| final test f1 | best test f1 |" in (sweep / "summary.md").read_text()
    figure = accuracy_figure(group(collect(sweep)))
    axis = figure.axes[0]
    assert axis.get_ylabel().startswith("final test f1")
    line = axis.containers[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([0.75 + 0.005, 0.71 + 0.005])  # 50 % then 10 % remaining


def write_hub_glue(repo: Path, glue_root: Path, task: str, hub_splits: dict[str, str]) -> None:
    """``repo`` laid out as the hub's GLUE dataset repository: a README declaring each config's parquet files
    (``<task>/<split>-00000-of-00001.parquet``, label numbers as ClassLabel), from the GLUE TSV files' rows."""
    import datasets

    spec = glue.TASKS[task]
    names = list(spec.label_names) or ["negative", "positive"]
    files = []
    for hub_split, tsv in hub_splits.items():
        rows = list(csv.DictReader(open(glue_root / spec.directory / f"{tsv}.tsv"), delimiter="\t"))
        *texts, label = spec.tsv_columns
        columns = {hub: [row[name] for row in rows] for hub, name in zip(spec.hub_columns[:-1], texts)}
        columns["label"] = [names.index(row[label]) if spec.label_names else int(row[label]) for row in rows]
        columns["idx"] = list(range(len(rows)))
        features = datasets.Features({**{name: datasets.Value("string") for name in spec.hub_columns[:-1]},
                                      "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(repo / task / f"{hub_split}-00000-of-00001.parquet"))
        files.append(f"  - split: {hub_split}\n    path: {task}/{hub_split}-*\n")
    (repo / "README.md").write_text(f"---\nconfigs:\n- config_name: {task}\n  data_files:\n{''.join(files)}---\n")


@pytest.mark.parametrize("task,hub_splits", [
    ("sst2", {"train": "train", "validation": "dev"}),
    ("mnli", {"train": "train", "validation_matched": "dev_matched", "validation_mismatched": "dev_mismatched"}),
])
def test_the_hub_dataset_gives_the_same_tensors_as_the_tsv_files(tiny_bert, glue_root, tmp_path, monkeypatch, task,
                                                                   hub_splits):
    """With no files under dataset.root the splits come from the hub's dataset (here its repository layout on disk,
    loaded by ``datasets.load_dataset`` as the hub's would be), tokenised like GLUE's own files, and cached."""
    import datasets

    repo = tmp_path / "hub"
    (repo / task).mkdir(parents=True)
    write_hub_glue(repo, glue_root, task, hub_splits)
    monkeypatch.setattr(glue, "HUB_NAME", str(repo))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    cfg = glue_cfg(tmp_path / "empty", tiny_bert, task, cache_dir=str(tmp_path / "cache"))
    hub, original = build(cfg), build(glue_cfg(glue_root, tiny_bert, task))
    pairs = [(hub.train.tensors, original.train.tensors), (hub.test.tensors, original.test.tensors)]
    pairs += [(hub.test_variants[name].tensors, original.test_variants[name].tensors) for name in original.test_variants]
    assert hub.test_variants.keys() == original.test_variants.keys()
    for a, b in pairs:
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert len(list((tmp_path / "cache").iterdir())) == len(hub_splits)  # one cached tokenisation per split


def test_a_hub_model_name_loads_from_the_hub_cache_offline(tiny_bert, glue_root, tmp_path):
    """``model.name_or_path=<org>/<name>`` (tokenizer included) resolves from the Hugging Face cache as a download
    leaves it (``models--<org>--<name>/refs/main`` naming a snapshot) with the network off."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    model_dir = tmp_path / "hub_cache" / "models--sparsetrain-tests--tiny-bert"
    (model_dir / "refs").mkdir(parents=True)
    (model_dir / "refs" / "main").write_text(revision)
    shutil.copytree(tiny_bert, model_dir / "snapshots" / revision)
    env = {**cli_env(), "HF_HUB_CACHE": str(tmp_path / "hub_cache"), "HF_HUB_OFFLINE": "1"}
    command = cli_command(*overrides("sparsetrain-tests/tiny-bert", glue_root, tmp_path / "run", "sst2", "steps=2",
                                     "eval_every=0", f"dataset.cache_dir={tmp_path / 'tokens'}"))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and 0.0 <= summary["final"]["test"]["accuracy"] <= 1.0
    record = (tmp_path / "run" / "run.yaml").read_text()
    assert "name_or_path: sparsetrain-tests/tiny-bert" in record and "tokenizer: sparsetrain-tests/tiny-bert" in record
