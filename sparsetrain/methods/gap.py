"""GaP: scheduled grow-and-prune (Ma et al., ICLR 2022, https://arxiv.org/abs/2106.09857; code boone891214/GaP),
the cyclic variant (C-GaP).

The prunable layers form k partitions (``partitions``: one entry of ``|``-separated patterns each, or
``num_partitions`` contiguous groups balanced by parameter count). Partition 0 starts dense, the others at random
masks of the target. Each later round (a GaP step of the run's length, learning rate restarted) first
magnitude-prunes the dense partition to its per-layer target, then grows the next partition to dense: its pruned
weights re-enter at zero, with the optimizer state cleared at the round start. After ``rounds`` cycles the last
dense partition is pruned and the all-sparse model fine-tuned for ``finetune``. The schedule is
``sparsity.phases.cyclic_gap``; layers with a fixed density (``dense_layers``, ``layer_density``) belong to no
partition.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ConfigError, parse_interval
from ..sparsity.masks import random_masks
from ..sparsity.phases import GapStep, balanced_partitions, cyclic_gap
from ..sparsity.targets import match_layers
from .base import RunContext
from .masked import MaskedMethod


class GaP(MaskedMethod):
    name = "gap"
    table_name = "gap_steps"

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        checks = [
            (cfg.mode == "cyclic", "method.mode", "must be cyclic (parallel GaP is not built yet)",
             "method.mode=cyclic"),
            (cfg.scope == "layerwise", "method.scope", "must be layerwise (GaP prunes each layer to its target)",
             "method.scope=layerwise"),
            (cfg.rounds >= 1, "method.rounds", "must be a positive number of cycles", "method.rounds=2"),
            (len(cfg.partitions) != 1 and (cfg.partitions or cfg.num_partitions >= 2), "method.num_partitions",
             "must give at least 2 partitions", "method.num_partitions=3"),
        ]
        for ok, key, rule, example in checks:
            if not ok:
                raise ConfigError(f"{key}={getattr(cfg, key.split('.', 1)[1])!r} {rule}; e.g. {example}")
        self.finetune_time = parse_interval("method.finetune", cfg.finetune, allow_percent=True)
        self.k = len(cfg.partitions) or cfg.num_partitions
        self.rounds = self.k * cfg.rounds + 2

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.partitions = self._partitions()
        self.schedule: list[GapStep] = cyclic_gap(
            self.k, self.cfg.rounds, ctx.total_steps, self.finetune_time.steps(ctx.steps_per_epoch, ctx.total_steps))

    def _partitions(self) -> list[list[str]]:
        names = [name for name in self.targets.params if name not in self.targets.fixed]
        if not self.cfg.partitions:
            sizes = [self.targets.params[name].numel() for name in names]
            return [[names[i] for i in group] for group in balanced_partitions(sizes, self.k)]
        groups = [sorted({name for pattern in entry.split("|")
                          for name in match_layers(self.targets.params, pattern.strip(), "method.partitions")
                          if name not in self.targets.fixed}, key=names.index) for entry in self.cfg.partitions]
        counted = [name for group in groups for name in group]
        if sorted(counted) != sorted(names):
            twice = sorted({name for name in counted if counted.count(name) > 1})
            missing = [name for name in names if name not in counted]
            raise ConfigError(f"method.partitions must put every prunable layer in exactly one partition (in two: "
                              f"{twice[:3]}, in none: {missing[:3]}); e.g. method.partitions=['{names[0]}|"
                              f"{names[1] if len(names) > 1 else names[0]}','{names[-1]}']")
        return groups

    def round_steps(self, round_index: int) -> int:
        return self.schedule[round_index].length

    def dense_partition(self, round_index: int) -> int | None:
        """The partition that is dense during training ``round_index`` (None in the final fine-tuning)."""
        return self.schedule[round_index].grow

    @torch.no_grad()
    def start_round(self, round_index: int) -> None:
        step = self.schedule[round_index]
        if round_index == 0:
            masks = random_masks(self.targets.shapes, self.layer_zeros(self.sparsity), self.ctx.seed,
                                 self.ctx.device)
        else:  # every sparse layer keeps its mask (its active weights are its top count); the dense one is pruned
            masks = self.select(self.magnitude_scores(), self.sparsity)
        if step.grow is not None:
            masks.update({name: torch.ones_like(masks[name]) for name in self.partitions[step.grow]})
        self.set_masks(masks)
        self.ctx.log({"event": "gap_step", "pruned": step.prune, "grown": step.grow,
                      "sparsity": self.maskset.sparsity()})
