"""The layering contract (``[tool.importlinter]`` in pyproject.toml): imports run downward, the vocabulary stays
torch-free, and an upward import breaks the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import sparsetrain

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path, package: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with ``root``'s contract on the package at ``package`` (found first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
               "--config", str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=package.parent, env=env, capture_output=True, text=True, timeout=300)


def test_the_layering_contract_holds():
    result = _lint(ROOT, Path(sparsetrain.__file__).parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    package = tmp_path / "sparsetrain"
    shutil.copytree(Path(sparsetrain.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(package / "runs" / "files.py", "a") as module:
        module.write("\nfrom ..cli.main import main  # an upward import\n")
    result = _lint(ROOT, package)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sparsetrain.runs is not allowed to import sparsetrain.cli" in result.stdout
    assert "sparsetrain.runs.files -> sparsetrain.cli.main" in result.stdout
