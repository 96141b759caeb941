"""``dataset=synthetic``: random uint8 images and labels of any shape, for speed measurements without data
(the accuracy means nothing). Fixed content (independent of ``seed``), so runs are comparable."""

from __future__ import annotations

from typing import Any

import torch

from ..seeds import derive_seed
from .vision import TensorSource


def load_synthetic(cfg: Any) -> TensorSource:
    """``train_size`` + ``test_size`` images of ``channels`` x ``image_size`` x ``image_size`` with ``num_classes``
    labels; augmented (when ``augment``) like CIFAR: zero-pad by image_size / 8, random crop, flip."""
    generator = torch.Generator().manual_seed(derive_seed("synthetic-data"))
    shape = (cfg.channels, cfg.image_size, cfg.image_size)

    def split(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(0, 256, (size, *shape), generator=generator, dtype=torch.uint8)
        return images, torch.randint(0, cfg.num_classes, (size,), generator=generator)

    (train_images, train_labels), (test_images, test_labels) = split(cfg.train_size), split(cfg.test_size)
    return TensorSource(train_images=train_images, train_labels=train_labels, test_images=test_images,
                        test_labels=test_labels, mean=(0.5,) * cfg.channels, std=(0.29,) * cfg.channels,
                        num_classes=cfg.num_classes, crop_pad=cfg.image_size // 8 if cfg.augment else 0)
