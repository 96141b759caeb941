"""The batch interfaces the trainer sees: resumable shuffled training epochs and fixed-order evaluation passes."""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import DataError
from ..seeds import derive_seed

Batch = tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]  # (inputs, targets) or named tensors
BatchPlan = tuple[torch.Tensor, ...]  # the tensors a batch is made from on the device (see TrainBatches.make)


class TrainBatches(abc.ABC):
    """Shuffled training batches with drop_last semantics; ``epoch(e, start_batch=k)`` resumes mid-epoch exactly.

    The order of epoch ``e`` is ``torch.randperm(num_samples)`` drawn from a CPU generator seeded with
    ``derive_seed("shuffle", seed, e)``; batch ``i`` holds positions ``i*batch_size .. (i+1)*batch_size - 1`` of it.

    A batch comes in two parts: its plan (fixed-shape tensors: sample positions and augmentation draws, or the
    loaded batch itself) and ``make(plan)``, the device work that turns a plan into the batch, with no host read
    and no randomness of its own. A captured training step copies each plan into static buffers and replays
    ``make`` inside its graph.
    """

    static_shapes = True  # every plan has the same shapes (a step graph can replay them)

    def __init__(self, num_samples: int, batch_size: int, seed: int, dataset: str) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} must be a positive integer; e.g. batch_size=128")
        if batch_size > num_samples:
            raise DataError(
                f"batch_size={batch_size} is larger than the training set ({num_samples} samples) of "
                f"dataset.name={dataset}; e.g. batch_size={max(1, num_samples // 10)}"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def batch_positions(self, epoch: int, start_batch: int = 0) -> torch.Tensor:
        """int64 (batches, batch_size): the sample positions of batches ``start_batch ..`` of ``epoch``, on the CPU."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch={start_batch} is outside [0, {len(self)}]")
        generator = torch.Generator().manual_seed(derive_seed("shuffle", self.seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        return order[: len(self) * self.batch_size].view(len(self), self.batch_size)[start_batch:]

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Batches ``start_batch ..`` of ``epoch``: (x float32 normalised, y int64), both on the data device."""
        for plan in self.plans(epoch, start_batch):
            yield self.make(plan)

    @abc.abstractmethod
    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        """The plans of batches ``start_batch ..`` of ``epoch``, on the data device."""

    def make(self, plan: BatchPlan) -> Batch:
        """The batch of ``plan``; by default the plan is the batch."""
        x, y = plan
        return x, y


class EvalBatches(abc.ABC):
    """All samples in a fixed order, without augmentation, the last batch possibly smaller."""

    def __init__(self, num_samples: int, batch_size: int) -> None:
        if batch_size < 1:
            raise DataError(f"eval_batch_size={batch_size} must be a positive integer; e.g. eval_batch_size=1000")
        self.num_samples = num_samples
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Batch]:
        """(x float32 normalised, y int64) batches on the data device."""


@dataclass(frozen=True)
class Data:
    """Everything the trainer needs from a dataset."""

    train: TrainBatches
    val: EvalBatches | None  # held-out part of the training set when dataset.val_size > 0
    test: EvalBatches
    in_shape: tuple[int, ...]  # of one model input: (C, H, W) of images, (length,) of token ids
    num_classes: int
    preprocess: dict | None = None  # how a raw image becomes a model input (recorded in summary.json and exports)
    example: Batch | None = None  # a batch of one sample (e.g. FLOP counting); None: zeros of in_shape
    task: str | None = None  # the task this data is for (task.name=auto picks it); None: image_classification
    metric: str | None = None  # the data's headline metric (the default task.metric; GLUE: per task)
    test_variants: dict[str, EvalBatches] = field(default_factory=dict)  # scored with test, metrics "<name>_<key>"

    def example_batch(self, device: torch.device) -> Batch:
        """A batch of one sample on ``device``: ``example``, or a float32 zero input of ``in_shape`` and label 0."""
        if self.example is None:
            return torch.zeros(1, *self.in_shape, device=device), torch.zeros(1, dtype=torch.long, device=device)
        if isinstance(self.example, dict):
            return {key: value.to(device) for key, value in self.example.items()}
        return tuple(part.to(device) for part in self.example)

def preprocess(mean: tuple[float, ...], std: tuple[float, ...], **steps: Any) -> dict:
    """A model input is ``(pixel / 255 - mean) / std`` per channel, after ``steps`` (e.g. resize, center_crop)."""
    return {**steps, "scale": 1 / 255, "mean": list(mean), "std": list(std)}


def batch_rows(batch: Batch) -> int:
    """The number of samples in ``batch``."""
    return (next(iter(batch.values())) if isinstance(batch, dict) else batch[0]).shape[0]


def batch_slice(batch: Batch, rows: slice) -> Batch:
    """The samples ``rows`` of ``batch`` (views, no copy)."""
    if isinstance(batch, dict):
        return {key: value[rows] for key, value in batch.items()}
    return type(batch)(value[rows] for value in batch)
