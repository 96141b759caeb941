"""A full disk: one line naming the file, the previous checkpoint intact, and no duplicated event after the resume."""

from __future__ import annotations

import errno
import os

import torch

from conftest import events_without_time
from sparsetrain.errors import WriteError
from sparsetrain.runs import checkpoint


def test_full_disk_is_one_line_and_the_resume_duplicates_nothing(tmp_path, cli_in_process, monkeypatch):
    assert cli_in_process(tmp_path, "epochs=3", "hydra.run.dir=reference")[0] == 0
    save, calls = torch.save, []

    def disk_fills_at_the_second_checkpoint(state, handle):
        calls.append("optimizer" in state)  # the training state (best.pt, also written, holds no optimizer)
        if calls.count(True) == 2 and calls[-1]:
            handle.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        save(state, handle)

    monkeypatch.setattr(checkpoint.torch, "save", disk_fills_at_the_second_checkpoint)
    status, _, err = cli_in_process(tmp_path, "epochs=3", "hydra.run.dir=run")
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"error: could not write {tmp_path / 'run' / 'checkpoints' / 'last.pt'} (No space left")
    run_dir = tmp_path / "run"
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["position"]["epoch"] == 1  # intact
    assert not list(run_dir.rglob("*.tmp"))

    monkeypatch.setattr(checkpoint.torch, "save", save)  # space freed
    assert cli_in_process(tmp_path, f"resume={run_dir}")[0] == 0
    assert events_without_time(run_dir) == events_without_time(tmp_path / "reference")
    assert not (run_dir / "status.json").exists()


def test_a_write_that_fails_for_another_reason_is_not_called_a_full_disk(tmp_path):
    """A temporary file removed by another process, a read-only directory: no advice to free space."""
    path = tmp_path / "checkpoints" / "last.pt"
    for code in (errno.ENOENT, errno.EROFS, errno.EACCES):
        message = str(WriteError(path, OSError(code, os.strerror(code))))
        assert message.startswith(f"could not write {path} ({os.strerror(code)}); the last checkpoint is intact: ")
        assert "free space" not in message and f"make sure {path.parent} is writable" in message
    full = str(WriteError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert f"free space in {path.parent} and resume" in full


def test_a_full_disk_before_the_first_checkpoint_does_not_claim_one(tmp_path):
    from sparsetrain.runs.files import atomic_write

    (tmp_path / "resumable" / "checkpoints").mkdir(parents=True)
    (tmp_path / "resumable" / "checkpoints" / "last.pt").write_bytes(b"")

    def full(handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for directory, intact in ((tmp_path / "fresh", False), (tmp_path / "resumable", True)):
        directory.mkdir(exist_ok=True)
        for name in ("summary.json", "checkpoints/best.pt"):
            try:
                atomic_write(directory / name, full)
            except WriteError as error:
                message = str(error)
            assert ("the last checkpoint is intact" in message) == intact, (directory, name)
            assert ("no checkpoint was written yet" in message) == (not intact), (directory, name)

