"""Causal language models (``task.name=causal_lm``): next-token blocks of ``dataset=text``, the perplexity of the
test split, a tiny Llama decoder trained sparse by the masked methods, resumed bit-exact, and the refusals."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import sparsetrain
from conftest import crash_and_resume
from sparsetrain.data.build import build_data
from sparsetrain.data.mlm_masking import IGNORE
from sparsetrain.errors import ConfigError
from sparsetrain.tasks.causal_lm import CausalLM
from text_fixtures import SPECIAL, WORDS, causal_text_config, write_decoder_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A WordPiece tokenizer with an eos token, train (300 lines) / test (60 lines) corpora, and a tiny Llama
    (hidden 32, 2 layers, the tokenizer's vocabulary) saved as a model directory."""
    return write_decoder_corpus(tmp_path_factory.mktemp("causal"))


def _build(cfg, batch_size: int = 8, eval_batch_size: int = 16):
    return build_data(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=torch.device("cpu"), seed=0)


def _overrides(corpus: Path, run_dir: Path | None, *extra: str) -> list[str]:
    return ["model=hf", f"model.name_or_path={corpus / 'llama'}", "dataset=text",
            f"dataset.train_file={corpus / 'train.txt'}", f"dataset.test_file={corpus / 'test.txt'}",
            f"dataset.tokenizer={corpus / 'tokenizer'}", "dataset.max_seq_length=16", "task.name=causal_lm",
            "batch_size=8", "optimizer=adamw", "optimizer.lr=3e-3", "schedule=constant", "eval_batch_size=64",
            *([] if run_dir is None else [f"hydra.run.dir={run_dir}"]), *extra]


def _expected_tokens(tokenizer, path: Path, eos: int | None) -> list[int]:
    expected = []
    for line in path.read_text().splitlines():
        expected += tokenizer(line, add_special_tokens=False)["input_ids"] + ([] if eos is None else [eos])
    return expected


@pytest.mark.parametrize("with_eos", [True, False])
def test_blocks_are_the_documents_tokens_in_order_without_framing(corpus, tmp_path, with_eos):
    from transformers import AutoTokenizer, BertTokenizer

    directory = corpus / "tokenizer"
    if not with_eos:  # a tokenizer without eos: the documents are joined as they are
        directory = tmp_path / "no_eos"
        BertTokenizer(vocab={token: index for index, token in enumerate(SPECIAL + WORDS)}).save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    data = _build(causal_text_config(corpus, tokenizer=str(directory)))
    assert data.task == "causal_lm" and data.in_shape == (16,)
    test = data.test.tensors
    ids, mask, labels = test["input_ids"], test["attention_mask"], test["labels"]
    lengths = mask.sum(1)
    assert torch.all(lengths[:-1] == 16) and 1 <= lengths[-1] <= 16  # padding only in the last block
    assert torch.equal(labels, torch.where(mask.bool(), ids, IGNORE))  # labels = inputs, -100 on padding only
    body = torch.cat([row[:n] for row, n in zip(ids, lengths)]).tolist()
    eos = tokenizer.eos_token_id if with_eos else None
    assert body == _expected_tokens(tokenizer, corpus / "test.txt", eos)
    assert not {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id} & set(body)
    train = data.train.tensors  # every training block, in the file's order (val_size=0)
    train_lengths = train["attention_mask"].sum(1)
    train_body = torch.cat([row[:n] for row, n in zip(train["input_ids"], train_lengths)]).tolist()
    assert train_body == _expected_tokens(tokenizer, corpus / "train.txt", eos)
    first = [data.train.make(plan)["input_ids"] for plan in data.train.plans(epoch=1)]
    again = [data.train.make(plan)["input_ids"] for plan in data.train.plans(epoch=1, start_batch=2)]
    assert all(torch.equal(a, b) for a, b in zip(first[2:], again))  # a batch is a pure function of its index


def test_perplexity_is_exp_of_the_token_weighted_mean_nll_of_the_test_split(corpus):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(corpus / "llama"))
    data = _build(causal_text_config(corpus), eval_batch_size=5)  # uneven batches: a mean of batch means would differ
    scores = CausalLM().evaluate(model, data.test, contextlib.nullcontext)
    test = data.test.tensors
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in range(len(test["input_ids"])):
            n = int(test["attention_mask"][row].sum())
            logits = model(input_ids=test["input_ids"][row:row + 1, :n]).logits[0].double()
            nll += float(F.cross_entropy(logits[:-1], test["input_ids"][row, 1:n], reduction="sum"))
            count += n - 1
    assert math.isclose(scores["loss"], nll / count, rel_tol=1e-5)
    assert math.isclose(scores["perplexity"], math.exp(nll / count), rel_tol=1e-5)
    assert CausalLM().best_metric == "perplexity" and not CausalLM().higher_is_better
    batch = next(iter(data.test))  # the training loss is the model's own LM loss
    expected = model(**batch).loss
    assert torch.allclose(CausalLM().train_loss(model, batch), expected, rtol=1e-5)


