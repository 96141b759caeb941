"""Datasets a user brings: a factory by ``_target_`` returning ``torch.utils.data.Dataset`` splits, or tensors
saved in ``.pt`` / ``.npz`` files. Items are ``(input, target)`` pairs, or dicts of named tensors (``input_ids``,
``attention_mask``, ``labels``: for a task that takes them), used as given (no normalisation).

A training set whose inputs fit in ``dataset.resident_mb`` is read once into device-resident tensors (then it
trains like MNIST: gather by index on the device, no workers); a larger one is read each epoch by DataLoader
workers, each item under a CPU RNG seeded by (seed, epoch, position), so random transforms and the batch order
stay pure functions of (seed, epoch, batch) whatever the worker count or resume point.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset, Subset, TensorDataset

from ..errors import DataError
from ..factories import call_with, locate
from ..seeds import derive_seed
from .batches import Data
from .dict_batches import DictEvalBatches, DictTrainBatches, stack_items
from .schemas import CustomDatasetConfig
from .splits import holdout
from .tensor_batches import TensorEvalBatches, TensorTrainBatches

CUSTOM_EXAMPLE = "my_pkg.data.make_datasets"
TENSOR_FILE_EXAMPLE = "dataset.train_file=train.npz (arrays x and y)"


@dataclass(frozen=True)
class Splits:
    train: Dataset
    test: Dataset
    val: Dataset | None
    source: str  # the key and value that produced them, for messages


@dataclass(frozen=True)
class ResidentTensors:
    """Inputs and targets on the device, used as they are (the interface of ``tensor_batches.ImageTensors``)."""

    images: torch.Tensor
    labels: torch.Tensor

    def normalise(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs


class SeededItems(Dataset):
    """Items of ``dataset`` addressed by (epoch, position), each read under a CPU RNG seeded by (seed, epoch,
    position), so its random transforms do not depend on the worker that reads it."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("augment", self.seed, epoch, index))
            return self.dataset[index]


def check_custom(cfg: Any) -> None:
    """The custom dataset's factory resolves (DataError / ValueError otherwise)."""
    locate("dataset._target_", OmegaConf.to_container(cfg)["_target_"], CUSTOM_EXAMPLE)


def check_tensor_files(cfg: Any) -> None:
    """The tensor files are given and exist (DataError otherwise)."""
    _tensor_files(cfg)


def build_custom(cfg: Any, **batching: Any) -> Data:
    """Batches of the datasets ``dataset._target_`` returns (``batching``: batch sizes, device, seed)."""
    return build_from_splits(custom_splits(cfg), cfg, **batching)


def build_tensor_files(cfg: Any, **batching: Any) -> Data:
    """Batches of the tensors in ``dataset.train_file`` / ``test_file`` / ``val_file``."""
    return build_from_splits(tensor_file_splits(cfg), cfg, **batching)


def _tensor_files(cfg: Any) -> dict[str, str]:
    """The set ``dataset.{train,test,val}_file`` paths, train and test required, each an existing file."""
    files = {split: cfg[f"{split}_file"] for split in ("train", "test", "val") if cfg[f"{split}_file"]}
    for split in ("train", "test"):
        if split not in files:
            raise DataError(f"dataset.{split}_file is not set; dataset=tensors reads x and y from .pt or .npz "
                            f"files, e.g. dataset.{split}_file={split}.npz")
    for split, path in files.items():
        if not os.path.isfile(os.path.expanduser(path)):
            raise DataError(f"dataset.{split}_file={path!r} is not a file; e.g. {TENSOR_FILE_EXAMPLE}")
    return files


def custom_splits(cfg: Any) -> Splits:
    """``dataset._target_(**added keys)``: (train, test), (train, test, val) or a dict with those keys."""
    factory = locate("dataset._target_", cfg._target_, CUSTOM_EXAMPLE)
    values = OmegaConf.to_container(cfg, resolve=True)
    options = {key: value for key, value in values.items() if key not in CustomDatasetConfig.__dataclass_fields__}
    result = call_with(factory, {}, options)
    source = f"dataset._target_={cfg._target_!r}"
    if isinstance(result, dict) and {"train", "test"} <= set(result):
        return Splits(result["train"], result["test"], result.get("val"), source)
    if isinstance(result, Sequence) and len(result) in (2, 3) and all(isinstance(d, Dataset) for d in result):
        return Splits(result[0], result[1], result[2] if len(result) == 3 else None, source)
    raise DataError(f"{source} returned a {type(result).__name__}; return (train, test) or (train, test, val) "
                    "torch.utils.data.Dataset objects, or a dict with those keys; "
                    f"e.g. dataset._target_={CUSTOM_EXAMPLE}")


