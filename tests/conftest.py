"""Shared helpers: run the CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

# The machines that run the tests have no network: W&B's error reporting (telemetry over HTTPS) stays off.
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
# One torch thread in this process as in every CLI subprocess (cli_env): runs in-process (whose `threads` default
# reads this variable) and in subprocesses compute the same bits, whatever the machine's CPU count.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def write_image_folder(root: Path, classes=("ant", "bee", "cat"), n_train: int = 4, n_val: int = 2) -> None:
    """An ImageFolder tree ``root/{train,val}/<class>/<i>.png`` of random 40 x 48 RGB images."""
    rng = np.random.default_rng(2)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


@pytest.fixture
def cli_in_process(monkeypatch, capsys):
    """cli(cwd, *args) -> (exit status, stdout, stderr) of ``sparsetrain *args`` run in this process (fast)."""
    from sparsetrain.cli import FAILED_JOBS, main
    from sparsetrain.train.interrupt import STOP_SIGNALS

    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}  # main() installs its own

    def _cli(cwd: Path, *args: str) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["sparsetrain", *args])
        FAILED_JOBS.clear()
        for handler in logging.root.handlers[:]:  # Hydra's handlers of an earlier call write to a closed capture
            logging.root.removeHandler(handler)
        capsys.readouterr()
        try:
            main()
            status = 0
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else 1
        out, err = capsys.readouterr()
        return status, out, err

    yield _cli
    for signum, handler in saved.items():
        signal.signal(signum, handler)