def _train_steps(run_dir: Path) -> list[float]:
    import json

    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [event["loss"] for event in events if event["event"] == "train_step"]


def test_rigl_at_sparsity_09_trains_a_decoder_with_exact_masks_on_its_projections(corpus, tmp_path):
    run_dir = tmp_path / "rigl"
    summary = sparsetrain.train(_overrides(corpus, run_dir, "method=rigl", "sparsity=0.9", "method.delta_t=5",
                                           "steps=30", "log_every=1it"))
    losses = _train_steps(run_dir)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert summary["task"] == "causal_lm" and summary["metric"] == "perplexity"
    assert set(summary["final"]["test"]) == {"loss", "perplexity", "accuracy"}
    assert summary["final"]["test"]["perplexity"] < len(SPECIAL + WORDS) + 1  # below a uniform guess
    masks = {name: mask.bool() for name, mask in load_file(run_dir / "masks" / "final.safetensors").items()}
    projections = {f"model.layers.{layer}.{name}.weight" for layer in range(2) for name in
                   ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                    "mlp.up_proj", "mlp.down_proj")}
    assert set(masks) == projections
    layers = summary["masks"]["layers"]  # the layer distribution's densities, exactly realised
    assert all(int(mask.sum()) == round(layers[name]["density"] * mask.numel()) for name, mask in masks.items())
    kept = sum(int(mask.sum()) for mask in masks.values())
    assert abs(1 - kept / sum(mask.numel() for mask in masks.values()) - 0.9) < 0.005
    weights = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.all(weights[name][~mask] == 0) for name, mask in masks.items())


@pytest.mark.parametrize("method", [["method=static"], ["method=gmp", "method.frequency=2it"],
                                    ["method=oneshot"]])
def test_the_masked_methods_run_unchanged_on_a_decoder(corpus, tmp_path, method):
    summary = sparsetrain.train(_overrides(corpus, tmp_path / "run", *method, "sparsity=0.5", "steps=6"))
    assert math.isfinite(summary["final"]["test"]["perplexity"])
    masks = load_file(tmp_path / "run" / "masks" / "final.safetensors")
    assert masks and all(".layers." in name for name in masks)


def test_a_sparse_decoder_run_resumes_bit_exact(corpus, compose_config, tmp_path, monkeypatch):
    overrides = _overrides(corpus, None, "method=rigl", "sparsity=0.9", "method.delta_t=3", "epochs=2",
                           "checkpoint_every=3it", "resume=auto")
    crash_and_resume(compose_config, tmp_path, monkeypatch, "rigl", overrides, crash_after=7)


@pytest.mark.parametrize(("extra", "message"), [
    (["model.head=masked_lm"], r"model\.head=masked_lm does not fit task\.name=causal_lm"),
    (["model.prunable=[]", "model.head=causal_lm", "task.name=masked_lm"],
     r"model\.head=causal_lm does not fit task\.name=masked_lm"),
])
def test_a_causal_task_and_a_non_causal_head_are_refused_in_one_line(corpus, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as error:
        sparsetrain.train(_overrides(corpus, tmp_path / "run", *extra, "steps=1"))
    assert "\n" not in str(error.value)


def test_a_decoder_prunes_its_projections_by_default_and_gpt2_conv1d_is_refused(corpus, tmp_path):
    """model.prunable left at BERT's encoder matrices means the decoder's attention and MLP projections on a
    causal-LM head; GPT-2's Conv1D projections are refused in one line."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from sparsetrain.models.hf import build_hf, default_prunable
    from sparsetrain.models.schemas import DEFAULT_TRANSFORMER_PRUNABLE

    base = {"name_or_path": str(corpus / "llama"), "head": "auto"}
    assert default_prunable({**base, "prunable": DEFAULT_TRANSFORMER_PRUNABLE}, "causal_lm") == ["*.layers.*.weight"]
    assert default_prunable({**base, "prunable": DEFAULT_TRANSFORMER_PRUNABLE}, "masked_lm") == \
        DEFAULT_TRANSFORMER_PRUNABLE
    GPT2LMHeadModel(GPT2Config(vocab_size=27, n_embd=16, n_layer=1, n_head=2, n_positions=16)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel computes its projections with transformers' Conv1D"):
        build_hf({**base, "name_or_path": str(tmp_path / "gpt2"), "prunable": ["*.h.*.weight"]}, 27, task="causal_lm")