def tensor_file_splits(cfg: Any) -> Splits:
    """Datasets from ``dataset.train_file`` / ``test_file`` / ``val_file`` (optional), each holding ``x`` (inputs)
    and ``y`` (targets): ``np.savez(path, x=..., y=...)`` or ``torch.save({"x": ..., "y": ...}, path)``."""
    loaded = {split: _tensor_file(f"dataset.{split}_file", path) for split, path in _tensor_files(cfg).items()}
    return Splits(loaded["train"], loaded["test"], loaded.get("val"), f"dataset.train_file={cfg.train_file!r}")


def build_from_splits(splits: Splits, cfg: Any, *, batch_size: int, eval_batch_size: int, device: torch.device,
                      seed: int) -> Data:
    """Batches of user datasets; a held-out validation part of train when there is no val split and
    ``dataset.val_size`` > 0."""
    first = _check_item(splits.train, splits.source)
    train, val = splits.train, splits.val
    if val is None:
        train_idx, val_idx = holdout(len(train), cfg.val_size, cfg.name)
        if val_idx is not None:
            train, val = Subset(splits.train, train_idx.tolist()), Subset(splits.train, val_idx.tolist())
    if isinstance(first, dict):
        return _named_data(first, train, val, splits.test, cfg, batch_size=batch_size,
                           eval_batch_size=eval_batch_size, device=device, seed=seed)
    inputs = torch.as_tensor(first[0])
    nbytes = len(train) * inputs.numel() * inputs.element_size()
    if nbytes <= cfg.resident_mb * 2**20:
        resident = {name: _resident(dataset, device) for name, dataset in
                    (("train", train), ("val", val), ("test", splits.test)) if dataset is not None}
        batches = dict(
            train=TensorTrainBatches(resident["train"], batch_size=batch_size, seed=seed, dataset=cfg.name, crop_pad=0),
            val=TensorEvalBatches(resident["val"], batch_size=eval_batch_size) if "val" in resident else None,
            test=TensorEvalBatches(resident["test"], batch_size=eval_batch_size),
        )
        num_classes = _num_classes(splits.train, resident["train"].labels, cfg)
    else:
        batches = _worker_batches(train, val, splits.test, cfg, batch_size=batch_size,
                                  eval_batch_size=eval_batch_size, device=device, seed=seed)
        num_classes = _num_classes(splits.train, None, cfg)
    return Data(**batches, in_shape=tuple(inputs.shape), num_classes=num_classes)


def _worker_batches(train: Dataset, val: Dataset | None, test: Dataset, cfg: Any, *, batch_size: int,
                    eval_batch_size: int, device: torch.device, seed: int, keys: tuple[str, ...] | None = None) -> dict:
    """DataLoader batches of the splits (``keys``: the names of dict items)."""
    from .imagefolder import FolderEvalBatches, FolderTrainBatches  # DataLoader batches

    loading = {"num_workers": cfg.num_workers, "device": device}
    return dict(
        train=FolderTrainBatches(SeededItems(train, seed), batch_size=batch_size, dataset=cfg.name, keys=keys,
                                 **loading),
        val=None if val is None else FolderEvalBatches(val, batch_size=eval_batch_size, **loading),
        test=FolderEvalBatches(test, batch_size=eval_batch_size, **loading),
    )


