"""The manual: the MkDocs site builds without a warning, the README stays a short front door, and neither refers
to issue numbers or to files that do not exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_install_line_pins_the_torch_that_ci_installs():
    """The README's set-up command, its CPU-only line and CI install the same torch and torchvision."""
    pins = lambda text: re.findall(r'"(torch(?:vision)?==[\d.]+)"', text)  # noqa: E731
    ci = pins((ROOT / ".ci" / "run").read_text())
    lines = [line for line in README.read_text().splitlines() if line.startswith("pip install") and "torch" in line]
    assert len(lines) == 2 and any("--index-url https://download.pytorch.org/whl/cpu" in line for line in lines)
    assert len(ci) == 2 and all(pins(line) == ci for line in lines)


@pytest.fixture(scope="module")
def docs_script():
    """``scripts/docs.py`` as a module, and what it generates from the records and schemas now."""
    spec = importlib.util.spec_from_file_location("docs_script", ROOT / "scripts" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.pages(ROOT)


def test_the_generated_pages_are_fresh(docs_script):
    module, generated = docs_script
    assert module.stale(ROOT, generated) == [], "run: python scripts/docs.py"
    assert len(generated) == 4 and all(text.strip() for text in generated.values())


def test_a_stale_generated_page_fails_the_check(docs_script, tmp_path):
    """A page whose text is not what the records and schemas generate (here, a default edited by hand)."""
    module, generated = docs_script
    for name in generated:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert module.stale(tmp_path, generated) == []
    page = tmp_path / "docs" / "reference" / "configuration.md"
    edited = page.read_text().replace("| `delta_t` | `100` |", "| `delta_t` | `50` |", 1)
    assert edited != page.read_text()
    page.write_text(edited)
    assert module.stale(tmp_path, generated) == [page]


COMMAND = re.compile(r"^(?:\$ )?(?:cd \S+ && )?sparsetrain(?P<args>(?: +[^#\s]+)*)\s*(?:#.*)?$")
NEEDS_A_RUN = re.compile(r"<|\$|(?:resume|init_from|mask_from|masks_from|rank_from|teacher|pretrained)=(?!auto\b|self\b|null\b)")


def _documented_commands() -> list[tuple[str, str, str | None]]:
    """(page, command line, the error line shown under it) for every ``sparsetrain`` command in a code block."""
    found = []
    for page in _pages():
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), re.S):
            lines = block.replace("\\\n", " ").splitlines()  # continued lines joined
            for index, line in enumerate(lines):
                match = COMMAND.match(line.strip())
                if match:
                    after = lines[index + 1] if index + 1 < len(lines) else ""
                    error = after[len("error: "):] if line.startswith("$ ") and after.startswith("error: ") else None
                    found.append((str(page.relative_to(ROOT)), match.group("args").split(), error))
    return found


def test_every_documented_command_line_composes_and_passes_the_checks(tmp_path, monkeypatch):
    """Each command of the README and the manual is composed and checked as the command line would (a shown error
    is the one it gives); those that name an earlier run's directory or a shell variable are left out."""
    from sparsetrain.cli.help import render_help
    from sparsetrain.compose.command_line import CONFIG_MODULE, preflight
    from sparsetrain.errors import ConfigError
    from hydra import initialize_config_module

    monkeypatch.chdir(tmp_path)
    commands = _documented_commands()
    assert len(commands) > 40
    unique = {(tuple(args), error): (page, args, error) for page, args, error in commands}  # the README repeats some
    checked = 0
    for page, args, error in unique.values():
        if NEEDS_A_RUN.search(" ".join(args)) or "--cfg" in args or "--hydra-help" in args:
            continue
        checked += 1
        if "--help" in args:
            with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
                assert render_help([a for a in args if a != "--help"]), (page, args)
            continue
        for arg in args:  # the files a command names are the user's: here, empty stand-ins
            key, _, value = arg.partition("=")
            if key.endswith("_file") and value and not value.startswith("/"):
                (tmp_path / value).touch()
        multirun = "-m" in args
        overrides = [a for a in args if a != "-m"] + [f"hydra.run.dir={tmp_path / 'run'}"]
        if error is None:
            try:
                preflight(overrides, multirun)
            except ConfigError as refused:
                raise AssertionError(f"{page}: sparsetrain {' '.join(args)}: {refused}") from None
        else:
            with pytest.raises(ConfigError) as refused:
                preflight(overrides, multirun)
            assert str(refused.value) == error, (page, args)
    assert checked > 25
