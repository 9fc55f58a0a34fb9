"""The wheel carries everything digest needs at run time: templates, starter files, entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_ships_every_template_and_the_summarizer_entry_points(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("digest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {
        str(p.relative_to(ROOT)) for p in (ROOT / "digest" / "templates").rglob("*") if p.is_file()
    }
    assert bundled and bundled <= names
    assert "digest/templates/starter/digest.toml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[digest.summarizers]" in text and "extractive" in text and "openai" in text
    assert "digest = digest.cli:main" in text


def test_top_level_templates_folder_is_the_bundled_one() -> None:
    assert (ROOT / "templates" / "email" / "issue.mjml.j2").is_file()
    assert (ROOT / "templates").resolve() == (ROOT / "digest" / "templates").resolve()
