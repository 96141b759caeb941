"""sparsetrain: an experiment runner for sparse neural-network training.

``sparsetrain.sparsify(model, optimizer, method="rigl", sparsity=0.9, total_steps=T)`` sparsifies a model in
one's own training loop; ``sparsetrain.train(overrides=[...])`` runs a configured run in-process;
``sparsetrain.register_method`` (and ``register_dataset``, ``register_task``) add a user's own.
"""

from .data.catalog import register_dataset
from .methods.catalog import register_method
from .tasks.catalog import register_task

__version__ = "0.1.0"
__all__ = ["Sparsifier", "register_dataset", "register_method", "register_task", "sparsify", "train"]
_API = ("Sparsifier", "sparsify", "train")


def __getattr__(name: str):
    """The API on first use: importing ``sparsetrain`` (the command's preflight) stays free of torch."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sparsetrain' has no attribute {name!r}")
