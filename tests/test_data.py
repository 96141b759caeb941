"""sparsetrain.data: real on-disk formats written to tmp dirs, resumable deterministic batches, per-sample
augmentation, validation splits and one-line errors. CPU only, no network."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import random
import struct
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf
from PIL import Image
from torchvision import datasets, transforms

import sparsetrain.data.tensor_batches as tensor_batches
from conftest import write_image_folder
from sparsetrain.data.catalog import DATASETS
from sparsetrain.data.batches import Data
from sparsetrain.data.build import build_data
from sparsetrain.errors import DataError

CPU = torch.device("cpu")
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def config(name: str = "digits", **overrides) -> SimpleNamespace:
    options = dict(name=name, root="", download=False, val_size=0, augment=True, num_workers=0, image_size=32,
                   train_dir="train", test_dir="val")
    return SimpleNamespace(**(options | overrides))


def build(cfg, batch_size: int = 4, eval_batch_size: int = 8, seed: int = 0, device: torch.device = CPU) -> Data:
    return build_data(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device, seed=seed)


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return (images.float() / 255 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def unnormalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return ((x.cpu() * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)) * 255).round().to(torch.uint8)


def epoch_list(data: Data, epoch: int, start_batch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.cpu(), y.cpu()) for x, y in data.train.epoch(epoch, start_batch)]


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def match_rows(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each sample of x, the index of the one equal sample of reference."""
    equal = (x[:, None] == reference[None]).flatten(2).all(-1)
    assert (equal.sum(1) == 1).all()
    return equal.int().argmax(1)


def rng_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


def assert_rng_unchanged(before) -> None:
    after = rng_states()
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])


# --- writers of the real on-disk formats --------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file as MNIST ships it: magic 0x0803 (images) / 0x0801 (labels), big-endian dims, uint8 data."""
    magic = 0x0800 | array.ndim
    payload = struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, folder: str = "MNIST", compress: bool = False, n_train: int = 20, n_test: int = 10):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte", images, compress)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte", labels, compress)
        arrays[split] = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()
    return arrays


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, monkeypatch, train: np.ndarray, test: np.ndarray, hundred: bool = False):
    """CIFAR python pickles (rows of 3072 bytes: R plane, G plane, B plane) with labels 0, 1, 2, ...

    torchvision verifies every file against the md5 of the official archive, which tiny files cannot match; so the
    test points the class's expected checksums at these files (torchvision's own verification code still runs).
    """
    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    chunks = np.array_split(np.arange(len(train)), len(train_files))
    parts = [(name, train[idx], idx) for name, idx in zip(train_files, chunks)]
    parts.append(("test" if hundred else "test_batch", test, np.arange(len(test))))
    for name, images, idx in parts:
        entry = {"data": images.reshape(len(images), 3072), label_key: [int(i) % classes for i in idx]}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta_name, meta_key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    (folder / meta_name).write_bytes(pickle.dumps({meta_key: [f"class{i}" for i in range(classes)]}))
    checksums = lambda names: [[name, md5(folder / name)] for name in names]  # noqa: E731
    monkeypatch.setattr(cls, "train_list", checksums(train_files))
    monkeypatch.setattr(cls, "test_list", checksums([parts[-1][0]]))
    monkeypatch.setattr(cls, "meta", {"filename": meta_name, "key": meta_key, "md5": md5(folder / meta_name)})


def random_cifar(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def coordinate_image() -> np.ndarray:
    """R = row + 1, G = column + 1, B = 0: a crop's offset and flip can be read off any output pixel."""
    grid = np.arange(1, 33, dtype=np.uint8)
    return np.stack([np.repeat(grid[:, None], 32, 1), np.repeat(grid[None, :], 32, 0), np.zeros((32, 32), np.uint8)])


# --- digits (the default, offline dataset) ------------------------------------------------------------------------


def test_digits_sizes_values_and_fixed_split():
    from sklearn.datasets import load_digits

    first, second = build(config(), batch_size=1, seed=0), build(config(), batch_size=1, seed=1)
    assert (first.train.num_samples, first.test.num_samples, first.val) == (1437, 360, None)
    assert (first.in_shape, first.num_classes, len(first.train)) == ((1, 8, 8), 10, 1437)
    test_x = torch.cat([x for x, _ in first.test])
    assert torch.equal(test_x, torch.cat([x for x, _ in second.test]))
    train_x = torch.cat([x for x, _ in first.train.epoch(0)])
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std(correction=0).item() - 1) < 1e-4
    # The darkest and brightest train pixels are 0 and 255: invert the affine normalisation from them.
    low, high = train_x.min(), train_x.max()
    to_uint8 = lambda x: ((x - low) / (high - low) * 255).round().to(torch.uint8).flatten(1)  # noqa: E731
    recovered = torch.cat([to_uint8(train_x), to_uint8(test_x)])
    expected = torch.from_numpy(np.rint(load_digits().data * 255 / 16).astype(np.uint8))
    assert torch.equal(recovered.unique(dim=0), expected.unique(dim=0))
    assert sorted(recovered.sum(1).tolist()) == sorted(expected.sum(1).tolist())  # same multiset of images


