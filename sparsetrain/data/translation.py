"""``dataset=translation``: parallel text for sequence-to-sequence training (WMT14 en-de, as GaP's experiments).

Local files: ``dataset.root`` holds ``{train,valid,test}.{src,tgt}`` (``src``/``tgt``: ``dataset.source_lang`` /
``dataset.target_lang``, e.g. ``train.en`` and ``train.de``), one sentence per line, the two sides aligned line by
line. With ``dataset.hub`` set (e.g. ``wmt/wmt14``) the splits come from ``datasets.load_dataset(dataset.hub,
dataset.hub_config)`` instead (records ``{"translation": {lang: text}}``, splits train / validation / test).
Every file is checked (both sides of each split, equal line counts, no empty line unless ``dataset.skip_empty``
drops such pairs) before anything is written.

The tokenizer is ``dataset.tokenizer`` (a hub name or directory, AutoTokenizer) or, with ``train`` / null, a joint
byte-level BPE of ``dataset.vocab_size`` trained on the training source and target text (special tokens ``<pad>``
``<s>`` ``</s>`` ``<unk>``: ids 0-3), saved as a PreTrainedTokenizerFast directory in the cache under the training
files' fingerprint, so a second run reuses it. Each sentence is tokenised without special tokens, then eos
appended; each side of each split is cached (``cached_tensors``: tokenizer fingerprint + file contents).

Training pairs longer than ``dataset.max_source_positions`` / ``max_target_positions`` (eos included) are dropped
(fairseq's skip-invalid-size-inputs), their count logged; evaluation pairs are neither dropped nor truncated.

Training batches (``TranslationTrainBatches``) are formed once: the pairs sorted by source then target length (ties
in a permutation seeded by the run's seed), cut into batches whose padded size, rows x max(source, target length),
is at most ``dataset.batch_tokens`` (null: ``batch_size`` pairs per batch). Epoch ``e`` visits them in the order
``randperm`` from ``derive_seed("shuffle", seed, e)``: a batch is a pure function of (seed, epoch, batch), and every
epoch has the same number of steps. A batch is ``input_ids`` / ``attention_mask`` (B, S) and ``labels`` (B, T, -100
on padding; the model shifts them into decoder inputs), padded to the batch's longest: shapes vary, so the step
runs eagerly (``static_shapes = False``). Evaluation batches (``TranslationEvalBatches``) are the valid / test pairs
in file order, ``eval_batch_size`` per batch, with the split's raw ``sources`` and ``references`` and the
``tokenizer`` as attributes (for BLEU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from ..errors import NLP_EXTRA, DataError
from ..seeds import derive_seed
from .batches import BatchPlan, Data, EvalBatches, TrainBatches
from .tokenizer import cache_path, cached_tensors, file_fingerprint, load_tokenizer, tokenizer_fingerprint

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached layout changes
LINES_PER_CALL = 10_000  # lines per tokenizer call
IGNORE = -100  # label of padding (Hugging Face's ignore index)
SPLITS = ("train", "valid", "test")
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3 of a trained tokenizer
TRAIN = "train"  # dataset.tokenizer value (or null): train a joint BPE on the training text
MIN_VOCAB = len(SPECIAL_TOKENS) + 256  # the specials and the byte alphabet
KEYS = ("input_ids", "attention_mask", "labels")


def trains_tokenizer(cfg: Any) -> bool:
    return cfg.tokenizer in (None, "", TRAIN)


def check_translation_config(cfg: Any) -> None:
    """The checks that need neither the files' contents nor the tokenizer (DataError, one line naming the key)."""
    src, tgt = cfg.source_lang, cfg.target_lang
    if not src or not tgt or src == tgt:
        raise DataError(f"dataset.source_lang={src!r} and dataset.target_lang={tgt!r} must be two different "
                        "languages (the files' suffixes); e.g. dataset.source_lang=en dataset.target_lang=de")
    for key in ("max_source_positions", "max_target_positions"):
        if cfg[key] < 2:
            raise DataError(f"dataset.{key}={cfg[key]} must be at least 2 (a token and eos); e.g. dataset.{key}=256")
    if cfg.batch_tokens is not None and cfg.batch_tokens < 2:
        raise DataError(f"dataset.batch_tokens={cfg.batch_tokens} must be a positive number of tokens per batch "
                        "(null: batch_size pairs per batch); e.g. dataset.batch_tokens=4096")
    if trains_tokenizer(cfg) and cfg.vocab_size < MIN_VOCAB:
        raise DataError(f"dataset.vocab_size={cfg.vocab_size} must be at least {MIN_VOCAB} (4 special tokens and "
                        "256 bytes) for a trained BPE; e.g. dataset.vocab_size=8000")
    if not cfg.hub:
        _local_files(cfg)


