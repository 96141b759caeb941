"""``MaskedMethod``: the base of every method with masks.

It selects the prunable weights, keeps a ``MaskSet``, masks gradients before the optimizer step and weights after
it, turns the global ``sparsity`` into per-layer keep counts (``distribution`` and ``scope``), and stores the masks
in the method state. Optimizer state is zeroed at masked positions whenever the masks change (``set_masks``); it
stays zero between changes, since SGD, Adam and AdamW map a zero gradient on a zero weight with zero state to zero
(the property tests check it after every step), so no step needs to mask it again. Under the ``channel`` pattern,
layers whose output channels are tied (a residual addition) keep the same channels, and each pruned layer's bias
and the BatchNorm after it are masked on its removed channels like the weights (``sparsity/channels.py``), so
``sparsetrain-export --format shrunk`` can remove them.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

import torch

from ..errors import ConfigError
from ..sparsity.channels import coupled_channels, select_coupled
from ..sparsity.distribution import DISTRIBUTIONS, exact_zeros, layer_densities, zeros_per_layer
from ..sparsity.masks import MaskSet, check_masks, random_masks
from ..sparsity.patterns import PATTERNS, keep_count, misfit, select as pattern_select
from ..sparsity.saliency import keep_top
from ..sparsity.targets import Targets, select_targets
from .base import Method, RunContext

SCOPES = ("layerwise", "global")
MIN_ACTIVE = 10  # a layer left fewer active weights than this is warned about
STARVATION_FREE = (0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.5)  # the sparsities that warning may suggest
log = logging.getLogger(__name__)


class MaskedMethod(Method):
    patterns: tuple[str, ...] = PATTERNS  # the method.pattern names the method honours

    @classmethod
    def check(cls, cfg: Any, sparsity: float) -> None:
        super().check(cfg, sparsity)
        if cfg.distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"method.distribution={cfg.distribution!r} is not a distribution; choose one of: "
                f"{', '.join(DISTRIBUTIONS)} (e.g. method.distribution=erk)"
            )
        if cfg.erk_power < 0:
            raise ConfigError(f"method.erk_power={cfg.erk_power} must be >= 0 (the exponent of the ERK layer score; "
                              "0 gives uniform); e.g. method.erk_power=1.0")
        scope = getattr(cfg, "scope", "layerwise")
        if scope not in SCOPES:
            raise ConfigError(f"method.scope={scope!r} is not a scope; choose layerwise or global (e.g. method.scope=global)")
        _check_pattern(cls, cfg, sparsity)

    def __init__(self, cfg: Any, sparsity: float) -> None:
        super().__init__(cfg, sparsity)
        self.targets: Targets | None = None
        self.maskset: MaskSet | None = None
        self.model_prunable: list[str] = []  # model.prunable: the default selection when method.include is empty
        self.channel_groups: list[tuple[str, ...]] = []  # channel pattern: weights whose output channels are tied

    @classmethod
    def uses_sparsity(cls, cfg: Any) -> bool:
        """Whether the ``sparsity`` key sets this method's target (a zero target is then refused)."""
        return True

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        cfg = self.cfg
        dense = list(cfg.dense_layers)
        if cfg.distribution == "uniform" and getattr(cfg, "uniform_dense_first", False):
            dense.append("first")  # the RigL paper and code: uniform sparsity keeps the first layer dense
        self.model_prunable = list(ctx.config.get("model", {}).get("prunable") or [])
        include = list(cfg.include) or self.model_prunable
        self.targets = select_targets(ctx.model, dense, list(cfg.layer_density),
                                      modules=list(cfg.modules), include=include, exclude=list(cfg.exclude))
        self.maskset = MaskSet(self.targets.params, broadcast=self.data_parallel)
        self._refuse_misfits()
        if cfg.pattern.name == "channel":
            self._couple_channels()
        if self.sparsity > 0 and self.uses_sparsity(cfg) and getattr(cfg, "scope", "layerwise") == "layerwise":
            self._warn_starved_layers()
        if ctx.init_masks is not None:  # a sparse init_from source: its masks are the starting masks
            check_masks(ctx.init_masks, self.targets.params, "init_from")
            self.set_masks(ctx.init_masks)

    def _couple_channels(self) -> None:
        """The channel pattern: one selection per group of layers with tied output channels, and the biases and
        BatchNorms after the pruned layers masked on their channels (``sparsity/channels.py``)."""
        example = self.ctx.example
        if example is None:  # the Python API: an input of the shape it was given
            if not self.ctx.in_shape:
                raise ConfigError("method.pattern.name=channel traces the model to find the layers whose channels are "
                                  "tied, from one input; e.g. sparsify(..., in_shape=(3, 32, 32))")
            example = (torch.zeros(1, *self.ctx.in_shape, device=self.ctx.device),)
        inputs = example[0] if isinstance(example, (tuple, list)) else example
        coupling = coupled_channels(self.ctx.model, inputs, self.targets.params)
        self.channel_groups = coupling.groups
        self.maskset.follow(coupling.followers)

    # ---- the mask mechanics of every step --------------------------------------------------------------
    def before_optimizer_step(self, step: int) -> bool:
        self.maskset.mask_grads_()
        return True

    def after_optimizer_step(self, step: int) -> None:
        self.maskset.apply_()

    def is_plain_step(self, step: int) -> bool:
        return True  # the hooks above: the same in-place masking at every step

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Install new masks and zero the weights, gradients and optimizer state they remove."""
        self.maskset.set(masks)
        self.maskset.apply_(self.ctx.optimizer)
        self.maskset.mask_grads_()

    def _warn_starved_layers(self) -> None:
        """One warning line when the target leaves a layer fewer than ``MIN_ACTIVE`` active weights (a network that
        can hardly pass a signal), with the counts and a sparsity that leaves every layer enough."""
        starved = self._starved(self.sparsity)
        if starved:
            fits = next((s for s in STARVATION_FREE if s < self.sparsity and not self._starved(s)), None)
            shown = ", ".join(f"{name} {kept} of {numel}" for name, (kept, numel) in starved.items())
            log.warning("sparsity=%s leaves fewer than %d active weights in %s%s", self.sparsity, MIN_ACTIVE, shown,
                        f"; e.g. sparsity={fits}" if fits is not None else "")

    def _starved(self, sparsity: float) -> dict[str, tuple[int, int]]:
        """(active, numel) of the layers left fewer than ``MIN_ACTIVE`` active weights at ``sparsity``."""
        zeros = self.layer_zeros(sparsity)
        kept = {name: (param.numel() - zeros[name], param.numel()) for name, param in self.targets.params.items()}
        return {name: counts for name, counts in kept.items() if counts[0] < min(MIN_ACTIVE, counts[1])}

    def _refuse_misfits(self) -> None:
        """ConfigError (one line) naming the first target layer the pattern cannot take; with
        ``method.pattern.fallback=dense`` every such layer is kept dense instead (outside the budget) and listed."""
        pattern, last = self.cfg.pattern, list(self.targets.params)[-1]
        kept_dense = []
        for name, shape in self.targets.shapes.items():
            if self.targets.fixed.get(name) == 1.0:
                continue  # kept dense
            why = misfit(pattern, shape)
            if pattern.name == "channel" and name == last and shape[0] == self.ctx.num_classes:
                why = "its outputs are the model's classes"
            if why and pattern.fallback == "dense":
                self.targets.fixed[name] = 1.0
                kept_dense.append(f"{name} ({why})")
            elif why:
                raise ConfigError(f"method.pattern.name={pattern.name} cannot take layer {name}: {why}; keep it "
                                  f"dense, e.g. method.dense_layers=[{name}] or method.pattern.fallback=dense")
        if kept_dense:
            log.info("method.pattern.fallback=dense keeps %s dense", "; ".join(kept_dense))

    # ---- from a sparsity to masks ------------------------------------------------------------------------
    def layer_zeros(self, sparsity: float) -> dict[str, int]:
        """Exact zeros per layer at global ``sparsity`` under the configured distribution and fixed densities,
        each layer's kept count rounded to what the pattern keeps together (``nm``: n/m of every layer not kept
        dense, whatever the distribution)."""
        shapes = self.targets.shapes
        densities = layer_densities(shapes, sparsity, self.cfg.distribution, fixed=self.targets.fixed,
                                    erk_power=self.cfg.erk_power)
        zeros = zeros_per_layer(shapes, densities)
        numel = {name: math.prod(shape) for name, shape in shapes.items()}
        dense = {name for name, density in self.targets.fixed.items() if density == 1.0}
        return {name: zeros[name] if name in dense else
                numel[name] - keep_count(self.cfg.pattern, shapes[name], numel[name] - zeros[name]) for name in shapes}

    def draw_random_masks(self, sparsity: float, seed: int) -> dict[str, torch.Tensor]:
        """Random masks with the exact per-layer counts of ``layer_zeros``, in the pattern."""
        if self.cfg.pattern.name == "unstructured":
            return random_masks(self.targets.shapes, self.layer_zeros(sparsity), seed, self.ctx.device)
        generator = torch.Generator().manual_seed(seed)
        scores = {name: torch.rand(shape, generator=generator) for name, shape in self.targets.shapes.items()}
        return {name: mask.to(self.ctx.device) for name, mask in self.select(scores, sparsity).items()}

    def select(self, scores: dict[str, torch.Tensor], sparsity: float, checked: bool = True) -> dict[str, torch.Tensor]:
        """Masks keeping the highest ``scores`` at ``sparsity``: per layer (``scope=layerwise``, counts from the
        distribution) or with one global ranking over the budgeted layers (``scope=global``); layers with a
        fixed density always keep their own count. ``checked=False``: device work only (``keep_top``)."""
        numel = {name: p.numel() for name, p in self.targets.params.items()}
        zeros = self.layer_zeros(sparsity)
        keep = {name: numel[name] - zeros[name] for name in numel}
        if self.cfg.pattern.name != "unstructured":  # per layer (an nm layer keeps n/m of itself in any scope)
            return self.pattern_masks(scores, keep)
        if self.cfg.scope == "layerwise":
            return keep_top(scores, keep, checked)
        budgeted = self.targets.budgeted
        total = sum(numel[name] for name in budgeted)
        masks = keep_top({name: scores[name] for name in budgeted}, total - exact_zeros(total, 1.0 - sparsity), checked)
        fixed = {name: scores[name] for name in self.targets.fixed}
        return {**masks, **keep_top(fixed, {name: keep[name] for name in fixed}, checked)} if fixed else masks

    def pattern_masks(self, scores: dict[str, torch.Tensor], keep: dict[str, int]) -> dict[str, torch.Tensor]:
        """Each layer's highest ``scores`` in the pattern, its ``keep`` rounded to whole groups (a layer kept whole
        stays dense); under ``channel``, layers with tied output channels keep the same ones (``select_coupled``)."""
        pattern, shapes = self.cfg.pattern, self.targets.shapes
        coupled = select_coupled(scores, keep, self.channel_groups) if self.channel_groups else {}
        return {name: coupled[name] if name in coupled else
                pattern_select(pattern, score, keep[name] if keep[name] == score.numel()
                               else keep_count(pattern, shapes[name], keep[name]))
                for name, score in scores.items()}

    def prune(self, scores: dict[str, torch.Tensor], sparsity: float) -> None:
        """Keep the highest ``scores`` at ``sparsity`` (see ``select``)."""
        self.install(self.select(scores, sparsity), sparsity)

    def install(self, masks: dict[str, torch.Tensor], target_sparsity: float) -> None:
        """Set pruned masks and log the event with the target and the realised sparsity."""
        self.set_masks(masks)
        self.ctx.log({"event": "prune", "target_sparsity": target_sparsity, "sparsity": self.maskset.sparsity()})

    def magnitude_scores(self) -> dict[str, torch.Tensor]:
        """|w| of active weights; masked weights score -inf, so pruning never revives them."""
        return {
            name: torch.where(mask, param.detach().abs(), float("-inf"))
            for (name, param), mask in zip(self.targets.params.items(), self.maskset.masks.values())
        }

    def masks(self) -> dict[str, torch.Tensor] | None:
        return self.maskset.masks

    def densities(self) -> dict[str, float] | None:
        return self.maskset.densities()

    def fixed_layers(self) -> dict[str, float]:
        return self.targets.fixed

    def state_dict(self) -> dict:
        return {"masks": self.maskset.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.maskset.load_state_dict(state["masks"])


def _check_pattern(method: type[MaskedMethod], cfg: Any, sparsity: float) -> None:
    """One-line ConfigErrors for a pattern the method cannot take or whose settings conflict."""
    pattern = cfg.pattern
    if pattern.name not in PATTERNS:
        raise ConfigError(f"method.pattern.name={pattern.name!r} is not a pattern; choose one of: {', '.join(PATTERNS)} "
                          "(e.g. method.pattern.name=nm)")
    if pattern.name not in method.patterns:
        raise ConfigError(f"method={method.name} cannot take method.pattern.name={pattern.name} (it takes "
                          f"{', '.join(method.patterns)}); e.g. method=static method.pattern.name={pattern.name}")
    if pattern.name == "nm":
        if not 0 < pattern.n < pattern.m:
            raise ConfigError(f"method.pattern.n={pattern.n} must be in [1, method.pattern.m={pattern.m}); e.g. "
                              "method.pattern.n=2 method.pattern.m=4")
        nm_sparsity, optional = 1 - pattern.n / pattern.m, not method.uses_sparsity(cfg)  # optional: 0 is fine too
        if abs(sparsity - nm_sparsity) > 1e-9 and not (optional and sparsity == 0.0):
            raise ConfigError(f"sparsity={sparsity} conflicts with method.pattern.name=nm, which keeps {pattern.n} of "
                              f"every {pattern.m} weights; e.g. sparsity={nm_sparsity:g}"
                              + (" (or leave it 0)" if optional else ""))
    if pattern.name == "block" and (len(pattern.block) != 2 or min(pattern.block) < 1):
        raise ConfigError(f"method.pattern.block={list(pattern.block)} must be two positive sizes (outputs, inputs); "
                          "e.g. method.pattern.block=[4,4]")
    if pattern.fallback not in ("refuse", "dense"):
        raise ConfigError(f"method.pattern.fallback={pattern.fallback!r} must be refuse or dense; e.g. "
                          "method.pattern.fallback=dense")
    if pattern.name == "channel" and importlib.util.find_spec("torch_pruning") is None:
        raise ConfigError("method.pattern.name=channel needs Torch-Pruning to find the layers whose channels are tied "
                          "(pip install 'sparsetrain[export]'); or e.g. method.pattern.name=fanin")
    if pattern.name in ("block", "fanin", "channel") and getattr(cfg, "scope", "layerwise") == "global":
        raise ConfigError(f"method.pattern.name={pattern.name} counts per layer, so method.scope=global cannot rank "
                          "across layers; e.g. method.scope=layerwise")
