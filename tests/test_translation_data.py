"""``dataset=translation``: parallel text files written by the tests (no network), a joint BPE trained on them and
cached, token-count training batches (a pure function of seed, epoch and batch), evaluation batches in file order
with their raw sentences, and the one-line refusals that write nothing."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import nlp_fixtures  # noqa: F401 - offline Hugging Face
from sparsetrain.data import translation
from sparsetrain.data.build import build_data
from sparsetrain.data.catalog import DATASETS
from sparsetrain.errors import DataError

WORDS = [f"w{i}" for i in range(60)] + ["Haus", "Straße", "grün", "über", "café", "naïve"]
SIZES = {"train": 240, "valid": 20, "test": 30}
BATCH_TOKENS = 160
LONG = 70  # words of the one overlong pair in each split (dropped from train with max_*_positions=64 ... kept in test)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_parallel(root: Path, seed: int = 0, sizes: dict | None = None) -> Path:
    """train/valid/test .en/.de under ``root``; the target is the source reversed with a German word added, and
    each split ends with one pair of LONG words."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (sizes or SIZES).items():
        source = [_sentence(rng, rng.randint(1, 14)) for _ in range(count - 1)] + [_sentence(rng, LONG)]
        target = [" ".join(reversed(line.split())) + " und" for line in source]
        (root / f"{split}.en").write_text("\n".join(source) + "\n", encoding="utf-8")
        (root / f"{split}.de").write_text("\n".join(target) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_parallel(tmp_path_factory.mktemp("wmt") / "en_de")


def config(root: Path, cache: Path, **changes):
    values = dict(name="translation", root=str(root), cache_dir=str(cache),
                  vocab_size=400, max_source_positions=64, max_target_positions=64, batch_tokens=BATCH_TOKENS)
    cfg = OmegaConf.merge(OmegaConf.structured(DATASETS.record("translation", key="dataset.name").schema), values)
    return OmegaConf.merge(cfg, changes)


def build(cfg, seed: int = 0, batch_size: int = 8, eval_batch_size: int = 8):
    return build_data(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=torch.device("cpu"),
                      seed=seed)


@pytest.fixture(scope="module")
def data(corpus, tmp_path_factory):
    return build(config(corpus, tmp_path_factory.mktemp("cache")))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _row(ids: torch.Tensor, mask: torch.Tensor) -> list[int]:
    return ids[mask.bool()].tolist()


# ---- training batches ---------------------------------------------------------------------------------------------

def test_every_training_batch_stays_within_batch_tokens(data):
    train = data.train
    assert not train.static_shapes and len(train) > 4
    for epoch in (0, 1):
        for batch in train.epoch(epoch):
            rows, source, target = batch["input_ids"].shape[0], batch["input_ids"].shape[1], batch["labels"].shape[1]
            assert rows * max(source, target) <= BATCH_TOKENS
            assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
            assert batch["attention_mask"].shape == batch["input_ids"].shape
    sizes = [len(positions) for positions in train.batch_positions(0)]
    assert max(sizes) > min(sizes)  # rows vary with the length of the sentences, the token budget does not


def test_every_kept_training_pair_comes_once_per_epoch(data, corpus):
    train, tokenizer = data.train, data.train.tokenizer
    expected = Counter(zip(_lines(corpus / "train.en")[:-1], _lines(corpus / "train.de")[:-1]))  # the long one dropped
    assert train.num_samples == SIZES["train"] - 1
    for epoch in (0, 3):
        positions = torch.cat(train.batch_positions(epoch))
        assert sorted(positions.tolist()) == list(range(train.num_samples))
        seen = Counter()
        for batch in train.epoch(epoch):
            labels = batch["labels"]
            for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], labels):
                seen[(tokenizer.decode(_row(ids, mask), skip_special_tokens=True),
                      tokenizer.decode(label[label != -100].tolist(), skip_special_tokens=True))] += 1
        assert seen == expected


