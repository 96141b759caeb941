"""The manual: the MkDocs site builds without a warning, the README stays a short front door, and neither refers
to issue numbers or to files that do not exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_site_builds_in_strict_mode(tmp_path):
    """Strict mode turns every warning into a failure: a broken link or anchor, a page missing from the nav."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_no_page_cites_an_issue_number():
    pattern = re.compile(r"\b(?:issue|pull request|PR)\s*#?\d+|(?:^|[\s(\[])#\d+\b", re.I | re.M)
    found = [f"{page.relative_to(ROOT)}: {match.group(0).strip()}" for page in _pages()
             for match in pattern.finditer(page.read_text())]
    assert not found, "issue numbers are history, not documentation:\n" + "\n".join(found)


def test_the_readme_links_resolve():
    """The README is read on the forge, outside the site: its relative links must name files that exist."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "README.md links to no page of the manual"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
