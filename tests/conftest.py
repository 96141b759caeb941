"""Shared helpers: run the CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

# The machines that run the tests have no network: W&B's error reporting (telemetry over HTTPS) stays off.
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # Hugging Face libraries never reach the hub (read at their import)
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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): its tiny models run
    several times faster than with threads competing for 2 cores; restored for the other test files."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def crash_and_resume(compose_config, tmp_path: Path, monkeypatch, method: str, overrides: list[str],
                     crash_after: int) -> tuple[dict, dict]:
    """Run ``overrides`` to the end in ``reference``; run them again in ``crashed``, crashing after ``crash_after``
    optimizer steps, and resume. Asserts both end bit-identical (final scores, masks, weights, metrics events) and
    returns their last checkpoints (reference, crashed)."""
    import torch

    from sparsetrain import methods
    from sparsetrain.runner.run import run

    reference = run(compose_config(*overrides), tmp_path / "reference", overrides)
    monkeypatch.setitem(methods.METHODS, method, crashing(methods.METHODS[method], crash_after))
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(*overrides), tmp_path / "crashed", overrides)
    resumed = run(compose_config(*overrides), tmp_path / "crashed", overrides)
    assert resumed["final"] == reference["final"] and resumed["masks"] == reference["masks"]
    assert resumed["flops"] == reference["flops"]
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("reference", "crashed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert events_without_time(tmp_path / "reference") == events_without_time(tmp_path / "crashed")
    return a, b


def kill_at_first_checkpoint(command: list[str], run_dir: Path, cwd: Path, env: dict | None = None) -> None:
    """Start ``command`` and SIGKILL it (its whole process group) as soon as ``run_dir`` holds a checkpoint."""
    process = subprocess.Popen(command, cwd=cwd, env=env or cli_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = Path(run_dir) / "checkpoints" / "last.pt"
    try:
        while not checkpoint.exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.002)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the run and any processes it started (torchrun's workers)
        process.wait()
    assert not (Path(run_dir) / "summary.json").exists(), "the run finished before it was killed"


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
    from sparsetrain.cli.main import FAILED_JOBS, main
    from sparsetrain.runs.interrupt import STOP_SIGNALS

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


def documented_code(page: Path, test_file: str) -> str:
    """The python block of ``page`` marked as run by ``test_file`` (``<!-- the test suite runs this block (...) -->``),
    as the page shows it."""
    marker = re.escape(f"<!-- the test suite runs this block ({test_file}) -->")
    match = re.search(marker + r"\n```python\n(.*?)```", page.read_text(), re.S)
    assert match, f"{page.name} lost the example {test_file} runs"
    return match.group(1)

