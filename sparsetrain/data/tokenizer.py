"""Hugging Face tokenizers for text datasets, and an on-disk cache of tokenised splits.

A tokenised split is a dict of equal-length tensors (``input_ids``, ``attention_mask``, ...). It is stored as a
safetensors file named by a hash of everything it depends on: the tokenizer's own serialisation, the settings
(maximum length, padding, task) and the source files' contents, so a changed tokenizer, setting or file is
tokenised again, and an unchanged one is read back.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save

from ..errors import NLP_EXTRA, ConfigError, DataError
from ..models.hf import from_hub
from ..runs.files import atomic_write


def load_tokenizer(cfg: Any) -> Any:
    """``AutoTokenizer.from_pretrained(cfg.tokenizer)`` (offline: from the local cache alone, ``from_hub``);
    DataError (one line naming ``dataset.tokenizer``, or ``model.name_or_path`` when the tokenizer is the model's
    own) when transformers is missing or the tokenizer cannot be loaded."""
    key = "model.name_or_path" if isinstance(cfg, DictConfig) and OmegaConf.is_interpolation(cfg, "tokenizer") \
        else "dataset.tokenizer"
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError(f"{key}: text datasets need Hugging Face transformers; {NLP_EXTRA}") from None
    try:
        return from_hub(AutoTokenizer.from_pretrained, cfg.tokenizer, key)
    except ConfigError as error:
        raise DataError(str(error)) from None
    except (OSError, ValueError) as error:
        reason = textwrap.shorten(str(error), 100)
        raise DataError(f"{key}={cfg.tokenizer!r} is not a tokenizer ({reason}); give a hub name or a local "
                        f"directory with the tokenizer files, e.g. {key}=bert-base-uncased") from None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's class, vocabulary and normalisation (its full serialisation when it is fast)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_tensors(cache_dir: Path, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors stored under ``key`` (a JSON-able dict) in ``cache_dir``, computed and stored (atomically) the
    first time."""
    path = cache_path(cache_dir, key)
    if path.is_file():
        return load_file(str(path))
    tensors = compute()
    data = save({name: tensor.contiguous() for name, tensor in tensors.items()})
    atomic_write(path, lambda handle: handle.write(data))
    return tensors


def cache_path(cache_dir: Path, key: dict) -> Path:
    """The file ``cached_tensors`` keeps the tensors of ``key`` in (read it with safetensors' ``load_file``)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{digest}.safetensors"
