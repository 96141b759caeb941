"""The ``dataset`` group's schemas (torch-free); each dataset's record names its schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from omegaconf import MISSING


MODEL_TOKENIZER = "${oc.select:model.name_or_path,null}"  # a pretrained model's own tokenizer


@dataclass
class DatasetConfig:
    """``TASK``: the task the dataset's data declares (what ``task.name=auto`` becomes before the data is built;
    None: image classification)."""

    TASK: ClassVar[Optional[str]] = None
    name: str = MISSING  # the dataset (set by the dataset= option)
    root: str = "data"  # where the data is (or is downloaded to)
    download: bool = True  # download when missing (torchvision datasets)
    val_size: int = 0  # training examples held out as a validation split (0: none; "best" then uses test)
    augment: bool = True  # the dataset's standard training augmentation
    num_workers: int = 8  # imagefolder: data-loading worker processes
    image_size: int = 224  # imagefolder and synthetic: image side in pixels
    channels: int = 3  # synthetic
    num_classes: int = 10  # synthetic
    train_size: int = 50000  # synthetic
    test_size: int = 10000  # synthetic


@dataclass
class SyntheticConfig(DatasetConfig):
    """Random uint8 images of any shape, on the device (fixed content): speed on any model without data."""

    image_size: int = 32


@dataclass
class ImageFolderConfig(DatasetConfig):
    download: bool = False
    train_dir: str = "train"  # dataset.root/<train_dir>/<class>/*.jpg
    test_dir: str = "val"  # the test split (ImageNet's val/)


@dataclass
class UserDatasetConfig(DatasetConfig):
    resident_mb: int = 1024  # a training set whose inputs fit stays on the device; larger: DataLoader workers


@dataclass
class CustomDatasetConfig(UserDatasetConfig):
    name: str = "custom"
    num_workers: int = 4
    _target_: str = MISSING  # import path of a factory returning (train, test[, val]) Datasets; added keys reach it


@dataclass
class TensorFilesConfig(UserDatasetConfig):
    name: str = "tensors"
    train_file: Optional[str] = None  # .npz (arrays x, y) or .pt ({"x": ..., "y": ...})
    test_file: Optional[str] = None  # the test split, same formats
    val_file: Optional[str] = None  # optional; else dataset.val_size holds out part of train


@dataclass
class GlueConfig(DatasetConfig):
    TASK: ClassVar[Optional[str]] = "sequence_classification"
    name: str = "glue"
    root: str = "data/glue"
    task: str = "sst2"  # cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli
    tokenizer: Optional[str] = MODEL_TOKENIZER  # hub name or directory of the tokenizer (default: the model's own)
    max_seq_length: int = 128  # longer inputs are truncated
    padding: str = "fixed"  # fixed (to max_seq_length: static shapes, capturable step) | dynamic (each batch to its longest: eager step)
    cache_dir: Optional[str] = None  # tokenised splits are cached here (null: <root>/.sparsetrain_cache)


@dataclass
class TextConfig(DatasetConfig):
    TASK: ClassVar[Optional[str]] = "masked_lm"  # task.name=causal_lm asks for next-token blocks
    name: str = "text"
    train_file: Optional[str] = None  # plain text, one document (or line) per line, for language-model training
    test_file: Optional[str] = None  # the evaluation text; without it dataset.val_size blocks of train are held out
    tokenizer: Optional[str] = MODEL_TOKENIZER  # hub name or directory of the tokenizer (default: the model's own)
    max_seq_length: int = 128  # tokens per block ([CLS] and [SEP] included for masked-LM)
    mlm_probability: float = 0.15  # share of non-special tokens selected (80 % [MASK], 10 % random, 10 % kept)
    mlm_tokens: int = 0  # > 0: exactly this many tokens selected per block instead (TAMT-KD's pre-generated data: 1)
    cache_dir: Optional[str] = None  # tokenised blocks are cached here (null: .sparsetrain_cache next to train_file)
    objective: Optional[str] = "${oc.select:task.name,null}"  # causal_lm: next-token blocks (no masking, no [CLS]/[SEP]); else masked-LM (default: task.name)


@dataclass
class TranslationConfig(DatasetConfig):
    TASK: ClassVar[Optional[str]] = "translation"
    name: str = "translation"
    root: str = "data/wmt14_en_de"  # directory of {train,valid,test}.{source_lang,target_lang}, one sentence per line
    source_lang: str = "en"  # suffix of the source files (train.en)
    target_lang: str = "de"  # suffix of the target files (train.de)
    hub: Optional[str] = None  # set (e.g. wmt/wmt14): the splits from datasets.load_dataset(hub, hub_config) instead of dataset.root's files
    hub_config: Optional[str] = "de-en"  # the hub dataset's config (null: none)
    tokenizer: Optional[str] = "train"  # train (or null): a joint BPE trained on the training text, cached; else a hub name or directory
    vocab_size: int = 8000  # the trained BPE's vocabulary (its special tokens pad, bos, eos and unk included)
    max_source_positions: int = 256  # longer training pairs are dropped (eos included); evaluation pairs are kept whole
    max_target_positions: int = 256  # the same for the target side
    batch_tokens: Optional[int] = 4096  # training batches of at most this many padded tokens, rows x max(source, target length); batch_size is then unused (null: batch_size pairs per batch)
    skip_empty: bool = False  # drop pairs with an empty side (false: refuse them, naming the file and line)
    cache_dir: Optional[str] = None  # the trained tokenizer and the tokenised sides are cached here (null: <root>/.sparsetrain_cache)
