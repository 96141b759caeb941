"""Hugging Face transformers models (``model=hf``): a pretrained model by hub name or local directory, or a
randomly initialised one from config values, with the head the task needs (sequence classification with the
data's number of labels, regression for one, masked language modelling, causal language modelling: a decoder
such as OPT or Llama through ``AutoModelForCausalLM``, or sequence-to-sequence language modelling: an
encoder-decoder such as Marian, BART or T5 through ``AutoModelForSeq2SeqLM``, for ``task.name=translation``)."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from typing import Any, Callable

from torch import nn

from ..errors import NLP_EXTRA, ConfigError
from .schemas import DEFAULT_TRANSFORMER_PRUNABLE

HEADS = ("auto", "sequence_classification", "masked_lm", "causal_lm", "seq2seq_lm")
EXAMPLE = "model.name_or_path=bert-base-uncased"
# a decoder's prunable matrices: every linear layer of its blocks (OPT: q/k/v/out_proj, fc1, fc2; Llama, Mistral, Qwen:
# q/k/v/o_proj, gate/up/down_proj); not the embeddings nor the (tied) LM head
DECODER_PRUNABLE = ["*.layers.*.weight"]
# an encoder-decoder's: every attention (q, k, v, out; self and cross) and feed-forward matrix of the encoder and
# decoder layers (Marian, BART: *.layers.*; T5: *.block.*, its relative-position biases being embeddings); not the
# shared embeddings nor the (tied) LM head. One pattern: each pattern must match some weight of the model
SEQ2SEQ_PRUNABLE = [r"re:\.(layers|block)\.\d+\..*weight$"]
AUTO_MODELS = {"masked_lm": "AutoModelForMaskedLM", "causal_lm": "AutoModelForCausalLM",
               "seq2seq_lm": "AutoModelForSeq2SeqLM",
               "sequence_classification": "AutoModelForSequenceClassification"}
TASK_HEADS = {"masked_lm": "masked_lm", "causal_lm": "causal_lm", "translation": "seq2seq_lm"}  # auto's head
SPECIAL_IDS = ("pad_token_id", "eos_token_id", "decoder_start_token_id")  # a seq2seq model's, from the tokenizer


def transformers_module() -> Any:
    """The transformers package; ValueError (one line) when the nlp extra is not installed."""
    try:
        import transformers
    except ImportError:
        raise ValueError(f"model=hf needs Hugging Face transformers; {NLP_EXTRA}") from None
    return transformers


def check_hf(cfg: dict[str, Any]) -> None:
    """The checks that need no download: transformers importable, a model or a config given, a known head."""
    if cfg.get("head", "auto") not in HEADS:
        raise ValueError(f"model.head={cfg['head']!r} is not a head; choose one of: {', '.join(HEADS)} "
                         "(e.g. model.head=auto)")
    if cfg.get("name_or_path") is None and cfg.get("config") is None:
        raise ValueError(f"model=hf needs model.name_or_path (pretrained) or model.config (random init); e.g. {EXAMPLE}")
    config = cfg.get("config")
    if config is not None and not isinstance(config, (dict, str)):
        raise ValueError("model.config must be a dict of config values or a config.json path; e.g. "
                         "model.config='{model_type: bert, hidden_size: 64}'")
    if importlib.util.find_spec("transformers") is None:  # not imported here: preflight stays fast
        raise ValueError(f"model=hf needs Hugging Face transformers; {NLP_EXTRA}")


def head_of(cfg: dict[str, Any], task: str | None) -> str:
    """``model.head``; ``auto``: the language-model head of task masked_lm or causal_lm, seq2seq_lm for
    translation, else sequence classification. ValueError (one line) when a causal or seq2seq head and the task
    do not go together."""
    head = cfg.get("head", "auto")
    if head == "auto":
        return TASK_HEADS.get(task, "sequence_classification")
    if (head == "causal_lm") != (task == "causal_lm"):
        raise ValueError(f"model.head={head} does not fit task.name={task}: a causal language model trains with "
                         "task.name=causal_lm and model.head=causal_lm (or auto); e.g. model.head=auto")
    if (head == "seq2seq_lm") != (task == "translation"):
        raise ValueError(f"model.head={head} does not fit task.name={task}: an encoder-decoder trains with "
                         "task.name=translation and model.head=seq2seq_lm (or auto); e.g. model.head=auto")
    return head


def default_prunable(cfg: dict[str, Any], task: str | None) -> list[str]:
    """``model.prunable``; with it left at BERT's encoder matrices (the default): on a causal-LM head the decoder's
    (``DECODER_PRUNABLE``), on a seq2seq head the encoder's and decoder's (``SEQ2SEQ_PRUNABLE``)."""
    given = list(cfg.get("prunable") or [])
    if given != DEFAULT_TRANSFORMER_PRUNABLE:
        return given
    head = head_of(cfg, task)
    return list(DECODER_PRUNABLE) if head == "causal_lm" else list(SEQ2SEQ_PRUNABLE) if head == "seq2seq_lm" \
        else given


def build_hf(cfg: dict[str, Any], num_classes: int, task: str | None = None, pretrained: bool = True,
             special_ids: dict[str, int] | None = None) -> nn.Module:
    """``AutoModelForSequenceClassification`` (``num_classes`` labels, regression for 1), ``AutoModelForMaskedLM``,
    ``AutoModelForCausalLM`` (GPT-2's Conv1D refused) or ``AutoModelForSeq2SeqLM`` (``num_classes``: the
    tokenizer's vocabulary; ``special_ids``: its pad/eos/decoder-start ids, when the data gives them): from
    ``name_or_path`` with its weights (``pretrained=False``: its architecture at random), or from ``config`` at
    random."""
    check_hf(cfg)
    transformers = transformers_module()
    head = head_of(cfg, task)
    if head == "seq2seq_lm":
        return _seq2seq(transformers, cfg, num_classes, pretrained, special_ids or {})
    model = _load(transformers, cfg, num_classes, head, pretrained)
    if head == "causal_lm":
        from transformers.pytorch_utils import Conv1D

        if any(isinstance(module, Conv1D) for module in model.modules()):
            raise ValueError(f"{type(model).__name__} computes its projections with transformers' Conv1D (GPT-2 "
                             "style), which no sparse method masks; train a decoder of nn.Linear layers, e.g. OPT, "
                             "Llama or Qwen (model.config='{model_type: llama, ...}')")
    return model


def _seq2seq(transformers: Any, cfg: dict[str, Any], vocabulary: int, pretrained: bool,
             special_ids: dict[str, int]) -> nn.Module:
    """An encoder-decoder whose vocabulary holds the tokenizer's ``vocabulary`` ids: a config at random gets
    ``vocab_size`` = ``vocabulary`` unless it sets one, and the data's special ids unless it sets them; a model's
    vocabulary smaller than the tokenizer's, or special ids outside it, are refused (one line). Source and target
    embeddings and the LM head are shared where the model's config says so (Marian, BART, T5 by default)."""
    config = cfg.get("config")
    if cfg.get("name_or_path") is None and isinstance(config, dict):
        given = {key: value for key, value in special_ids.items() if value is not None}
        if "eos_token_id" in given:  # fairseq's decoder input: eos, then the target shifted right
            given.setdefault("decoder_start_token_id", given["eos_token_id"])
        cfg = {**cfg, "config": {"vocab_size": vocabulary, **given, **config}}
    try:
        model = _load(transformers, cfg, vocabulary, "seq2seq_lm", pretrained)
    except AssertionError:  # torch's "Padding_idx must be within num_embeddings"
        raise ValueError("the model's pad_token_id is not a token of its vocabulary; give the tokenizer's special "
                         "ids in model.config, e.g. model.config='{pad_token_id: 0, eos_token_id: 2, "
                         "decoder_start_token_id: 0}'") from None
    size = model.get_input_embeddings().num_embeddings
    if size < vocabulary:
        raise ValueError(f"the model's vocabulary ({size} tokens) is smaller than the tokenizer's ({vocabulary}); "
                         f"give a config whose vocab_size is at least {vocabulary}, e.g. "
                         f"model.config='{{model_type: marian, vocab_size: {vocabulary}}}'")
    for key in SPECIAL_IDS:
        value = getattr(model.config, key, None)
        if value is None:
            value = getattr(model.generation_config, key, None)
        wanted = special_ids.get(key) if key != "decoder_start_token_id" else None  # a model's own start stays
        if wanted is not None and value != wanted:
            raise ValueError(f"model {key}={value} differs from the tokenizer's ({wanted}); set it, e.g. "
                             f"model.config='{{{key}: {wanted}}}'")
        if (value is None and key != "decoder_start_token_id") or (value is not None and not 0 <= value < size):
            raise ValueError(f"model {key}={value} is not a token of the model's vocabulary ({size}); set the "
                             f"tokenizer's in model.config, e.g. model.config='{{{key}: 0}}'")
    return model


def _load(transformers: Any, cfg: dict[str, Any], num_classes: int, head: str, pretrained: bool) -> nn.Module:
    masked_lm = head != "sequence_classification"  # a language-model head: no labels, no new classifier
    auto = getattr(transformers, AUTO_MODELS[head])
    labels = {} if masked_lm else {
        "num_labels": num_classes,
        "problem_type": "regression" if num_classes == 1 else "single_label_classification"}
    name, config = cfg.get("name_or_path"), cfg.get("config")
    try:
        if name is not None:
            overrides = config if isinstance(config, dict) else {}
            extra = {} if masked_lm else {"ignore_mismatched_sizes": True}  # a new classifier for other labels
            if not pretrained:
                return auto.from_config(from_hub(transformers.AutoConfig.from_pretrained, name, "model.name_or_path",
                                                 **labels, **overrides))
            return from_hub(auto.from_pretrained, name, "model.name_or_path", **labels, **overrides, **extra)
        return auto.from_config(_config(transformers, config, labels))
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = textwrap.shorten(str(error), 160)
        key = "model.name_or_path" if name is not None else "model.config"
        shown = name if name is not None else config
        raise ValueError(f"{key}={shown!r} cannot be loaded ({type(error).__name__}: {reason}); give a hub name "
                         f"(offline: a cached one) or a local directory, e.g. {EXAMPLE}") from None


def from_hub(load: Callable[..., Any], name: str, key: str, **kwargs: Any) -> Any:
    """``load(name, **kwargs)``, a transformers ``from_pretrained``: from the local cache alone when the hub cannot
    be reached (``HF_HUB_OFFLINE``, or no answer to one request), where transformers would retry for most of a minute.
    ConfigError (one line naming ``key``) when the files are then not in the cache."""
    offline = not os.path.isdir(os.path.expanduser(name)) and not _hub_answers(name)
    try:
        return load(os.path.expanduser(name), local_files_only=offline, **kwargs)
    except OSError:
        if not offline:
            raise
        raise ConfigError(f"{key}={name!r}: not in the local cache and the Hugging Face hub cannot be reached; e.g. "
                          f"{key}=/path/to/a/local/model") from None


def _hub_answers(name: str) -> bool:
    """Whether the Hugging Face hub answers a request about ``name`` (one request, no retries)."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    if huggingface_hub.is_offline_mode():
        return False
    try:
        huggingface_hub.HfApi().model_info(name, timeout=huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT)
    except (HfHubHTTPError, HFValidationError):  # an answer (no such model, gated), or no hub name: loading says so
        return True
    except Exception:  # no connection, or no answer in time
        return False
    return True


def _config(transformers: Any, config: dict | str, labels: dict) -> Any:
    """A transformers config from values (``model_type`` required) or from a config.json file or directory."""
    if isinstance(config, str):
        return transformers.AutoConfig.from_pretrained(os.path.expanduser(config), **labels)
    values = dict(config)
    if "model_type" not in values:
        raise ValueError("model.config needs model_type, e.g. model.config='{model_type: bert, hidden_size: 64}'")
    return transformers.AutoConfig.for_model(values.pop("model_type"), **values, **labels)
