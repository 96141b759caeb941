"""Sequence-to-sequence translation (``task.name=translation``): an encoder-decoder (``model.head=seq2seq_lm``, a
Hugging Face ``AutoModelForSeq2SeqLM``) reads ``input_ids``/``attention_mask`` (source tokens ending with eos) and
predicts ``labels`` (target tokens ending with eos, -100 on padding); its decoder inputs are the labels shifted right
behind the decoder-start token (the model's ``prepare_decoder_input_ids_from_labels``, as the model does it when given
``labels``), or the batch's own ``decoder_input_ids``.

The training loss is fairseq's ``label_smoothed_cross_entropy`` with eps = ``label_smoothing``: with eps_i =
eps / (V - 1), each scored target token costs (1 - eps - eps_i)·(−log p_target) + eps_i·Σ_v(−log p_v); the batch's
loss is the mean over its scored tokens (fairseq sums and divides the gradient by the token count, the same update
for one batch per step; a mean keeps our learning rates per token). Padding is not scored; no host read.

Evaluation sums on the device, over every batch of a split, the token NLL, the smoothed loss and the token count
(one host read): ``loss`` is the token-mean NLL (plain cross-entropy, as every task's evaluation loss),
``perplexity`` its exponential, ``smoothed_loss`` the training objective. Then each batch's sources are translated
by the model's ``generate`` (``beam`` beams, 1: greedy; ``length_penalty``; at most a·S + b new tokens, fairseq's
``max_len_a``/``max_len_b`` with S the batch's padded source length, capped by the decoder's positions), decoded by
the split's tokenizer without special tokens, and scored against the split's references by sacrebleu's corpus BLEU
(``bleu``; its signature as ``bleu_signature``, a string beside the numbers). BLEU is the "best" metric by default."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NLP_EXTRA
from .base import Batch, Task, call_model, output_logits, split_labels
from .checks import check_translation

IGNORE = -100  # the label of a target position that is not scored (padding)


def label_smoothed_nll(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
    """(smoothed loss sum, NLL sum, scored-token count) of ``logits`` (..., V) against ``labels`` (...), -100 not
    scored: fairseq's ``label_smoothed_nll_loss`` with ``reduce=True``, float32."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    scored = labels.ne(IGNORE)
    target = labels.masked_fill(~scored, 0).unsqueeze(-1)
    nll = -lprobs.gather(-1, target).squeeze(-1)
    smooth = -lprobs.sum(-1)
    nll, smooth = nll.masked_fill(~scored, 0.0).sum(), smooth.masked_fill(~scored, 0.0).sum()
    eps_i = eps / (lprobs.size(-1) - 1)
    return (1.0 - eps - eps_i) * nll + eps_i * smooth, nll, scored.sum()


def decoder_inputs(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The model's named inputs for ``batch``: every tensor but ``labels``, and ``decoder_input_ids`` (the
    batch's, else the labels shifted right behind the decoder-start token)."""
    inputs, labels = split_labels(batch)
    if "decoder_input_ids" not in inputs:
        inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=labels)
    return inputs


