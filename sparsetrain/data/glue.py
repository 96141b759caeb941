"""GLUE (``dataset=glue dataset.task=<task>``): sentence (pair) classification and regression, tokenised once
and cached on disk, then device-resident named tensors (``input_ids``, ``attention_mask``, ``token_type_ids``,
``labels``) batched by ``DictTrainBatches``.

Local files come first: ``<root>/<TASK>/`` (GLUE's directory name, e.g. ``SST-2``) or ``<root>/<task>/`` with
``train`` and ``dev`` files (MNLI: ``dev_matched`` and ``dev_mismatched``) in the original GLUE TSV layout, or
``.csv`` / ``.json`` / ``.jsonl`` exports with the hub's column names (``validation`` for ``dev``). Without
them the splits come from the hub (``datasets.load_dataset("nyu-mll/glue", task)``). GLUE's test labels are
hidden, so the dev split is the test split; MNLI's mismatched dev split is scored with it (metrics ``*_mm``).
"""

from __future__ import annotations

import csv
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import NLP_EXTRA
from .batches import Data
from .dict_batches import DictEvalBatches, DictTrainBatches, PaddedDictTrainBatches
from ..errors import DataError
from .splits import holdout
from .tokenizer import cached_tensors, file_fingerprint, load_tokenizer, tokenizer_fingerprint

HUB_NAME = "nyu-mll/glue"
PADDINGS = ("fixed", "dynamic")
EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json")


@dataclass(frozen=True)
class GlueTask:
    directory: str  # GLUE's directory name
    tsv_columns: tuple[str, ...]  # text columns of the original TSV files, then the label column
    hub_columns: tuple[str, ...]  # the same in the hub dataset (and CSV/JSON exports of it)
    num_labels: int  # 1: regression
    metric: str  # GLUE's headline metric: the default task.metric
    label_names: tuple[str, ...] = ()  # label strings of the TSV files, in the hub's label order
    tsv_header: tuple[str, ...] | None = None  # column names of a TSV file without a header row


_PAIR = ("sentence1", "sentence2", "label")
TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("CoLA", ("sentence", "label"), ("sentence", "label"), 2, "matthews",
                     tsv_header=("source", "label", "original_label", "sentence")),
    "sst2": GlueTask("SST-2", ("sentence", "label"), ("sentence", "label"), 2, "accuracy"),
    "mrpc": GlueTask("MRPC", ("#1 String", "#2 String", "Quality"), _PAIR, 2, "f1"),
    "qqp": GlueTask("QQP", ("question1", "question2", "is_duplicate"), ("question1", "question2", "label"), 2, "f1"),
    "stsb": GlueTask("STS-B", ("sentence1", "sentence2", "score"), _PAIR, 1, "pearson"),
    "mnli": GlueTask("MNLI", ("sentence1", "sentence2", "gold_label"), ("premise", "hypothesis", "label"), 3,
                     "accuracy", ("entailment", "neutral", "contradiction")),
    "qnli": GlueTask("QNLI", ("question", "sentence", "label"), ("question", "sentence", "label"), 2, "accuracy",
                     ("entailment", "not_entailment")),
    "rte": GlueTask("RTE", _PAIR, _PAIR, 2, "accuracy", ("entailment", "not_entailment")),
    "wnli": GlueTask("WNLI", _PAIR, _PAIR, 2, "accuracy"),
}
# split -> (file stems, hub split); "test_mm" is MNLI's mismatched dev split
SPLITS = {"train": (("train",), "train"), "test": (("dev", "validation"), "validation")}
MNLI_SPLITS = {"train": SPLITS["train"], "test": (("dev_matched", "validation_matched"), "validation_matched"),
               "test_mm": (("dev_mismatched", "validation_mismatched"), "validation_mismatched")}


