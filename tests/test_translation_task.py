"""Translation (``task.name=translation``, ``model.head=seq2seq_lm``): fairseq's label-smoothed loss on hand-made
batches of tiny random Marian models, padding ignored, sacrebleu's BLEU and signature from evaluation, greedy
generation at beam 1, the seq2seq head's vocabulary, special ids and default prunable matrices, and the refusals."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from sparsetrain.models.hf import SEQ2SEQ_PRUNABLE, build_hf, default_prunable, head_of
from sparsetrain.models.schemas import DEFAULT_TRANSFORMER_PRUNABLE
from sparsetrain.sparsity.targets import prunable_parameters
from sparsetrain.tasks.base import LOWER_IS_BETTER
from sparsetrain.tasks.build import build_task
from sparsetrain.tasks.catalog import TASKS, metrics_of
from sparsetrain.tasks.checks import check_task
from sparsetrain.tasks.schemas import TaskConfig
from sparsetrain.tasks.translation import IGNORE, Translation
from text_fixtures import SPECIAL, WORDS

EOS = "</s>"
VOCAB = SPECIAL + WORDS + [EOS]  # [PAD] is 0
PAD, EOS_ID = 0, len(VOCAB) - 1
TINY = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=40, dropout=0.0)


def _tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)}, eos_token=EOS)


def _marian(seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    cfg = {"config": {"model_type": "marian", **TINY, **changes}, "head": "seq2seq_lm"}
    return build_hf(cfg, len(VOCAB), "translation",
                    special_ids={"pad_token_id": PAD, "eos_token_id": EOS_ID, "decoder_start_token_id": PAD}).eval()


def _batch(sources: list[list[int]], targets: list[list[int]]) -> dict[str, torch.Tensor]:
    """The data side's batch: sources and targets ending with eos, sources padded with pad, targets with -100."""
    width, length = max(map(len, sources)) + 1, max(map(len, targets)) + 1
    ids = torch.tensor([s + [EOS_ID] + [PAD] * (width - len(s) - 1) for s in sources])
    labels = torch.tensor([t + [EOS_ID] + [IGNORE] * (length - len(t) - 1) for t in targets])
    return {"input_ids": ids, "attention_mask": ids.ne(PAD).long(), "labels": labels}


BATCH = _batch([[5, 7, 9], [6, 8, 10, 12, 14], [11]], [[7, 9], [8, 10, 12, 14, 16, 18], [13, 15, 17]])


class Split(list):
    """Evaluation batches with the split's raw sources, references and tokenizer, as the data gives them."""

    def __init__(self, batches, sources, references, tokenizer):
        super().__init__(batches)
        self.sources, self.references, self.tokenizer = sources, references, tokenizer


def _fairseq_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> tuple[float, float, int]:
    """fairseq's label_smoothed_nll_loss written out token by token (double): (loss sum, nll sum, tokens)."""
    lprobs = F.log_softmax(logits.double(), -1)
    vocabulary = lprobs.size(-1)
    eps_i = eps / (vocabulary - 1)
    loss = nll = 0.0
    count = 0
    for row in range(labels.size(0)):
        for t in range(labels.size(1)):
            target = int(labels[row, t])
            if target == IGNORE:
                continue
            token_nll = -float(lprobs[row, t, target].detach())
            smooth = -float(lprobs[row, t].sum().detach())
            loss += (1.0 - eps - eps_i) * token_nll + eps_i * smooth
            nll += token_nll
            count += 1
    return loss, nll, count


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    from transformers.models.marian.modeling_marian import shift_tokens_right

    decoder_input_ids = shift_tokens_right(batch["labels"], PAD, PAD)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     decoder_input_ids=decoder_input_ids).logits


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_training_loss_is_fairseqs_label_smoothed_cross_entropy_per_target_token(eps):
    model = _marian()
    loss, _, count = _fairseq_loss(_logits(model, BATCH), BATCH["labels"], eps)
    with torch.no_grad():
        got = Translation(label_smoothing=eps).train_loss(model, BATCH)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert count == 2 + 1 + 6 + 1 + 3 + 1  # every target token and its eos, no padding
    assert math.isclose(float(got), loss / count, rel_tol=1e-5)


def test_without_smoothing_the_loss_is_the_models_own_cross_entropy():
    model = _marian()
    with torch.no_grad():
        got = Translation(label_smoothing=0.0).train_loss(model, BATCH)
        own = model(**BATCH).loss  # the model shifts the labels itself
    logits = _logits(model, BATCH)
    plain = F.cross_entropy(logits.flatten(0, 1), BATCH["labels"].flatten(), ignore_index=IGNORE)
    assert torch.allclose(got, plain, rtol=1e-5) and torch.allclose(got, own, rtol=1e-5)


