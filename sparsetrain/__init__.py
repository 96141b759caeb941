"""sparsetrain: an experiment runner for sparse neural-network training."""

__version__ = "0.1.0"
