"""Device-resident batches for datasets small enough to live on the device as one uint8 tensor.

Each batch is gathered from the resident tensor, augmented per sample with vectorised index arithmetic, then
converted to float and normalised, all on the device. A training batch's plan is one int64 tensor: the sample
positions, and with augmentation each sample's crop offsets and flip. The augmentation draws of epoch ``e`` come
from a CPU generator seeded with ``derive_seed("augment", seed, e)``, for the whole epoch at once (so they are
the same on every device, and a resumed epoch draws them again).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batches import Batch, BatchPlan, EvalBatches, TrainBatches
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


def random_crop_flip(images: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Per sample: zero-pad by ``pad``, crop back to H x W at (row, column) offset ``offsets[:, i]`` in
    [0, 2*pad], flip horizontally where ``flips[i]`` is 1.

    With uniform offsets and fair flips this is torchvision's ``RandomCrop(size, padding=pad)`` +
    ``RandomHorizontalFlip()`` applied to every image independently.
    """
    b, c, h, w = images.shape
    device = images.device
    rows = offsets[0, :, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    cols = offsets[1, :, None] + torch.where(flips[:, None].bool(), cols.flip(0), cols)
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

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        """Per batch, int64 (1, B): positions; with augmentation (4, B): positions, row and column offsets,
        flips. The draws for the epoch's every batch are made (on the CPU) whatever ``start_batch`` is."""
        plans = self.batch_positions(epoch, start_batch)[:, None]  # (batches, 1, B)
        if self.crop_pad:
            plans = torch.cat([plans, self._augmentation(epoch)[start_batch:]], dim=1)
        for plan in plans.to(self.data.images.device):
            yield (plan,)

    def _augmentation(self, epoch: int) -> torch.Tensor:
        """(batches, 3, B) int64 draws of ``epoch``: row offsets, column offsets (in [0, 2*pad]), flips (0/1)."""
        generator = torch.Generator().manual_seed(derive_seed("augment", self.seed, epoch))
        shape = (len(self), self.batch_size)
        offsets = torch.randint(0, 2 * self.crop_pad + 1, (2, *shape), generator=generator)
        flips = torch.randint(0, 2, (1, *shape), generator=generator)
        return torch.cat([offsets, flips]).transpose(0, 1)

    def make(self, plan: BatchPlan) -> Batch:
        (draws,) = plan  # positions; row offsets, column offsets and flips with augmentation
        index = draws[0]
        images = self.data.images.index_select(0, index)
        if self.crop_pad:
            images = random_crop_flip(images, self.crop_pad, draws[1:3], draws[3])
        return self.data.normalise(images), self.data.labels.index_select(0, index)


class TensorEvalBatches(EvalBatches):
    """Consecutive slices of device-resident tensors, normalised, never augmented."""

    def __init__(self, data: ImageTensors, *, batch_size: int) -> None:
        super().__init__(len(data.labels), batch_size)
        self.data = data

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.num_samples, self.batch_size):
            stop = start + self.batch_size
            yield self.data.normalise(self.data.images[start:stop]), self.data.labels[start:stop]
