"""``resume=<dir>`` takes the run's own overrides (data location included); a refusal names the changed key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from sparsetrain.compose.command_line import preflight
from sparsetrain.errors import ConfigError
from sparsetrain.runner.run import run

RUN = ["method=rigl", "sparsity=0.9", "epochs=1", "dataset.num_workers=0", "dataset.root=elsewhere"]


@pytest.fixture(scope="module")
def rigl_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("rigl") / "run"
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*RUN, "device=cpu"])
    run(cfg, run_dir, RUN)
    (run_dir / "summary.json").unlink()  # resumable, not finished
    return run_dir


def test_resume_alone_reuses_the_runs_overrides_and_data_location(rigl_run):
    extra = preflight([f"resume={rigl_run}"], multirun=False)
    assert {"method=rigl", "dataset.root=elsewhere", "dataset.num_workers=0", f"hydra.run.dir={rigl_run}"} <= set(extra)
    assert "dataset.root=data" not in preflight([f"resume={rigl_run}", "dataset.root=data"], multirun=False)


@pytest.mark.parametrize("change,key", [("seed=1", "seed: 0 -> 1"), ("sparsity=0.8", "sparsity: 0.9 -> 0.8")])
def test_a_refused_resume_names_only_the_changed_key(rigl_run, tmp_path, cli_in_process, change, key):
    status, _, err = cli_in_process(tmp_path, f"resume={rigl_run}", change)
    assert status == 2 and err.count("\n") == 1
    assert f"the config differs in {key};" in err, err  # that key alone, not the method's defaults
    assert f"e.g. sparsetrain resume={rigl_run}, or start a new run" in err, err


def test_info_defaults_works(tmp_path, cli_in_process):
    status, out, err = cli_in_process(tmp_path, "--info", "defaults")
    assert status == 0 and "method/dense" in out, err


def test_a_run_from_before_a_key_existed_resumes_and_setting_that_key_is_still_refused(rigl_run, tmp_path):
    """A run started by an earlier version lacks keys added since (here the whole ``finetune`` section): it resumes,
    since its command line composes today to the same values; changing such a key is refused as any change."""
    old = _recorded_as(rigl_run, tmp_path / "old", lambda config: config.pop("finetune"))
    assert _resume(old)["final"]["test"]["top1"] > 0
    with pytest.raises(ConfigError, match=r"finetune\.trainable: None -> \['head'\]"):
        preflight([f"resume={old}", "finetune.trainable=[head]"], multirun=False)


@pytest.mark.parametrize("recorded", ["image_classification", "auto"])
def test_a_run_recorded_before_task_name_auto_resumes(rigl_run, tmp_path, recorded):
    """Runs record the task they resolved; one recorded before (its default, or ``auto``) resumes all the same."""
    assert yaml.safe_load((rigl_run / "run.yaml").read_text())["config"]["task"]["name"] == "image_classification"
    old = _recorded_as(rigl_run, tmp_path / "old", lambda config: config["task"].update(name=recorded))
    assert _resume(old)["final"]["test"]["top1"] > 0


def test_a_resume_whose_data_declares_another_task_is_refused(rigl_run, tmp_path):
    old = _recorded_as(rigl_run, tmp_path / "old", lambda config: config["task"].update(name="masked_lm"))
    with pytest.raises(ConfigError, match=r"differs in task\.name: 'masked_lm' -> 'image_classification'"):
        _resume(old)


def _recorded_as(run_dir: Path, copy: Path, edit) -> Path:
    """A copy of ``run_dir`` whose run.yaml and checkpoint hold the config ``edit`` changes in place."""
    shutil.copytree(run_dir, copy)
    record = yaml.safe_load((copy / "run.yaml").read_text())
    edit(record["config"])
    (copy / "run.yaml").write_text(yaml.safe_dump(record))
    checkpoint = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    edit(checkpoint["config"])
    torch.save(checkpoint, copy / "checkpoints" / "last.pt")
    return copy


def _resume(run_dir: Path) -> dict:
    """``sparsetrain resume=<run_dir>`` in this process: the CLI's checks, then the run."""
    extra = preflight([f"resume={run_dir}"], multirun=False)
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*extra, f"resume={run_dir}", "device=cpu"])
    return run(cfg, run_dir, [f"resume={run_dir}"])
