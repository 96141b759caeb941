"""Atomic checkpoint files and the RNG state that makes a resumed run bit-identical.

Everything stored is a tensor or a plain Python container, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import pickle
import random
import struct
import textwrap
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .files import atomic_write

# What every checkpoint of a run holds (trainer.Trainer.save)
CHECKPOINT_KEYS = {"format", "config", "position", "finished", "model", "optimizer", "method", "rng", "trainer"}


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, device: torch.device, key: str = "resume") -> dict:
    """A checkpoint's state; ConfigError (one line naming ``key`` and the file) for a damaged or foreign file.

    Only tensors and plain containers are read (``weights_only``): a pickle that would run code is refused."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise _unreadable(key, path, "it holds Python objects whose loading would run code; refused") from None
    except (EOFError, RuntimeError, KeyError, ValueError, OSError, struct.error) as error:  # struct: short junk
        reason = "empty file" if Path(path).stat().st_size == 0 else f"truncated or not a torch file: {_brief(error)}"
        raise _unreadable(key, path, reason) from None
    return state


def load_run_checkpoint(path: Path, device: torch.device) -> dict:
    """``load_checkpoint`` of a run's own checkpoint, checked to be one sparsetrain wrote."""
    state = load_checkpoint(path, device)
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise _unreadable("resume", path, "not a sparsetrain checkpoint (written by another program?)")
    return state


def _unreadable(key: str, path: Path, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {path} cannot be loaded ({reason}); e.g. {key}=<a run directory with an intact "
                       "checkpoint>, or start a new run")


def _brief(error: Exception) -> str:
    return textwrap.shorten(str(error), 80) or type(error).__name__


def capture_rng() -> dict:
    """The global RNG states (python, numpy, torch, cuda) as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "python": [version, list(py_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