def test_config_may_be_an_omegaconf_node():
    cfg = OmegaConf.create({"name": "digits", "root": "~/data", "download": True, "val_size": 37, "augment": True})
    data = build(cfg, batch_size=100)
    assert (data.train.num_samples, data.val.num_samples, len(data.train)) == (1400, 37, 14)


# --- torchvision tensor datasets ----------------------------------------------------------------------------------


def test_mnist_reads_idx_files_through_torchvision(tmp_path, monkeypatch):
    raw = write_mnist(tmp_path)
    calls = []
    original = datasets.MNIST._load_data
    monkeypatch.setattr(datasets.MNIST, "_load_data", lambda self: calls.append(self.train) or original(self))
    data = build(config("mnist", root=str(tmp_path)), batch_size=20, eval_batch_size=4)
    assert calls == [True, False]
    assert (data.train.num_samples, data.test.num_samples, data.in_shape, data.num_classes) == (20, 10, (1, 28, 28), 10)
    test = list(data.test)
    assert [len(y) for _, y in test] == [4, 4, 2]
    x, y = torch.cat([x for x, _ in test]), torch.cat([y for _, y in test])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, raw["t10k"][1])
    assert torch.equal(x, normalise(raw["t10k"][0], (0.1307,), (0.3081,)))
    pixel = raw["t10k"][0][3, 0, 5, 7].item()
    assert x[3, 0, 5, 7].item() == pytest.approx((pixel / 255 - 0.1307) / 0.3081, abs=1e-6)
    (train_x, train_y), = data.train.epoch(0)
    order = match_rows(train_x, normalise(raw["train"][0], (0.1307,), (0.3081,)))
    assert sorted(order.tolist()) == list(range(20)) and torch.equal(train_y, raw["train"][1][order])


def test_fashion_mnist_from_gzipped_idx_files(tmp_path):
    raw = write_mnist(tmp_path, folder="FashionMNIST", compress=True)
    data = build(config("fashion_mnist", root=str(tmp_path)), eval_batch_size=100)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    (x, y), = data.test
    assert torch.equal(y, raw["t10k"][1])
    assert torch.equal(x, normalise(raw["t10k"][0], (0.2860,), (0.3530,)))


@pytest.mark.parametrize("hundred", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_pickles_load_unaugmented_for_evaluation(tmp_path, monkeypatch, hundred):
    test_images = random_cifar(10, seed=3)
    write_cifar(tmp_path, monkeypatch, random_cifar(20, seed=4), test_images, hundred)
    data = build(config("cifar100" if hundred else "cifar10", root=str(tmp_path)), eval_batch_size=6)
    assert (data.train.num_samples, data.test.num_samples) == (20, 10)
    assert (data.in_shape, data.num_classes) == ((3, 32, 32), 100 if hundred else 10)
    mean, std = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)) if hundred else (CIFAR10_MEAN, CIFAR10_STD)
    x, y = (torch.cat(parts) for parts in zip(*data.test))
    assert torch.equal(y, torch.arange(10))
    assert torch.equal(x, normalise(torch.from_numpy(test_images), mean, std))


def test_cifar_augmentation_is_per_sample_crop_and_flip(tmp_path, monkeypatch):
    image = coordinate_image()
    write_cifar(tmp_path, monkeypatch, np.repeat(image[None], 50, 0), random_cifar(10, seed=5))
    data = build(config("cifar10", root=str(tmp_path)), batch_size=25)
    source = torch.from_numpy(image)
    offsets, flips, per_batch = [], [], []
    for epoch in range(5):
        for x, _ in data.train.epoch(epoch):
            batch_flips = []
            for out in unnormalise(x, CIFAR10_MEAN, CIFAR10_STD):
                row, col, next_col = out[0, 16, 16].item(), out[1, 16, 16].item(), out[1, 16, 17].item()
                flip = next_col < col
                dy, dx = row - 13, col - (12 if flip else 13)
                expected = TF.crop(TF.pad(source, [4]), dy, dx, 32, 32)
                assert torch.equal(out, TF.hflip(expected) if flip else expected)
                offsets.append((dy, dx))
                batch_flips.append(flip)
            assert 0 < sum(batch_flips) < len(batch_flips)  # flips drawn per sample, not per batch
            flips += batch_flips
            per_batch.append(tuple(offsets[-len(batch_flips):]))
    assert len(set(per_batch)) == len(per_batch) == 10  # every batch of every epoch draws anew
    dys, dxs = zip(*offsets)
    assert set(dys) == set(dxs) == set(range(9))
    assert 0.35 < np.mean(flips) < 0.65


