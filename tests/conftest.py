"""Shared helpers: run the CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import json
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


def crashing(cls, after_calls: int):
    """``cls`` raising KeyboardInterrupt (a crash) after ``after_calls`` optimizer steps, unless it was resumed."""

    class Crashing(cls):
        calls = 0

        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)
            Crashing.calls += 1
            if Crashing.calls == after_calls and not getattr(self, "resumed", False):
                raise KeyboardInterrupt

        def load_state_dict(self, state):
            self.resumed = True
            super().load_state_dict(state)

    return Crashing


def events_without_time(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-time field, for comparing runs."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]
