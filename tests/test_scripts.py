"""The benchmark scripts run (tiny shapes) and report every timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import cli_env

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_bench_quick_reports_every_method(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--steps", "5", "10", "--repeats", "1",
                    "--json", str(out)], check=True, capture_output=True, cwd=tmp_path, env=cli_env(), timeout=600)
    (row,) = json.loads(out.read_text())["rows"]
    for key in ("plain_eager_ms", "input_ms", "dense_ms", "static_ms", "gmp_ms", "rigl_ms", "set_ms", "snfs_ms"):
        assert key in row and row[key] == row[key]  # present and not NaN
    assert row["plain_eager_ms"] > 0 and row["input_ms"] > 0


def test_rigl_benchmark_script_runs(tmp_path):
    """scripts/bench_rigl.py on a tiny model: it runs and reports a positive update time and ratio."""
    script = SCRIPTS / "bench_rigl.py"
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(script), "--model", "resnet20", "--size", "8", "--batch", "2",
                    "--classes", "10", "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, cwd=tmp_path, env=cli_env())
    result = json.loads(out.read_text())
    assert result["rigl_update_ms"] > 0 and result["ratio_rigl_to_dense"] > 0 and result["delta_t"] == 100
