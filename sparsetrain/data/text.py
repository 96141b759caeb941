"""``dataset=text``: plain-text files for masked- or causal-language-model training.

Each non-empty line is a document. The lines are tokenised without special tokens, joined with [SEP] after each
document, and cut into blocks of ``max_seq_length - 2`` tokens, each block framed as ``[CLS] ... [SEP]`` (BERT's
pre-training layout; Hugging Face ``run_mlm`` also concatenates rather than padding each line). The last, shorter
block is ``[CLS] ... [SEP]`` then padding (attention mask 0), so no text is dropped. The blocks of a file are
cached on disk (safetensors) under a key of the tokenizer's fingerprint, the block length and the file's contents.

Training batches are corrupted as BERT's MLM afresh each epoch (``mlm_masking``); the evaluation split (``test_file``,
or ``val_size`` blocks held out of train) once, from a fixed seed. ``num_classes`` is the tokenizer's vocabulary
size (a model factory may take it), the input shape ``(max_seq_length,)``.

With ``dataset.objective=causal_lm`` (its default follows ``task.name``, so ``task.name=causal_lm`` selects it) the
blocks are for next-token prediction instead (Hugging Face ``run_clm``'s packing): the documents' tokens in order,
each document followed by the tokenizer's eos token when it has one, cut into blocks of ``max_seq_length`` tokens
without any framing or masking; ``labels`` are the ``input_ids`` (the model shifts them), -100 on the padding of the
last, shorter block (the only padding). Training batches are plain shuffled blocks (``DictTrainBatches``: a batch is
a pure function of seed, epoch and batch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .batches import Data
from .dict_batches import DictEvalBatches, DictTrainBatches
from ..errors import DataError
from .mlm_masking import IGNORE, Masking, MaskedTextBatches, TokenBlocks
from .splits import holdout
from .tokenizer import cached_tensors, file_fingerprint, load_tokenizer, tokenizer_fingerprint

CACHE_FORMAT = 1  # bump when the block layout changes: older cache entries are then never read
LINES_PER_CALL = 10_000  # lines tokenised per tokenizer call
CAUSAL = "causal_lm"  # dataset.objective (and task.name) of next-token blocks; anything else: masked-LM blocks


def objective_of(cfg: Any) -> str:
    """``causal_lm`` or ``masked_lm``: the blocks ``dataset.objective`` asks for (it defaults to ``task.name``)."""
    return CAUSAL if cfg.get("objective") == CAUSAL else "masked_lm"


def check_text_config(cfg: Any) -> None:
    """The checks that need neither the files' contents nor the tokenizer (DataError, one line)."""
    if not cfg.train_file:
        raise DataError("dataset.train_file is not set; dataset=text reads one document per line, "
                        "e.g. dataset.train_file=wiki.train.raw")
    for key in ("train_file", "test_file"):
        path = cfg[key]
        if path and not os.path.isfile(os.path.expanduser(path)):
            raise DataError(f"dataset.{key}={path!r} is not a file; e.g. dataset.{key}=wiki.{key[:-5]}.raw")
    if not cfg.test_file and cfg.val_size == 0:
        raise DataError("dataset=text needs an evaluation split: dataset.test_file, or blocks of train held out "
                        "with dataset.val_size; e.g. dataset.test_file=wiki.valid.raw")
    if not cfg.tokenizer:
        raise DataError("dataset.tokenizer is not set; give a hub name or a local directory, "
                        "e.g. dataset.tokenizer=bert-base-uncased")
    if objective_of(cfg) == CAUSAL:
        if cfg.max_seq_length < 2:
            raise DataError(f"dataset.max_seq_length={cfg.max_seq_length} must be at least 2 (a token and the next); "
                            "e.g. dataset.max_seq_length=128")
    elif cfg.max_seq_length < 3:
        raise DataError(f"dataset.max_seq_length={cfg.max_seq_length} must be at least 3 ([CLS], a token, [SEP]); "
                        "e.g. dataset.max_seq_length=128")
    if not 0.0 < cfg.mlm_probability < 1.0:
        raise DataError(f"dataset.mlm_probability={cfg.mlm_probability} must be in (0, 1); "
                        "e.g. dataset.mlm_probability=0.15")
    if not 0 <= cfg.get("mlm_tokens", 0) < cfg.max_seq_length:
        raise DataError(f"dataset.mlm_tokens={cfg.mlm_tokens} must be in [0, dataset.max_seq_length) (0: select by "
                        "dataset.mlm_probability); e.g. dataset.mlm_tokens=1")