def test_padding_is_not_scored():
    model = _marian()
    longer = {**BATCH, "labels": torch.cat([BATCH["labels"], torch.full((3, 4), IGNORE)], 1),
              "input_ids": torch.cat([BATCH["input_ids"], torch.full((3, 2), PAD)], 1),
              "attention_mask": torch.cat([BATCH["attention_mask"], torch.zeros(3, 2, dtype=torch.long)], 1)}
    task = Translation(label_smoothing=0.1)
    with torch.no_grad():
        assert torch.allclose(task.train_loss(model, BATCH), task.train_loss(model, longer), rtol=1e-5, atol=1e-6)
        empty = {**BATCH, "labels": torch.full_like(BATCH["labels"], IGNORE)}
        assert float(task.train_loss(model, empty)) == 0.0  # no scored token: 0, not NaN


class FixedTranslator(nn.Module):
    """A stub seq2seq model: fixed logits per target position, and ``generate`` answering each source (its first
    token) with the fixed token ids of ``answers``."""

    def __init__(self, answers: dict[int, list[int]]):
        super().__init__()
        self.answers = answers
        self.config = type("Config", (), {"max_position_embeddings": 64, "pad_token_id": PAD, "eos_token_id": EOS_ID})()
        self.table = nn.Parameter(torch.randn(len(VOCAB), generator=torch.Generator().manual_seed(0)))
        self.calls = []

    def prepare_decoder_input_ids_from_labels(self, labels):
        shifted = labels.new_zeros(labels.shape)
        shifted[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE, PAD)
        return shifted

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        return (decoder_input_ids.unsqueeze(-1).float() * 0.1 + self.table).expand(-1, -1, len(VOCAB))

    def generate(self, input_ids, attention_mask, **options):
        self.calls.append(options)
        rows = [[PAD, *self.answers[int(first)], EOS_ID] for first in input_ids[:, 0]]
        width = max(map(len, rows))
        return torch.tensor([row + [PAD] * (width - len(row)) for row in rows])


