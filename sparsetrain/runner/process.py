"""This process's part of a run: the device, the torchrun group, determinism, CPU threads and the seeds."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..cores import available_cpus
from ..errors import ConfigError
from ..runs.distributed import Distributed, init_distributed


@dataclass(frozen=True)
class Process:
    device: torch.device
    dist: Distributed


def start_process(cfg) -> Process:
    """Choose the device, join the torchrun group (a rank > 0 logs warnings only), set determinism and the CPU
    threads, and seed python, numpy and torch with ``cfg.seed``."""
    device = _resolve_device(cfg.device.value)
    dist = init_distributed(device.type)
    if dist.enabled:
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_main:
            logging.getLogger("sparsetrain").setLevel(logging.WARNING)
    _configure_determinism(cfg.deterministic, device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or cpu_threads())
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return Process(device, dist)


def cpu_threads() -> int:
    """Torch threads for a CPU run: OMP_NUM_THREADS when set (a parallel sweep's job sets its share), else the CPUs
    this process may run on."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return available_cpus()


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; e.g. device=cpu or device=auto")
    return torch.device(name)


def _configure_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
