"""Divergence is found the same way for every method and optimizer, never checkpointed, and recorded."""

from __future__ import annotations

import json

import pytest
import torch

from sparsetrain.errors import Diverged
from sparsetrain.runner.run import run

DIVERGING = {
    "sgd": ["optimizer.lr=1e30", "optimizer.momentum=0"],
    "gmp": ["method=gmp", "sparsity=0.5", "method.frequency=5it", "optimizer.lr=1e30", "optimizer.momentum=0"],
    "rigl": ["method=rigl", "sparsity=0.5", "method.delta_t=5", "optimizer.lr=1e30"],
    "adam": ["optimizer=adam", "optimizer.lr=100"],  # loss ~1e9, finite: diverged all the same
    # the weights stay W0 ⊙ M (finite): only the scores, which the optimizer trains beside them, are not
    "mask_training": ["method=mask_training", "sparsity=0.5", "optimizer=adam", "method.score_lr=1e38"],
}


@pytest.mark.parametrize("name", DIVERGING)
def test_divergence_raises_and_never_checkpoints_nan(compose_config, tmp_path, name):
    overrides = [*DIVERGING[name], "checkpoint_every=3it", "epochs=3", "device=cpu"]
    with pytest.raises(Diverged, match=r"training diverged in round 0: .*; lower the learning rate"):
        run(compose_config(*overrides), tmp_path, overrides)
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    if checkpoint.exists():
        weights = torch.load(checkpoint, weights_only=True)["model"].values()
        assert all(w.isfinite().all() for w in weights)


def test_divergence_ends_with_one_line_and_a_recorded_status(tmp_path, cli_in_process):
    status, _, err = cli_in_process(tmp_path, *DIVERGING["gmp"], "epochs=2", "hydra.run.dir=run")
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: training diverged"), err
    recorded = json.loads((tmp_path / "run" / "status.json").read_text())
    assert recorded == {"status": "diverged", "error": err.strip().removeprefix("error: ")}
