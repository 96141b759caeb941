"""Every dataset the package ships, one record each (torch-free): what ``dataset=<name>`` selects.

A record's target is a builder ``build(cfg, *, batch_size, eval_batch_size, device, seed) -> Data``; its check
(optional) runs before anything is written. A user's package adds its own with
``sparsetrain.register_dataset(name=..., schema=..., target=..., summary=...)``.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError
from ..registry import Record, Registry
from . import schemas

DATASETS: Registry[Record] = Registry("dataset", "a dataset", example="digits", error=DataError)


def register_dataset(name: str, schema: type, target: Any, summary: str, check: Any = None, page: str = "") -> Record:
    """Add dataset ``name``: ``schema`` (a dataclass, usually a subclass of ``schemas.DatasetConfig``) holds its
    options, ``target`` is its builder (or the builder's import path), ``check(cfg)`` an optional early check."""
    return DATASETS.register(Record(name, schema, target, summary, page=page, check=check))


_IMAGES = "sparsetrain.data.build.build_tensor_dataset"
_OWN = "your-own-code.md"

register_dataset("digits", schemas.DatasetConfig, _IMAGES,
                 "scikit-learn's bundled 8x8 digits (1,797 images, no download): the default quick run")
register_dataset("mnist", schemas.DatasetConfig, _IMAGES, "MNIST, torchvision layout under dataset.root")
register_dataset("fashion_mnist", schemas.DatasetConfig, _IMAGES, "Fashion-MNIST, torchvision layout under dataset.root")
register_dataset("cifar10", schemas.DatasetConfig, _IMAGES, "CIFAR-10 (pad-4 random crop and flip on the device)")
register_dataset("cifar100", schemas.DatasetConfig, _IMAGES, "CIFAR-100 (pad-4 random crop and flip on the device)")
register_dataset("synthetic", schemas.SyntheticConfig, "sparsetrain.data.build.build_synthetic",
                 "random images of any shape on the device: speed on any model without data")
register_dataset("imagefolder", schemas.ImageFolderConfig, "sparsetrain.data.imagefolder.build_imagefolder",
                 "JPEG folders per class (ImageNet layout), read by DataLoader workers")
register_dataset("custom", schemas.CustomDatasetConfig, "sparsetrain.data.custom.build_custom",
                 "your torch Datasets, from the factory at dataset._target_", "sparsetrain.data.custom.check_custom", _OWN)
register_dataset("tensors", schemas.TensorFilesConfig, "sparsetrain.data.custom.build_tensor_files",
                 "inputs and targets saved in .npz or .pt files", "sparsetrain.data.custom.check_tensor_files", _OWN)
register_dataset("glue", schemas.GlueConfig, "sparsetrain.data.glue.build_glue",
                 "a GLUE task, tokenised for a transformers model (local files or the hub's copy)",
                 "sparsetrain.data.glue.check_glue_config", "language-models.md")
register_dataset("text", schemas.TextConfig, "sparsetrain.data.text.build_text",
                 "plain text in blocks of tokens, for masked- or causal-language-model training",
                 "sparsetrain.data.text.check_text_config", "language-models.md")
register_dataset("translation", schemas.TranslationConfig, "sparsetrain.data.translation.build_translation",
                 "parallel text (WMT14 en-de) for sequence-to-sequence training, batched by tokens",
                 "sparsetrain.data.translation.check_translation_config", "language-models.md")