def build_text(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    check_text_config(cfg)
    tokenizer = load_tokenizer(cfg)
    if objective_of(cfg) == CAUSAL:
        return _build_causal(cfg, tokenizer, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device,
                             seed=seed)
    missing = [name for name in ("cls_token", "sep_token", "pad_token", "mask_token")
               if getattr(tokenizer, name) is None]
    if missing:
        raise DataError(f"dataset.tokenizer={cfg.tokenizer!r} has no {missing[0]}; masked-LM training needs a "
                        "BERT-style tokenizer, e.g. dataset.tokenizer=bert-base-uncased")
    blocks = {key: _blocks(Path(cfg[key]).expanduser(), tokenizer, cfg.max_seq_length, _cache_dir(cfg), device)
              for key in ("train_file", "test_file") if cfg[key]}
    train = blocks["train_file"]
    train_idx, val_idx = holdout(len(train), cfg.val_size, cfg.name)
    held_out = None if val_idx is None else train.subset(val_idx.to(device))
    train = train.subset(train_idx.to(device))
    masking = Masking(tokenizer.mask_token_id, len(tokenizer), cfg.mlm_probability, cfg.get("mlm_tokens", 0))
    evaluation = {name: masking.mask_once(split) for name, split in
                  (("val", held_out), ("test", blocks.get("test_file"))) if split is not None}
    train_batches = MaskedTextBatches(train, masking, batch_size=batch_size, seed=seed, dataset=cfg.name)
    return _text_data(cfg, tokenizer, train_batches, evaluation, eval_batch_size, "masked_lm")


def _cache_dir(cfg: Any) -> Path:
    return Path(cfg.cache_dir or Path(cfg.train_file).expanduser().parent / ".sparsetrain_cache")


def _text_data(cfg: Any, tokenizer: Any, train: Any, evaluation: dict[str, dict[str, torch.Tensor]],
               eval_batch_size: int, task: str) -> Data:
    """The data of ``train``'s batches and the ``evaluation`` splits (``val`` held out of train, ``test`` from
    ``test_file``; without a test file the held-out blocks are the test split)."""
    if "test" not in evaluation:
        evaluation = {"test": evaluation["val"]}
    return Data(
        train=train,
        val=DictEvalBatches(evaluation["val"], batch_size=eval_batch_size) if "val" in evaluation else None,
        test=DictEvalBatches(evaluation["test"], batch_size=eval_batch_size),
        in_shape=(cfg.max_seq_length,),
        num_classes=len(tokenizer),
        example={key: value[:1].cpu() for key, value in evaluation["test"].items()},
        task=task,
    )


def _build_causal(cfg: Any, tokenizer: Any, *, batch_size: int, eval_batch_size: int, device: torch.device,
                  seed: int) -> Data:
    """Next-token blocks (see the module doc): shuffled training batches, the evaluation splits as they are."""
    blocks = {key: _causal_blocks(Path(cfg[key]).expanduser(), tokenizer, cfg.max_seq_length, _cache_dir(cfg), device)
              for key in ("train_file", "test_file") if cfg[key]}
    train = blocks["train_file"]
    train_idx, val_idx = holdout(len(train["input_ids"]), cfg.val_size, cfg.name)
    evaluation = {} if val_idx is None else {"val": _rows(train, val_idx.to(device))}
    if "test_file" in blocks:
        evaluation["test"] = blocks["test_file"]
    train_batches = DictTrainBatches(_rows(train, train_idx.to(device)), batch_size=batch_size, seed=seed,
                                     dataset=cfg.name)
    return _text_data(cfg, tokenizer, train_batches, evaluation, eval_batch_size, CAUSAL)


def _rows(tensors: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in tensors.items()}


def _causal_blocks(path: Path, tokenizer: Any, length: int, cache_dir: Path,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (blocks, length) int64 of one file's next-token blocks
    (cached), on ``device``."""
    key = {"kind": "causal_text_blocks", "format": CACHE_FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer),
           "max_seq_length": length, "file": file_fingerprint(path)}
    tensors = cached_tensors(cache_dir, key, lambda: tokenise_causal_blocks(path, tokenizer, length))
    input_ids, attention_mask = tensors["input_ids"].long(), tensors["attention_mask"].long()
    labels = torch.where(attention_mask.bool(), input_ids, IGNORE)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "labels": labels.to(device)}


def tokenise_causal_blocks(path: Path, tokenizer: Any, length: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (blocks, length) int32 of the file's documents, each followed by the
    tokenizer's eos token when it has one, packed into blocks of ``length`` tokens; the last, shorter block padded
    (pad token, else eos, else 0; attention mask 0)."""
    eos = tokenizer.eos_token_id
    pad = next((token for token in (tokenizer.pad_token_id, eos) if token is not None), 0)
    tokens = _document_tokens(path, tokenizer, eos)
    full, rest = divmod(len(tokens), length)
    rows = tokens[:full * length].view(full, length)
    mask = torch.ones_like(rows)
    if rest:  # the last, shorter block, then padding
        last = torch.full((1, length), pad, dtype=torch.int32)
        last[0, :rest] = tokens[full * length:]
        rows, mask = torch.cat([rows, last]), torch.cat([mask, (torch.arange(length) < rest).int()[None]])
    return {"input_ids": rows, "attention_mask": mask}


def _document_tokens(path: Path, tokenizer: Any, end: int | None) -> torch.Tensor:
    """The tokens (int32) of the file's documents, its non-empty lines, in order, each followed by ``end`` (none when
    None), tokenised without special tokens; DataError (one line) for a file without text."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"dataset: {path} holds no text; give a file with one document per line, "
                        "e.g. dataset.train_file=wiki.train.raw")
    ends = () if end is None else (end,)
    pieces = []
    for start in range(0, len(lines), LINES_PER_CALL):
        encoded = tokenizer(lines[start:start + LINES_PER_CALL], add_special_tokens=False, verbose=False)
        pieces.append(torch.tensor([token for ids in encoded["input_ids"] for token in (*ids, *ends)],
                                   dtype=torch.int32))
    return torch.cat(pieces)


def _blocks(path: Path, tokenizer: Any, length: int, cache_dir: Path, device: torch.device) -> TokenBlocks:
    """The token blocks of one file (cached), with the positions that may be masked, on ``device``."""
    key = {"kind": "text_blocks", "format": CACHE_FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer),
           "max_seq_length": length, "file": file_fingerprint(path)}
    tensors = cached_tensors(cache_dir, key, lambda: tokenise_blocks(path, tokenizer, length))
    input_ids, attention_mask = tensors["input_ids"].long(), tensors["attention_mask"].long()
    special = torch.isin(input_ids, torch.tensor(sorted(set(tokenizer.all_special_ids))))
    maskable = ~special & attention_mask.bool()
    return TokenBlocks(input_ids.to(device), attention_mask.to(device), maskable.to(device))


def tokenise_blocks(path: Path, tokenizer: Any, length: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (blocks, length) int32 of the file's documents (see the module doc)."""
    sep, pad, cls = tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.cls_token_id
    tokens = _document_tokens(path, tokenizer, sep)
    body = length - 2
    full, rest = divmod(len(tokens), body)
    rows = torch.cat([torch.full((full, 1), cls, dtype=torch.int32), tokens[:full * body].view(full, body),
                      torch.full((full, 1), sep, dtype=torch.int32)], 1)
    mask = torch.ones_like(rows)
    if rest:  # the last, shorter block: [CLS] ... [SEP] then padding
        last = torch.full((1, length), pad, dtype=torch.int32)
        last[0, 0], last[0, 1:rest + 1], last[0, rest + 1] = cls, tokens[full * body:], sep
        rows, mask = torch.cat([rows, last]), torch.cat([mask, (torch.arange(length) < rest + 2).int()[None]])
    return {"input_ids": rows, "attention_mask": mask}
