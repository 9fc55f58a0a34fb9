"""The newcomer's first run: `make demo` installs only what the demo needs, shows what it
does, and neither Quick start command prints a warning nobody asked for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def planned(target: str, folder: Path) -> str:
    """The commands ``make TARGET`` would run in a fresh checkout (``make -n``: runs nothing)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, folder / name)
    done = subprocess.run(
        ["make", "-n", target], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_runtime_only_and_shows_progress(tmp_path: Path) -> None:
    demo = planned("demo", tmp_path)
    installs = [line for line in demo.splitlines() if " install " in line and "-e " in line]
    assert installs, demo
    assert not any("[dev]" in line for line in installs)  # no pytest, playwright, mypy…
    assert not any("--quiet" in line or " -q " in line for line in installs)
    assert "digest --config examples/digest.toml demo" in demo


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "lint", ".venv/.installed"])
def test_make_test_lint_and_ci_install_the_development_tools(tmp_path: Path, target: str) -> None:
    plan = planned(target, tmp_path)
    assert "-e '.[dev]'" in plan or '-e ".[dev]"' in plan, plan


def test_the_editable_install_prints_no_warning(tmp_path: Path) -> None:
    """setuptools warns about a flat layout it has to guess; ours is declared."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "digest", project / "digest", ignore=shutil.ignore_patterns("*.pyc"))
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_editable(sys.argv[1])",
            str(tmp_path / "wheels"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "careful" not in done.stderr, done.stderr
