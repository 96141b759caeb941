"""Masked-language-model training on a plain-text corpus (``dataset=text``) and distillation for language models
(TAMT's hidden-state loss; the MLM, KD and MLM+KD objectives), offline: a WordPiece vocabulary and a tiny BERT
written by the tests (tests/text_fixtures.py)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

import sparsetrain
from conftest import crash_and_resume
from sparsetrain.errors import ConfigError
from sparsetrain.data.build import build_data
from sparsetrain.data import text as text_data
from sparsetrain.data.mlm_masking import IGNORE
from sparsetrain.tasks.distill import Distillation
from sparsetrain.tasks.hidden_states import hidden_state_loss
from sparsetrain.tasks.masked_lm import MaskedLM
from text_fixtures import SPECIAL, WORDS, tiny_bert, write_corpus, write_tokenizer

VOCAB = len(SPECIAL) + len(WORDS)
MASK_ID = SPECIAL.index("[MASK]")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tokenizer directory and train (300 lines) / test (60 lines) corpora."""
    root = tmp_path_factory.mktemp("corpus")
    write_tokenizer(root / "tokenizer")
    write_corpus(root / "train.txt", 300, seed=0)
    write_corpus(root / "test.txt", 60, seed=1)
    return root


def _data_config(corpus: Path, **changes) -> DictConfig:
    values = dict(name="text", train_file=str(corpus / "train.txt"), test_file=str(corpus / "test.txt"),
                  tokenizer=str(corpus / "tokenizer"), max_seq_length=16, mlm_probability=0.15, cache_dir=None,
                  val_size=0)
    return OmegaConf.create({**values, **changes})


def _build(cfg, seed: int = 0, batch_size: int = 8):
    return build_data(cfg, batch_size=batch_size, eval_batch_size=16, device=torch.device("cpu"), seed=seed)


def _overrides(corpus: Path, *extra: str) -> list[str]:
    return ["model=custom", "model._target_=text_fixtures.tiny_bert", "dataset=text",
            f"dataset.train_file={corpus / 'train.txt'}", f"dataset.test_file={corpus / 'test.txt'}",
            f"dataset.tokenizer={corpus / 'tokenizer'}", "dataset.max_seq_length=16", "task.name=masked_lm",
            "batch_size=8", "optimizer=adamw", "optimizer.lr=3e-3", "schedule=constant", *extra]


KD = ["task.distill.teacher=self", "task.distill.logits=false", "task.distill.hidden_weight=1.0"]  # TAMT KD
MLM_KD = [*KD, "task.distill.hardness=0.0"]  # TAMT MLM+KD: the masked-LM loss plus the hidden-state loss


def test_blocks_are_the_documents_joined_by_sep_in_cls_sep_frames(corpus):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(corpus / "tokenizer"))
    blocks = text_data.tokenise_blocks(corpus / "test.txt", tokenizer, 16)
    ids, mask = blocks["input_ids"], blocks["attention_mask"]
    assert ids.shape[1] == 16 and torch.all(ids[:, 0] == tokenizer.cls_token_id)
    lengths = mask.sum(1)
    assert torch.all(lengths[:-1] == 16) and 3 <= lengths[-1] <= 16  # only the last block is padded
    assert torch.all(ids[-1, lengths[-1]:] == tokenizer.pad_token_id)
    assert ids[-1, lengths[-1] - 1] == tokenizer.sep_token_id
    body = torch.cat([row[1:n - 1] for row, n in zip(ids, lengths)]).tolist()
    expected = []
    for line in (corpus / "test.txt").read_text().splitlines():
        expected += [*tokenizer(line, add_special_tokens=False)["input_ids"], tokenizer.sep_token_id]
    assert body == expected