def test_cifar_without_augment_yields_raw_images(tmp_path, monkeypatch):
    train = random_cifar(20, seed=6)
    write_cifar(tmp_path, monkeypatch, train, random_cifar(10, seed=7))
    (x, _), = build(config("cifar10", root=str(tmp_path), augment=False), batch_size=20).train.epoch(3)
    order = match_rows(x, normalise(torch.from_numpy(train), CIFAR10_MEAN, CIFAR10_STD))
    assert sorted(order.tolist()) == list(range(20))


# --- resumable, deterministic batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_tensor_epochs_resume_exactly_without_replaying_skipped_batches(tmp_path, monkeypatch, device):
    write_cifar(tmp_path, monkeypatch, random_cifar(50, seed=8), random_cifar(10, seed=9))
    data = build(config("cifar10", root=str(tmp_path)), batch_size=4, device=device)
    full = epoch_list(data, 2)
    assert len(full) == len(data.train) == 12 and all(len(y) == 4 for _, y in full)
    augmented = []
    original = tensor_batches.random_crop_flip
    monkeypatch.setattr(tensor_batches, "random_crop_flip", lambda *a: augmented.append(1) or original(*a))
    for start in (0, 5, 11, 12):
        augmented.clear()
        assert_same_batches(epoch_list(data, 2, start_batch=start), full[start:])
        assert len(augmented) == 12 - start
    with pytest.raises(ValueError):
        next(data.train.epoch(2, start_batch=13))


def test_tensor_epochs_depend_only_on_seed_and_epoch(tmp_path, monkeypatch):
    write_cifar(tmp_path, monkeypatch, random_cifar(24, seed=10), random_cifar(4, seed=11))
    cfg = config("cifar10", root=str(tmp_path))
    data = build(cfg, seed=7)
    epoch0 = epoch_list(data, 0)
    epoch_list(data, 1)  # no state carried from one epoch to the next
    assert_same_batches(epoch_list(build(cfg, seed=7), 0), epoch0)
    assert_same_batches(epoch_list(data, 0), epoch0)
    labels = lambda batches: torch.cat([y for _, y in batches])  # noqa: E731
    assert not torch.equal(labels(epoch_list(data, 1)), labels(epoch0))
    assert not torch.equal(labels(epoch_list(build(cfg, seed=8), 0)), labels(epoch0))
    unaugmented = build(config("cifar10", root=str(tmp_path), augment=False), seed=7)
    assert [torch.equal(y, yu) for (_, y), (_, yu) in zip(epoch0, epoch_list(unaugmented, 0))] == [True] * 6


