"""``DynamicMethod``: dynamic sparse training. A random initial mask with exact per-layer counts from the
distribution, then every ``delta_t`` steps (or at each epoch end) until ``t_end`` of training: drop the
smallest active weights and grow as many connections by the method's grow score (``sparsity/dst.py``; under
``method.pattern.name=nm`` or ``fanin`` every group grows back what it lost, so each keeps its count).
No update follows the round's last optimizer step (the evaluated and saved model is the trained one), and an
epoch-end update runs after that epoch's evaluation, as in the references. ``first_update`` sets the phase of
step-scheduled updates: ``start`` (at step 0, then every ``delta_t``: RigL's TF code starts ``last_update`` at
-delta_t) or ``after_delta_t`` (after every ``delta_t`` optimizer steps: sparse_learning and ITOP increment
their step counter before testing it).

Every semantic choice is a config value (see ``schemas.DynamicConfig`` and its subclasses). The in-time over-parameterisation
rate R_s (fraction of prunable weights ever active; Liu et al. 2021) and the churn are logged at every update.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError
from ..seeds import derive_seed
from ..sparsity.dst import drop_count, drop_fraction, drop_grow
from ..sparsity.flat import FlatLayout
from ..sparsity.patterns import tile_sums, untile
from .base import MaskUpdates, RunContext
from .masked import MaskedMethod

DECAYS = ("cosine", "linear", "constant")
FIRST_UPDATES = ("start", "after_delta_t")


class DynamicMethod(MaskedMethod):
    patterns = ("unstructured", "nm", "fanin", "block")  # nm / fanin: growth refills every group (sparsity/dst.py);
    # block: drop and grow whole tiles, scored by their sums
    scores_need_gradient = True  # grow scores read the step's dense gradient: taken before it is masked

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        checks = [
            (cfg.delta_t >= 1, "method.delta_t", "must be a positive number of steps", "method.delta_t=100"),
            (0.0 < cfg.alpha <= 1.0, "method.alpha", "must be in (0, 1]", "method.alpha=0.3"),
            (0.0 <= cfg.alpha_min <= cfg.alpha, "method.alpha_min", "must be in [0, method.alpha]",
             "method.alpha_min=0"),
            (cfg.decay in DECAYS, "method.decay", "must be cosine, linear or constant", "method.decay=cosine"),
            (0.0 < cfg.t_end <= 1.0, "method.t_end", "must be a fraction of training in (0, 1]", "method.t_end=0.75"),
            (cfg.grow_init == "zeros", "method.grow_init", "must be zeros (new connections start at 0)",
             "method.grow_init=zeros"),
            (cfg.update_at in ("step", "epoch_end"), "method.update_at", "must be step or epoch_end",
             "method.update_at=step"),
            (cfg.drop_rounding in ("floor", "ceil"), "method.drop_rounding", "must be floor or ceil",
             "method.drop_rounding=floor"),
            (cfg.tie_noise >= 0.0, "method.tie_noise", "must be >= 0 (0: ties broken by position)",
             "method.tie_noise=1e-5"),
            (cfg.first_update in FIRST_UPDATES, "method.first_update", "must be start or after_delta_t",
             "method.first_update=start"),
        ]
        for ok, key, rule, example in checks:
            if not ok:
                raise ConfigError(f"{key}={getattr(cfg, key.split('.', 1)[1])!r} {rule}; e.g. {example}")

    @classmethod
    def length_bound(cls, cfg: Any) -> str | None:
        return (f"method.t_end={cfg.t_end} is a fraction of the run's length (the updates and their drop fraction "
                "follow it, and no update follows the last step)")

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.updates = 0
        self.pending: tuple[int, dict[str, torch.Tensor] | None] | None = None  # a due update: (step, scores)

    # ---- what the siblings differ in ----------------------------------------------------------------------
    def grow_scores(self, step: int) -> dict[str, torch.Tensor]:
        """Score of every position; the highest non-kept ones are grown. Called before gradients are masked."""
        raise NotImplementedError

    def drop_counts(self, counts: dict[str, int], fraction: float) -> dict[str, int]:
        """Connections to drop per taking-part layer; by default every layer not full drops ``fraction``."""
        numel = {name: mask.numel() for name, mask in self.maskset.masks.items()}
        return {name: drop_count(count, fraction, self.cfg.drop_rounding)
                for name, count in counts.items() if count < numel[name]}

    def grow_counts(self, drops: dict[str, int], kept: dict[str, int]) -> dict[str, int]:
        """Connections to grow per layer; by default exactly what each layer dropped."""
        return drops

    def group_targets(self, scores: dict[str, torch.Tensor], counts: dict[str, int],
                      drops: dict[str, int]) -> list[torch.Tensor | None] | None:
        """Per layer, a new count for every group of the pattern (None: each group keeps its count, the default)."""
        return None

    def observe(self, step: int) -> None:
        """Every step, before gradients are masked (SNFS accumulates its momentum of the dense gradient)."""

    # ---- hooks ----------------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        frozen = [name for name, param in self.targets.params.items() if not param.requires_grad]
        if frozen:  # drop and growth move every prunable weight; a frozen one would stay at zero once regrown
            raise ConfigError(f"method={self.name} trains every prunable weight, but finetune.trainable freezes "
                              f"{frozen[0]!r}; e.g. method.exclude=[{frozen[0]}] or method=static")
        self.end_step = round(self.cfg.t_end * ctx.total_steps)
        self.layout = FlatLayout(list(self.targets.params.values()))
        if self.cfg.pattern.name == "block":  # the tiles of every layer, one entry each
            tiles = [tile_sums(self.cfg.pattern, param.detach()) for param in self.targets.params.values()]
            self.tile_layout = FlatLayout(tiles)
        self.fired = torch.zeros(self.layout.numel, dtype=torch.bool, device=ctx.device)
        self.generator = torch.Generator(device=ctx.device)  # re-seeded for every draw: stateless randomness

    def start_round(self, round_index: int) -> None:
        if self.ctx.init_masks is None:  # else: a sparse init_from source's masks, installed at setup
            self.set_masks(self.draw_random_masks(self.sparsity, self.ctx.seed))
        self.fired = self.layout.flat(list(self.maskset.masks.values()))  # flat: every position ever active

    def is_update_step(self, step: int) -> bool:
        """Whether step ``step`` (0-based) is followed by a mask update: on schedule, not after ``t_end``, and
        never after the round's last optimizer step."""
        if step > self.end_step or step >= self.ctx.total_steps - 1:
            return False
        if self.cfg.update_at == "epoch_end":
            return (step + 1) % self.ctx.steps_per_epoch == 0
        if self.cfg.first_update == "after_delta_t":
            return (step + 1) % self.cfg.delta_t == 0
        return step % self.cfg.delta_t == 0

    def mask_updates(self) -> MaskUpdates:
        cfg, total = self.cfg, self.ctx.total_steps
        if cfg.update_at == "epoch_end":
            first, every = self.ctx.steps_per_epoch - 1, self.ctx.steps_per_epoch
            schedule = f"they come at the end of every epoch but the last (method.update_at={cfg.update_at})"
            other = f"method.update_at=step method.delta_t={max(total // 10, 1)}"
        else:
            first, every = (0 if cfg.first_update == "start" else cfg.delta_t - 1), cfg.delta_t
            schedule = (f"its first is after step {first + 1} (method.delta_t={cfg.delta_t}, "
                        f"method.first_update={cfg.first_update})")
            other = f"method.delta_t={max(total // 10, 1)}"
        if cfg.t_end < 1.0:
            schedule += f", none after method.t_end={cfg.t_end} of training"
        needed = max(first + 2, math.ceil(first / cfg.t_end))  # a length with first <= end_step < total - 1
        at = [step + 1 for step in range(first, total, every) if self.is_update_step(step)]
        return MaskUpdates(at, schedule, f"{other}, or {self.ctx.length_override(needed)}")

    def before_optimizer_step(self, step: int) -> bool:
        due = self.is_update_step(step)
        self.observe(step)
        scores = self.grow_scores(step) if due and self.scores_need_gradient else None
        self.mask_gradients()
        if not due:
            return True
        if self.cfg.update_at == "step" and self.cfg.skip_step_on_update:
            self.update(step, scores if scores is not None else self.grow_scores(step))
            return False
        self.pending = (step, scores)
        return not self.cfg.skip_step_on_update

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        if self.pending is not None and self.cfg.update_at == "step":
            self.run_pending()

    def on_epoch_end(self, epoch: int) -> None:
        """An epoch-end update, after the trainer evaluated the epoch."""
        if self.pending is not None:
            self.run_pending()

    def run_pending(self) -> None:
        step, scores = self.pending
        self.pending = None
        self.update(step, scores if scores is not None else self.grow_scores(step))

    def mask_gradients(self) -> None:
        """Zero the gradients of pruned weights before the optimizer step."""
        self.maskset.mask_grads_()

    def is_plain_step(self, step: int) -> bool:
        return not self.is_update_step(step)

    def may_stop(self, steps_done: int) -> bool:
        return self.pending is None and steps_done > self.end_step  # the mask is fixed after t_end

    def dense_backward(self, step: int) -> bool:
        return self.is_update_step(step)

    # ---- the update -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, step: int, scores: dict[str, torch.Tensor]) -> None:
        fraction = drop_fraction(step, alpha=self.cfg.alpha, alpha_min=self.cfg.alpha_min, decay=self.cfg.decay,
                                 end_step=self.end_step)
        counts, masks = self.maskset.counts(), self.maskset.masks
        drops = self.whole_tiles(self.drop_counts(counts, fraction))
        if not drops:
            return
        layers = list(drops)
        grows = self.grow_counts(drops, {name: counts[name] - drops[name] for name in layers})
        params = self.targets.params
        targets = self.group_targets(scores, counts, drops)
        drop_list, grow_list = [drops.get(name, 0) for name in masks], [grows.get(name, 0) for name in masks]
        if self.cfg.pattern.name == "block":
            new_flat, fresh = self.drop_grow_tiles(step, drop_list, grow_list, scores)
        else:
            new_flat, fresh = drop_grow(self.layout, list(params.values()), list(masks.values()), drop_list, grow_list,
                                        [scores[name] for name in masks], self.drop_noise(step), self.cfg.pattern,
                                        targets)
        self.fired |= new_flat
        moved = targets is not None  # the layers' counts moved: read them back
        self.maskset.set(dict(zip(masks, self.layout.views(new_flat))), counts=None if moved else
                         {**counts, **{n: counts[n] - drops[n] + grows[n] for n in layers}})
        if moved:  # growth: what the new counts hold beyond the kept weights
            grows = {n: self.maskset.counts()[n] - counts[n] + drops[n] for n in layers}
        self.maskset.apply_(self.ctx.optimizer if self.cfg.reset_momentum else None)
        self.maskset.mask_grads_()
        self.updates += 1
        new_total, fired_total = torch.stack([fresh.sum(), self.fired.sum()]).tolist()
        self.ctx.log({"event": "mask_update", "drop_fraction": fraction, "dropped": sum(drops.values()),
                      "grown": sum(grows.values()), "churn": new_total / sum(counts.values()),
                      "itop_rate": fired_total / self.maskset.numel})

    def whole_tiles(self, drops: dict[str, int]) -> dict[str, int]:
        """Under ``block``, each layer's drop as whole tiles (rounded as ``drop_rounding``); else ``drops``."""
        if self.cfg.pattern.name != "block":
            return drops
        area = self.cfg.pattern.block[0] * self.cfg.pattern.block[1]
        rounded = (lambda n: -(-n // area)) if self.cfg.drop_rounding == "ceil" else (lambda n: n // area)
        return {name: rounded(count) * area for name, count in drops.items()}

    def drop_grow_tiles(self, step: int, drops: list[int], grows: list[int],
                        scores: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``drop_grow`` over whole tiles: a tile's magnitude and grow score are the sums over its weights; the new
        masks (and the new connections) back at the weights, flat in the layout's order."""
        pattern, masks = self.cfg.pattern, self.maskset.masks
        area = pattern.block[0] * pattern.block[1]
        tiles = [tile_sums(pattern, mask) > 0 for mask in masks.values()]
        magnitudes = [tile_sums(pattern, param.detach().abs()) for param in self.targets.params.values()]
        grow = [tile_sums(pattern, scores[name].float()) for name in masks]
        new, fresh = drop_grow(self.tile_layout, magnitudes, tiles, [n // area for n in drops],
                               [n // area for n in grows], grow, self.drop_noise(step, self.tile_layout.numel))
        shapes = [mask.shape for mask in masks.values()]
        return tuple(self.layout.flat([untile(pattern, view, shape) for view, shape
                                       in zip(self.tile_layout.views(flat), shapes)]) for flat in (new, fresh))

    def drop_noise(self, step: int, numel: int | None = None) -> torch.Tensor | None:
        """N(0, tie_noise) for every position (``numel`` of them; default: the layout's), flat in the layout's order
        (None when tie_noise is 0): one draw, a function of (seed, step)."""
        if not self.cfg.tie_noise:
            return None
        self.generator.manual_seed(derive_seed("drop-noise", self.ctx.seed, step))
        flat = torch.empty(numel or self.layout.numel, device=self.ctx.device)
        return flat.normal_(0.0, self.cfg.tie_noise, generator=self.generator)

    def random_scores(self, step: int) -> dict[str, torch.Tensor]:
        """Uniform random grow scores (SET) for every layer, one draw: a function of (seed, step)."""
        self.generator.manual_seed(derive_seed("grow", self.ctx.seed, step))
        flat = torch.rand(self.layout.numel, generator=self.generator, device=self.ctx.device)
        return dict(zip(self.targets.params, self.layout.views(flat)))

    def fired_masks(self) -> dict[str, torch.Tensor]:
        """Per layer, the positions ever active (views of the flat ``fired``)."""
        return dict(zip(self.maskset.masks, self.layout.views(self.fired)))

    def summary(self) -> dict:
        """The number of updates and the final ITOP rate R_s, global and per layer."""
        fired = self.fired_masks()
        counts = dict(zip(fired, torch.stack([m.sum() for m in fired.values()]).tolist()))
        return {
            "mask_updates": self.updates,
            "itop_rate": sum(counts.values()) / self.maskset.numel,
            "itop_rate_layers": {name: count / fired[name].numel() for name, count in counts.items()},
        }

    def state_dict(self) -> dict:
        fired = {name: view.clone() for name, view in self.fired_masks().items()}
        return {**super().state_dict(), "fired": fired, "updates": self.updates, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, view in self.fired_masks().items():
            view.copy_(state["fired"][name])
        self.updates = state["updates"]
        self.pending = state["pending"]


def gradient_scores(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """|dense gradient of the current batch| (RigL); the weights' gradients are not yet masked here."""
    return dict(zip(params, torch._foreach_abs([p.grad for p in params.values()])))