def test_batches_are_a_pure_function_of_seed_epoch_and_batch(corpus, data, tmp_path):
    again = build(config(corpus, tmp_path / "cache"))  # another build (and another cache): the same batches
    other_seed = build(config(corpus, tmp_path / "cache"), seed=1)

    def batches(d, epoch, start=0):
        return [{key: value.tolist() for key, value in batch.items()} for batch in d.train.epoch(epoch, start)]

    first = batches(data, 0)
    assert batches(again, 0) == first and batches(again, 2) == batches(data, 2)
    assert len(data.train) == len(again.train) and len(batches(data, 1)) == len(first)  # steps_per_epoch constant
    assert batches(data, 1) != first  # another epoch: another order of the same batches
    assert sorted(map(json.dumps, batches(data, 1))) == sorted(map(json.dumps, first))
    assert batches(other_seed, 0) != first
    for start in (1, 5, len(data.train) - 1, len(data.train)):
        assert batches(data, 2, start) == batches(data, 2)[start:]  # resuming mid-epoch is exact
    with pytest.raises(ValueError):
        data.train.batch_positions(0, len(data.train) + 1)


def test_labels_end_in_eos_and_padding_is_pad_or_ignored(data):
    train = data.train
    pad, eos = train.pad_id, train.eos_id
    batch = next(train.epoch(0))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    for row, row_mask, label in zip(ids, mask, labels):
        length = int(row_mask.sum())
        assert row[length - 1] == eos and torch.all(row[length:] == pad) and torch.all(row_mask[:length] == 1)
        kept = label[label != -100]
        assert kept[-1] == eos and eos not in kept[:-1].tolist()
        assert torch.all(label[len(kept):] == -100)  # -100 on the padding only, after the sentence
    assert int(mask.sum(1).max()) == ids.shape[1] and int((labels != -100).sum(1).max()) == labels.shape[1]


def test_batch_size_decides_when_batch_tokens_is_null(corpus, tmp_path):
    d = build(config(corpus, tmp_path, batch_tokens=None), batch_size=16)
    assert len(d.train) == -(-d.train.num_samples // 16)
    assert sorted(torch.cat(d.train.batch_positions(0)).tolist()) == list(range(d.train.num_samples))
    assert {len(p) for p in d.train.batch_positions(0)} == {16, d.train.num_samples % 16}


def test_a_variable_shape_training_set_is_never_captured(data):
    import torch.nn as nn

    from sparsetrain.runs.distributed import Distributed
    from sparsetrain.training.step import choose_path

    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), fused=False)
    path, _ = choose_path("auto", torch.device("cuda"), Distributed(), False, optimizer, data.train.static_shapes)
    assert path == "eager"


# ---- tokenizer -------------------------------------------------------------------------------------------------