def check_glue_config(cfg: Any) -> None:
    """The checks that need no data (DataError, one line naming the key)."""
    if cfg.task not in TASKS:
        raise DataError(f"dataset.task={cfg.task!r} is not a GLUE task; choose one of: {', '.join(TASKS)} "
                        "(e.g. dataset.task=sst2)")
    if cfg.padding not in PADDINGS:
        raise DataError(f"dataset.padding={cfg.padding!r} must be fixed or dynamic; e.g. dataset.padding=fixed")
    if cfg.max_seq_length < 8:
        raise DataError(f"dataset.max_seq_length={cfg.max_seq_length} must be >= 8; e.g. dataset.max_seq_length=128")
    if not cfg.tokenizer:
        raise DataError("dataset.tokenizer is not set (it defaults to model.name_or_path); give a hub name or a "
                        "directory with the tokenizer files, e.g. dataset.tokenizer=bert-base-uncased")


def build_glue(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """The task's splits tokenised (or read back from the cache), on ``device``: train (less ``val_size`` held-out
    examples), the dev split as test, and for MNLI the mismatched dev split as the test variant ``mm``."""
    check_glue_config(cfg)
    task = TASKS[cfg.task]
    tokenizer = load_tokenizer(cfg)
    sources = _sources(cfg)
    root = Path(cfg.root).expanduser()
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else root / ".sparsetrain_cache"
    common = {"tokenizer": tokenizer_fingerprint(tokenizer), "task": cfg.task, "max_seq_length": cfg.max_seq_length}
    splits = {split: cached_tensors(cache_dir, {**common, "split": split, "source": source.fingerprint},
                                    lambda source=source: _tokenise(source, task, tokenizer, cfg))
              for split, source in sources.items()}
    splits = {split: {key: value.to(device) for key, value in tensors.items()} for split, tensors in splits.items()}
    train = splits["train"]
    train_idx, val_idx = holdout(len(train["labels"]), cfg.val_size, cfg.name)
    val = None if val_idx is None else {key: value[val_idx.to(device)] for key, value in train.items()}
    train = train if val_idx is None else {key: value[train_idx.to(device)] for key, value in train.items()}
    if cfg.padding == "dynamic":
        train_batches = PaddedDictTrainBatches(train, batch_size=batch_size, seed=seed, dataset=cfg.name)
    else:
        train_batches = DictTrainBatches(train, batch_size=batch_size, seed=seed, dataset=cfg.name)
    example = {key: value[:1].cpu() for key, value in train.items()}
    return Data(
        train=train_batches,
        val=None if val is None else DictEvalBatches(val, batch_size=eval_batch_size),
        test=DictEvalBatches(splits["test"], batch_size=eval_batch_size),
        in_shape=(cfg.max_seq_length,),
        num_classes=task.num_labels,
        example=example,
        task="sequence_classification",
        metric=task.metric,
        test_variants={"mm": DictEvalBatches(splits["test_mm"], batch_size=eval_batch_size)}
        if "test_mm" in splits else {},
    )


@dataclass(frozen=True)
class _Source:
    """One split's records, from a local file or the hub, and what identifies their content."""

    fingerprint: str
    path: Path | None = None
    hub_split: Any = None

    def records(self) -> list[dict]:
        return _read_file(self.path) if self.path is not None else list(self.hub_split)

    def describe(self) -> str:
        return f"dataset.root: {self.path}" if self.path is not None else f"{HUB_NAME} {self.hub_split.split}"


def _sources(cfg: Any) -> dict[str, _Source]:
    """Each split's source: local files under ``dataset.root`` when a train file is there, else the hub."""
    task = TASKS[cfg.task]
    layout = MNLI_SPLITS if cfg.task == "mnli" else SPLITS
    root = Path(cfg.root).expanduser()
    for directory in (root / task.directory, root / cfg.task):
        if _find(directory, ("train",)) is not None:
            files = {split: _find(directory, stems) for split, (stems, _) in layout.items()}
            missing = [split for split, path in files.items() if path is None]
            if missing:
                stems = layout[missing[0]][0]
                raise DataError(f"dataset.root={cfg.root!r}: {directory} has a train file but no {stems[0]} file "
                                f"(.tsv, .csv, .json or .jsonl); e.g. {directory}/{stems[0]}.tsv")
            return {split: _Source(file_fingerprint(path), path=path) for split, path in files.items()}
    return _hub_sources(cfg, layout)


def _find(directory: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for extension in EXTENSIONS:
            if (directory / f"{stem}{extension}").is_file():
                return directory / f"{stem}{extension}"
    return None


def _hub_sources(cfg: Any, layout: dict) -> dict[str, _Source]:
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset=glue needs Hugging Face datasets; {NLP_EXTRA}") from None
    try:
        loaded = datasets.load_dataset(HUB_NAME, cfg.task)
    except Exception as error:  # noqa: BLE001 - offline, unknown config, network: all the same one line
        reason = textwrap.shorten(str(error), 120)
        directory = Path(cfg.root).expanduser() / TASKS[cfg.task].directory
        raise DataError(f"dataset.root={cfg.root!r} has no {directory}/train.tsv and {HUB_NAME} could not be "
                        f"loaded ({type(error).__name__}: {reason}); e.g. dataset.root=<a GLUE download>") from None
    return {split: _Source(f"{HUB_NAME}/{cfg.task}/{loaded[hub]._fingerprint}", hub_split=loaded[hub])
            for split, (_, hub) in layout.items()}


def _read_file(path: Path) -> list[dict]:
    """Rows of a TSV (GLUE's, unquoted), CSV, JSON (a list of records) or JSON-lines file, as dicts."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            if path.suffix == ".jsonl":
                return [json.loads(line) for line in handle if line.strip()]
            if path.suffix == ".json":
                text = handle.read()
                try:
                    return list(json.loads(text))
                except json.JSONDecodeError:  # JSON lines under a .json name (datasets' to_json writes them)
                    return [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".csv":
                return list(csv.DictReader(handle))
            return [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    except (OSError, ValueError, csv.Error) as error:
        raise DataError(f"dataset.root: {path} cannot be read ({type(error).__name__}: "
                        f"{textwrap.shorten(str(error), 100)}); e.g. a GLUE train.tsv") from None


def _columns(rows: list, task: GlueTask, source: str) -> tuple[list[str], ...]:
    """(first texts, second texts or empty, labels as strings) of the rows of one split."""
    if rows and isinstance(rows[0], list):  # TSV: a header row, or the task's fixed columns (CoLA)
        header = list(task.tsv_header) if task.tsv_header else rows[0]
        rows = [dict(zip(header, row)) for row in (rows if task.tsv_header else rows[1:])]
    if not rows:
        raise DataError(f"{source} has no rows; e.g. a GLUE train.tsv with examples")
    for names in (task.tsv_columns, task.hub_columns):
        if all(name in rows[0] for name in names):
            *texts, label = names
            return ([str(row[texts[0]]) for row in rows], [str(row[texts[1]]) for row in rows] if len(texts) > 1
                    else [], [str(row[label]) for row in rows])
    raise DataError(f"{source} has columns {list(rows[0])[:6]}, not those of GLUE {task.directory} "
                    f"({', '.join(task.tsv_columns)}) nor of the hub ({', '.join(task.hub_columns)}); e.g. "
                    f"GLUE's {task.directory}/dev.tsv")


def _labels(values: list[str], task: GlueTask) -> torch.Tensor:
    """Labels as the hub numbers them: float scores (regression), label names by position, or integers."""
    try:
        if task.num_labels == 1:
            return torch.tensor([float(value) for value in values], dtype=torch.float32)
        return torch.tensor([task.label_names.index(value) if value in task.label_names else int(float(value))
                             for value in values], dtype=torch.long)
    except ValueError as error:
        raise DataError(f"dataset.task: a label of GLUE {task.directory} is not valid ({error}); the labels are "
                        f"{', '.join(task.label_names) or 'numbers'}, e.g. dataset.task=sst2 for 0/1 labels") from None


def _tokenise(source: _Source, task: GlueTask, tokenizer: Any, cfg: Any) -> dict[str, torch.Tensor]:
    """Named tensors padded to ``max_seq_length`` (dynamic padding trims each batch later), labels included."""
    first, second, labels = _columns(source.records(), task, source.describe())
    encoded = tokenizer(first, second or None, truncation=True, max_length=cfg.max_seq_length, padding="max_length",
                        return_tensors="pt")
    return {**{key: value.to(torch.int64) for key, value in encoded.items()}, "labels": _labels(labels, task)}
