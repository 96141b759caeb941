"""A sweep survives a job that diverges or fails: recorded, reported, the other jobs run; a re-run skips it."""

from __future__ import annotations

import csv


def test_a_diverging_job_is_recorded_and_the_sweep_goes_on(tmp_path, cli_in_process):
    sweep = tmp_path / "sweep"
    args = ["-m", "optimizer.lr=1e30,0.1", "optimizer.momentum=0", "steps=5", f"hydra.sweep.dir={sweep}"]
    status, _, err = cli_in_process(tmp_path, *args)
    assert status == 1
    assert err.count("\n") == 1 and "diverged: training diverged" in err, err
    bad, good = next(sweep.glob("*optimizer.lr=1e+30*")), next(sweep.glob("*optimizer.lr=0.1*"))
    assert (good / "summary.json").is_file() and (bad / "status.json").is_file()
    rows = {row["job"]: row for row in csv.DictReader((sweep / "summary.csv").open())}
    assert rows[bad.name]["status"] == "diverged" and "training diverged" in rows[bad.name]["error"]
    assert rows[good.name]["status"] == "finished"
    assert "diverged: training diverged" in (sweep / "summary.md").read_text()

    metrics = (bad / "metrics.jsonl").stat().st_mtime_ns
    status, _, err = cli_in_process(tmp_path, *args)
    assert status == 1 and "recorded earlier; add retry_failed=true" in err, err
    assert (bad / "metrics.jsonl").stat().st_mtime_ns == metrics  # not run again

    status, _, err = cli_in_process(tmp_path, *args, "retry_failed=true")
    assert status == 1 and "recorded earlier" not in err and "diverged" in err
    assert (bad / "metrics.jsonl").stat().st_mtime_ns != metrics
