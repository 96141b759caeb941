"""Damaged and hostile files: one line naming the file and what is wrong, exit 2, and nothing of them runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsetrain.sparsity.masks import load_masks

RUN = ["epochs=1", "method=static", "sparsity=0.5"]


class _RunsCode:
    """A pickle whose loading would create a file (the marker) by calling os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    from sparsetrain.runner.run import run
    from hydra import compose, initialize_config_module

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*RUN, "device=cpu"])
    run(cfg, run_dir, RUN)
    return run_dir


def _damage_checkpoint(run_dir: Path, how: str) -> None:
    path = run_dir / "checkpoints" / "last.pt"
    data = path.read_bytes()
    (run_dir / "summary.json").unlink()  # an unfinished run: resuming reads the checkpoint
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        torch.save({"state_dict": torch.zeros(3)}, path)
    elif how == "code":
        torch.save({"model": _RunsCode(run_dir / "PWNED")}, path)


@pytest.mark.parametrize("how,expected", [
    ("truncated", "truncated or not a torch file"), ("empty", "empty file"),
    ("foreign", "not a sparsetrain checkpoint"), ("code", "would run code; refused"),
])
def test_a_damaged_or_hostile_checkpoint_is_one_line(finished, tmp_path, cli_in_process, how, expected):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    _damage_checkpoint(run_dir, how)
    status, _, err = cli_in_process(tmp_path, f"resume={run_dir}")
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: resume: ")
    assert "last.pt" in err and expected in err and "weights_only" not in err
    assert not (run_dir / "PWNED").exists()


@pytest.mark.parametrize("name,text", [
    ("run.yaml", "overrides: [\n"), ("run.yaml", "just a string\n"), ("summary.json", "{\"final\": "),
    ("summary.json", "[1, 2]"),
])
def test_an_edited_run_record_or_summary_is_one_line(finished, tmp_path, cli_in_process, name, text):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / name).write_text(text)
    status, _, err = cli_in_process(tmp_path, f"resume={run_dir}")
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: resume: ") and name in err, err


@pytest.mark.parametrize("values", [[0.5, 1.0], [float("nan"), 1.0], [-1.0, 1.0], [2.0, 0.0]])
def test_a_mask_file_must_hold_booleans(tmp_path, values):
    save_file({"fc.weight": torch.tensor(values)}, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"method.mask_from: mask 'fc.weight' in .* holds values other than 0 and 1"):
        load_masks(tmp_path / "m.safetensors", "method.mask_from")
    save_file({"fc.weight": torch.tensor([0.0, 1.0])}, tmp_path / "ok.safetensors")
    assert load_masks(tmp_path / "ok.safetensors")["fc.weight"].tolist() == [False, True]


def test_masks_of_another_shape_or_name_or_a_damaged_masks_file_are_one_line(finished, tmp_path, cli_in_process):
    masks = load_masks(finished / "masks" / "final.safetensors")
    cases = {
        "shape": {name: m[:1] for name, m in masks.items()},
        "name": {f"x{name}": m for name, m in masks.items()},
        "float": {name: m.float() * 0.5 for name, m in masks.items()},  # 0.5: not coerced to True
    }
    for case, content in cases.items():
        path = tmp_path / f"{case}.safetensors"
        save_file({k: v.contiguous() for k, v in content.items()}, path)
    (tmp_path / "damaged.safetensors").write_bytes(b"garbage")
    for case in [*cases, "damaged"]:
        status, _, err = cli_in_process(tmp_path, *RUN, f"method.mask_from={tmp_path / case}.safetensors",
                                        f"hydra.run.dir={tmp_path / case}")
        assert status == 2 and err.count("\n") == 1 and err.startswith("error: method.mask_from"), (case, err)
        assert not (tmp_path / case).exists()


def test_mask_from_sets_the_sparsity(finished, tmp_path, cli_in_process):
    for value, expected in (("''", "method.mask_from='' is empty"), (str(finished), "sparsity=0.5000")):
        status, _, err = cli_in_process(tmp_path, *RUN[:-1], "sparsity=0.8", f"method.mask_from={value}",
                                        f"hydra.run.dir={tmp_path / 'refused'}")
        assert status == 2 and err.count("\n") == 1 and expected in err, err
        assert not (tmp_path / "refused").exists()
    status, _, err = cli_in_process(tmp_path, *RUN, f"method.mask_from={finished}", f"hydra.run.dir={tmp_path / 'ok'}")
    assert status == 0, err
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["sparsity"] == 0.5 and summary["masks"]["sparsity"] == pytest.approx(0.5, abs=5e-5)
