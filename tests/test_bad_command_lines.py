"""Every refusal of a command line is one line that names the key and shows a valid example, exit status 2,
and writes nothing (no run directory, no file in the working directory)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="device=cuda is valid here")

BAD = [
    (["epochs=abc"], "epochs"),
    (["batch_size=1.5"], "batch_size"),
    (["steps=abc"], "steps"),
    (["deterministic=maybe"], "deterministic"),
    (["precision=fp16"], "precision"),
    (["step_graph=sometimes"], "step_graph"),
    (["method=rigl", "sparsity=0.9", "method.delta_t=x"], "method.delta_t"),
    (["method=rigl", "sparsity=0.9", "method.erk_power=-1"], "method.erk_power"),
    (["sparsty=0.5"], "sparsty"),
    (["~sparsity"], "sparsity"),
    (["=0.5"], "=0.5"),
    (["epochs"], "epochs"),
    (["spärsity=0.5"], "spärsity"),
    (["sparsity=0.5é"], "sparsity"),
    (["+method.delta=10"], "method.delta"),
    (["+model._target_=foo.Bar"], "model._target_"),
    (["++foo=1"], "foo"),
    (["+experiment=nosuch"], "experiment"),
    (["method.name=rigl"], "method.name"),
    (["hydra.run.dir="], "hydra.run.dir"),
    (["epochs=1000000000000"], "epochs"),
    (["steps=100000000000"], "steps"),
    (["dataset=synthetic", "dataset.train_size=1000000000000"], "dataset.train_size"),
    (["seed=-1"], "seed"),
    (["optimizer.momentum=-1"], "optimizer.momentum"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer=adam", "optimizer.eps=0"], "optimizer.eps"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["optimizer.lr=inf"], "optimizer.lr"),
    (["--nosuch"], "--nosuch"),
    (["sparsity=0.8,0.9"], "sparsity"),
    (["model=torchvision", "+model.dropout=0.3"], "model.dropout"),
    (["schedule=multistep", "schedule.milestones=[80,120"], "schedule.milestones"),
    (["method=static", "sparsity=0.5", "method.delta_t=10"], "method.delta_t"),
    (["optimizer.lr=1e400"], "optimizer.lr"),
    (["sparsity=1.5"], "sparsity"),
    (["epochs=0"], "epochs"),
    (["eval_every=often"], "eval_every"),
    (["checkpoint_every=-1"], "checkpoint_every"),
    (["label_smoothing=2"], "label_smoothing"),
    (["model.dropout=1.5"], "model.dropout"),
    (["dataset.val_size=-5"], "dataset.val_size"),
    (["schedule=multistep", "schedule.milestones=[3,1]"], "schedule.milestones"),
    (["method=nosuch"], "method"),
    (["method=rigl", "sparsity=0.9", "method.alpha=2"], "method.alpha"),
    (["method=snip", "sparsity=0.9", "method.num_batches=0"], "method.num_batches"),
    (["method=gmp", "sparsity=0.9", "method.start=50%", "method.end=10%"], "method.start"),
    (["method=lth", "sparsity=0.5", "method.levels=3"], "sparsity"),
    (["method=static", "sparsity=0.9", "method.mask_from="], "method.mask_from"),
    (["method=oneshot", "sparsity=0.5", "method.pretrained=/nonexistent"], "method.pretrained"),
    (["resume=/nonexistent"], "resume"),
    (["-m", "epochs=1,0"], "epochs"),
    # refused once the run has started (data, model, device): the run directory Hydra made is removed again
    (["model.depth=5"], "model.depth"),
    (["model=resnet20", "model.width=3"], "model.width"),
    (["model.stem=nosuch"], "model.stem"),
    (["method=static", "sparsity=0.9", "method.dense_layers=[nosuchlayer]"], "method.dense_layers"),
    (["dataset=mnist", "dataset.root=FILE", "dataset.download=false"], "dataset.root"),
    (["method=lth", "method.levels=1000"], "method.levels"),
    pytest.param(["device=cuda"], "device", marks=NO_CUDA),
]


@pytest.mark.parametrize("args,key", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_command_line_is_one_line_with_key_and_example_and_writes_nothing(tmp_path, cli_in_process, args, key):
    (tmp_path / "FILE").write_text("not a directory")
    args = [arg.replace("FILE", str(tmp_path / "FILE")) for arg in args]
    run_dir = tmp_path / "run"
    status, out, err = cli_in_process(tmp_path, *args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}")
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in out + err, err
    assert key in err and "e.g. " in err, err
    assert "+" + key not in err.replace(f"+{key} is not", "")  # never suggests adding an unknown key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


def test_refusals_before_hydra_import_no_torch(tmp_path):
    code = ("import sys; from sparsetrain.cli.main import main; sys.argv = ['sparsetrain', 'epochs=abc']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 2\n"
            "assert 'torch' not in sys.modules, 'preflight imported torch'")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("run_dir", ["FILE", "FILE/run"])
def test_a_run_directory_that_cannot_be_one_is_refused_in_one_line(tmp_path, cli_in_process, run_dir):
    """``hydra.run.dir`` naming an existing file, or a path through one: one line, exit 2, the file untouched."""
    (tmp_path / "FILE").write_text("not a directory")
    path = tmp_path / run_dir
    status, out, err = cli_in_process(tmp_path, "epochs=1", f"hydra.run.dir={path}")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err
    assert err.startswith(f"error: hydra.run.dir='{path}' cannot hold a run (") and "e.g. hydra.run.dir=" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"] and (tmp_path / "FILE").read_text() == "not a directory"


def test_an_option_of_other_methods_names_them(tmp_path, cli_in_process):
    status, _, err = cli_in_process(tmp_path, "method=static", "sparsity=0.5", "method.delta_t=10")
    assert status == 2 and err == ("error: method.delta_t is not a key of method=static; the methods with it: itop, "
                                   "rigl, set, snfs, srigl (e.g. method=itop method.delta_t=4000)\n")



def test_a_run_directory_this_user_cannot_write_is_one_line(tmp_path, cli_in_process, monkeypatch):
    """A read-only directory (simulated: the tests may run as root): its lock cannot be opened for writing."""
    import errno
    import os

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock") and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / ".lock").write_text("")
    monkeypatch.setattr(os, "open", read_only)
    for args in (["resume=auto", f"hydra.run.dir={tmp_path / 'old'}"], [f"hydra.run.dir={tmp_path / 'new'}"]):
        status, out, err = cli_in_process(tmp_path, "epochs=1", *args)
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err
        assert "cannot hold a run (Permission denied); choose a writable directory, e.g. hydra.run.dir=" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"] and sorted(os.listdir(tmp_path / "old")) == [".lock"]


@pytest.mark.parametrize("args", [["method=static", "sparsity=0.9", "method.dense_layers=[nosuchlayer]"],
                                  ["method=gmp", "sparsity=0.9", "method.start=3ep", "method.end=2ep", "epochs=4"],
                                  ["method=static", "sparsity=0.9", "method.mask_from=GARBAGE"]])
def test_a_refusal_after_the_data_is_built_prints_its_line_alone(tmp_path, cli_in_process, args):
    """Checks that need the data or the model come after the run's first log lines: those wait for the checks."""
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    args = [arg.replace("GARBAGE", str(tmp_path / "garbage.safetensors")) for arg in args]
    status, out, err = cli_in_process(tmp_path, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: method."), err
    assert out == "" and not (tmp_path / "run").exists()