class Translation(Task):
    name = "translation"
    metrics = ("bleu", "loss", "perplexity")  # task.metric's choices; smoothed_loss is reported too

    def __init__(self, *, label_smoothing: float = 0.0, beam: int = 4, length_penalty: float = 1.0,
                 max_len_a: float = 0.0, max_len_b: int = 200, bleu_lowercase: bool = False,
                 metric: str | None = None) -> None:
        check_translation(label_smoothing, beam, length_penalty, max_len_a, max_len_b)
        self.choose_metric(metric, self.metrics)
        self.label_smoothing = label_smoothing
        self.beam, self.length_penalty = beam, length_penalty
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.bleu_lowercase = bleu_lowercase

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return output_logits(call_model(model, decoder_inputs(model, batch)))

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        labels = split_labels(batch)[1]
        loss, _, count = label_smoothed_nll(self.forward(model, batch), labels, self.label_smoothing)
        return loss / count.clamp(min=1)  # the mean over the scored target tokens; 0, not NaN, without any

    def max_new_tokens(self, model: nn.Module, source_length: int) -> int:
        """fairseq's max_len = a·S + b tokens before eos (so one more with it), at most what the decoder's
        positions allow after its start token."""
        wanted = int(self.max_len_a * source_length + self.max_len_b) + 1
        positions = getattr(model.config, "max_position_embeddings", None)
        return max(1, min(wanted, positions - 1)) if positions else max(1, wanted)

    def generate(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The translations (token ids, decoder-start first) of ``batch``'s sources."""
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask") if key in batch}
        options = {"early_stopping": True} if self.beam > 1 else {}
        return model.generate(**inputs, num_beams=self.beam, do_sample=False, length_penalty=self.length_penalty,
                              max_new_tokens=self.max_new_tokens(model, batch["input_ids"].size(1)),
                              num_return_sequences=1, **options)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], Any]) -> dict:
        references, tokenizer = _bleu_inputs(batches)
        for key in ("pad_token_id", "eos_token_id"):  # else the model was trained on other ids than it is scored
            model_id, tokenizer_id = getattr(model.config, key, None), getattr(tokenizer, key, None)
            if model_id != tokenizer_id:
                raise ValueError(f"the model's {key}={model_id} is not the tokenizer's ({tokenizer_id}); set it, "
                                 f"e.g. model.config='{{{key}: {tokenizer_id}}}'")
        was_training = model.training
        model.eval()
        totals, hypotheses = None, []
        try:
            for batch in batches:
                with autocast():
                    logits = self.forward(model, batch)
                    generated = self.generate(model, batch)
                smoothed, nll, count = label_smoothed_nll(logits, batch["labels"], self.label_smoothing)
                stats = torch.stack((smoothed.double(), nll.double(), count.double()))
                totals = stats if totals is None else totals + stats
                hypotheses += tokenizer.batch_decode(generated, skip_special_tokens=True)
        finally:
            model.train(was_training)
        smoothed, nll, count = totals.tolist()  # one host read for the losses (decoding read the translations)
        if len(hypotheses) != len(references):
            raise ValueError(f"the evaluation batches hold {len(hypotheses)} sources and {len(references)} "
                             "references; the data must give one reference per source, in the batches' order")
        bleu, signature = corpus_bleu(hypotheses, references, self.bleu_lowercase)
        return {"bleu": bleu, "loss": nll / count, "perplexity": math.exp(min(nll / count, 700.0)),
                "smoothed_loss": smoothed / count, "bleu_signature": signature}

    def describe(self, scores: dict) -> str:
        return f"loss {scores['loss']:.4f} bleu {scores['bleu']:.2f}" + \
            ("" if self.best_metric == "bleu" else f" {self.best_metric} {scores[self.best_metric]:.4f}")


def corpus_bleu(hypotheses: list[str], references: list[str], lowercase: bool = False) -> tuple[float, str]:
    """sacrebleu's corpus BLEU of ``hypotheses`` against one reference each (its defaults: 13a tokenisation,
    exponential smoothing; cased unless ``lowercase``), and its signature."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise ValueError(f"task.name=translation scores BLEU with sacrebleu; {NLP_EXTRA}") from None
    metric = BLEU(lowercase=lowercase)
    score = metric.corpus_score(hypotheses, [references])
    return score.score, str(metric.get_signature())


def _bleu_inputs(batches: Any) -> tuple[list[str], Any]:
    """The split's ``references`` and ``tokenizer`` (attributes of its evaluation batches); ValueError without."""
    references, tokenizer = getattr(batches, "references", None), getattr(batches, "tokenizer", None)
    if references is None or tokenizer is None:
        raise ValueError("task.name=translation scores BLEU and needs evaluation batches with references and a "
                         "tokenizer; use a dataset that gives them, e.g. dataset=translation")
    return list(references), tokenizer
