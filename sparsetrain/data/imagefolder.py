"""Image datasets in the ImageNet folder layout ``root/{train,val}/<class>/*.jpg``, read with torchvision's
ImageFolder and batched by a torch DataLoader (``val/`` is the test split).

Training samples are addressed by (epoch, position); the random transform of each sample runs under a forked CPU
RNG seeded with ``derive_seed("augment", seed, epoch, position)``, so a batch does not depend on the number of
workers or the resume position, and the main process's global RNG is never touched (RandomResizedCrop and
RandomHorizontalFlip draw from torch's RNG only). ``dataset.download`` is ignored: there is nothing to download.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from .batches import Batch, BatchPlan, Data, EvalBatches, TrainBatches, preprocess
from ..errors import DataError
from ..seeds import derive_seed
from .splits import holdout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LAYOUT = ("expected the ImageNet layout dataset.root/train/<class>/*.jpg and dataset.root/val/<class>/*.jpg "
           "(other names: dataset.train_dir, dataset.test_dir), e.g. dataset.root=/data/imagenet")


class _Images(Dataset):
    """(path, label) samples, loaded with PIL and transformed; indexed by position."""

    def __init__(self, samples: list[tuple[str, int]], loader: Callable[[str], Any], transform: Callable) -> None:
        self.samples = samples
        self.loader = loader
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(self.loader(path)), label


class _SeededImages(_Images):
    """Indexed by (epoch, position); the transform's randomness is a pure function of (seed, epoch, position)."""

    def __init__(self, samples: list[tuple[str, int]], loader: Callable[[str], Any], transform: Callable, seed: int):
        super().__init__(samples, loader, transform)
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        path, label = self.samples[index]
        image = self.loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(derive_seed("augment", self.seed, epoch, index))
            return self.transform(image), label


def _load(dataset: Dataset, batches: Iterable[list], num_workers: int, device: torch.device) -> Iterator[Batch]:
    # The loader's own generator supplies the worker base seed, which would otherwise be drawn from the global RNG.
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    for batch in loader:  # (inputs, targets), or a dict of named tensors
        if isinstance(batch, dict):
            yield {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        else:
            yield tuple(part.to(device, non_blocking=True) for part in batch)


class FolderTrainBatches(TrainBatches):
    """Shuffled training batches decoded and augmented by DataLoader workers. Items that are dicts of named
    tensors (``keys``) travel as a plan of their values in ``keys`` order, made back into a dict by ``make``."""

    def __init__(self, images: _SeededImages, *, batch_size: int, num_workers: int, device: torch.device,
                 dataset: str = "imagefolder", keys: tuple[str, ...] | None = None) -> None:
        super().__init__(len(images), batch_size, images.seed, dataset)
        self.images = images
        self.num_workers = num_workers
        self.device = device
        self.keys = keys

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        batches = [[(epoch, p) for p in index] for index in self.batch_positions(epoch, start_batch).tolist()]
        for batch in _load(self.images, batches, self.num_workers, self.device):
            yield tuple(batch[key] for key in self.keys) if self.keys else batch

    def make(self, plan: BatchPlan) -> Batch:
        return dict(zip(self.keys, plan)) if self.keys else tuple(plan)


class FolderEvalBatches(EvalBatches):
    """Consecutive batches in folder order, with the deterministic evaluation transform."""

    def __init__(self, images: _Images, *, batch_size: int, num_workers: int, device: torch.device) -> None:
        super().__init__(len(images), batch_size)
        self.images = images
        self.num_workers = num_workers
        self.device = device

    def __iter__(self) -> Iterator[Batch]:
        n, size = self.num_samples, self.batch_size
        batches = [list(range(start, min(start + size, n))) for start in range(0, n, size)]
        return _load(self.images, batches, self.num_workers, self.device)


def build_imagefolder(cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """Train, optional validation (held out of train/) and test (val/) batches of an image folder tree."""
    root = os.path.expanduser(cfg.root)
    size = cfg.image_size
    if size < 1:
        raise DataError(f"dataset.image_size={size} must be a positive integer; e.g. dataset.image_size=224")
    train_folder, test_folder = _folder(root, cfg.train_dir), _folder(root, cfg.test_dir)
    if test_folder.classes != train_folder.classes:
        missing = sorted(set(train_folder.classes) ^ set(test_folder.classes))
        raise DataError(
            f"dataset.root={root!r}: the class folders of {cfg.test_dir}/ and {cfg.train_dir}/ differ "
            f"(e.g. {missing[:3]}); {_LAYOUT}"
        )
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluate = transforms.Compose([transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size), *normalize])
    augment = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *normalize])
    read, samples = train_folder.loader, train_folder.samples
    loading = {"num_workers": cfg.num_workers, "device": device}

    def evaluation(subset: list[tuple[str, int]]) -> FolderEvalBatches:
        return FolderEvalBatches(_Images(subset, read, evaluate), batch_size=eval_batch_size, **loading)

    train_idx, val_idx = holdout(len(samples), cfg.val_size, "imagefolder")
    train_samples = [samples[i] for i in train_idx.tolist()]
    train_images = _SeededImages(train_samples, read, augment if cfg.augment else evaluate, seed)
    return Data(
        train=FolderTrainBatches(train_images, batch_size=batch_size, **loading),
        val=None if val_idx is None else evaluation([samples[i] for i in val_idx.tolist()]),
        test=evaluation(test_folder.samples),
        in_shape=(3, size, size),
        num_classes=len(train_folder.classes),
        preprocess=preprocess(IMAGENET_MEAN, IMAGENET_STD, resize=int(size * 256 / 224), center_crop=size),
    )


def _folder(root: str, split: str) -> datasets.ImageFolder:
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise DataError(f"dataset.root={root!r} has no {split}/ directory; {_LAYOUT}")
    try:
        return datasets.ImageFolder(path)
    except OSError as err:  # FileNotFoundError: no class folders, or no image files in them
        raise DataError(f"dataset.root={root!r}: {split}/ holds no images ({err}); {_LAYOUT}") from err
