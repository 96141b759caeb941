"""Two commands aimed at one run directory: the process that does not hold the directory's lock is refused in one
line before it writes, removes or clears anything, whenever it comes (before or during the first run's start)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import cli_command, cli_env
from sparsetrain.compose import command_line
from sparsetrain.errors import ConfigError

HOLDER = """
import sys, time
from pathlib import Path
from sparsetrain.runs.lock import take
run_dir = Path(sys.argv[1])
take(run_dir)
(run_dir / ".hydra").mkdir()
(run_dir / ".hydra" / "config.yaml").write_text("the first run's config\\n")
(run_dir / "sparsetrain.log").write_text("the first run's log\\n")
print("held", flush=True)
time.sleep(120)
"""


def _snapshot(run_dir: Path) -> dict[str, str]:
    """Every file under ``run_dir`` and a digest of its bytes."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def held_run(tmp_path):
    """A run directory whose lock another process holds, with what Hydra writes before a run starts."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env=cli_env())
    assert holder.stdout.readline().strip() == "held"
    yield run_dir
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("extra", [[], ["resume=auto"]])
def test_a_second_command_is_refused_and_touches_nothing(held_run, tmp_path, extra):
    before = _snapshot(held_run)
    result = subprocess.run(cli_command("epochs=1", f"hydra.run.dir={held_run}", *extra), cwd=tmp_path,
                            env=cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: hydra.run.dir='{held_run}' is in use by a running sparsetrain (pid ")
    assert _snapshot(held_run) == before


def test_a_command_whose_checks_passed_before_the_first_run_locked_is_refused_at_its_claim(held_run, monkeypatch):
    """The race: the second command's early lock check ran while the directory was still free."""
    monkeypatch.setattr(command_line, "refuse_if_locked", lambda run_dir: None)
    before = _snapshot(held_run)
    with pytest.raises(ConfigError, match=r"^hydra\.run\.dir='.*' is in use by a running sparsetrain \(pid \d+"):
        command_line.claim(["epochs=1", f"hydra.run.dir={held_run}"], multirun=False)
    assert _snapshot(held_run) == before


def _outputs(run_dir: Path) -> tuple[dict, dict[str, str]]:
    """The run's results and a digest of each final weight and method-state tensor."""
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    tensors = {**{f"model.{k}": v for k, v in state["model"].items()},
               **{f"masks.{k}": v for k, v in state["method"]["masks"].items()}}
    digests = {name: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest() for name, t in tensors.items()}
    return {key: summary[key] for key in ("final", "best", "masks")}, digests


@pytest.mark.slow
def test_three_commands_on_one_directory_leave_one_whole_run(tmp_path):
    """A run, a second run into its directory 0.3 s later and a resume=auto 0.3 s after that, 20 times: whichever
    takes the directory first (the first, unless it is slowed down) trains, the other two are refused in one line,
    and the directory ends as a run of its own would (same summary, same final weights and masks)."""
    args = ("method=static", "sparsity=0.8", "epochs=6")
    solo = subprocess.run(cli_command(*args, f"hydra.run.dir={tmp_path / 'solo'}"), cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert solo.returncode == 0, solo.stderr
    reference = _outputs(tmp_path / "solo")
    winners = []
    for attempt in range(20):
        run_dir = tmp_path / f"shared_{attempt}"
        commands = [cli_command(*args, f"hydra.run.dir={run_dir}")] * 2 + \
                   [cli_command(*args, "resume=auto", f"hydra.run.dir={run_dir}")]
        processes = []
        for command in commands:
            processes.append(subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, text=True))
            time.sleep(0.3)
        errors = [process.communicate(timeout=300)[1] for process in processes]
        codes = [process.returncode for process in processes]
        assert sorted(codes) == [0, 2, 2], (attempt, codes, errors)
        for code, error in zip(codes, errors):
            if code == 2:
                assert "is in use by a running sparsetrain" in error and error.count("\n") == 1, (attempt, error)
        winners.append(codes.index(0))
        assert _outputs(run_dir) == reference, attempt
    print("the run that took the directory, by attempt:", winners)
