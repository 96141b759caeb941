"""The run's model as its config builds it, and the copies some parts need: a fresh initialisation (a
re-initialising control), the starting model (a ``self`` teacher)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.batches import Data
from ..errors import ConfigError
from ..factories import call_user
from ..models.hf import default_prunable
from ..models.zoo import build_configured_model, model_label
from ..tasks.checks import resolve_task
from .init_from import load_init


def build_model(model_cfg: DictConfig, data: Data, task: str, pretrained: bool = True) -> nn.Module:
    """The configured model for the data's inputs and classes (and a tokenizer's special ids, where the data has
    them) and the task's head; ConfigError for a bad config."""
    return user_error(build_configured_model, OmegaConf.to_container(model_cfg, resolve=True), data.in_shape,
                      data.num_classes, task, pretrained, getattr(data.train, "special_ids", None))


def fresh_weights(model_cfg: DictConfig, data: Data, task: str, seed: int) -> dict:
    """A new random initialisation of the model's architecture from ``seed`` (a pretrained model's too), without
    touching the global RNG: what a re-initialising control (LTH ``random_reinit``) trains."""
    return _seeded_model(model_cfg, data, task, seed, pretrained=False).state_dict()


def starting_model(cfg: DictConfig, data: Data, task: str, device: torch.device) -> nn.Module:
    """A second copy of the model as this run starts it (built under ``seed``, then ``init_from``), resumed or
    not; the global RNG is untouched."""
    model = _seeded_model(cfg.model, data, task, cfg.seed).to(device)
    if cfg.init_from:
        load_init(cfg.init_from, model, device, prunable(cfg))
    return model


def prunable(cfg: DictConfig) -> list[str]:
    """The model's default prunable-weight patterns (``model.prunable``; empty: every linear and conv weight; a
    transformers decoder's attention and MLP projections where it is left at BERT's matrices)."""
    if cfg.model.name == "hf":
        try:
            return default_prunable(OmegaConf.to_container(cfg.model, resolve=True),
                                    resolve_task(cfg.task.name, OmegaConf.get_type(cfg.dataset).TASK))
        except ValueError as error:  # a head that does not fit the task: one line
            raise ConfigError(str(error)) from None
    return list(cfg.model.get("prunable") or [])


def user_error(build: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call a builder whose ValueErrors are bad config values, and report them as such."""
    try:
        return build(*args, **kwargs)
    except ConfigError:  # a UserCodeError included: it keeps its traceback
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def on_first_batch(model_cfg: DictConfig, data: Data,
                   forward: Callable[[nn.Module], Any]) -> Callable[[nn.Module], Any]:
    """``forward`` (the model fed the data's first batch), where a failure is a UserCodeError naming the model and
    the input shape (a model that builds but refuses the data's inputs)."""
    label = model_label(OmegaConf.to_container(model_cfg, resolve=True))
    return functools.partial(call_user, label, f"on the first batch (inputs of shape {tuple(data.in_shape)})", forward)


def _seeded_model(model_cfg: DictConfig, data: Data, task: str, seed: int, pretrained: bool = True) -> nn.Module:
    """The model built as the run builds it after seeding with ``seed``, in a forked RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model_cfg, data, task, pretrained)