def test_bleu_is_sacrebleus_corpus_bleu_of_the_decoded_translations_in_file_order():
    import sacrebleu

    tokenizer = _tokenizer()
    ids = {word: tokenizer.convert_tokens_to_ids(word) for word in WORDS}
    answers = {ids["cat"]: [ids[w] for w in "the cat sat on the mat".split()],
               ids["dog"]: [ids[w] for w in "a dog ran".split()],
               ids["bird"]: [ids[w] for w in "the big bird flew under the red tree".split()],
               ids["tree"]: [ids[w] for w in "the tree".split()]}
    references = ["the cat sat on the mat", "the dog ran", "a big bird flew under the tree", "the blue tree"]
    sources = ["cat", "dog", "bird", "tree"]
    first = _batch([[ids["cat"]], [ids["dog"], 9]], [[5, 6], [7]])  # uneven batches: token sums, not batch means
    second = _batch([[ids["bird"], 5, 6], [ids["tree"]]], [[5, 6, 7, 8, 9], [10, 11, 12]])
    model = FixedTranslator(answers)
    task = Translation(label_smoothing=0.1, beam=3, max_len_a=1.5, max_len_b=4)
    scores = task.evaluate(model, Split([first, second], sources, references, tokenizer), contextlib.nullcontext)
    hypotheses = ["the cat sat on the mat", "a dog ran", "the big bird flew under the red tree", "the tree"]
    expected = sacrebleu.corpus_bleu(hypotheses, [references])
    assert scores["bleu"] == pytest.approx(expected.score, abs=1e-9) and 0 < scores["bleu"] < 100
    signature = scores["bleu_signature"]
    assert signature.startswith("nrefs:1|") and "tok:13a" in signature and "version:" in signature
    loss = nll = count = 0
    for batch in (first, second):
        labels = batch["labels"]
        logits = model(None, None, model.prepare_decoder_input_ids_from_labels(labels))
        batch_loss, batch_nll, batch_count = _fairseq_loss(logits, labels, 0.1)
        loss, nll, count = loss + batch_loss, nll + batch_nll, count + batch_count
    assert scores["loss"] == pytest.approx(nll / count, rel=1e-6)
    assert scores["smoothed_loss"] == pytest.approx(loss / count, rel=1e-6)
    assert scores["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-6)
    assert [call["num_beams"] for call in model.calls] == [3, 3]
    assert [call["max_new_tokens"] for call in model.calls] == [int(1.5 * 3 + 4) + 1, int(1.5 * 4 + 4) + 1]
    assert model.calls[0]["do_sample"] is False and model.calls[0]["length_penalty"] == 1.0
    assert task.best_metric == "bleu" and task.higher_is_better
    assert task.better({"bleu": 30.0}, {"bleu": 29.0})
    shouted = Split([first, second], sources, [reference.upper() for reference in references], tokenizer)
    assert task.evaluate(model, shouted, contextlib.nullcontext)["bleu"] < 1.0  # cased by default
    lowercase = Translation(label_smoothing=0.1, beam=3, max_len_a=1.5, max_len_b=4, bleu_lowercase=True)
    scores_lc = lowercase.evaluate(model, shouted, contextlib.nullcontext)  # sacrebleu -lc, GaP's WMT14 scoring
    assert scores_lc["bleu"] == pytest.approx(expected.score, abs=1e-9) and "case:lc" in scores_lc["bleu_signature"]
    with pytest.raises(ValueError, match="references"):  # batches without references: refused, one line
        task.evaluate(model, [first], contextlib.nullcontext)
    model.config.eos_token_id = 3  # a model trained on other special ids than the tokenizer's: refused
    with pytest.raises(ValueError, match="eos_token_id=3 is not the tokenizer's"):
        task.evaluate(model, Split([first, second], sources, references, tokenizer), contextlib.nullcontext)


def test_beam_one_is_greedy_search_and_beams_decode_to_the_tokenizers_text():
    model = _marian(seed=1)
    batch = _batch([[5, 7, 9], [6, 8]], [[7], [8]])
    task = Translation(beam=1, max_len_b=6)
    greedy = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=1,
                            do_sample=False, max_new_tokens=7)
    with torch.no_grad():
        got = task.generate(model, batch)
    assert torch.equal(got, greedy)
    # greedy written out: the argmax token after the decoder start, for each source
    with torch.no_grad():
        step = model(**{k: batch[k] for k in ("input_ids", "attention_mask")},
                     decoder_input_ids=torch.full((2, 1), PAD)).logits[:, -1].argmax(-1)
    assert torch.equal(got[:, 1], step) and torch.all(got[:, 0] == PAD)
    beams = Translation(beam=4, max_len_b=6).generate(model, batch)
    assert beams.size(0) == 2 and beams.size(1) <= 8  # one translation per source, within max length


def test_generation_length_is_fairseqs_a_times_source_plus_b_capped_by_positions():
    model = _marian()  # 40 positions
    assert Translation(max_len_a=0.0, max_len_b=200).max_new_tokens(model, 10) == 39
    assert Translation(max_len_a=1.2, max_len_b=3).max_new_tokens(model, 10) == 16


def _prunable_names(model: nn.Module, cfg: dict) -> set[str]:
    return set(prunable_parameters(model, include=default_prunable(cfg, "translation")))


@pytest.mark.parametrize("model_type, config", [
    ("marian", {**TINY, "pad_token_id": PAD, "eos_token_id": EOS_ID, "decoder_start_token_id": PAD}),
    ("bart", TINY),
    ("t5", dict(d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2)),
])
def test_default_prunable_matrices_are_every_attention_and_feed_forward_projection(model_type, config):
    cfg = {"config": {"model_type": model_type, **config}, "head": "auto",
           "prunable": list(DEFAULT_TRANSFORMER_PRUNABLE)}
    assert default_prunable(cfg, "translation") == SEQ2SEQ_PRUNABLE
    model = build_hf(cfg, len(VOCAB), "translation")
    names = _prunable_names(model, cfg)
    if model_type == "t5":
        encoder = [f"layer.0.SelfAttention.{m}" for m in "qkvo"] + ["layer.1.DenseReluDense.wi",
                                                                     "layer.1.DenseReluDense.wo"]
        decoder = [f"layer.0.SelfAttention.{m}" for m in "qkvo"] + [f"layer.1.EncDecAttention.{m}" for m in "qkvo"] \
            + ["layer.2.DenseReluDense.wi", "layer.2.DenseReluDense.wo"]
        expected = {f"{part}.block.{i}.{m}.weight" for i in range(2) for part, ms in
                    (("encoder", encoder), ("decoder", decoder)) for m in ms}
    else:
        attention = [f"self_attn.{m}_proj" for m in "qkv"] + ["self_attn.out_proj"]
        cross = [f"encoder_attn.{m}_proj" for m in "qkv"] + ["encoder_attn.out_proj"]
        expected = {f"model.{part}.layers.{i}.{m}.weight" for i in range(2) for part, ms in
                    (("encoder", attention + ["fc1", "fc2"]), ("decoder", attention + cross + ["fc1", "fc2"]))
                    for m in ms}
    assert names == expected
    assert len(names) == (2 * 6 + 2 * 10)
    assert not any("embed" in name or "shared" in name or "lm_head" in name or "relative_attention" in name
                   for name in names)
    assert model.get_input_embeddings().num_embeddings == len(VOCAB)  # the tokenizer's vocabulary
    shared = model.get_input_embeddings().weight  # source and target embeddings and the LM head: one matrix
    assert model.get_encoder().embed_tokens.weight is shared and model.get_output_embeddings().weight is shared


