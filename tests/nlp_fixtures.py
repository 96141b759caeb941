"""Language-model test fixtures, with no network: a WordPiece vocabulary, a tiny randomly initialised BERT saved
with its tokenizer, and GLUE-format files (original TSV layouts) whose labels are simple functions of the words.

``tiny_bert`` and ``glue_root`` are session fixtures (import them into a test module); ``write_glue`` and
``write_tiny_bert`` are plain functions for other shapes of the same data.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may touch the network
os.environ["HF_DATASETS_OFFLINE"] = "1"

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(200)] + ["good", "bad", "the", "a", "movie", "film", "is", "was"]
MARKER = "good"  # the single-sentence tasks' positive class: the sentence contains it
DEFAULT_MATRICES = {f"bert.encoder.layer.{layer}.{name}.weight" for layer in (0, 1) for name in (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "intermediate.dense", "output.dense")}  # model.prunable of the tiny BERT
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)


def write_tiny_bert(directory: Path, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with random weights and a WordPiece tokenizer of ``SPECIAL + WORDS``, saved with
    ``save_pretrained`` (model and tokenizer) to ``directory``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    BertTokenizerFast(vocab=vocab).save_pretrained(directory)  # transformers 5: the vocabulary as a dict
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(SPECIAL) + len(WORDS), **TINY_BERT))
    model.save_pretrained(directory)
    return directory


def _sentence(rng: random.Random, positive: bool, length: int = 6) -> list[str]:
    words = [rng.choice(WORDS[:200]) for _ in range(length)]
    if positive:
        words[rng.randrange(length)] = MARKER
    return words


def write_glue(root: Path, task: str, train: int = 64, dev: int = 32, seed: int = 0) -> Path:
    """GLUE-format files of ``task`` (sst2, cola, rte, mrpc, stsb or mnli) under ``root/<GLUE dir>/``:
    single sentences labelled 1 when they contain ``MARKER``; pairs labelled by whether they share their first
    word (RTE: entailment; MRPC: 1; MNLI: entailment, else neutral or contradiction by the parity of the pair's
    length); STS-B scored 5 times the fraction of shared words."""
    rng = random.Random(seed)
    directories = {"sst2": "SST-2", "cola": "CoLA", "rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "mnli": "MNLI"}
    directory = root / directories[task]
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": train, **({"dev_matched": dev, "dev_mismatched": dev} if task == "mnli" else {"dev": dev})}
    for split, count in splits.items():
        lines = {"sst2": ["sentence\tlabel"], "cola": [], "rte": ["index\tsentence1\tsentence2\tlabel"],
                 "mrpc": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"],
                 "stsb": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"],
                 "mnli": ["index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"]}[task]
        for i in range(count):
            positive = i % 2 == 0
            first = _sentence(rng, positive and task in ("sst2", "cola"))
            second = _sentence(rng, False)
            if positive:
                second[0] = first[0]
            a, b = " ".join(first), " ".join(second)
            if task == "sst2":
                lines.append(f"{a}\t{int(positive)}")
            elif task == "cola":
                lines.append(f"src\t{int(positive)}\t\t{a}")
            elif task == "rte":
                lines.append(f"{i}\t{a}\t{b}\t{'entailment' if positive else 'not_entailment'}")
            elif task == "mrpc":
                lines.append(f"{int(positive)}\t{i}\t{i + 1}\t{a}\t{b}")
            elif task == "stsb":
                score = 5 * len(set(first) & set(second)) / len(set(first) | set(second))
                lines.append(f"{i}\tg\tf\t2024\t{i}\ts\ts\t{a}\t{b}\t{score:.3f}")
            else:
                label = "entailment" if positive else ("neutral", "contradiction")[(i // 2) % 2]
                lines.append(f"{i}\tp\tq\tg\t{a}\t{b}\t{label}\t{label}")
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def glue_overrides(bert: Path, root: Path, run_dir: Path | None, task: str = "sst2", *extra: str) -> list[str]:
    """A short GLUE run of the tiny BERT in ``run_dir`` (None: the caller chooses it)."""
    return ["model=hf", f"model.name_or_path={bert}", "dataset=glue", f"dataset.task={task}", f"dataset.root={root}",
            "dataset.max_seq_length=24", "batch_size=16", "eval_batch_size=16", "optimizer=adamw", "optimizer.lr=1e-3",
            "schedule=constant", "log_every=0", *([f"hydra.run.dir={run_dir}"] if run_dir else []), *extra]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def glue_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("glue")
    for task in ("sst2", "rte", "stsb", "mnli", "cola", "mrpc"):
        write_glue(root, task)
    return root
