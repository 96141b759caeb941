"""Run the sweep behind a published dynamic-sparse-training table and print ours next to the published numbers.

    python scripts/reproduce_dst.py cifar10_wrn22_2 --out runs/wrn                   # the full sweep (GPU)
    python scripts/reproduce_dst.py cifar10_wrn22_2 --out runs/wrn --sparsities 0.8 -- epochs=1   # reduced
    python scripts/reproduce_dst.py cifar10_wrn22_2 --out runs/wrn --print-only      # the table of what has run

Each cell is one ``python -m sparsetrain +experiment=<preset> sparsity=<s>`` run in ``<out>/<row>_s<s>`` with
``resume=auto`` (a finished cell is not run again; an interrupted one continues). Overrides after ``--`` go to
every run. Published numbers are the papers' (named in each table's title); a cell shows
``ours / published`` top-1 test accuracy in %, ``-`` where nothing was run or published.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    title: str
    rows: dict[str, tuple[str, ...]]  # row label -> (preset, extra overrides...)
    sparsities: tuple[float, ...]
    published: dict[tuple[str, float], float] = field(default_factory=dict)
    itop_rate: bool = False  # add the measured ITOP rate R_s to each cell


TABLES = {
    "cifar10_wrn22_2": Table(
        title="CIFAR-10 WRN-22-2, the RigL paper's setting: RigL/Static from the RigL authors' numbers (full "
              "50k train set), SET/SNFS from §1.2 (rigl-reproducibility, 45k/5k split)",
        rows={"RigL (ERK)": ("rigl_wrn22_2_cifar10",), "Static (ERK)": ("static_wrn22_2_cifar10",),
              "SET (ERK)": ("set_wrn22_2_cifar10",), "SNFS (ERK)": ("snfs_wrn22_2_cifar10",)},
        sparsities=(0.5, 0.8, 0.9, 0.95),
        published={("RigL (ERK)", 0.5): 94.2, ("RigL (ERK)", 0.8): 93.6, ("RigL (ERK)", 0.9): 92.9,
                   ("RigL (ERK)", 0.95): 91.8, ("Static (ERK)", 0.5): 94.1, ("Static (ERK)", 0.8): 92.9,
                   ("Static (ERK)", 0.9): 91.5, ("Static (ERK)", 0.95): 89.0, ("SET (ERK)", 0.8): 92.9,
                   ("SET (ERK)", 0.9): 92.2, ("SNFS (ERK)", 0.8): 92.8, ("SNFS (ERK)", 0.9): 92.2},
    ),
    "imagenet_resnet50": Table(
        title="ImageNet ResNet-50, the RigL paper's 100-epoch setting and numbers",
        rows={"RigL (ERK)": ("rigl_resnet50_imagenet",),
              "RigL": ("rigl_resnet50_imagenet", "method.distribution=uniform")},
        sparsities=(0.8, 0.9),
        published={("RigL (ERK)", 0.8): 75.1, ("RigL (ERK)", 0.9): 73.0, ("RigL", 0.8): 74.6, ("RigL", 0.9): 72.0},
    ),
    "itop_cifar": Table(
        title="RigL-ITOP, ResNet-34 on CIFAR-100 (append dataset=cifar10 for CIFAR-10): the ITOP paper's CIFAR "
              "tables are not collected here, so no published column",
        rows={"RigL-ITOP": ("itop_resnet34_cifar",), "SET-ITOP": ("itop_resnet34_cifar", "method.growth=random",
                                                                   "method.delta_t=1500")},
        sparsities=(0.9, 0.95, 0.98),
        itop_rate=True,
    ),
}


def run_dir(out: Path, row: str, sparsity: float) -> Path:
    return out / f"{re.sub(r'[^a-z0-9]+', '_', row.lower()).strip('_')}_s{sparsity:g}"


def command(table: Table, row: str, sparsity: float, out: Path, extra: list[str]) -> list[str]:
    preset, *overrides = table.rows[row]
    return [sys.executable, "-m", "sparsetrain", f"+experiment={preset}", *overrides, f"sparsity={sparsity:g}",
            f"hydra.run.dir={run_dir(out, row, sparsity)}", "resume=auto", *extra]


def cell(summary: dict | None, published: float | None, itop_rate: bool) -> str:
    ours = "-" if summary is None else f"{100 * summary['final']['test']['top1']:.2f}"
    if summary is not None and itop_rate:
        ours += f" (R_s {summary['dynamics']['itop_rate']:.2f})"
    return f"{ours} / {'-' if published is None else f'{published:.1f}'}"


def read_summary(path: Path) -> dict | None:
    summary = path / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else None


def format_table(table: Table, out: Path, sparsities: tuple[float, ...]) -> str:
    """A Markdown table: one row per method, one column per sparsity, ``ours / published`` in each cell."""
    lines = [table.title, "", "| method | " + " | ".join(f"S = {s:g}" for s in sparsities) + " |",
             "|---|" + "---|" * len(sparsities)]
    for row in table.rows:
        cells = [cell(read_summary(run_dir(out, row, s)), table.published.get((row, s)), table.itop_rate)
                 for s in sparsities]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("cells: our final top-1 test accuracy % / published; - : not run or not published")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--out", type=Path, required=True, help="directory of the runs, one per cell")
    parser.add_argument("--sparsities", type=float, nargs="+", help="a subset of the table's columns")
    parser.add_argument("--print-only", action="store_true", help="print the table of the runs already done")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split]), argv[split + 1:]  # after --: overrides for every run
    table = TABLES[args.table]
    sparsities = tuple(args.sparsities) if args.sparsities else table.sparsities
    failed = []
    if not args.print_only:
        for row in table.rows:
            for sparsity in sparsities:
                cmd = command(table, row, sparsity, args.out, overrides)
                print("$", " ".join(cmd), flush=True)
                if subprocess.run(cmd).returncode != 0:
                    failed.append(f"{row} at {sparsity:g}")
    print(format_table(table, args.out, sparsities))
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