def build_translation(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """The splits read and checked, the tokenizer loaded or trained, every side tokenised (or read from the cache),
    training pairs filtered and batched by tokens; nothing is written until every check has passed."""
    check_translation_config(cfg)
    splits = _read_splits(cfg)
    cache_dir = _cache_dir(cfg)
    tokenizer, save_tokenizer = _tokenizer(cfg, splits["train"], cache_dir)
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        missing = "eos" if tokenizer.eos_token_id is None else "pad"
        raise DataError(f"dataset.tokenizer={cfg.tokenizer!r} has no {missing} token; translation needs both, e.g. "
                        "dataset.tokenizer=train (a joint BPE trained on the training text)")
    pending: list[Callable[[], None]] = [] if save_tokenizer is None else [save_tokenizer]
    tokens = {split: {side: _side_tokens(pair, side, tokenizer, cache_dir, pending) for side in ("source", "target")}
              for split, pair in splits.items()}
    train = _kept(cfg, tokens["train"])
    special = Special.of(tokenizer)
    train_batches = TranslationTrainBatches(
        train["source"], train["target"], special, batch_tokens=cfg.batch_tokens, batch_size=batch_size, seed=seed,
        device=device, tokenizer=tokenizer)
    for write in pending:  # every check passed: the tokenizer and the tokenised sides go into the cache
        write()
    shape = f"at most {cfg.batch_tokens} padded tokens, batch_size unused" if cfg.batch_tokens else \
        f"{batch_size} pairs"
    log.info("dataset=translation: %d training pairs in %d batches of %s (%d pairs on average)",
             len(train_batches.source), len(train_batches), shape, train_batches.batch_size)
    evaluation = {split: TranslationEvalBatches(
        tokens[split]["source"], tokens[split]["target"], special, batch_size=eval_batch_size, device=device,
        tokenizer=tokenizer, sources=splits[split].source, references=splits[split].target)
        for split in ("valid", "test")}
    example = _batch(train["source"], train["target"], typical_pair(train["source"], train["target"]), special,
                     torch.device("cpu"))
    return Data(
        train=train_batches,
        val=evaluation["valid"],
        test=evaluation["test"],
        in_shape=(cfg.max_source_positions,),
        num_classes=len(tokenizer),
        example=example,
        task="translation",
        metric="bleu",
    )


# ---- special tokens and tokenised sides ----------------------------------------------------------------------

@dataclass(frozen=True)
class Special:
    """The ids a seq2seq model factory and the task need (``bos`` may be None for a pretrained tokenizer)."""

    pad: int
    eos: int
    bos: int | None
    vocab_size: int

    @classmethod
    def of(cls, tokenizer: Any) -> "Special":
        return cls(tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, len(tokenizer))

    def ids(self) -> dict[str, int]:
        """The ids under the names of a Hugging Face model config (``models.hf.build_hf``'s ``special_ids``)."""
        ids = {"pad_token_id": self.pad, "eos_token_id": self.eos, "bos_token_id": self.bos}
        return {key: value for key, value in ids.items() if value is not None}


@dataclass(frozen=True)
class Sentences:
    """The tokens of many sentences, concatenated (int32 on the host: WMT14's take 1 GB; eos included), and each
    sentence's start and length."""

    tokens: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def of(cls, tokens: torch.Tensor, lengths: torch.Tensor) -> "Sentences":
        lengths = lengths.long()
        starts = torch.cumsum(lengths, 0) - lengths
        return cls(tokens.int(), starts, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def subset(self, keep: torch.Tensor) -> "Sentences":
        """The sentences where ``keep`` (bool, one per sentence) is true, in order."""
        return Sentences.of(self.tokens[keep.repeat_interleave(self.lengths)], self.lengths[keep])

    def padded(self, index: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask) (len(index), longest) of the sentences ``index``, padded with ``pad`` (mask 0)."""
        lengths = self.lengths[index]
        gather = _token_index(self.starts[index], lengths, int(lengths.max()))
        mask = gather >= 0
        ids = torch.where(mask, self.tokens[gather.clamp(min=0)].long(), pad)
        return ids, mask.long()


def _token_index(starts: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(rows, width) positions into the concatenated tokens of each sentence, -1 after its end."""
    columns = torch.arange(width)
    return torch.where(columns < lengths[:, None], starts[:, None] + columns, -1)


def typical_pair(source: Sentences, target: Sentences) -> torch.Tensor:
    """The position (a 1-element index) of the training pair whose source and target lengths are nearest the means:
    the data's one-pair example, whose forward FLOPs times the mean pairs per batch count a step's (per-example
    FLOPs grow with the lengths, so the first pair would scale every reported total by its own length)."""
    distance = (source.lengths - source.lengths.double().mean()).abs() + \
        (target.lengths - target.lengths.double().mean()).abs()
    return distance.argmin().reshape(1)


def _batch(source: Sentences, target: Sentences, index: torch.Tensor, special: Special,
           device: torch.device) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = source.padded(index, special.pad)
    labels, label_mask = target.padded(index, special.pad)
    labels = torch.where(label_mask.bool(), labels, IGNORE)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
            "labels": labels.to(device)}


# ---- batches ------------------------------------------------------------------------------------------------

def token_batches(source_lengths: torch.Tensor, target_lengths: torch.Tensor, batch_tokens: int | None,
                  batch_size: int, seed: int) -> list[torch.Tensor]:
    """The training batches (int64 pair positions each), formed once: pairs sorted by source then target length,
    ties in a permutation seeded by ``seed``, cut greedily so that rows x max(source, target length) stays within
    ``batch_tokens`` (None: ``batch_size`` pairs per batch)."""
    order = torch.randperm(len(source_lengths), generator=torch.Generator().manual_seed(
        derive_seed("translation_order", seed)))
    order = order[torch.sort(target_lengths[order], stable=True).indices]
    order = order[torch.sort(source_lengths[order], stable=True).indices]
    if batch_tokens is None:
        return list(torch.split(order, batch_size))
    widths = torch.maximum(source_lengths, target_lengths)[order].tolist()
    batches, start, width = [], 0, 0
    for i, size in enumerate(widths):
        wider = max(width, size)
        if (i - start + 1) * wider > batch_tokens:
            batches.append(order[start:i])
            start, wider = i, size
        width = wider
    batches.append(order[start:])
    return batches


class TranslationTrainBatches(TrainBatches):
    """Token-count batches of sentence pairs, formed once and visited in a seeded order each epoch (module doc).
    The plan is the made batch (``input_ids``, ``attention_mask``, ``labels``), its shapes vary: no step graph."""

    static_shapes = False

    def __init__(self, source: Sentences, target: Sentences, special: Special, *, batch_tokens: int | None,
                 batch_size: int, seed: int, device: torch.device, tokenizer: Any = None) -> None:
        if batch_tokens is None and not 1 <= batch_size <= len(source):
            raise DataError(f"batch_size={batch_size} must be in [1, {len(source)}] (the training pairs) when "
                            "dataset.batch_tokens is null; e.g. dataset.batch_tokens=4096")
        self.source, self.target, self.special = source, target, special
        self.batches = token_batches(source.lengths, target.lengths, batch_tokens, batch_size, seed)
        self.num_samples = len(source)
        self.batch_size = round(self.num_samples / len(self.batches))  # mean pairs per batch (progress, FLOPs)
        self.batch_tokens = batch_tokens
        self.seed = seed
        self.device = device
        self.tokenizer = tokenizer
        self.pad_id, self.eos_id, self.bos_id = special.pad, special.eos, special.bos
        self.special_ids = special.ids()

    def __len__(self) -> int:
        return len(self.batches)

    def batch_order(self, epoch: int) -> torch.Tensor:
        """The order in which epoch ``epoch`` visits the batches."""
        generator = torch.Generator().manual_seed(derive_seed("shuffle", self.seed, epoch))
        return torch.randperm(len(self.batches), generator=generator)

    def batch_positions(self, epoch: int, start_batch: int = 0) -> list[torch.Tensor]:  # type: ignore[override]
        """The pair positions of batches ``start_batch ..`` of ``epoch`` (one tensor each: their sizes differ)."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch={start_batch} is outside [0, {len(self)}]")
        return [self.batches[i] for i in self.batch_order(epoch)[start_batch:].tolist()]

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        for positions in self.batch_positions(epoch, start_batch):
            batch = _batch(self.source, self.target, positions, self.special, self.device)
            yield tuple(batch[key] for key in KEYS)

    def make(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        return dict(zip(KEYS, plan))


class TranslationEvalBatches(EvalBatches):
    """The pairs in file order, ``batch_size`` per batch, each batch padded to its longest; ``sources`` and
    ``references`` are the raw sentences in the same order, ``tokenizer`` decodes generated ids."""

    def __init__(self, source: Sentences, target: Sentences, special: Special, *, batch_size: int,
                 device: torch.device, tokenizer: Any, sources: list[str] | None = None,
                 references: list[str] | None = None) -> None:
        super().__init__(len(source), batch_size)
        self.source, self.target, self.special, self.device = source, target, special, device
        self.tokenizer = tokenizer
        self.sources, self.references = sources, references
        self.pad_id, self.eos_id, self.bos_id = special.pad, special.eos, special.bos
        self.special_ids = special.ids()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, self.num_samples, self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, self.num_samples))
            yield _batch(self.source, self.target, index, self.special, self.device)


# ---- reading and checking the splits --------------------------------------------------------------------------

@dataclass
class Pair:
    """One split's aligned sentences and what identifies each side's content."""

    source: list[str]
    target: list[str]
    fingerprints: dict[str, str]  # side -> content fingerprint
    names: dict[str, str]  # side -> file (or hub split) name, for messages


def _cache_dir(cfg: Any) -> Path:
    return Path(cfg.cache_dir or Path(cfg.root) / ".sparsetrain_cache").expanduser()


def _local_files(cfg: Any) -> dict[str, dict[str, Path]]:
    """split -> side -> path under ``dataset.root``; DataError (one line) for a missing directory, split or side."""
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset.root={cfg.root!r} is not a directory; give one with train/valid/test files, e.g. "
                        "dataset.root=data/wmt14_en_de")
    files = {}
    for split in SPLITS:
        paths = {"source": root / f"{split}.{cfg.source_lang}", "target": root / f"{split}.{cfg.target_lang}"}
        present = [side for side, path in paths.items() if path.is_file()]
        if not present:
            raise DataError(f"dataset.root={cfg.root!r} has no {split} split ({paths['source'].name} and "
                            f"{paths['target'].name}); dataset=translation needs train, valid and test, e.g. "
                            f"{root / paths['source'].name}")
        if len(present) == 1:
            other = "target" if present[0] == "source" else "source"
            raise DataError(f"dataset.root={cfg.root!r} has {paths[present[0]].name} but not {paths[other].name} "
                            f"(its {other} side); e.g. {paths[other]} with one sentence per line")
        files[split] = paths
    return files


def _read_splits(cfg: Any) -> dict[str, Pair]:
    pairs = _read_hub(cfg) if cfg.hub else _read_local(cfg)
    for split, pair in pairs.items():
        _check_pair(cfg, split, pair)
    return pairs


def _read_local(cfg: Any) -> dict[str, Pair]:
    pairs = {}
    for split, paths in _local_files(cfg).items():
        lines = {side: _lines(path) for side, path in paths.items()}
        pairs[split] = Pair(lines["source"], lines["target"],
                            {side: file_fingerprint(path) for side, path in paths.items()},
                            {side: path.name for side, path in paths.items()})
    return pairs


def _lines(path: Path) -> list[str]:
    """The file's lines ("\\n"-separated, a final newline ending the last one), stripped of surrounding space."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"dataset.root: {path} cannot be read ({type(error).__name__}: "
                        f"{textwrap.shorten(str(error), 80)}); e.g. a UTF-8 file, one sentence per line") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def _read_hub(cfg: Any) -> dict[str, Pair]:
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset.hub={cfg.hub!r} needs Hugging Face datasets; {NLP_EXTRA}") from None
    try:
        loaded = datasets.load_dataset(cfg.hub, cfg.hub_config) if cfg.hub_config else datasets.load_dataset(cfg.hub)
        parts = {split: loaded[hub] for split, hub in HUB_SPLITS.items()}
        records = {split: part["translation"] for split, part in parts.items()}
        lines = {split: ([str(r[cfg.source_lang]).strip() for r in rows], [str(r[cfg.target_lang]).strip()
                                                                          for r in rows])
                 for split, rows in records.items()}
    except Exception as error:  # noqa: BLE001 - offline, unknown config, missing split or language: one line
        reason = textwrap.shorten(f"{type(error).__name__}: {error}", 120)
        raise DataError(f"dataset.hub={cfg.hub!r} (config {cfg.hub_config!r}) could not be loaded with splits "
                        f"{', '.join(HUB_SPLITS.values())} and languages {cfg.source_lang}/{cfg.target_lang} "
                        f"({reason}); e.g. dataset.hub=null dataset.root=<a directory with train.en, train.de, ...>") \
            from None
    return {split: Pair(source, target,
                        {side: f"{cfg.hub}/{cfg.hub_config}/{parts[split]._fingerprint}/{lang}"
                         for side, lang in (("source", cfg.source_lang), ("target", cfg.target_lang))},
                        {side: f"{cfg.hub} {HUB_SPLITS[split]} [{lang}]"
                         for side, lang in (("source", cfg.source_lang), ("target", cfg.target_lang))})
            for split, (source, target) in lines.items()}


