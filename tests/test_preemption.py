"""Nothing lost, nothing mixed up: stop signals, the run-directory lock, clean restarts (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from conftest import cli_command, cli_env, events_without_time
from sparsetrain import methods
from sparsetrain.cli.main import _stopped
from sparsetrain.errors import ConfigError
from sparsetrain.methods.static import Static
from sparsetrain.runs.interrupt import Interrupted, StopSignals
from sparsetrain.runs.lock import refuse_if_locked, run_dir_lock
from sparsetrain.runner.run import run
from test_resume import _assert_same_tensors, _final_state

# 51 steps per epoch; dropout and a validation split make every RNG state and accumulator matter
BASE = ["model=lenet300_100", "model.dropout=0.2", "dataset.val_size=200", "batch_size=24",
        "schedule.warmup_epochs=1"]
RUN = [*BASE, "epochs=4", "checkpoint_every=0"]


def _start(run_dir: Path, cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*overrides, f"hydra.run.dir={run_dir}"), env=cli_env(), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_first_epoch(process: subprocess.Popen, run_dir: Path) -> None:
    while not (run_dir / "metrics.jsonl").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.002)


@pytest.fixture
def one_thread():
    """This process computes like the CLI subprocesses (OMP_NUM_THREADS=1), so results compare bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigterm_mid_epoch_without_checkpoints_then_resume_is_bit_identical(tmp_path, cli_in_process, one_thread):
    reference = tmp_path / "uninterrupted"
    assert cli_in_process(tmp_path, *RUN, f"hydra.run.dir={reference}")[0] == 0

    stopped = tmp_path / "stopped"
    process = _start(stopped, tmp_path, *RUN)
    _wait_for_first_epoch(process, stopped)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    line = stderr.strip()
    assert "\n" not in line and line.startswith("stopped by SIGTERM") and f"sparsetrain resume={stopped}" in line
    assert not (stopped / "summary.json").exists(), "the run finished before the signal"
    assert _final_state(stopped)["position"]["batch"] != 0, "the checkpoint should be mid-epoch"

    assert cli_in_process(tmp_path, f"resume={stopped}")[0] == 0
    expected, actual = _final_state(reference), _final_state(stopped)
    for part in ("model", "optimizer", "position", "finished"):
        _assert_same_tensors(expected[part], actual[part], part)
    assert events_without_time(stopped) == events_without_time(reference)


def test_a_second_process_into_a_directory_in_use_is_refused(tmp_path, cli_in_process):
    run_dir = tmp_path / "run"
    first = _start(run_dir, tmp_path, *BASE, "epochs=1000")
    try:
        _wait_for_first_epoch(first, run_dir)
        for extra in ([], ["resume=auto"]):  # this process is the second one
            status, _, err = cli_in_process(tmp_path, *RUN, "seed=1", f"hydra.run.dir={run_dir}", *extra)
            assert status == 2 and err.count("\n") == 1
            assert f"is in use by a running sparsetrain (pid {first.pid} on " in err, err
    finally:
        first.kill()  # SIGKILL: the lock file stays behind, unlocked
        first.wait()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one run's events: a second run would have started again at step 0
    refuse_if_locked(run_dir)  # a dead process's lock does not block


def test_lock_is_exclusive_and_released(tmp_path):
    with run_dir_lock(tmp_path):
        with pytest.raises(ConfigError, match="in use"):  # a sweep job goes through run() too
            run(_compose("resume=auto"), tmp_path, [])
        with pytest.raises(ConfigError, match=r"hydra.run.dir=.* is in use .*pid \d+ on "):
            with run_dir_lock(tmp_path):
                pass
        with pytest.raises(ConfigError, match="in use"):
            refuse_if_locked(tmp_path)
    with run_dir_lock(tmp_path):  # released at the end of the block
        pass


def test_only_the_first_torchrun_process_checks_the_lock(tmp_path, monkeypatch):
    """Rank 0 takes the lock as soon as its run starts; a slower rank's preflight must not refuse its own run."""
    with run_dir_lock(tmp_path):
        monkeypatch.setenv("RANK", "1")
        refuse_if_locked(tmp_path)
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(ConfigError, match="in use"):
            refuse_if_locked(tmp_path)


def _compose(*overrides: str):
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        return compose(config_name="train", overrides=["device=cpu", "epochs=2", *overrides])


class _StopAt(Static):
    """Static sparse training whose step ``at`` is followed by a stop request (what a SIGTERM handler sets)."""

    at = 0
    stop: StopSignals | None = None

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        if step + 1 == self.at and self.stop is not None:
            self.stop.requested = signal.SIGTERM

    def is_plain_step(self, step: int) -> bool:
        return False


