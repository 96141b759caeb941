"""Shared helpers: run the CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module


def cli_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "sparsetrain", *overrides]


def cli_env() -> dict:
    # Same thread count in every subprocess, so CPU results are comparable bit for bit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def run_cli(*overrides: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``sparsetrain`` from ``cwd`` (never the checkout, whose source tree would shadow the installed package)."""
    return subprocess.run(
        cli_command(*overrides), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def compose_config():
    """compose(overrides) -> the job config, as the CLI composes it."""

    def _compose(*overrides: str):
        with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    return _compose
