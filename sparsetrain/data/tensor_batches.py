"""Device-resident batches for datasets small enough to live on the device as one uint8 tensor.

Each batch is gathered from the resident tensor, augmented per sample with vectorised index arithmetic, then
converted to float and normalised, all on the device. The augmentation of training batch ``i`` of epoch ``e``
draws from a generator on the device seeded with ``derive_seed("augment", seed, e, i)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batches import Batch, EvalBatches, TrainBatches
from ..seeds import derive_seed


@dataclass(frozen=True)
class ImageTensors:
    """uint8 images (N, C, H, W) and int64 labels (N,) on one device, with per-channel mean/std (1, C, 1, 1)."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to float32 ``(x / 255 - mean) / std``."""
        return images.float().div_(255).sub_(self.mean).div_(self.std)


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per sample: zero-pad by ``pad``, crop back to H x W at a random offset in [0, 2*pad], flip with p=0.5.

    Equivalent to torchvision's ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip()`` applied to every
    image independently. Draws the (row, column) offsets, shape (2, B), then the flips, shape (B,).
    """
    b, c, h, w = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=device)
    flip = torch.randint(0, 2, (b,), generator=generator, device=device).bool()
    rows = offsets[0, :, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    cols = offsets[1, :, None] + torch.where(flip[:, None], cols.flip(0), cols)
    padded = F.pad(images, (pad, pad, pad, pad))
    return padded[
        torch.arange(b, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


class TensorTrainBatches(TrainBatches):
    """Shuffled, optionally augmented training batches from device-resident tensors."""

    def __init__(self, data: ImageTensors, *, batch_size: int, seed: int, dataset: str, crop_pad: int) -> None:
        super().__init__(len(data.labels), batch_size, seed, dataset)
        self.data = data
        self.crop_pad = crop_pad
        self._generator = torch.Generator(device=data.images.device) if crop_pad else None

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        for i, index in self.batch_positions(epoch, start_batch, self.data.images.device):
            images = self.data.images.index_select(0, index)
            if self._generator is not None:
                self._generator.manual_seed(derive_seed("augment", self.seed, epoch, i))
                images = random_crop_flip(images, self.crop_pad, self._generator)
            yield self.data.normalise(images), self.data.labels.index_select(0, index)


class TensorEvalBatches(EvalBatches):
    """Consecutive slices of device-resident tensors, normalised, never augmented."""

    def __init__(self, data: ImageTensors, *, batch_size: int) -> None:
        super().__init__(len(data.labels), batch_size)
        self.data = data

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.num_samples, self.batch_size):
            stop = start + self.batch_size
            yield self.data.normalise(self.data.images[start:stop]), self.data.labels[start:stop]
