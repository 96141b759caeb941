"""The small image datasets held as uint8 tensors: scikit-learn's digits and torchvision's MNIST, Fashion-MNIST,
CIFAR-10 and CIFAR-100 (read with the real torchvision loaders)."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import DataError
from .splits import fixed_split

DIGITS_TEST_SIZE = 360


@dataclass(frozen=True)
class TensorSource:
    """Train and test splits on the CPU: uint8 images (N, C, H, W), int64 labels (N,), and their statistics."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    crop_pad: int  # zero padding of the random-crop + flip augmentation; 0: the dataset is never augmented


@dataclass(frozen=True)
class _Torchvision:
    cls_name: str  # in torchvision.datasets (imported on use: it is slow to import)
    label: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int


_TORCHVISION = {
    "mnist": _Torchvision("MNIST", "MNIST", (0.1307,), (0.3081,), 0),
    "fashion_mnist": _Torchvision("FashionMNIST", "Fashion-MNIST", (0.2860,), (0.3530,), 0),
    "cifar10": _Torchvision("CIFAR10", "CIFAR-10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4),
    "cifar100": _Torchvision("CIFAR100", "CIFAR-100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4),
}
TENSOR_DATASETS = ("digits", *_TORCHVISION)


def load_tensor_source(cfg: Any) -> TensorSource:
    """Load dataset ``cfg.name`` (one of TENSOR_DATASETS); ``cfg.augment`` switches the CIFAR augmentation."""
    if cfg.name == "digits":
        return _digits()
    from torchvision import datasets

    spec = _TORCHVISION[cfg.name]
    cls = getattr(datasets, spec.cls_name)
    root = os.path.expanduser(cfg.root)
    is_idx = issubclass(cls, datasets.MNIST)
    layout = _layout(cls, is_idx)
    _refuse_misplaced_root(layout, spec, root)
    if is_idx:
        _gunzip_idx_files(cls, root)
    with _created_dirs_removed_on_error(os.path.dirname(os.path.join(root, layout[0]))):  # a download's folders
        train = _open(cls, spec, root, cfg.download, is_idx, train=True)
    test = _open(cls, spec, root, False, is_idx, train=False)
    (train_images, train_labels), (test_images, test_labels) = _tensors(train), _tensors(test)
    return TensorSource(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        mean=spec.mean,
        std=spec.std,
        num_classes=len(train.classes),
        crop_pad=spec.crop_pad if cfg.augment else 0,
    )


def _digits() -> TensorSource:
    """scikit-learn's bundled 8x8 digits (values 0..16 scaled to 0..255), with a fixed 360-sample test split.

    Normalised with the mean/std of the whole 1437-sample train split (also when part of it is held out).
    """
    table = digits_table()
    images = torch.from_numpy(np.rint(table[:, :-1] * 255 / 16).astype(np.uint8)).view(-1, 1, 8, 8)
    labels = torch.from_numpy(table[:, -1]).long()
    train, test = fixed_split(len(labels), DIGITS_TEST_SIZE)
    std, mean = torch.std_mean(images[train].double() / 255, dim=(0, 2, 3), correction=0)
    return TensorSource(
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        num_classes=10,
        crop_pad=0,
    )


def digits_table() -> np.ndarray:
    """scikit-learn's digits file as ``load_digits`` reads it (1797 rows: 64 pixel values in 0..16, then the
    label), read without importing scikit-learn, which costs a second or two of every run's start."""
    path = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as rows:
        return np.loadtxt(rows, delimiter=",")


def _open(cls: type, spec: _Torchvision, root: str, download: bool, is_idx: bool, *, train: bool) -> Any:
    try:
        return cls(root, train=train, download=download)
    except (RuntimeError, OSError) as err:  # torchvision's "Dataset not found", URLError, and file errors
        if download:
            raise DataError(
                f"dataset.download=true could not fetch {spec.label} into dataset.root={root!r} "
                f"({' '.join(str(err).split())}); check the network, or put the files there and set "
                "dataset.download=false, e.g. dataset.root=/data dataset.download=false"
            ) from err
        raise DataError(
            f"dataset.root={root!r} holds no {spec.label} files (expected {_expected_file(cls, root, is_idx)}); "
            "point dataset.root at them or set dataset.download=true, e.g. dataset.root=data dataset.download=true"
        ) from err


def _expected_file(cls: type, root: str, is_idx: bool) -> str:
    return os.path.join(root, _layout(cls, is_idx)[0]) + ("[.gz]" if is_idx else " with torchvision's checksums")


def _layout(cls: type, is_idx: bool) -> tuple[str, ...]:
    """Where a root holds the dataset's first training file, relative to the root (either path will do)."""
    if is_idx:
        first = os.path.join(cls.__name__, "raw", "train-images-idx3-ubyte")
        return first, first + ".gz"
    return (os.path.join(cls.base_folder, cls.train_list[0][0]),)


def _refuse_misplaced_root(layout: tuple[str, ...], spec: _Torchvision, root: str) -> None:
    """DataError (one line) when the dataset's files are not under ``root`` but one level up or down: a root one
    level too deep or too shallow, which a download would not fix."""
    def holds(folder: str) -> bool:
        return any(os.path.isfile(os.path.join(folder, path)) for path in layout)

    folder = os.path.abspath(root)
    if holds(folder):
        return
    if holds(os.path.dirname(folder)):
        raise DataError(f"dataset.root={root!r}: found {spec.label}'s files one level up; "
                        f"e.g. dataset.root={os.path.dirname(folder)}")
    try:
        below = sorted(entry.path for entry in os.scandir(folder) if entry.is_dir())
    except OSError:  # no such directory, or not readable
        below = []
    found = next((path for path in below if holds(path)), None)
    if found is not None:
        raise DataError(f"dataset.root={root!r}: found {spec.label}'s files one level down; e.g. dataset.root={found}")


@contextlib.contextmanager
def _created_dirs_removed_on_error(folder: str) -> Iterator[None]:
    """On an error inside, remove ``folder`` and those of its parents that did not exist before and are left empty:
    what a failed download created."""
    created = []
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    try:
        yield
    except BaseException:
        for path in created:  # the deepest first; one that is not empty stays, and so do its parents
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise


def _gunzip_idx_files(cls: type, root: str) -> None:
    """torchvision reads only the uncompressed IDX files: decompress any that exist only as ``.gz``."""
    raw = os.path.join(root, cls.__name__, "raw")
    for archive, _md5 in cls.resources:
        target = os.path.join(raw, archive.removesuffix(".gz"))
        if os.path.isfile(target) or not os.path.isfile(target + ".gz"):
            continue
        try:
            with gzip.open(target + ".gz", "rb") as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(target + ".part", target)
        except OSError as err:
            raise DataError(
                f"dataset.root={root!r}: could not decompress {target}.gz ({err}); gunzip it, or point "
                "dataset.root at a writable copy, e.g. dataset.root=data"
            ) from err


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, C, H, W), int64 labels) from a torchvision MNIST-style or CIFAR-style dataset."""
    if isinstance(dataset.data, torch.Tensor):
        return dataset.data.unsqueeze(1).contiguous(), dataset.targets.long()
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.int64)
