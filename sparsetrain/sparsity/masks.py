"""``MaskSet``: boolean masks by parameter name, applied in place to weights, gradients and optimizer state.

No forward hooks or parametrisations: the weights are plain dense parameters with zeros stored, so
checkpoints are sparse by construction and a method reading ``weight.grad`` sees the dense gradient.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..errors import ConfigError
from ..runs.distributed import broadcast_masks
from ..runs.files import atomic_write
from ..seeds import derive_seed


class MaskSet:
    """Masks (bool tensors on the parameters' device) for a fixed set of named parameters."""

    def __init__(self, params: dict[str, nn.Parameter], broadcast: bool = True) -> None:
        self.params = params
        self.broadcast = broadcast  # under torchrun, rank 0's masks replace every rank's at each change
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
        self._param_list = list(params.values())
        self._mask_list = list(self.masks.values())
        # the masks in the parameters' dtype: multiplying by them is several times faster than by bools
        self._factors = [torch.ones_like(p) for p in self._param_list]
        self.numel = sum(m.numel() for m in self._mask_list)
        self._counts: dict[str, int] | None = None
        self._densities: dict[str, float] | None = None
        self._sources: list[torch.Tensor] = []  # per follower (see ``follow``): its weight's mask
        self._alive: list[torch.Tensor] = []  # per follower: whether its channel is kept (bool)

    def follow(self, followers: dict[str, tuple[nn.Parameter, str]]) -> None:
        """Mask each follower (a per-channel parameter: a layer's bias, a BatchNorm's weight or bias) where its
        weight's output channel is masked: its values, gradients and optimizer state, with the weights'. Followers
        are not counted in the masks, their sparsity or their state."""
        count = len(self.masks)
        params = [param for param, _ in followers.values()]
        self._sources = [self.masks[name] for _, name in followers.values()]
        self._alive = [torch.ones(len(param), dtype=torch.bool, device=param.device) for param in params]
        self._param_list = [*self._param_list[:count], *params]
        self._factors = [*self._factors[:count], *(torch.ones_like(param) for param in params)]
        self._copy_factors()

    # ---- changing masks ---------------------------------------------------------------------------------
    def set(self, masks: dict[str, torch.Tensor], counts: dict[str, int] | None = None) -> None:
        """Copy new masks in place (the tensors, and any reference to them, stay the same); ``counts``, the
        active entries per layer when the caller knows them, saves a device sync."""
        torch._foreach_copy_([self.masks[name] for name in masks], list(masks.values()))
        if self.broadcast:
            broadcast_masks(self._mask_list)
        self._copy_factors()
        self._counts = dict(counts) if counts is not None else None
        self._densities = None

    @torch.no_grad()
    def refresh_factors_(self) -> None:
        """The masks were rewritten in place on the device (a learned mask's every-step binarisation): copy them to
        the factors. No broadcast and no host read; the cached counts stay until ``recount`` or ``set``."""
        self._copy_factors()

    @torch.no_grad()
    def _copy_factors(self) -> None:
        """The masks, and the followers' kept channels, into the factors (device work only, no allocation)."""
        torch._foreach_copy_(self._factors[:len(self._mask_list)], self._mask_list)
        if self._sources:
            for source, alive in zip(self._sources, self._alive):
                torch.any(source, tuple(range(1, source.dim())), out=alive)
            torch._foreach_copy_(self._factors[len(self._mask_list):], self._alive)

    def recount(self) -> None:
        """Forget the cached counts: the next ``counts``/``densities`` reads the masks (one device sync)."""
        self._counts, self._densities = None, None

    @torch.no_grad()
    def apply_(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero the masked weights (and their optimizer state, when an optimizer is given)."""
        torch._foreach_mul_(self._param_list, self._factors)
        if optimizer is not None:
            self.mask_optimizer_state_(optimizer)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        grads, factors = [], []
        for param, factor in zip(self._param_list, self._factors):
            if param.grad is not None:
                grads.append(param.grad)
                factors.append(factor)
        if grads:
            torch._foreach_mul_(grads, factors)

    @torch.no_grad()
    def mask_optimizer_state_(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every per-element optimizer buffer (SGD momentum, Adam moments, ...) at masked positions."""
        buffers, factors = [], []
        for param, factor in zip(self._param_list, self._factors):
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    buffers.append(value)
                    factors.append(factor if value.dtype == factor.dtype else factor.to(value.dtype))
        if buffers:
            torch._foreach_mul_(buffers, factors)

    # ---- reading -------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Active entries per layer (cached until the masks change; computing it syncs the device)."""
        if self._counts is None:
            self._counts = dict(zip(self.masks, torch.stack([m.sum() for m in self._mask_list]).tolist()))
        return self._counts

    def densities(self) -> dict[str, float]:
        if self._densities is None:
            self._densities = {name: c / self.masks[name].numel() for name, c in self.counts().items()}
        return self._densities

    def sparsity(self) -> float:
        """Fraction of zeros over all masked entries."""
        return 1.0 - sum(self.counts().values()) / self.numel

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: mask.clone() for name, mask in self.masks.items()}

    def load_state_dict(self, masks: dict[str, torch.Tensor]) -> None:
        check_masks(masks, self.params, "masks")
        self.set(masks)


def check_masks(masks: dict[str, torch.Tensor], params: dict[str, nn.Parameter], key: str) -> None:
    """ConfigError (one line, naming ``key``) unless ``masks`` has exactly the parameters' names and shapes."""
    missing, extra = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
    if missing or extra:
        raise ConfigError(
            f"{key}: the masks do not match the model's prunable weights (missing {missing[:3]}, "
            f"unexpected {extra[:3]}); use masks saved from a run of the same model, e.g. {key}=<run dir>"
        )
    for name, mask in masks.items():
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ConfigError(
                f"{key}: mask {name!r} has shape {tuple(mask.shape)} but the weight has "
                f"{tuple(params[name].shape)}; use masks saved from a run of the same model"
            )


def random_masks(shapes: dict[str, tuple[int, ...]], zeros: dict[str, int], seed: int,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Uniformly random masks with exactly ``zeros[l]`` zeros in layer ``l``, drawn from a generator seeded by
    (seed, name), so a layer's mask does not depend on the other layers."""
    masks = {}
    for name, shape in shapes.items():
        numel = math.prod(shape)
        generator = torch.Generator().manual_seed(derive_seed("random-mask", seed, name))
        order = torch.randperm(numel, generator=generator)
        mask = torch.ones(numel, dtype=torch.bool)
        mask[order[: zeros[name]]] = False
        masks[name] = mask.view(shape).to(device)
    return masks


def save_masks(path: Path, masks: dict[str, torch.Tensor]) -> None:
    """Write masks as a safetensors file of bool tensors, atomically."""
    data = save({name: mask.detach().contiguous().cpu() for name, mask in masks.items()})
    atomic_write(path, lambda handle: handle.write(data))


def load_checked_masks(path: Path, params: dict[str, nn.Parameter], key: str) -> dict[str, torch.Tensor]:
    """Masks from a file, checked against ``params`` (ConfigError naming ``key``), on the parameters' device."""
    masks = load_masks(path, key)
    check_masks(masks, params, key)
    return {name: mask.to(params[name].device) for name, mask in masks.items()}


def load_masks(path: Path, key: str = "masks") -> dict[str, torch.Tensor]:
    """Bool masks from a safetensors file; ConfigError (one line naming ``key`` and the file) unless it holds only
    booleans or exactly 0/1 values (a float mask is never coerced: 0.5 or NaN would silently become True)."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"{key}: {path} is not a masks file ({textwrap.shorten(str(error), 80)}); e.g. "
                          f"{key}=<a run directory with masks/final.safetensors>") from None
    for name, tensor in tensors.items():
        if tensor.dtype != torch.bool and not ((tensor == 0) | (tensor == 1)).all():
            raise ConfigError(f"{key}: mask {name!r} in {path} holds values other than 0 and 1 (dtype "
                              f"{str(tensor.dtype).removeprefix('torch.')}); a masks file holds booleans, e.g. "
                              f"{key}=<a run directory with masks/final.safetensors>")
    return {name: tensor.bool() for name, tensor in tensors.items()}


def mask_report(masks: dict[str, torch.Tensor], densities: dict[str, float], fixed: dict[str, float],
                unmasked: dict[str, list[int]] | None = None) -> dict:
    """Realised sparsity over all masked layers and over the budgeted ones (those without a fixed density), and
    per layer: shape, entries, density, and whether its density is fixed; ``unmasked``: the shapes of the weight
    matrices and kernels left out of the prunable selection (shown in the table, not counted)."""
    numel = {name: mask.numel() for name, mask in masks.items()}
    active = {name: densities[name] * numel[name] for name in masks}
    budgeted = [name for name in masks if name not in fixed] or list(masks)
    return {
        "sparsity": 1.0 - sum(active.values()) / sum(numel.values()),
        "budget_sparsity": 1.0 - sum(active[n] for n in budgeted) / sum(numel[n] for n in budgeted),
        "budget_layers": budgeted,  # the layers the configured `sparsity` is spread over
        "fixed_layers": {name: fixed[name] for name in masks if name in fixed},  # outside it, at fixed densities
        "layers": {
            name: {"shape": list(mask.shape), "numel": numel[name], "density": densities[name],
                   "fixed": name in fixed}
            for name, mask in masks.items()
        },
        "unmasked": dict(unmasked or {}),
    }


def format_report(report: dict) -> str:
    """The per-layer density table printed at the start of a round."""
    rows = [f"{'layer':<40} {'shape':<20} {'numel':>10} {'density':>8}"]
    for name, layer in report["layers"].items():
        mark = " (fixed: not in the sparsity budget)" if layer["fixed"] else ""
        rows.append(f"{name:<40} {str(tuple(layer['shape'])):<20} {layer['numel']:>10} {layer['density']:>8.4f}{mark}")
    for name, shape in report.get("unmasked", {}).items():
        rows.append(f"{name:<40} {str(tuple(shape)):<20} {math.prod(shape):>10} {1.0:>8.4f} (not prunable)")
    rows.append(f"sparsity {report['sparsity']:.4f} over all masked layers, "
                f"{report['budget_sparsity']:.4f} over the {len(report['budget_layers'])} budgeted ones "
                "(those `sparsity` counts)")
    return "\n".join(rows)