def test_mlm_masking_rate_80_10_10_and_labels(corpus):
    data = _build(_data_config(corpus, max_seq_length=8))
    blocks = data.train.blocks
    special = torch.isin(blocks.input_ids, torch.arange(len(SPECIAL)))
    assert torch.equal(blocks.maskable, ~special & blocks.attention_mask.bool())  # never [CLS], [SEP], padding
    rng_before = torch.get_rng_state()
    counts = dict(maskable=0, selected=0, mask=0, kept=0)
    for epoch in range(12):
        for plan in data.train.plans(epoch):
            batch = data.train.make(plan)
            original = blocks.input_ids[plan[0]]
            maskable = blocks.maskable[plan[0]]
            selected = batch["labels"] != IGNORE
            assert not torch.any(selected & ~maskable)
            assert torch.equal(batch["labels"][selected], original[selected])  # labels: the original token ...
            assert torch.equal(batch["input_ids"][~selected], original[~selected])  # ... and nothing else changes
            corrupted = batch["input_ids"][selected]
            counts["maskable"] += int(maskable.sum())
            counts["selected"] += int(selected.sum())
            counts["mask"] += int((corrupted == MASK_ID).sum())
            counts["kept"] += int((corrupted == original[selected]).sum())
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is untouched
    assert counts["maskable"] > 20_000
    rate = counts["selected"] / counts["maskable"]
    assert abs(rate - 0.15) < 4 * math.sqrt(0.15 * 0.85 / counts["maskable"])
    share = {key: counts[key] / counts["selected"] for key in ("mask", "kept")}
    tolerance = 4 * math.sqrt(0.8 * 0.2 / counts["selected"])
    assert abs(share["mask"] - (0.8 + 0.1 / VOCAB)) < tolerance  # a random token may be [MASK] or the original
    assert abs(share["kept"] - (0.1 + 0.1 / VOCAB)) < tolerance


def test_masking_is_a_pure_function_of_seed_epoch_and_batch(corpus):
    first, again = _build(_data_config(corpus)), _build(_data_config(corpus))
    other_seed = _build(_data_config(corpus), seed=1)
    epoch = [first.train.make(plan) for plan in first.train.plans(2)]
    resumed = [again.train.make(plan) for plan in again.train.plans(2, start_batch=3)]
    assert all(torch.equal(a[key], b[key]) for a, b in zip(epoch[3:], resumed) for key in a)
    next_epoch = next(first.train.epoch(3))
    assert not torch.equal(epoch[0]["labels"], next_epoch["labels"])  # masked afresh every epoch
    # the evaluation split is masked once, the same for every seed: evaluations of all runs are comparable
    for a, b in zip(first.test, other_seed.test):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert first.num_classes == VOCAB and first.in_shape == (16,)


def test_without_a_test_file_held_out_blocks_are_the_evaluation_split(corpus):
    whole = _build(_data_config(corpus))
    held = _build(_data_config(corpus, test_file=None, val_size=5))
    assert held.val is None and held.test.num_samples == 5
    assert held.train.num_samples == whole.train.num_samples - 5
    assert all((batch["labels"] != IGNORE).any() for batch in held.test)


def test_tokenised_blocks_are_cached_and_keyed_by_file_and_length(corpus, tmp_path, monkeypatch):
    (tmp_path / "train.txt").write_text((corpus / "train.txt").read_text())
    cfg = _data_config(corpus, train_file=str(tmp_path / "train.txt"), cache_dir=str(tmp_path / "cache"))
    calls = []
    tokenise = text_data.tokenise_blocks
    monkeypatch.setattr(text_data, "tokenise_blocks", lambda *args: calls.append(args[0].name) or tokenise(*args))
    built = _build(cfg)
    assert sorted(calls) == ["test.txt", "train.txt"] and len(list((tmp_path / "cache").iterdir())) == 2
    reused = _build(cfg)
    assert len(calls) == 2  # nothing tokenised again
    assert torch.equal(built.train.blocks.input_ids, reused.train.blocks.input_ids)
    _build(_data_config(corpus, train_file=str(tmp_path / "train.txt"), cache_dir=str(tmp_path / "cache"),
                        max_seq_length=12))
    assert len(calls) == 4  # another block length: both files again
    with open(tmp_path / "train.txt", "a") as handle:
        handle.write("the red cat slept\n")
    changed = _build(cfg)
    assert calls[4:] == ["train.txt"]  # the changed file only
    assert changed.train.num_samples >= built.train.num_samples