def test_stop_at_an_epochs_last_batch_resumes_with_the_real_lr_and_final_masks(tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "stop_at", _StopAt)
    monkeypatch.setattr(_StopAt, "at", 22)  # digits: 22 batches of 64 an epoch
    overrides = ["method=static", "method.name=stop_at", "sparsity=0.5", "schedule=linear"]
    reference = run(_compose(*overrides), tmp_path / "reference", overrides)

    stop = StopSignals()
    monkeypatch.setattr(_StopAt, "stop", stop)
    with pytest.raises(Interrupted):
        run(_compose(*overrides), tmp_path / "stopped", overrides, stop)
    assert _final_state(tmp_path / "stopped")["position"]["batch"] == 22  # before the epoch's train event
    monkeypatch.setattr(_StopAt, "stop", None)
    resumed = run(_compose(*overrides, "resume=auto"), tmp_path / "stopped", overrides)
    assert events_without_time(tmp_path / "stopped") == events_without_time(tmp_path / "reference")  # its lr too
    assert resumed["final"] == reference["final"]

    (tmp_path / "stopped" / "masks" / "final.safetensors").unlink()  # killed after the last checkpoint
    (tmp_path / "stopped" / "summary.json").unlink()
    run(_compose(*overrides, "resume=auto"), tmp_path / "stopped", overrides)
    assert (tmp_path / "stopped" / "masks" / "final.safetensors").is_file()


def test_outputs_of_an_attempt_without_checkpoint_are_refused_or_cleared(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "train", "loss": float("nan")}) + "\n")
    with pytest.raises(ConfigError, match=r"attempt that never checkpointed \(metrics.jsonl\); add resume=auto"):
        run(_compose("epochs=1"), tmp_path, [])
    run(_compose("epochs=1", "resume=auto"), tmp_path, [])
    events = events_without_time(tmp_path)
    assert [e["event"] for e in events] == ["train", "eval"] and events[0]["loss"] == events[0]["loss"]


def test_temporary_files_of_a_killed_checkpoint_write_are_removed_on_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "stop_at", _StopAt)
    monkeypatch.setattr(_StopAt, "at", 5)
    monkeypatch.setattr(_StopAt, "stop", StopSignals())
    overrides = ["method=static", "method.name=stop_at", "sparsity=0.5"]
    with pytest.raises(Interrupted):
        run(_compose(*overrides), tmp_path, overrides, _StopAt.stop)
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    partial = tmp_path / "checkpoints" / ".last.pt.k1ll3d.tmp"  # atomic_write's name for a write in progress
    partial.write_bytes(checkpoint.read_bytes()[:1000])
    (tmp_path / "masks" / ".last.safetensors.x.tmp").write_bytes(b"\0" * 10)
    monkeypatch.setattr(_StopAt, "stop", None)
    run(_compose(*overrides, "resume=auto"), tmp_path, overrides)
    assert (tmp_path / "summary.json").is_file() and not list(tmp_path.rglob("*.tmp"))


def test_slurm_preset_signals_before_the_limit_and_requeues(tmp_path, cli_in_process):
    status, out, err = cli_in_process(tmp_path, "hydra/launcher=slurm", "--cfg", "hydra")
    assert status == 0, err
    launcher = yaml.safe_load(out)["hydra"]["launcher"]
    assert launcher["signal_delay_s"] >= 60 and launcher["max_num_timeout"] >= 1


def test_the_launchers_handler_runs_after_the_checkpoint(monkeypatch, capsys, tmp_path):
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # submitit's requeue
    try:
        stop = StopSignals()
        with stop.installed():
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.requested == signal.SIGUSR2 and not calls  # the launcher waits for the checkpoint
        with pytest.raises(SystemExit) as exit:
            _stopped(Interrupted(signal.SIGUSR2, saved=True), tmp_path, stop)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [signal.SIGUSR2] and exit.value.code == 128 + signal.SIGUSR2
    assert capsys.readouterr().err.startswith("stopped by SIGUSR2: checkpoint written to ")


def test_a_stop_signal_before_training_is_one_line(tmp_path, cli_in_process, monkeypatch):
    def signalled_during_the_checks(overrides, multirun):
        os.kill(os.getpid(), signal.SIGTERM)
        return []

    monkeypatch.setattr("sparsetrain.cli.main.claim", signalled_during_the_checks)
    status, _, err = cli_in_process(tmp_path, "epochs=1")
    assert status == 128 + signal.SIGTERM
    assert err == "stopped by SIGTERM outside training (no checkpoint written)\n"
