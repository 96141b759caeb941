"""The teacher model of ``task.distill``: a finished run's final weights, the model as the run starts it
(``self``: TAMT's teacher is the pretrained model the student starts from), or a user's factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..factories import call_with, locate
from ..models.zoo import build_configured_model
from ..models.tying import untie_differing_
from ..runs.checkpoint import load_checkpoint
from ..runs.files import checkpoint_path
from ..runs.record import read_run_record


SELF = "self"  # task.distill.teacher=self


def load_teacher(cfg: Any, in_shape: tuple[int, ...], num_classes: int, device: torch.device,
                 starting_model: Callable[[], nn.Module], task: str | None = None) -> nn.Module | None:
    """The teacher of ``task.distill``: ``starting_model()`` (``teacher=self``), the final weights of a run
    directory (``teacher``), or a factory's model (``teacher_target``, called with ``num_classes`` and
    ``in_shape`` when it takes them); None without one. ``task`` gives a transformers teacher its head."""
    if cfg.teacher == SELF:
        teacher = starting_model()
    elif cfg.teacher is not None:
        run_dir = Path(cfg.teacher)
        if not checkpoint_path(run_dir).is_file():
            raise ValueError(f"task.distill.teacher={cfg.teacher!r} is not a run directory with a checkpoint; "
                             "e.g. task.distill.teacher=outputs/dense_run")
        model_cfg = read_run_record(run_dir)["config"]["model"]
        weights = load_checkpoint(checkpoint_path(run_dir), torch.device("cpu"))["model"]
        teacher = build_configured_model(model_cfg, in_shape, num_classes, task, pretrained=False)  # weights: the run's
        untie_differing_(teacher, weights)  # names the run held apart (method.tied_weights=unmasked)
        teacher.load_state_dict(weights)
    elif cfg.teacher_target is not None:
        factory = locate("task.distill.teacher_target", cfg.teacher_target, "my_pkg.nets.load_teacher")
        teacher = call_with(factory, {"num_classes": num_classes, "in_shape": tuple(in_shape)}, {})
        if not isinstance(teacher, nn.Module):
            raise ValueError(f"task.distill.teacher_target={cfg.teacher_target!r} returned a "
                             f"{type(teacher).__name__}, not a torch.nn.Module")
    else:
        return None
    return teacher.to(device)
