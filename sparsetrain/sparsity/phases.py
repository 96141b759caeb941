"""Phase schedules of multi-phase sparse training as pure functions (METHODS.md §7, §8, §14).

``acdc_phase``: AC/DC (Peste et al. 2021). A dense warm-up, then cycles of a compressed and a decompressed phase,
then a final compressed phase over the last ``final`` epochs. Cycles fill the span between warm-up and the final
phase; when the span is not a whole number of cycles, the last decompressed phase runs on to the final phase (the
authors' ImageNet configs: compress at 10, 20, …, 70, restore at 15, …, 65 and 75, final compression at 85 of 100;
their ep200 configs keep the phase lengths and add cycles).
"""

from __future__ import annotations

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
