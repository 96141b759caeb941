"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin, ICLR 2019; Frankle et al.
2019/2020), all levels in one run.

Round 0 trains the dense network from theta_0 (saving theta_k at ``rewind_to``). After each round, the
``prune_rate`` of each layer's surviving weights with the smallest magnitude is removed (per-layer overrides
in ``layer_rates``, e.g. the output layer at half rate; or one global ranking with ``scope=global``); then
``rewind=weights`` resets the survivors to theta_k and trains from step k (the same learning rate schedule and
data order as the dense run), ``rewind=lr`` keeps the trained weights and replays the schedule from k
(learning-rate rewinding), ``rewind=finetune`` keeps them and trains at the schedule's last-epoch rate.

Controls, from a finished lottery run (``masks_from``), as OpenLTH's branches: ``random_reinit`` trains each
level's mask from a fresh initialisation, ``random_mask`` trains random masks with each level's per-layer counts
from that run's theta_k; both train every pruned level from the ticket run's start step k. A control must train
as its ticket run did (``CONTROL_KEYS``), or it is refused.

Papers: https://arxiv.org/abs/1803.03635, https://arxiv.org/abs/1912.05671; the authors' code:
https://github.com/facebookresearch/open_lth.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..times import parse_interval
from ..runs.checkpoint import load_checkpoint
from ..runs.files import checkpoint_path
from ..runs.record import flatten, read_run_record
from ..sparsity.dst import drop_count
from ..sparsity.masks import load_checked_masks, random_masks
from ..sparsity.saliency import keep_top
from ..sparsity.targets import match_layers, parse_layer_value
from .base import RunContext
from .masked import MaskedMethod

REWINDS = ("weights", "lr", "finetune")
# what a control must share with its ticket run: the training length, batch, optimizer, schedule and rewind point
CONTROL_KEYS = ("steps", "epochs", "batch_size", "optimizer", "schedule", "method.rewind_to", "method.rewind")
CONTROLS = ("none", "random_reinit", "random_mask")


DEFAULT_LEVELS = 7  # without `sparsity`
MAX_LEVELS = 200  # the most levels `sparsity` may take


