"""Wall time of the commands a user types first, on a quiet machine and beside busy processes: ``sparsetrain
--help``, the quick start (``sparsetrain``: LeNet-300-100 on digits, 20 epochs) and a sweep of two jobs run in
parallel (``-m hydra/launcher=local_parallel seed=0,1``). The load is ``--load`` processes that spin on one core
each (other jobs on a shared machine). Prints a table of median seconds and writes JSON.

    python scripts/bench_startup.py                       # this checkout, quiet and with 2 busy processes
    python scripts/bench_startup.py --baseline /tmp/base  # and an earlier version, interleaved in the same run

``--baseline`` is a directory from which ``import sparsetrain`` loads the earlier version, e.g.
``git worktree add /tmp/base <commit> && ln -s ../configs /tmp/base/sparsetrain/configs``; its rows run with
``PYTHONPATH`` set to it, in the same Python environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

CASES = {  # name: the command line after `sparsetrain`
    "help": ["--help"],
    "quick start": [],
    "quick start, threads=1": ["threads=1"],
    "sweep of 2 parallel jobs": ["-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "seed=0,1"],
}
SPIN = "while True: pass"


def seconds(args: list[str], env: dict[str, str]) -> float:
    """Wall time of ``sparsetrain <args>`` run in a fresh directory (its outputs are discarded)."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sparsetrain", *args], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` competing processes, each spinning on one core."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def environments(baseline: str | None) -> dict[str, dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    envs = {"this version": env}
    if baseline:
        envs["baseline"] = {**env, "PYTHONPATH": str(Path(baseline).resolve())}
    return envs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--load", type=int, default=2, help="busy processes for the loaded column (0: none)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--baseline", help="a directory that `import sparsetrain` loads an earlier version from")
    parser.add_argument("--json", type=Path, help="write the timings here")
    args = parser.parse_args(argv)
    loads = [0, args.load] if args.load else [0]
    envs = environments(args.baseline)
    times: dict[str, list[float]] = {}
    for load in loads:
        with busy(load):
            for _ in range(args.repeats):  # versions interleaved: a change of machine state hits both alike
                for case in args.cases:
                    for version, env in envs.items():
                        times.setdefault(f"{version}|{case}|{load}", []).append(seconds(CASES[case], env))
    medians = {key: statistics.median(values) for key, values in times.items()}
    print(f"{os.cpu_count()} CPUs; median of {args.repeats} runs, seconds of wall time")
    header = ["version", "case", *(f"{load} busy processes" if load else "quiet" for load in loads)]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for version in envs:
        for case in args.cases:
            cells = [f"{medians[f'{version}|{case}|{load}']:.2f}" for load in loads]
            print(f"| {version} | {case} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "repeats": args.repeats, "loads": loads,
                                         "seconds": medians, "runs": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
