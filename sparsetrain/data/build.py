"""``build_data``: turn the ``dataset`` config into train / validation / test batches on the run's device."""

from __future__ import annotations

from typing import Any

import torch

from .batches import Data, preprocess
from .custom import build_from_splits, custom_splits, tensor_file_splits
from .errors import DataError
from .splits import holdout
from .tensor_batches import ImageTensors, TensorEvalBatches, TensorTrainBatches
from .synthetic import load_synthetic
from .vision import TENSOR_DATASETS, load_tensor_source

DATASET_NAMES = tuple(sorted((*TENSOR_DATASETS, "custom", "glue", "imagefolder", "synthetic", "tensors", "text")))


def build_data(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """Load dataset ``cfg.name``; batches are deterministic functions of ``seed`` (see ``TrainBatches``).

    ``cfg`` needs ``name``, ``val_size`` and ``augment``; plus ``root`` and ``download`` (all but digits) and
    ``num_workers`` and ``image_size`` (imagefolder); the shape and sizes for ``synthetic``. Options a dataset
    has no use for are ignored.
    """
    if cfg.name not in DATASET_NAMES:
        raise DataError(f"dataset.name={cfg.name!r} is not a dataset; choose one of: {', '.join(DATASET_NAMES)} "
                        "(e.g. dataset=digits)")
    device = torch.device(device)
    if cfg.name == "imagefolder":
        from .imagefolder import build_imagefolder  # torchvision's transforms are slow to import

        return build_imagefolder(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device, seed=seed)
    if cfg.name == "glue":
        from .glue import build_glue  # transformers is slow to import

        return build_glue(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device, seed=seed)
    if cfg.name == "text":
        from .text import build_text  # Hugging Face tokenizers are slow to import

        return build_text(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device, seed=seed)
    if cfg.name in ("custom", "tensors"):
        splits = custom_splits(cfg) if cfg.name == "custom" else tensor_file_splits(cfg)
        return build_from_splits(splits, cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device,
                                 seed=seed)
    source = load_synthetic(cfg) if cfg.name == "synthetic" else load_tensor_source(cfg)
    mean = torch.tensor(source.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(source.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def resident(images: torch.Tensor, labels: torch.Tensor) -> ImageTensors:
        return ImageTensors(images.to(device), labels.to(device), mean, std)

    train_idx, val_idx = holdout(len(source.train_labels), cfg.val_size, cfg.name)
    train = resident(source.train_images[train_idx], source.train_labels[train_idx])
    val = None if val_idx is None else resident(source.train_images[val_idx], source.train_labels[val_idx])
    return Data(
        train=TensorTrainBatches(train, batch_size=batch_size, seed=seed, dataset=cfg.name, crop_pad=source.crop_pad),
        val=None if val is None else TensorEvalBatches(val, batch_size=eval_batch_size),
        test=TensorEvalBatches(resident(source.test_images, source.test_labels), batch_size=eval_batch_size),
        in_shape=tuple(source.train_images.shape[1:]),
        num_classes=source.num_classes,
        preprocess=preprocess(source.mean, source.std),
    )