def _named_data(first: dict, train: Dataset, val: Dataset | None, test: Dataset, cfg: Any, *, batch_size: int,
                eval_batch_size: int, device: torch.device, seed: int) -> Data:
    """Batches of dict items (named tensors): device-resident when the training set fits in
    ``dataset.resident_mb``, else through DataLoader workers. ``in_shape`` is the shape of the first named
    input; ``num_classes`` is 1 for float ``labels`` (regression), else the largest resident label + 1, else
    ``dataset.num_classes``."""
    example = stack_items([first])
    nbytes = len(train) * sum(value.numel() * value.element_size() for value in example.values())
    if nbytes <= cfg.resident_mb * 2**20:
        resident = {name: {key: value.to(device) for key, value in stack_items(_items(dataset)).items()}
                    for name, dataset in (("train", train), ("val", val), ("test", test)) if dataset is not None}
        batches = dict(
            train=DictTrainBatches(resident["train"], batch_size=batch_size, seed=seed, dataset=cfg.name),
            val=DictEvalBatches(resident["val"], batch_size=eval_batch_size) if "val" in resident else None,
            test=DictEvalBatches(resident["test"], batch_size=eval_batch_size),
        )
        labels = resident["train"].get("labels")
    else:
        batches = _worker_batches(train, val, test, cfg, batch_size=batch_size, eval_batch_size=eval_batch_size,
                                  device=device, seed=seed, keys=tuple(first))
        labels = example.get("labels")  # one item: enough to tell float labels (regression)
        labels = labels if labels is not None and labels.is_floating_point() else None
    classes = getattr(train, "classes", None)
    num_classes = (len(classes) if classes is not None else cfg.num_classes if labels is None else
                   1 if labels.is_floating_point() else int(labels.max()) + 1)
    inputs = next(value for key, value in example.items() if key != "labels")
    return Data(**batches, in_shape=tuple(inputs.shape[1:]), num_classes=num_classes, example=example)


def _items(dataset: Dataset) -> list:
    return [dataset[i] for i in range(len(dataset))]


def _check_item(dataset: Dataset, source: str) -> tuple[Any, Any] | dict:
    """The first item, which must be an (input, target) pair or a dict of named tensors; DataError naming
    ``source`` otherwise."""
    if len(dataset) == 0:
        raise DataError(f"{source}: the training set is empty; return a dataset with samples")
    item = dataset[0]
    if isinstance(item, dict) and item and all(isinstance(key, str) for key in item) \
            and all(_is_array(value) or isinstance(value, (int, float, np.generic)) for value in item.values()):
        return item
    if not (isinstance(item, (tuple, list)) and len(item) == 2 and _is_array(item[0])
            and (_is_array(item[1]) or isinstance(item[1], (int, float, np.generic)))):
        shown = type(item).__name__ if not isinstance(item, (tuple, list)) else \
            f"a {len(item)}-{type(item).__name__} of {', '.join(type(part).__name__ for part in item)}"
        raise DataError(f"{source}: items must be (input, target) pairs of tensors or numbers, or dicts of named "
                        f"tensors, got {shown}; e.g. return torch.utils.data.TensorDataset(inputs, targets)")
    return item


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _resident(dataset: Dataset, device: torch.device) -> ResidentTensors:
    """All items stacked into an inputs and a targets tensor on ``device`` (TensorDatasets without a copy loop)."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        inputs, targets = dataset.tensors
    elif isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        inputs, targets = (tensor[dataset.indices] for tensor in dataset.dataset.tensors)
    else:
        items = [dataset[i] for i in range(len(dataset))]
        inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
        targets = torch.as_tensor(np.asarray([np.asarray(y) for _, y in items]))
    targets = torch.as_tensor(targets)
    if not targets.is_floating_point():
        targets = targets.long()  # class indices, as the losses take them
    return ResidentTensors(inputs.to(device), targets.to(device))


def _num_classes(train: Dataset, labels: torch.Tensor | None, cfg: Any) -> int:
    """len(train.classes) if the dataset names its classes, else the largest resident label + 1, else
    ``dataset.num_classes``."""
    classes = getattr(train, "classes", None)
    if classes is not None:
        return len(classes)
    if labels is not None and not labels.is_floating_point():
        return int(labels.max()) + 1
    return cfg.num_classes


def _tensor_file(key: str, path: str) -> TensorDataset:
    path = os.path.expanduser(path)
    try:
        if path.endswith(".npz"):
            with np.load(path) as arrays:
                x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        elif path.endswith(".pt"):
            content = torch.load(path, map_location="cpu", weights_only=True)
            x, y = torch.as_tensor(content["x"]), torch.as_tensor(content["y"])
        else:
            raise ValueError("the file name must end in .pt or .npz")
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise DataError(f"{key}={path!r} is not a tensor file with x and y ({type(error).__name__}: "
                        f"{' '.join(str(error).split())}); e.g. {TENSOR_FILE_EXAMPLE}") from None
    if len(x) != len(y):
        raise DataError(f"{key}={path!r}: x has {len(x)} rows but y has {len(y)}; e.g. {TENSOR_FILE_EXAMPLE}")
    return TensorDataset(x, y)