def test_hidden_state_loss_matches_a_hand_computation():
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(2, 3, 4, generator=generator) for _ in range(3)]  # embedding output, 2 layers
    teacher = [torch.randn(2, 3, 4, generator=generator) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])

    def one_minus_cos(s, t):
        dot = sum(a * b for a, b in zip(s.tolist(), t.tolist()))
        return 1 - dot / (math.sqrt(sum(a * a for a in s.tolist())) * math.sqrt(sum(b * b for b in t.tolist())))

    tokens = [(b, i) for b in range(2) for i in range(3) if mask[b, i]]
    per_layer = [sum(one_minus_cos(student[layer][b, i], teacher[layer][b, i]) for b, i in tokens) / len(tokens)
                 for layer in (1, 2)]
    assert hidden_state_loss(student, teacher, mask).item() == pytest.approx(sum(per_layer) / 2, rel=1e-6)
    everything = [sum(one_minus_cos(student[layer][b, i], teacher[layer][b, i]) for b in range(2) for i in range(3)) / 6
                  for layer in (1, 2)]
    assert hidden_state_loss(student, teacher, None).item() == pytest.approx(sum(everything) / 2, rel=1e-6)
    moved = [student[0] * -3 + 1, *student[1:]]  # the embedding output does not count
    assert hidden_state_loss(moved, teacher, mask).item() == hidden_state_loss(student, teacher, mask).item()