def _check_pair(cfg: Any, split: str, pair: Pair) -> None:
    """Equal line counts; empty lines refused, or their pairs dropped with ``dataset.skip_empty`` (in place)."""
    where = f"dataset.hub={cfg.hub!r}" if cfg.hub else f"dataset.root={cfg.root!r}"
    if len(pair.source) != len(pair.target):
        raise DataError(f"{where}: {pair.names['source']} has {len(pair.source)} lines but {pair.names['target']} "
                        f"has {len(pair.target)}; the two sides must be aligned line by line, e.g. line i of "
                        f"{pair.names['source']} translated on line i of {pair.names['target']}")
    empty = [i for i, (a, b) in enumerate(zip(pair.source, pair.target)) if not a or not b]
    if empty and not cfg.skip_empty:
        side = "source" if not pair.source[empty[0]] else "target"
        raise DataError(f"{where}: {pair.names[side]} line {empty[0] + 1} is empty ({len(empty)} empty pairs in "
                        f"{split}); remove them or drop them with e.g. dataset.skip_empty=true")
    if empty:
        drop = set(empty)
        pair.source = [line for i, line in enumerate(pair.source) if i not in drop]
        pair.target = [line for i, line in enumerate(pair.target) if i not in drop]
        log.info("dataset=translation: dropped %d pairs with an empty side from %s (dataset.skip_empty)",
                 len(empty), split)
        for side in ("source", "target"):  # the kept pairs, not the file, are what is tokenised
            pair.fingerprints[side] += f"/skip_empty:{hashlib.sha256(json.dumps(empty).encode()).hexdigest()}"
    if not pair.source:
        raise DataError(f"{where}: the {split} split ({pair.names['source']}) holds no sentence pairs; e.g. "
                        f"{pair.names['source']} with one sentence per line")


