"""BERT's masked-language-model corruption (Hugging Face ``DataCollatorForLanguageModeling``), split into random
draws made on the CPU and a pure device function of those draws.

Of the tokens that may be masked (not special, not padding) each is selected with ``probability`` (or exactly
``tokens`` of them per block: TAMT's pre-generated KD data select one); a selected token
becomes [MASK] (80 %), a random token of the vocabulary (10 %) or stays (10 %); its label is the original token,
-100 everywhere else. The draws of a training batch come from a CPU generator seeded by (seed, epoch, batch), so a
batch is a pure function of those three whatever the device or the resume point; an evaluation split is corrupted
once, from a fixed seed, so every evaluation of every run scores the same positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..seeds import derive_seed
from .batches import BatchPlan, TrainBatches

IGNORE = -100  # the label of a position that is not scored (the masked-LM task's ignore index)
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the selected tokens; the rest stay as they are


@dataclass(frozen=True)
class TokenBlocks:
    """Token blocks on one device: ``input_ids`` and ``attention_mask`` (N, L) int64, ``maskable`` (N, L) bool (not
    a special token, not padding)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    maskable: torch.Tensor

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, index: torch.Tensor) -> TokenBlocks:
        return TokenBlocks(self.input_ids[index], self.attention_mask[index], self.maskable[index])


@dataclass(frozen=True)
class Masking:
    """What the corruption needs to know about the tokenizer, and the selection probability."""

    mask_token_id: int
    vocab_size: int  # random replacements are drawn from [0, vocab_size), as the Hugging Face collator does
    probability: float
    tokens: int = 0  # > 0: exactly this many maskable tokens selected per block (the lowest selection draws)

    def draws(self, generator: torch.Generator, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The random draws of blocks of ``shape``: uniforms (2, *shape) float32 (selection, replacement kind)
        and random replacement tokens ``shape`` int64."""
        uniforms = torch.rand((2, *shape), generator=generator)
        return uniforms, torch.randint(0, self.vocab_size, shape, generator=generator)

    def apply(self, input_ids: torch.Tensor, maskable: torch.Tensor, uniforms: torch.Tensor,
              random_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted input_ids, labels) from the draws: device work only, fixed shapes, no host read."""
        if self.tokens:  # the maskable positions with the ``tokens`` lowest draws (all of them in a shorter block)
            draws = torch.where(maskable, uniforms[0], 2.0)
            selected = maskable & (draws <= draws.topk(self.tokens, dim=-1, largest=False).values[..., -1:])
        else:
            selected = maskable & (uniforms[0] < self.probability)
        kind = uniforms[1]
        corrupted = torch.where(selected & (kind < MASK_SHARE), self.mask_token_id, input_ids)
        corrupted = torch.where(selected & (kind >= MASK_SHARE) & (kind < MASK_SHARE + RANDOM_SHARE), random_ids,
                                corrupted)
        return corrupted, torch.where(selected, input_ids, IGNORE)

    def mask_once(self, blocks: TokenBlocks) -> dict[str, torch.Tensor]:
        """The named tensors of an evaluation split, corrupted once from a seed that depends on nothing else."""
        generator = torch.Generator().manual_seed(derive_seed("mlm_eval"))
        uniforms, random_ids = self.draws(generator, tuple(blocks.input_ids.shape))
        device = blocks.input_ids.device
        input_ids, labels = self.apply(blocks.input_ids, blocks.maskable, uniforms.to(device), random_ids.to(device))
        return {"input_ids": input_ids, "attention_mask": blocks.attention_mask, "labels": labels}


class MaskedTextBatches(TrainBatches):
    """Shuffled training batches of token blocks, corrupted afresh every epoch. A batch's plan is its block
    positions (B,), the selection and replacement uniforms (2, B, L) and the replacement tokens (B, L), drawn on
    the CPU from a generator seeded by ``derive_seed("mlm_mask", seed, epoch, batch)``; ``make`` gathers and
    corrupts on the device."""

    def __init__(self, blocks: TokenBlocks, masking: Masking, *, batch_size: int, seed: int, dataset: str) -> None:
        super().__init__(len(blocks), batch_size, seed, dataset)
        self.blocks = blocks
        self.masking = masking

    def plans(self, epoch: int, start_batch: int = 0) -> Iterator[BatchPlan]:
        device = self.blocks.input_ids.device
        shape = (self.batch_size, self.blocks.input_ids.shape[1])
        for batch, positions in enumerate(self.batch_positions(epoch, start_batch), start=start_batch):
            generator = torch.Generator().manual_seed(derive_seed("mlm_mask", self.seed, epoch, batch))
            uniforms, random_ids = self.masking.draws(generator, shape)
            yield positions.to(device), uniforms.to(device), random_ids.to(device)

    def make(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        positions, uniforms, random_ids = plan
        blocks = self.blocks
        input_ids, labels = self.masking.apply(blocks.input_ids.index_select(0, positions),
                                               blocks.maskable.index_select(0, positions), uniforms, random_ids)
        return {"input_ids": input_ids, "attention_mask": blocks.attention_mask.index_select(0, positions),
                "labels": labels}