def test_the_joint_bpe_is_trained_once_and_read_back(corpus, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    first = build(config(corpus, cache))
    directories = sorted(cache.glob("bpe-*"))
    assert len(directories) == 1 and (directories[0] / "tokenizer.json").is_file()
    tokenizer = first.test.tokenizer
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == list(translation.SPECIAL_TOKENS)
    assert (first.train.pad_id, first.train.bos_id, first.train.eos_id) == (0, 1, 2)
    assert first.train.special_ids == first.test.special_ids == {"pad_token_id": 0, "bos_token_id": 1,
                                                                  "eos_token_id": 2}
    assert first.num_classes == len(tokenizer) <= 400
    cached = sorted(cache.glob("*.safetensors"))
    assert len(cached) == 6  # both sides of three splits

    import tokenizers

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been reused")

    monkeypatch.setattr(tokenizers.Tokenizer, "train_from_iterator", no_training, raising=False)
    monkeypatch.setattr(translation, "tokenise", no_training)
    with caplog.at_level(logging.INFO, logger="sparsetrain.data.translation"):
        second = build(config(corpus, cache))
    assert "joint BPE read from" in caplog.text
    assert second.test.tokenizer.get_vocab() == tokenizer.get_vocab() and second.num_classes == first.num_classes
    assert sorted(cache.glob("*.safetensors")) == cached and sorted(cache.glob("bpe-*")) == directories
    assert [b["input_ids"].tolist() for b in second.test] == [b["input_ids"].tolist() for b in first.test]


def test_a_pretrained_tokenizer_directory_is_used_as_given(corpus, tmp_path, data):
    directory = tmp_path / "tok"
    data.train.tokenizer.save_pretrained(str(directory))
    d = build(config(corpus, tmp_path / "cache", tokenizer=str(directory)))
    assert not list((tmp_path / "cache").glob("bpe-*")) and d.num_classes == data.num_classes
    assert [b["labels"].tolist() for b in d.test] == [b["labels"].tolist() for b in data.test]


# ---- evaluation batches ------------------------------------------------------------------------------------------

def test_evaluation_batches_keep_every_pair_in_file_order_with_the_raw_sentences(data, corpus):
    for split, batches in (("valid", data.val), ("test", data.test)):
        sources, references = _lines(corpus / f"{split}.en"), _lines(corpus / f"{split}.de")
        assert batches.sources == sources and batches.references == references
        assert batches.tokenizer is data.train.tokenizer and len(batches) == -(-SIZES[split] // 8)
        decoded = []
        for batch in batches:
            assert batch["input_ids"].shape[0] <= 8
            for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
                decoded.append((batches.tokenizer.decode(_row(ids, mask), skip_special_tokens=True),
                                batches.tokenizer.decode(label[label != -100].tolist(), skip_special_tokens=True)))
        assert decoded == list(zip(sources, references))  # the long last pair too: never dropped nor truncated
    long_pair = list(data.test)[-1]
    assert long_pair["input_ids"].shape[1] > 64 and long_pair["labels"].shape[1] > 64


def test_overlong_training_pairs_are_dropped_and_counted(corpus, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sparsetrain.data.translation"):
        d = build(config(corpus, tmp_path))
    assert "dropped 1 of 240 training pairs longer than 64 source / 64 target tokens" in caplog.text
    assert d.train.num_samples == 239 and d.test.num_samples == SIZES["test"]


def test_the_data_declares_translation_and_its_vocabulary(data):
    assert data.task == "translation" and data.metric == "bleu" and data.in_shape == (64,)
    assert set(data.example) == {"input_ids", "attention_mask", "labels"} and data.example["input_ids"].shape[0] == 1


def test_the_example_that_flops_are_counted_on_is_a_pair_of_typical_length(data):
    """Per-step FLOPs are the example's times the mean pairs per batch: the example is the training pair nearest
    the mean source and target lengths (not the first pair), and it is a real pair of the training set."""
    train = data.train
    sources = [train.source.tokens[a:a + n].tolist() for a, n in zip(train.source.starts, train.source.lengths)]
    targets = [train.target.tokens[a:a + n].tolist() for a, n in zip(train.target.starts, train.target.lengths)]
    mean_source = sum(map(len, sources)) / len(sources)
    mean_target = sum(map(len, targets)) / len(targets)
    example_source = data.example["input_ids"][0].tolist()
    example_target = data.example["labels"][0].tolist()
    assert (example_source, example_target) in list(zip(sources, targets))
    nearest = min(abs(len(s) - mean_source) + abs(len(t) - mean_target) for s, t in zip(sources, targets))
    assert abs(len(example_source) - mean_source) + abs(len(example_target) - mean_target) == pytest.approx(nearest)
    assert nearest < abs(len(sources[0]) - mean_source) + abs(len(targets[0]) - mean_target)  # not the first pair


# ---- the hub layout, from a local directory ------------------------------------------------------------------------

def test_a_hub_dataset_with_translation_records_is_read(corpus, tmp_path, monkeypatch, data):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    hub = tmp_path / "hub"
    hub.mkdir()
    for split, hub_split in translation.HUB_SPLITS.items():
        rows = [{"translation": {"de": de, "en": en}}
                for en, de in zip(_lines(corpus / f"{split}.en"), _lines(corpus / f"{split}.de"))]
        (hub / f"{hub_split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    d = build(config(tmp_path / "no_files", tmp_path / "cache", hub=str(hub), hub_config=None))
    assert d.test.references == data.test.references and d.train.num_samples == data.train.num_samples
    assert [b["input_ids"].tolist() for b in d.train.epoch(0)] == [b["input_ids"].tolist() for b in data.train.epoch(0)]


# ---- refusals ----------------------------------------------------------------------------------------------------

def _damage(root: Path, kind: str) -> None:
    if kind == "missing side":
        (root / "train.de").unlink()
    elif kind == "missing split":
        (root / "valid.en").unlink()
        (root / "valid.de").unlink()
    elif kind == "line counts":
        lines = _lines(root / "train.de")
        (root / "train.de").write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")
    elif kind == "empty line":
        lines = _lines(root / "test.de")
        lines[6] = "   "
        (root / "test.de").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("kind, changes, message", [
    ("missing side", {}, "has train.en but not train.de (its target side); e.g. "),
    ("missing split", {}, "has no valid split (valid.en and valid.de)"),
    ("line counts", {}, "train.en has 240 lines but train.de has 238"),
    ("empty line", {}, "test.de line 7 is empty (1 empty pairs in test)"),
    (None, {"batch_tokens": 12}, "dataset.batch_tokens=12 is smaller than the longest kept training pair"),
    (None, {"batch_tokens": 0}, "dataset.batch_tokens=0 must be a positive number"),
    (None, {"target_lang": "en"}, "dataset.source_lang='en' and dataset.target_lang='en' must be two different"),
    (None, {"vocab_size": 100}, "dataset.vocab_size=100 must be at least 260"),
    (None, {"max_target_positions": 2}, "drop every training pair"),  # every target: a word, "und", eos
    (None, {"batch_tokens": None, "skip_empty": False}, "batch_size=500 must be in [1, 239]"),
])
def test_bad_data_is_refused_in_one_line_and_nothing_is_written(tmp_path, kind, changes, message):
    root = write_parallel(tmp_path / "data", sizes={"train": 240, "valid": 10, "test": 10})
    if kind is not None:
        _damage(root, kind)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as error:
        build(config(root, cache, **changes), batch_size=500)
    text = str(error.value)
    assert message in text and "\n" not in text and "e.g. " in text
    assert not cache.exists()


def test_a_missing_file_is_refused_by_the_preflight_check(tmp_path):
    root = write_parallel(tmp_path / "data", sizes={"train": 10, "valid": 5, "test": 5})
    (root / "test.en").unlink()
    with pytest.raises(DataError, match="has test.de but not test.en"):
        DATASETS.record("translation", key="dataset.name").checker()(config(root, tmp_path / "cache"))


def test_empty_pairs_are_dropped_with_skip_empty(tmp_path, caplog):
    root = write_parallel(tmp_path / "data", sizes={"train": 40, "valid": 10, "test": 10})
    lines = _lines(root / "train.en")
    lines[3] = ""
    (root / "train.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="sparsetrain.data.translation"):
        d = build(config(root, tmp_path / "cache", skip_empty=True))
    assert "dropped 1 pairs with an empty side from train" in caplog.text
    assert d.train.num_samples == 38  # one empty, one overlong


# ---- a run, crashed mid-epoch and resumed -----------------------------------------------------------------------

TINY_MARIAN = ("{model_type: marian, d_model: 16, encoder_layers: 1, decoder_layers: 1, encoder_attention_heads: 2, "
               "decoder_attention_heads: 2, encoder_ffn_dim: 32, decoder_ffn_dim: 32, max_position_embeddings: 256}")
# (its pad, eos and decoder-start ids come from the data's tokenizer)


def test_a_sparse_translation_run_resumes_bit_identically(corpus, compose_config, tmp_path, monkeypatch):
    """The task side (task.name=translation, model.head=seq2seq_lm) on these batches: a RigL run crashed inside its
    first epoch ends as the uninterrupted one (weights, masks, BLEU and every logged event)."""
    from conftest import crash_and_resume

    overrides = ["model=hf", "model.head=seq2seq_lm", f"model.config={TINY_MARIAN}", "dataset=translation",
                 f"dataset.root={corpus}", f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.vocab_size=400",
                 "dataset.max_source_positions=64", "dataset.max_target_positions=64",
                 f"dataset.batch_tokens={BATCH_TOKENS}", "task.name=translation", "task.beam=1", "task.max_len_b=8",
                 "eval_batch_size=16", "optimizer=adamw", "optimizer.lr=1e-3", "schedule=constant", "epochs=2",
                 "method=rigl", "sparsity=0.5", "method.delta_t=3", "checkpoint_every=1it", "resume=auto"]
    assert 7 < len(build(config(corpus, tmp_path / "cache")).train)  # the crash comes inside the first epoch
    crash_and_resume(compose_config, tmp_path, monkeypatch, "rigl", overrides, crash_after=7)
