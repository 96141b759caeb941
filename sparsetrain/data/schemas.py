"""The ``dataset`` group's schemas (torch-free); each dataset's record names its schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


MODEL_TOKENIZER = "${oc.select:model.name_or_path,null}"  # a pretrained model's own tokenizer


@dataclass
class DatasetConfig:
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
    name: str = "glue"
    root: str = "data/glue"
    task: str = "sst2"  # cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli
    tokenizer: Optional[str] = MODEL_TOKENIZER  # hub name or directory of the tokenizer (default: the model's own)
    max_seq_length: int = 128  # longer inputs are truncated
    padding: str = "fixed"  # fixed (to max_seq_length: static shapes, capturable step) | dynamic (each batch to its longest: eager step)
    cache_dir: Optional[str] = None  # tokenised splits are cached here (null: <root>/.sparsetrain_cache)


@dataclass
class TextConfig(DatasetConfig):
    name: str = "text"
    train_file: Optional[str] = None  # plain text, one document (or line) per line, for language-model training
    test_file: Optional[str] = None  # the evaluation text; without it dataset.val_size blocks of train are held out
    tokenizer: Optional[str] = MODEL_TOKENIZER  # hub name or directory of the tokenizer (default: the model's own)
    max_seq_length: int = 128  # tokens per block ([CLS] and [SEP] included for masked-LM)
    mlm_probability: float = 0.15  # share of non-special tokens selected (80 % [MASK], 10 % random, 10 % kept)
    mlm_tokens: int = 0  # > 0: exactly this many tokens selected per block instead (TAMT-KD's pre-generated data: 1)
    cache_dir: Optional[str] = None  # tokenised blocks are cached here (null: .sparsetrain_cache next to train_file)
    objective: Optional[str] = "${oc.select:task.name,null}"  # causal_lm: next-token blocks (no masking, no [CLS]/[SEP]); else masked-LM (default: task.name)