# ---- tokenizer and tokenisation -------------------------------------------------------------------------------

def _tokenizer(cfg: Any, train: Pair, cache_dir: Path) -> tuple[Any, Callable[[], None] | None]:
    """(tokenizer, how to save it or None): ``dataset.tokenizer`` loaded, or a joint BPE read from the cache, or
    trained now (saved only once every check has passed)."""
    if not trains_tokenizer(cfg):
        return load_tokenizer(cfg), None
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        raise DataError(f"dataset.tokenizer=train needs Hugging Face tokenizers and transformers; {NLP_EXTRA}") \
            from None
    key = {"kind": "translation_bpe", "format": CACHE_FORMAT, "vocab_size": cfg.vocab_size,
           "special": list(SPECIAL_TOKENS), **{f"train_{side}": fp for side, fp in train.fingerprints.items()}}
    directory = cache_dir / f"bpe-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]}"
    if (directory / "tokenizer.json").is_file():
        log.info("dataset=translation: joint BPE read from %s", directory)
        return PreTrainedTokenizerFast.from_pretrained(str(directory)), None
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(train.source + train.target, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    log.info("dataset=translation: trained a joint BPE of %d tokens on %d training pairs", len(tokenizer),
             len(train.source))

    def save() -> None:
        temporary = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        tokenizer.save_pretrained(str(temporary))
        try:
            os.replace(temporary, directory)
        except OSError:  # another run saved it first
            shutil.rmtree(temporary, ignore_errors=True)
        log.info("dataset=translation: joint BPE saved to %s", directory)

    return tokenizer, save


def _side_tokens(pair: Pair, side: str, tokenizer: Any, cache_dir: Path,
                 pending: list[Callable[[], None]]) -> Sentences:
    """One side's sentences tokenised (eos appended), read from the cache, or computed now and stored later."""
    key = {"kind": "translation_side", "format": CACHE_FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer),
           "source": pair.fingerprints[side]}
    path = cache_path(cache_dir, key)
    if path.is_file():
        tensors = load_file(str(path))
    else:
        lines = pair.source if side == "source" else pair.target
        tensors = tokenise(lines, tokenizer)
        pending.append(lambda: cached_tensors(cache_dir, key, lambda: tensors))
    return Sentences.of(tensors["tokens"], tensors["lengths"])