def _tiny_batch(generator: torch.Generator) -> dict:
    ids = torch.randint(len(SPECIAL), VOCAB, (3, 8), generator=generator)
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[2, 5:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[:, 2] = ids[:, 2]
    ids[:, 2] = MASK_ID
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_hidden_state_loss_of_a_tiny_bert_and_zero_kd_when_student_equals_teacher():
    torch.manual_seed(0)
    student = tiny_bert(VOCAB, (8,))
    teacher = copy.deepcopy(student)
    batch = _tiny_batch(torch.Generator().manual_seed(1))
    kd = MaskedLM(distillation=Distillation(teacher, 2.0, 1.0, logits=False, hidden_weight=1.0))
    assert kd.train_loss(student, batch).item() == 0.0  # exactly: same weights, same states
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    states_s, states_t = (model(**inputs, output_hidden_states=True).hidden_states for model in (student, teacher))
    assert len(states_s) == 3  # the embedding output and 2 layers
    real = inputs["attention_mask"].bool()
    by_hand = sum((1 - F.cosine_similarity(s, t, dim=-1))[real].mean() for s, t in zip(states_s[1:], states_t[1:])) / 2
    assert kd.train_loss(student, batch).item() == pytest.approx(by_hand.item(), rel=1e-5)
    mlm = MaskedLM().train_loss(student, batch)
    mlm_kd = MaskedLM(distillation=Distillation(teacher, 2.0, 0.0, logits=False, hidden_weight=1.0))
    assert mlm_kd.train_loss(student, batch).item() == pytest.approx(mlm.item() + by_hand.item(), rel=1e-5)


def test_logit_and_hidden_kd_of_a_sequence_classifier_is_zero_for_its_own_copy():
    from transformers import BertConfig, BertForSequenceClassification

    from sparsetrain.tasks.sequence import SequenceClassification

    torch.manual_seed(0)
    student = BertForSequenceClassification(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                                       num_attention_heads=2, intermediate_size=32,
                                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch = {**_tiny_batch(torch.Generator().manual_seed(2)), "labels": torch.tensor([0, 1, 1])}
    both = Distillation(copy.deepcopy(student), 2.0, 1.0, logits=True, hidden_weight=1.0)
    assert SequenceClassification(2, distillation=both).train_loss(student, batch).item() == 0.0


def _first_step_loss(run_dir: Path) -> float:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(event["loss"] for event in events if event["event"] == "train_step")


def test_kd_from_self_starts_at_zero_also_from_init_from(corpus, tmp_path):
    sparsetrain.train(_overrides(corpus, "steps=4", f"hydra.run.dir={tmp_path / 'mlm'}"))
    for name, extra in (("kd", []), ("kd_from_mlm", [f"init_from={tmp_path / 'mlm'}"])):
        summary = sparsetrain.train(_overrides(corpus, *KD, *extra, "steps=3", "log_every=1it",
                                               f"hydra.run.dir={tmp_path / name}"))
        assert _first_step_loss(tmp_path / name) == 0.0  # the teacher is the model the student starts as
        assert set(summary["final"]["test"]) == {"loss", "perplexity", "accuracy"}


def test_exactly_k_tokens_per_block_with_mlm_tokens(corpus):
    """TAMT-KD's pre-generated data: one selected token per block (80/10/10 as ever), a pure function of the draws."""
    data = _build(_data_config(corpus, max_seq_length=8, mlm_tokens=1))
    blocks = data.train.blocks
    for plan in data.train.plans(0):
        batch, maskable = data.train.make(plan), blocks.maskable[plan[0]]
        selected = batch["labels"] != IGNORE
        assert torch.equal(selected.sum(1), maskable.any(1).long())  # one per block that has a maskable token
        assert not torch.any(selected & ~maskable)
        again = data.train.make(plan)
        assert all(torch.equal(batch[key], again[key]) for key in batch)


def test_mlm_kd_on_text_resumes_bit_exact_with_sparse_masks(corpus, compose_config, tmp_path, monkeypatch):
    overrides = _overrides(corpus, *MLM_KD, "method=gmp", "sparsity=0.5", "method.include=[*encoder*]",
                           "method.frequency=4it", "epochs=2", "checkpoint_every=3it", "resume=auto",
                           "model.dropout=0.1")
    reference, _ = crash_and_resume(compose_config, tmp_path, monkeypatch, "gmp", overrides, crash_after=7)
    masks = reference["method"]["masks"]
    assert masks and all(".encoder." in name for name in masks)


def test_the_text_mlm_kd_step_is_capturable(corpus, tmp_path, monkeypatch):
    import transformers.masking_utils

    # transformers skips an all-ones attention mask after reading it on the host, except while a CUDA graph is
    # being captured; the recorded graph (CPU) is no CUDA capture, so the check is skipped as CUDA capture does
    monkeypatch.setattr(transformers.masking_utils, "_ignore_bidirectional_mask_sdpa", lambda *args: False)
    common = [*MLM_KD, "method=rigl", "sparsity=0.5", "method.include=[*encoder*]", "method.delta_t=4", "steps=8"]
    eager = sparsetrain.train(_overrides(corpus, *common, "step_graph=off", f"hydra.run.dir={tmp_path / 'eager'}"))
    graph = sparsetrain.train(_overrides(corpus, *common, "step_graph=on", f"hydra.run.dir={tmp_path / 'graph'}"))
    assert graph["final"] == eager["final"]


@pytest.mark.parametrize(("extra", "message"), [
    (["dataset.train_file=null"], r"dataset\.train_file is not set"),
    (["dataset.test_file=nosuch.txt"], r"dataset\.test_file='nosuch\.txt' is not a file"),
    (["dataset.test_file=null"], r"dataset=text needs an evaluation split"),
    (["dataset.tokenizer=null"], r"dataset\.tokenizer is not set"),
    (["dataset.max_seq_length=2"], r"dataset\.max_seq_length=2 must be at least 3"),
    (["dataset.mlm_probability=1.5"], r"dataset\.mlm_probability=1\.5 must be in \(0, 1\)"),
    (["dataset.mlm_tokens=-1"], r"dataset\.mlm_tokens=-1 must be in \[0, dataset\.max_seq_length\)"),
    (["task.distill.teacher=self", "task.distill.teacher_mode=dropout", *KD[1:]],
     r"task\.distill\.teacher_mode='dropout' must be eval or train"),
    (["task.distill.hidden_weight=1.0"], r"task\.distill\.hidden_weight=1\.0 needs a teacher"),
    (["task.distill.hidden_weight=-1", "task.distill.teacher=self"], r"task\.distill\.hidden_weight=-1\.0 must be"),
    (["task.distill.teacher=self"], r"task\.distill distils class logits .* task\.distill\.logits=false"),
    (["task.distill.teacher=self", "task.distill.logits=false"], r"task\.distill has a teacher but distils nothing"),
    (["task.name=image_classification", *KD], r"task\.distill\.hidden_weight needs a transformer's hidden states"),
])
def test_bad_text_and_distillation_keys_are_one_line(corpus, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as raised:
        sparsetrain.train(_overrides(corpus, *extra, "steps=2", f"hydra.run.dir={tmp_path / 'run'}"))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_hidden_states_of_a_model_without_them_are_refused():
    with pytest.raises(ValueError, match=r"task\.distill\.hidden_weight needs a model called with "
                                         r"output_hidden_states=True .* a Linear"):
        Distillation(torch.nn.Linear(2, 2), 2.0, 1.0, logits=False, hidden_weight=1.0)


def test_a_directory_without_a_tokenizer_is_one_line(corpus, tmp_path):
    from sparsetrain.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"dataset\.tokenizer='.*empty' is not a tokenizer") as raised:
        _build(_data_config(corpus, tokenizer=str(tmp_path / "empty")))
    assert "\n" not in str(raised.value)
