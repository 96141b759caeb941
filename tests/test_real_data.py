"""Real-data checks (slow; not in the default run): `SPARSETRAIN_REAL_DATA=<dir> pytest -m slow`.

<dir> holds the torchvision layout (MNIST/raw, FashionMNIST/raw), as `torchvision.datasets.MNIST(<dir>, download=True)`
lays it out.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli

REAL_DATA = os.environ.get("SPARSETRAIN_REAL_DATA")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_DATA, reason="set SPARSETRAIN_REAL_DATA to a directory with MNIST/raw"),
]


@pytest.mark.parametrize("dataset,minimum", [("mnist", 0.95), ("fashion_mnist", 0.83)])
def test_lenet300_100_one_epoch(tmp_path, dataset, minimum):
    result = run_cli(f"dataset={dataset}", "model=lenet300_100", "epochs=1", f"dataset.root={REAL_DATA}",
                     "dataset.download=false", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["test"]["top1"] >= minimum
