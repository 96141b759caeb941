"""The pruning criterion of ``gmp`` and ``oneshot`` (``method.criterion``): the weights' magnitude, or oBERT's
second-order OBS saliency with the OBS update of the weights that remain (``sparsity/fisher.py``).

``criterion=obs`` (Kurtic et al., EMNLP 2022, as the authors' ``OBSPruningModifier``): at each pruning event,
``num_grads`` gradients of the training loss, each on ``grad_batch_size`` samples, the model in eval mode; the block
Fisher inverses of every prunable layer (``fisher_block_size`` weights per block, dampening ``fisher_damp``); the
saliencies ranked (``scope``: global, or per layer) with pruned weights kept pruned; the OBS update applied to the
remaining weights. The gradients of the k-th event come from the training batches in the seeded order of epoch k (a
pure function of the seed, so a resumed run prunes identically). ``method.pattern.name=block method.pattern.block=[1,4]``
prunes oBERT's 4-blocks (groups of 4 consecutive inputs; layerwise). The inverses live only during the event; their
memory (4·d·B bytes for d weights) is logged.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import torch

from ..data.batches import batch_rows, batch_slice
from ..errors import ConfigError
from ..sparsity.fisher import obs_saliency, obs_update
from ..sparsity.patterns import matrix, unmatrix
from ..sparsity.saliency import fisher_inverses
from .base import RunContext
from .masked import MaskedMethod

CRITERIA = ("magnitude", "obs")
log = logging.getLogger(__name__)


class CriterionPruning(MaskedMethod):
    """A pruning method whose scores are ``method.criterion``'s."""

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.criterion not in CRITERIA:
            raise ConfigError(f"method.criterion={cfg.criterion!r} must be magnitude or obs; e.g. method.criterion=obs")
        if cfg.criterion != "obs":
            return
        for key, value in (("num_grads", cfg.num_grads), ("fisher_block_size", cfg.fisher_block_size)):
            if value < 1:
                raise ConfigError(f"method.{key}={value} must be >= 1; e.g. method.{key}=" +
                                  ("1024" if key == "num_grads" else "50"))
        if not cfg.fisher_damp > 0:
            raise ConfigError(f"method.fisher_damp={cfg.fisher_damp} must be positive; e.g. method.fisher_damp=1e-7")
        pattern = cfg.pattern
        group = _group(cfg)
        if pattern.name not in ("unstructured", "block") or group is None:
            raise ConfigError(f"method.criterion=obs prunes single weights or groups of consecutive inputs, not "
                              f"method.pattern.name={pattern.name}" + (f" {list(pattern.block)}" if pattern.name ==
                                                                        "block" else "") +
                              "; e.g. method.pattern.name=block method.pattern.block=[1,4]")
        if cfg.fisher_block_size % group:
            raise ConfigError(f"method.fisher_block_size={cfg.fisher_block_size} must be a multiple of the "
                              f"{group}-weight groups of method.pattern.block; e.g. method.fisher_block_size={group * 12}")

    @classmethod
    def check_config(cls, cfg: Any, config: dict) -> None:
        super().check_config(cfg, config)
        if cfg.criterion == "obs" and cfg.grad_batch_size is not None:
            batch = config.get("batch_size")
            if not 1 <= cfg.grad_batch_size <= (batch or cfg.grad_batch_size) or (batch and batch % cfg.grad_batch_size):
                raise ConfigError(f"method.grad_batch_size={cfg.grad_batch_size} must divide batch_size={batch}; e.g. "
                                  f"method.grad_batch_size={batch}")

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        if self.cfg.criterion == "obs" and ctx.dist.enabled:
            raise ConfigError("method.criterion=obs updates the weights from gradients one process takes; run it in "
                              "one process (sparsetrain ..., not torchrun), or method.criterion=magnitude")

    def prune_by_criterion(self, sparsity: float, event: int) -> None:
        """Prune to ``sparsity`` by the criterion; ``event`` numbers the run's pruning events (the data order)."""
        if self.cfg.criterion == "magnitude":
            self.prune(self.magnitude_scores(), sparsity)
            return
        cfg, params, old = self.cfg, self.targets.params, self.maskset.masks
        inverses = fisher_inverses(self.ctx.model, params, old, self._gradient_batches(event), self.ctx.loss_fn,
                                   block=cfg.fisher_block_size, damp=cfg.fisher_damp, num_grads=cfg.num_grads)
        group, flat, solved, scores = _group(cfg), {}, {}, {}
        for name, weight in params.items():
            flat[name] = matrix(weight.detach()).flatten().float()
            saliency, solved[name] = obs_saliency(flat[name], inverses[name], group)
            saliency = saliency.masked_fill(~matrix(old[name]).flatten(), float("-inf"))  # pruned stay pruned
            scores[name] = unmatrix(saliency.view(weight.shape[0], -1), weight.shape)
        masks = self.select(scores, sparsity)
        with torch.no_grad():
            for name, weight in params.items():
                pruned = matrix(old[name] & ~masks[name]).flatten()
                updated = obs_update(flat[name], inverses[name], pruned, solved[name])
                weight.copy_(unmatrix(updated.view(weight.shape[0], -1), weight.shape).to(weight.dtype))
        memory = sum(inverse.nbytes() for inverse in inverses.values())
        self.ctx.log({"event": "fisher", "num_grads": cfg.num_grads, "fisher_bytes": memory})
        log.info("method.criterion=obs: block Fisher inverses of %d gradients, %.1f MiB", cfg.num_grads, memory / 2**20)
        self.install(masks, sparsity)

    def _gradient_batches(self, event: int) -> Iterator[Any]:
        """Training batches in the order of epochs ``event``, ``event + 1``, ..., cut to ``grad_batch_size`` samples."""
        size = self.cfg.grad_batch_size
        for epoch in itertools.count(event):
            for batch in self.ctx.train_batches.epoch(epoch):
                yield from _chunks(batch, size)


def _group(cfg: Any) -> int | None:
    """Weights scored together: 1 (unstructured), q for a [1, q] block, None for another pattern."""
    if cfg.pattern.name == "unstructured":
        return 1
    rows, columns = cfg.pattern.block
    return columns if cfg.pattern.name == "block" and rows == 1 else None


def _chunks(batch: Any, size: int | None) -> Iterator[Any]:
    """``batch`` in consecutive pieces of ``size`` samples (the whole batch for None)."""
    rows = batch_rows(batch)
    for start in range(0, rows, size or rows):
        yield batch_slice(batch, slice(start, start + (size or rows)))
