"""``build_data``: turn the ``dataset`` config into train / validation / test batches on the run's device."""

from __future__ import annotations

from typing import Any

import torch

from .batches import Data, preprocess
from .catalog import DATASETS
from .splits import holdout
from .synthetic import load_synthetic
from .tensor_batches import ImageTensors, TensorEvalBatches, TensorTrainBatches
from .vision import TensorSource, load_tensor_source


def build_data(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """Load dataset ``cfg.name`` with its registered builder; batches are deterministic functions of ``seed`` (see
    ``TrainBatches``). Options a dataset has no use for are ignored; DataError (one line) for an unknown name."""
    if cfg.name not in DATASETS:
        DATASETS.record(cfg.name, key="dataset.name")  # raises: not a dataset, with the choices
    return DATASETS[cfg.name](cfg, batch_size=batch_size, eval_batch_size=eval_batch_size,
                              device=torch.device(device), seed=seed)


def build_tensor_dataset(cfg: Any, **batching: Any) -> Data:
    """digits, MNIST, Fashion-MNIST, CIFAR: held on the device as uint8 tensors, augmented there per sample."""
    return _resident(load_tensor_source(cfg), cfg, **batching)


def build_synthetic(cfg: Any, **batching: Any) -> Data:
    """Random images of the configured shape, held on the device."""
    return _resident(load_synthetic(cfg), cfg, **batching)


def _resident(source: TensorSource, cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device,
              seed: int) -> Data:
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
