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
               *(f"update_{u}_ms" for u in ("rigl", "set", "snfs", "itop", "srigl", "gmp", "lth", "acdc", "gap")),
               *(f"{path}_{m}_ms" for path in ("off", "on")
                 for m in ("dense", "static", "gmp", "rigl", "set", "snfs", "itop", "srigl", "acdc", "sr_ste"))]
    for key in timings:
        assert row[key] > 0, key
    updates = ("rigl", "set", "snfs", "itop", "srigl", "gmp", "lth", "acdc", "gap")
    assert all(row[f"update_{u}_ops"] > 0 for u in updates)
    assert "runner step_graph=on" in result.stdout and "mask update alone" in result.stdout
    # digits: 22 steps an epoch, so the updates of RigL, ITOP and SRigL (every 100 / 4000 / 100 steps) are amortised
    assert row["amortised"] == ["rigl", "itop", "srigl"] and "rigl*" in result.stdout


def load_reproduce_dst():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce_dst", SCRIPTS / "reproduce_dst.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_reproduce_dst_table_puts_ours_next_to_the_published_numbers(tmp_path):
    script = load_reproduce_dst()
    table = script.TABLES["cifar10_wrn22_2"]
    for row, top1 in (("RigL (ERK)", 0.9312), ("SNFS (ERK)", 0.5)):
        run_dir = script.run_dir(tmp_path, row, 0.8)
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"final": {"test": {"top1": top1}}}))
    text = script.format_table(table, tmp_path, (0.5, 0.8))
    lines = text.splitlines()
    assert "| method | S = 0.5 | S = 0.8 |" in lines
    assert "| RigL (ERK) | - / 94.2 | 93.12 / 93.6 |" in lines
    assert "| SNFS (ERK) | - / - | 50.00 / 92.8 |" in lines
    assert "| Static (ERK) | - / 94.1 | - / 92.9 |" in lines
    cmd = script.command(table, "SNFS (ERK)", 0.8, tmp_path, ["epochs=1"])
    assert cmd[-5:] == ["+experiment=snfs_wrn22_2_cifar10", "sparsity=0.8",
                        f"hydra.run.dir={tmp_path / 'snfs_erk_s0.8'}", "resume=auto", "epochs=1"]
    itop = script.TABLES["itop_cifar"]
    run_dir = script.run_dir(tmp_path, "SET-ITOP", 0.98)
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"final": {"test": {"top1": 0.7}}, "dynamics": {"itop_rate": 0.61}}))
    assert "| SET-ITOP | 70.00 (R_s 0.61) / - |" in script.format_table(itop, tmp_path, (0.98,)).splitlines()


def test_reproduce_dst_command_line(tmp_path, capsys, monkeypatch):
    """Overrides after -- reach every run; --print-only runs nothing and prints the table."""
    script = load_reproduce_dst()
    calls = []
    monkeypatch.setattr(script.subprocess, "run", lambda cmd: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert script.main(["cifar10_wrn22_2", "--out", str(tmp_path), "--sparsities", "0.9", "--", "steps=6"]) == 0
    assert len(calls) == 4 and all(cmd[-1] == "steps=6" and "sparsity=0.9" in cmd for cmd in calls)
    assert script.main(["imagenet_resnet50", "--out", str(tmp_path), "--print-only"]) == 0 and len(calls) == 4
    assert "| RigL | - / 74.6 | - / 72.0 |" in capsys.readouterr().out.splitlines()


def test_reproduce_dst_presets_compose(compose_config):
    script = load_reproduce_dst()
    for table in script.TABLES.values():
        for preset, *overrides in table.rows.values():
            cfg = compose_config(f"+experiment={preset}", *overrides)
            assert cfg.method.name in ("rigl", "set", "snfs", "static", "itop")


def test_bench_startup_times_each_case_quiet_and_under_load(tmp_path):
    out = tmp_path / "startup.json"
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench_startup.py"), "--cases", "help", "--repeats", "1",
                             "--load", "1", "--json", str(out)],
                            check=True, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    report = json.loads(out.read_text())
    assert report["loads"] == [0, 1] and set(report["seconds"]) == {"this version|help|0", "this version|help|1"}
    assert all(seconds > 0 for seconds in report["seconds"].values())
    assert "| version | case | quiet | 1 busy processes |" in result.stdout


def test_bench_infer_reports_each_sparsity_against_the_dense_model(tmp_path):
    out = tmp_path / "infer.json"
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench_infer.py"), "--cases", "lenet", "--batch", "8",
                             "--seconds", "0.01", "--json", str(out)],
                            check=True, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert [row["sparsity"] for row in rows] == [0.9, 0.95, 0.98]
    for row in rows:  # every weight of LeNet is in a masked linear layer: the bound is about 1 / density
        assert abs(row["flop_bound"] * (1 - row["sparsity"]) - 1) < 0.1 and 0 < row["file_ratio"] < 1
        assert row["latency"]["batch"] == 1 and row["throughput"]["batch"] == 8
    assert result.stdout.count("| lenet |") == 3


def test_bench_two_four_times_the_encoder_on_a_gpu_and_refuses_without_one(tmp_path):
    import torch

    out = tmp_path / "two_four.json"
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench_two_four.py"), "--layers", "1", "--repeats", "2",
                             "--batch", "4", "--json", str(out)],
                            capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=600)
    if not torch.cuda.is_available():
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "need a CUDA GPU" in result.stderr
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["batch"] for row in rows] == [1, 4] and all(row["two_four_ms"] > 0 for row in rows)
    assert 1 < rows[0]["flop_bound"] < 2 and rows[0]["max_difference"] < 0.5


def test_bench_shrink_halves_the_channels_and_keeps_the_logits(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench_shrink.py"), "--models", "resnet20", "--batch", "2",
                             "--repeats", "1"], check=True, capture_output=True, text=True, cwd=tmp_path, env=cli_env(),
                            timeout=300)
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("resnet20 "))
    assert row[1] == "344/688" and 3.5 < float(row[5].rstrip("x")) < 4.5 and float(row[6]) < 1e-5