def test_data_loading_leaves_global_rngs_untouched(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar", monkeypatch, random_cifar(20, seed=12), random_cifar(4, seed=13))
    write_image_folder(tmp_path / "folder")
    before = rng_states()
    for cfg in (config(), config("cifar10", root=str(tmp_path / "cifar")),
                config("imagefolder", root=str(tmp_path / "folder")),
                config("imagefolder", root=str(tmp_path / "folder"), num_workers=2)):
        data = build(cfg)
        epoch_list(data, 0)
        list(data.test)
    assert_rng_unchanged(before)


# --- imagefolder --------------------------------------------------------------------------------------------------


def test_imagefolder_batches_are_deterministic_resumable_and_worker_independent(tmp_path):
    write_image_folder(tmp_path)
    data = build(config("imagefolder", root=str(tmp_path)), batch_size=3, eval_batch_size=4)
    assert (data.train.num_samples, data.test.num_samples, len(data.train)) == (12, 6, 4)
    assert (data.in_shape, data.num_classes) == ((3, 32, 32), 3)
    full = epoch_list(data, 1)
    assert all(x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 for x, _ in full)
    assert_same_batches(epoch_list(data, 1, start_batch=2), full[2:])
    workers = build(config("imagefolder", root=str(tmp_path), num_workers=2), batch_size=3, eval_batch_size=4)
    assert_same_batches(epoch_list(workers, 1), full)
    assert_same_batches(epoch_list(workers, 1, start_batch=3), full[3:])
    assert_same_batches(list(workers.test), list(data.test))
    assert not torch.equal(torch.cat([x for x, _ in epoch_list(data, 2)]), torch.cat([x for x, _ in full]))


def test_imagefolder_directory_names_are_configurable(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "train").rename(tmp_path / "training")
    (tmp_path / "val").rename(tmp_path / "validation")
    data = build(config("imagefolder", root=str(tmp_path), train_dir="training", test_dir="validation"))
    assert (data.train.num_samples, data.test.num_samples, data.num_classes) == (12, 6, 3)
    with pytest.raises(DataError, match=r"has no train/ directory.*dataset\.train_dir"):
        build(config("imagefolder", root=str(tmp_path)))


def test_imagefolder_test_split_uses_resize_and_center_crop(tmp_path):
    write_image_folder(tmp_path)
    data = build(config("imagefolder", root=str(tmp_path), val_size=3), eval_batch_size=4)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (9, 3, 6)
    x, y = (torch.cat(parts) for parts in zip(*data.test))
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    reference = transforms.Compose([
        transforms.Resize(36), transforms.CenterCrop(32), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    expected = reference(Image.open(tmp_path / "val" / "bee" / "1.png").convert("RGB"))
    torch.testing.assert_close(x[3], expected)


def test_imagefolder_errors_name_dataset_root(tmp_path):
    write_image_folder(tmp_path / "ok")
    (tmp_path / "ok" / "val" / "dog").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ok" / "val" / "dog" / "0.png")
    with pytest.raises(DataError, match=r"dataset\.root=.*class folders of val/ and train/ differ.*dog"):
        build(config("imagefolder", root=str(tmp_path / "ok")))
    write_image_folder(tmp_path / "noval", n_val=0)
    with pytest.raises(DataError, match=r"dataset\.root=.*val/ holds no images"):
        build(config("imagefolder", root=str(tmp_path / "noval")))
    with pytest.raises(DataError, match=r"dataset\.root=.* has no train/ directory"):
        build(config("imagefolder", root=str(tmp_path / "missing")))


# --- validation split ---------------------------------------------------------------------------------------------


def test_val_split_is_disjoint_fixed_and_unaugmented(tmp_path):
    raw = write_mnist(tmp_path)
    reference = normalise(raw["train"][0], (0.1307,), (0.3081,))
    cfg = config("mnist", root=str(tmp_path), val_size=5)
    held_out = []
    for seed in (0, 1):
        data = build(cfg, batch_size=15, seed=seed)
        assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (15, 5, 10)
        (val_x, val_y), = data.val
        (train_x, _), = data.train.epoch(0)
        val_idx, train_idx = match_rows(val_x, reference), match_rows(train_x, reference)
        assert torch.equal(val_y, raw["train"][1][val_idx])
        assert sorted(val_idx.tolist() + train_idx.tolist()) == list(range(20))
        held_out.append(val_idx)
    assert torch.equal(held_out[0], held_out[1])


# --- errors -------------------------------------------------------------------------------------------------------


def one_line_error(cfg, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        build(cfg, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_errors_are_one_line_and_name_the_key(tmp_path, monkeypatch):
    missing = str(tmp_path / "nonexistent")
    message = one_line_error(config("mnist", root=missing))
    assert f"dataset.root='{missing}' holds no MNIST files" in message
    assert "MNIST/raw/train-images-idx3-ubyte" in message and "dataset.download=true" in message
    assert "dataset.root=" in one_line_error(config("cifar100", root=missing))
    assert "cifar-10-batches-py/data_batch_1" in one_line_error(config("cifar10", root=missing))

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.FashionMNIST, "download", offline)
    message = one_line_error(config("fashion_mnist", root=missing, download=True))
    assert message.startswith("dataset.download=true could not fetch Fashion-MNIST") and "no network" in message

    message = one_line_error(config("svhn"))
    assert message == (f"dataset.name='svhn' is not a dataset; choose one of: {', '.join(DATASETS.names())} "
                       "(e.g. dataset=digits)")
    assert "dataset.val_size=1437 must be in [0, 1437)" in one_line_error(config(val_size=1437))
    message = one_line_error(config(val_size=1400), batch_size=64)
    assert message.startswith("batch_size=64 is larger than the training set (37 samples) of dataset.name=digits")
    assert "eval_batch_size=0" in one_line_error(config(), eval_batch_size=0)


def test_synthetic_data_has_the_asked_shape_fixed_content_and_augmentation():
    cfg = config("synthetic", image_size=16, channels=2, num_classes=5, train_size=40, test_size=12)
    data = build(cfg, batch_size=8, eval_batch_size=5)
    assert data.in_shape == (2, 16, 16) and data.num_classes == 5
    assert data.train.num_samples == 40 and data.test.num_samples == 12 and len(data.train) == 5
    (x, y), *_ = data.train.epoch(0)
    assert x.shape == (8, 2, 16, 16) and x.dtype == torch.float32 and 0 <= int(y.min()) <= int(y.max()) < 5
    other_seed = build(cfg, batch_size=8, eval_batch_size=5, seed=1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(data.test, other_seed.test))  # content is fixed
    plain = build(config("synthetic", image_size=16, channels=2, num_classes=5, train_size=40, test_size=12,
                         augment=False), batch_size=8)
    (raw, raw_labels), *_ = plain.train.epoch(0)
    assert torch.equal(raw_labels, y) and not torch.equal(raw, x)  # the same samples, augmented by crop and flip
