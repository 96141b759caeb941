"""Device-resident batches of named tensors (e.g. ``input_ids``, ``attention_mask``, ``labels``), for datasets
whose items are dicts of tensors. A training batch's plan is one int64 tensor of sample positions; ``make``
gathers every named tensor at those positions on the device (no host read, no randomness)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .batches import BatchPlan, EvalBatches, TrainBatches

Named = dict[str, torch.Tensor]


def stack_items(items: list[dict]) -> Named:
    """Dict items (tensors, arrays or numbers per key) stacked into one tensor per key, integer labels as int64."""
    stacked = {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in items[0]}
    return {key: value if value.is_floating_point() else value.long() for key, value in stacked.items()}


class DictTrainBatches(TrainBatches):
    """Shuffled training batches gathered from device-resident named tensors."""

    def __init__(self, tensors: Named, *, batch_size: int, seed: int, dataset: str) -> None:
        super().__init__(len(next(iter(tensors.values()))), batch_size, seed, dataset)
        self.tensors = tensors

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        device = next(iter(self.tensors.values())).device
        for positions in self.batch_positions(epoch, start_batch).to(device):
            yield (positions,)

    def make(self, plan: BatchPlan) -> Named:
        (positions,) = plan
        return {key: tensor.index_select(0, positions) for key, tensor in self.tensors.items()}


class DictEvalBatches(EvalBatches):
    """Consecutive slices of device-resident named tensors."""

    def __init__(self, tensors: Named, *, batch_size: int) -> None:
        super().__init__(len(next(iter(tensors.values()))), batch_size)
        self.tensors = tensors

    def __iter__(self) -> Iterator[Named]:
        for start in range(0, self.num_samples, self.batch_size):
            yield {key: tensor[start:start + self.batch_size] for key, tensor in self.tensors.items()}


class PaddedDictTrainBatches(DictTrainBatches):
    """Training batches padded to their longest sequence (dynamic padding): every token tensor (two dimensions or
    more) is cut after the batch's longest ``attention_mask``. The shapes vary from batch to batch, so the step
    runs eagerly (``static_shapes``); the plan is the made batch."""

    static_shapes = False

    def __init__(self, tensors: Named, *, batch_size: int, seed: int, dataset: str) -> None:
        super().__init__(tensors, batch_size=batch_size, seed=seed, dataset=dataset)
        self.keys = tuple(tensors)
        self.lengths = tensors["attention_mask"].sum(1).cpu()  # read once, here: plans then need no device read

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        device = next(iter(self.tensors.values())).device
        for positions in self.batch_positions(epoch, start_batch):
            longest = int(self.lengths[positions].max())
            on_device = positions.to(device)
            yield tuple(tensor.index_select(0, on_device)[:, :longest] if tensor.dim() > 1 else
                        tensor.index_select(0, on_device) for tensor in self.tensors.values())

    def make(self, plan: BatchPlan) -> Named:
        return dict(zip(self.keys, plan))