def tokenise(lines: list[str], tokenizer: Any) -> dict[str, torch.Tensor]:
    """``tokens`` (int32, every sentence's tokens then eos, concatenated) and ``lengths`` (int32, eos included)."""
    ends = (tokenizer.eos_token_id,)
    tokens, lengths = [], []
    for start in range(0, len(lines), LINES_PER_CALL):
        encoded = tokenizer(lines[start:start + LINES_PER_CALL], add_special_tokens=False, verbose=False)["input_ids"]
        tokens.append(torch.tensor([token for ids in encoded for token in (*ids, *ends)], dtype=torch.int32))
        lengths.append(torch.tensor([len(ids) + 1 for ids in encoded], dtype=torch.int32))
    return {"tokens": torch.cat(tokens), "lengths": torch.cat(lengths)}


def _kept(cfg: Any, train: dict[str, Sentences]) -> dict[str, Sentences]:
    """The training pairs within the maximum positions (the others dropped and counted); DataError when none is
    left or ``dataset.batch_tokens`` cannot hold the longest kept pair."""
    source, target = train["source"], train["target"]
    keep = (source.lengths <= cfg.max_source_positions) & (target.lengths <= cfg.max_target_positions)
    dropped = int((~keep).sum())
    if dropped:
        log.info("dataset=translation: dropped %d of %d training pairs longer than %d source / %d target tokens "
                 "(eos included)", dropped, len(source), cfg.max_source_positions, cfg.max_target_positions)
    if not keep.any():
        raise DataError(f"dataset.max_source_positions={cfg.max_source_positions} / max_target_positions="
                        f"{cfg.max_target_positions} drop every training pair; e.g. dataset.max_source_positions=256")
    if dropped:
        source, target = source.subset(keep), target.subset(keep)
    longest = int(torch.maximum(source.lengths, target.lengths).max())
    if cfg.batch_tokens is not None and cfg.batch_tokens < longest:
        raise DataError(f"dataset.batch_tokens={cfg.batch_tokens} is smaller than the longest kept training pair "
                        f"({longest} tokens, eos included); e.g. dataset.batch_tokens={max(4096, longest)}, or lower "
                        "dataset.max_source_positions / dataset.max_target_positions")
    return {"source": source, "target": target}
