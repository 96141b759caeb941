"""Phase schedules of multi-phase sparse training as pure functions (GaP's cyclic and parallel schedules, AC/DC's phases).

``acdc_phase``: AC/DC (Peste et al. 2021). A dense warm-up, then cycles of a compressed and a decompressed phase,
then a final compressed phase over the last ``final`` epochs. Cycles fill the span between warm-up and the final
phase; when the span is not a whole number of cycles, the last decompressed phase runs on to the final phase (the
authors' ImageNet configs: compress at 10, 20, …, 70, restore at 15, …, 65 and 75, final compression at 85 of 100;
their ep200 configs keep the phase lengths and add cycles).

``cyclic_gap`` and ``parallel_gap``: C-GaP and P-GaP (Ma et al. 2022). The trainings of a grow-and-prune run
as ``(prune partition, grow partition, length, combine)``; ``balanced_partitions`` cuts the ordered layers into k
contiguous groups of about equal parameter count.
"""

from __future__ import annotations

from typing import NamedTuple

DENSE_WARMUP, COMPRESSED, DECOMPRESSED = "dense_warmup", "compressed", "decompressed"


def acdc_phase(epoch: int, *, epochs: int, warmup: int, compressed: int, decompressed: int, final: int) -> str:
    """The AC/DC phase of 0-based ``epoch`` of an ``epochs``-epoch run."""
    if epoch < warmup:
        return DENSE_WARMUP
    final_start = max(warmup, epochs - final)
    if epoch >= final_start:
        return COMPRESSED
    cycle = compressed + decompressed
    cycles = (final_start - warmup) // cycle
    index, offset = divmod(epoch - warmup, cycle)
    return COMPRESSED if index < cycles and offset < compressed else DECOMPRESSED


class GapStep(NamedTuple):
    prune: int | None  # the partition pruned to the target before this training (None: none)
    grow: int | None  # the partition grown to dense before it (None: none); it stays dense through the training
    length: int  # the training's length, in the unit given (epochs or steps)
    combine: bool = False  # P-GaP: after this training, the replicas are combined and re-pruned


def cyclic_gap(partitions: int, rounds: int, step_length: int, finetune_length: int) -> list[GapStep]:
    """Every training of C-GaP: partition 0 dense first; then ``rounds`` cycles in which step i prunes the dense
    partition i and grows partition i + 1 (mod k); then the last dense partition is pruned and the all-sparse
    model fine-tuned."""
    k = partitions
    steps = [GapStep(None, 0, step_length)]
    steps += [GapStep((j - 1) % k, j % k, step_length) for j in range(1, k * rounds + 1)]
    return [*steps, GapStep((k * rounds) % k, None, finetune_length)]


def parallel_gap(partitions: int, rounds: int, step_length: int, finetune_length: int,
                 replica: int | None = None) -> list[GapStep]:
    """Every training of P-GaP: in each of ``rounds`` cycles, replica i starts from the shared sparse model and
    grows partition i; after the cycle's last replica the replicas are combined (partition i from replica i) and
    every layer pruned to its target; then the fine-tuning with fixed masks. On one device (``replica`` None) the
    replicas train one after another; a process that trains only ``replica`` (torchrun: its rank) has one training
    per cycle, each followed by the combine."""
    k = partitions
    replicas = range(k) if replica is None else [replica]
    steps = [GapStep(None, i, step_length, combine=i == replicas[-1]) for _ in range(rounds) for i in replicas]
    return [*steps, GapStep(None, None, finetune_length)]


def balanced_partitions(sizes: list[int], k: int) -> list[list[int]]:
    """Indices of ``sizes`` (in order) cut into ``k`` non-empty contiguous groups of about equal total: group j
    ends at the layer boundary nearest to ``(j + 1)·total / k``."""
    if not 1 <= k <= len(sizes):
        raise ValueError(f"method.num_partitions={k} must be between 1 and the {len(sizes)} prunable layers; "
                         f"e.g. method.num_partitions={min(3, len(sizes))}")
    total, cuts, running = sum(sizes), [], 0
    cumulative = [running := running + size for size in sizes]
    start = 0
    for j in range(1, k):
        target = j * total / k
        lowest, highest = start + 1, len(sizes) - (k - j)  # leave at least one layer for every later group
        end = min(range(lowest, highest + 1), key=lambda e: abs(cumulative[e - 1] - target))
        cuts.append(end)
        start = end
    bounds = [0, *cuts, len(sizes)]
    return [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]
