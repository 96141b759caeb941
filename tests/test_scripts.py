"""The benchmark scripts run (tiny shapes) and report every timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import cli_env

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_bench_quick_reports_every_method_path_and_update(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--epochs", "3", "--repeats", "1",
                             "--workers", "1", "--paths", "off", "on", "--json", str(out)],
                            check=True, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=600)
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert report["paths"] == ["off", "on"] and report["device"] in result.stdout
    timings = ["plain_eager_ms", "input_resident_ms", "input_dataloader_ms",
               *(f"update_{u}_ms" for u in ("rigl", "set", "snfs", "itop", "gmp", "lth", "acdc", "gap")),
               *(f"{path}_{m}_ms" for path in ("off", "on")
                 for m in ("dense", "static", "gmp", "rigl", "set", "snfs", "itop", "acdc"))]
    for key in timings:
        assert row[key] > 0, key
    assert all(row[f"update_{u}_ops"] > 0 for u in ("rigl", "set", "snfs", "itop", "gmp", "lth", "acdc", "gap"))
    assert "runner step_graph=on" in result.stdout and "mask update alone" in result.stdout
    # digits: 22 steps an epoch, so RigL's and ITOP's updates (every 100 / 4000 steps) are added over their interval
    assert row["amortised"] == ["rigl", "itop"] and "rigl*" in result.stdout
