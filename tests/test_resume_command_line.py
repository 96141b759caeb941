"""``resume=<dir>`` takes the run's own overrides (data location included); a refusal names the changed key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from sparsetrain.cli import preflight
from sparsetrain.config import ConfigError
from sparsetrain.train.run import run

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


def test_info_defaults_works(tmp_path, cli_in_process):
    status, out, err = cli_in_process(tmp_path, "--info", "defaults")
    assert status == 0 and "method/dense" in out, err


def test_a_run_from_before_a_key_existed_resumes_and_setting_that_key_is_still_refused(rigl_run, tmp_path):
    """A run started by an earlier version lacks keys added since (here the whole ``finetune`` section): it resumes,
    since its command line composes today to the same values; changing such a key is refused as any change."""
    old = tmp_path / "old"
    shutil.copytree(rigl_run, old)
    record = yaml.safe_load((old / "run.yaml").read_text())
    del record["config"]["finetune"]
    (old / "run.yaml").write_text(yaml.safe_dump(record))
    checkpoint = torch.load(old / "checkpoints" / "last.pt", weights_only=True)
    del checkpoint["config"]["finetune"]
    torch.save(checkpoint, old / "checkpoints" / "last.pt")

    extra = preflight([f"resume={old}"], multirun=False)
    with initialize_config_module(config_module="sparsetrain.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*extra, f"resume={old}", "device=cpu"])
    summary = run(cfg, old, [f"resume={old}"])
    assert summary["final"]["test"]["top1"] > 0
    with pytest.raises(ConfigError, match=r"finetune\.trainable: None -> \['head'\]"):
        preflight([f"resume={old}", "finetune.trainable=[head]"], multirun=False)