def test_the_head_takes_the_tokenizers_vocabulary_and_special_ids_and_refuses_what_does_not_fit():
    model = _marian()
    assert (model.config.vocab_size, model.config.pad_token_id, model.config.eos_token_id,
            model.config.decoder_start_token_id) == (len(VOCAB), PAD, EOS_ID, PAD)
    assert head_of({"head": "auto"}, "translation") == "seq2seq_lm"
    with pytest.raises(ValueError, match="does not fit task.name=causal_lm"):
        head_of({"head": "seq2seq_lm"}, "causal_lm")
    with pytest.raises(ValueError, match="does not fit task.name=translation"):
        head_of({"head": "masked_lm"}, "translation")
    with pytest.raises(ValueError, match="smaller than the tokenizer's"):
        _marian(vocab_size=10)
    with pytest.raises(ValueError, match="eos_token_id=3 differs from the tokenizer's"):
        _marian(eos_token_id=3)
    fairseq_start = build_hf({"config": {"model_type": "marian", **TINY}}, len(VOCAB), "translation",
                             special_ids={"pad_token_id": PAD, "eos_token_id": EOS_ID})
    assert fairseq_start.config.decoder_start_token_id == EOS_ID  # no start from the data: eos, as fairseq's
    with pytest.raises(ValueError, match="pad_token_id is not a token of its vocabulary"):  # Marian's 58100
        build_hf({"config": {"model_type": "marian", **TINY}}, len(VOCAB), "translation")


@pytest.mark.parametrize("options, message", [
    ({"beam": 0}, "task.beam=0 must be an integer >= 1"),
    ({"label_smoothing": 1.0}, r"label_smoothing=1.0 must be in \[0, 1\)"),
    ({"label_smoothing": -0.1}, r"label_smoothing=-0.1 must be in \[0, 1\)"),
    ({"max_len_a": -1.0}, "task.max_len_a=-1.0 must be >= 0"),
    ({"max_len_b": -1}, "task.max_len_b=-1 must be an integer >= 0"),
    ({"length_penalty": float("nan")}, "task.length_penalty=nan must be finite"),
    ({"metric": "accuracy"}, "task.metric='accuracy' is not a metric of task.name=translation"),
])
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message) as error:
        Translation(**options)
    assert "\n" not in str(error.value) and "e.g." in str(error.value)


def test_the_task_section_builds_the_translation_task_and_checks_its_options():
    assert "translation" in TASKS and metrics_of("translation") == ("bleu", "loss", "perplexity")
    assert {"loss", "perplexity"} <= LOWER_IS_BETTER and "bleu" not in LOWER_IS_BETTER
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), {"name": "translation", "beam": 5, "max_len_a": 1.2,
                                                             "max_len_b": 10, "length_penalty": 0.6})
    task = build_task(cfg, label_smoothing=0.1, num_classes=len(VOCAB), prepare=lambda x: x)
    assert isinstance(task, Translation) and task.name == "translation"
    assert (task.beam, task.max_len_a, task.max_len_b, task.length_penalty, task.label_smoothing) == \
        (5, 1.2, 10, 0.6, 0.1)
    assert task.best_metric == "bleu"
    loss_first = build_task(OmegaConf.merge(cfg, {"metric": "loss"}), label_smoothing=0.1, num_classes=3,
                            prepare=lambda x: x)
    assert loss_first.best_metric == "loss" and not loss_first.higher_is_better
    with pytest.raises(ValueError, match="task.beam=0 must be"):
        check_task(OmegaConf.merge(cfg, {"beam": 0}))
    with pytest.raises(ValueError, match="task.name=translation"):  # no logits to distil, no hidden states
        check_task(OmegaConf.merge(cfg, {"distill": {"teacher": "self"}}))