class LTH(MaskedMethod):
    name = "lth"
    patterns = ("unstructured", "block", "fanin", "channel")  # nm fixes the density: no levels to prune through
    table_name = "lottery"
    round_keys = ("method.levels", "method.rewind_to")  # levels + 1 rounds; later ones start at the rewind point

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        return False  # method.levels and method.prune_rate set the sparsity of each round (or `sparsity` the levels)

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        checks = [
            (sparsity == 0.0 or cfg.levels is None, "sparsity", f"={sparsity} and method.levels={cfg.levels} both set "
             "the last level of method=lth; give one, the levels to reach a sparsity or the number of levels",
             f"sparsity={sparsity} method.levels=null"),
            (cfg.levels is None or cfg.levels >= 1, "method.levels", f"={cfg.levels} must be >= 1", "method.levels=7"),
            (0.0 < cfg.prune_rate < 1.0, "method.prune_rate", f"={cfg.prune_rate} must be in (0, 1)",
             "method.prune_rate=0.2"),
            (cfg.rewind in REWINDS, "method.rewind", f"={cfg.rewind!r} must be one of {', '.join(REWINDS)}",
             "method.rewind=weights"),
            (cfg.control in CONTROLS, "method.control", f"={cfg.control!r} must be one of {', '.join(CONTROLS)}",
             "method.control=random_reinit"),
            (cfg.control == "none" or cfg.masks_from, "method.masks_from", " is needed by a control",
             "method.masks_from=<a finished lottery run>"),
            (cfg.control != "random_mask" or cfg.pattern.name == "unstructured", "method.control",
             "=random_mask draws positions without a pattern", "method.control=random_reinit"),
        ]
        for ok, key, rule, example in checks:
            if not ok:
                raise ConfigError(f"{key}{rule}; e.g. {example}")
        parse_interval("method.rewind_to", cfg.rewind_to)
        if cfg.control != "none":
            _round_masks(cfg.masks_from)

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.rewind_time = parse_interval("method.rewind_to", cfg.rewind_to)
        self.source_masks = _round_masks(cfg.masks_from) if cfg.control != "none" else []
        self.source_dir = Path(cfg.masks_from).expanduser() if self.source_masks else None
        self.levels = cfg.levels if cfg.levels is not None else DEFAULT_LEVELS if not sparsity else \
            math.ceil(math.log(1 - sparsity) / math.log(1 - cfg.prune_rate) - 1e-9)  # refined in setup
        self.rounds = len(self.source_masks) if self.source_masks else self.levels + 1
        self.round = 0
        self.theta_k: dict[str, torch.Tensor] | None = None

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return "method.levels: every round of method=lth trains for the run's length"

    @classmethod
    def check_config(cls, cfg: Any, config: dict) -> None:
        if cfg.control != "none":
            source_dir = Path(cfg.masks_from).expanduser()
            _refuse_other_training(read_run_record(source_dir)["config"], config, cfg.masks_from)

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.rewind_step = self.rewind_time.steps(ctx.steps_per_epoch, ctx.total_steps)
        if self.rewind_step >= ctx.total_steps:
            raise ConfigError(f"method.rewind_to={self.cfg.rewind_to} is not before the end of training "
                              f"({ctx.total_steps} steps); e.g. method.rewind_to=500it")
        self.layer_rates: dict[str, float] = {}
        for entry in self.cfg.layer_rates:
            pattern, rate = parse_layer_value(entry, "method.layer_rates", "method.layer_rates=[last:0.1]")
            self.layer_rates.update(dict.fromkeys(match_layers(self.targets.params, pattern, "method.layer_rates"), rate))
        for name, density in self.targets.fixed.items():  # method.dense_layers stay dense; a fixed density has no rate
            if density < 1.0:
                raise ConfigError(f"method=lth prunes every layer by a rate per level, so it cannot hold {name} at "
                                  f"the fixed density {density}; give the layer its own rate, e.g. "
                                  f"method.layer_rates=[{name}:0.1]")
            self.layer_rates.setdefault(name, 0.0)
        if self.cfg.control == "none":
            if self.sparsity:
                self._levels_to_reach_the_sparsity()
            self._refuse_levels_past_the_ladder()

    def _ladder(self, levels: int) -> list[float]:
        counts = {name: param.numel() for name, param in self.targets.params.items()}
        own = list(counts) if self.cfg.scope == "layerwise" else list(self.layer_rates)
        return weights_remaining(counts, own, self.layer_rates, self.cfg.prune_rate, levels)

    def _levels_to_reach_the_sparsity(self) -> None:
        """With ``sparsity``: the first level whose weights remaining are at most 1 - sparsity (per-layer rates and
        floor rounding counted); ConfigError when the rates never reach it."""
        ladder = self._ladder(MAX_LEVELS)
        reached = [level for level, fraction in enumerate(ladder) if 1.0 - fraction >= self.sparsity - 1e-9]
        if not reached:
            raise ConfigError(f"sparsity={self.sparsity} is beyond what method.prune_rate={self.cfg.prune_rate} can "
                              f"prune from this model ({100 * (1 - ladder[-1]):.3g} % at its last level); e.g. "
                              f"sparsity={0.9 if self.sparsity > 0.9 else 0.5}")
        self.levels = reached[0]
        self.rounds = self.levels + 1

    def _refuse_levels_past_the_ladder(self) -> None:
        """ConfigError when ``levels`` goes past the last level that prunes anything: each layer drops
        floor(rate x surviving) weights, so a small enough layer (or pool) stops shrinking."""
        ladder = self._ladder(self.levels)
        if len(ladder) <= self.levels:
            shown = ", ".join(f"{100 * fraction:.3g} %" for fraction in ladder)
            raise ConfigError(f"method.levels={self.levels} goes past what method.prune_rate="
                              f"{self.cfg.prune_rate} can prune from this model: level {len(ladder) - 1} is the last "
                              f"that removes a weight (weights remaining by level: {shown}); "
                              f"e.g. method.levels={len(ladder) - 1}")

    # ---- rounds ------------------------------------------------------------------------------------------
    def round_start_step(self, round_index: int) -> int:
        rewound = round_index > 0 and self.cfg.rewind != "finetune"
        return self.rewind_step if rewound else 0

    def start_round(self, round_index: int) -> None:
        self.round = round_index
        if self.cfg.control != "none":
            self._start_control_round(round_index)
        elif round_index == 0 and self.rewind_step == 0:
            self.theta_k = self._snapshot()

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        if self._snapshot_due(step):
            self.theta_k = self._snapshot()

    def is_plain_step(self, step: int) -> bool:
        return not self._snapshot_due(step)

    def _snapshot_due(self, step: int) -> bool:
        return self.round == 0 and self.theta_k is None and step + 1 == self.rewind_step

    def end_round(self, round_index: int) -> None:
        if self.cfg.control != "none" or round_index == self.rounds - 1:
            return
        self.set_masks(self._pruned_masks())
        if self.cfg.rewind == "weights":
            self.ctx.model.load_state_dict(self.theta_k)
            self.maskset.apply_()
        self.ctx.log({"event": "prune", "sparsity": self.maskset.sparsity()})

    def schedule_factor(self, round_index: int, step: int, factor: float) -> float:
        if round_index > 0 and self.cfg.rewind == "finetune":
            return self.finetune_factor()
        return factor

    # ---- pruning -----------------------------------------------------------------------------------------
    def _pruned_masks(self) -> dict[str, torch.Tensor]:
        """Remove ``prune_rate`` (or the layer's rate) of the surviving weights by magnitude; masks stay nested."""
        counts, scores = self.maskset.counts(), self.magnitude_scores()
        rates = {name: self.layer_rates.get(name, self.cfg.prune_rate) for name in counts}
        own = list(counts) if self.cfg.scope == "layerwise" else list(self.layer_rates)
        keep = {n: counts[n] - drop_count(counts[n], rates[n], "floor") for n in own}
        if self.cfg.pattern.name != "unstructured":  # whole groups (scope=layerwise)
            return self.pattern_masks({n: scores[n] for n in own}, keep)
        masks = keep_top({n: scores[n] for n in own}, keep) if own else {}
        pooled = [name for name in counts if name not in own]
        if pooled:
            active = sum(counts[name] for name in pooled)
            keep = active - drop_count(active, self.cfg.prune_rate, "floor")
            masks.update(keep_top({name: scores[name] for name in pooled}, keep))
        return masks

    def _start_control_round(self, round_index: int) -> None:
        masks = load_checked_masks(self.source_masks[round_index], self.targets.params, "method.masks_from")
        if self.cfg.control == "random_mask":  # the ticket run's theta_k, random positions with the level's counts
            zeros = {name: int((~mask).sum()) for name, mask in masks.items()}
            masks = random_masks(self.targets.shapes, zeros, self.ctx.seed + round_index, self.ctx.device)
            ticket = load_checkpoint(checkpoint_path(self.source_dir), self.ctx.device)
            self.ctx.model.load_state_dict(ticket["method"]["theta_k"])
        else:  # the level's mask, a new initialisation for every level
            self.ctx.model.load_state_dict(self.ctx.fresh_weights(self.ctx.seed + 1_000_003 * (round_index + 1)))
        self.set_masks(masks)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in self.ctx.model.state_dict().items()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "round": self.round, "theta_k": self.theta_k or {}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.round = state["round"]
        self.theta_k = state["theta_k"] or None


def _refuse_other_training(source: dict, current: dict, masks_from: str) -> None:
    """ConfigError naming the keys in which a control's training differs from its ticket run's."""
    old, new = flatten(source), flatten(current)
    keys = sorted(k for k in old.keys() | new.keys()
                  if any(k == key or k.startswith(key + ".") for key in CONTROL_KEYS) and old.get(k) != new.get(k))
    if keys:
        shown = ", ".join(f"{k}={new.get(k)!r} (ticket run: {old.get(k)!r})" for k in keys)
        example = " ".join(f"{k}={old.get(k)}" for k in keys[:2])
        raise ConfigError(f"method.masks_from={masks_from!r} was trained differently: {shown}; a control trains as "
                          f"its ticket run, e.g. {example}")


def weights_remaining(counts: dict[str, int], own: list[str], layer_rates: dict[str, float], prune_rate: float,
                      levels: int) -> list[float]:
    """The fraction of prunable weights left at level 0, 1, ... (up to ``levels``) as ``_pruned_masks`` prunes:
    layers in ``own`` by their own count, the others as one pool; it ends early at a level that removes nothing."""
    own_counts = {name: counts[name] for name in own}
    pooled = sum(count for name, count in counts.items() if name not in own_counts)
    total = sum(counts.values())
    ladder = [1.0]
    while len(ladder) <= levels:
        pruned = {name: count - drop_count(count, layer_rates.get(name, prune_rate), "floor")
                  for name, count in own_counts.items()}
        pool = pooled - drop_count(pooled, prune_rate, "floor")
        if pruned == own_counts and pool == pooled:
            break
        own_counts, pooled = pruned, pool
        ladder.append((sum(own_counts.values()) + pooled) / total)
    return ladder


def _round_masks(text: str) -> list[Path]:
    """The per-round masks of a finished lottery run, in round order."""
    run_dir = Path(text).expanduser()
    files = sorted(run_dir.glob("round_*/masks.safetensors"))
    if not (run_dir / "summary.json").is_file() or not files:
        raise ConfigError(f"method.masks_from={text!r} is not a finished lottery run (round_XX/masks.safetensors "
                          "and summary.json); e.g. method.masks_from=outputs/2026-11-25/14-03-11")
    return files
