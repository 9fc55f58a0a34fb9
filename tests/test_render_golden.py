"""Whole-output golden files: the sample issues' ``email.html`` and ``email.txt``.

Three issues: the French sample (``golden/email.*``), the same kind of issue in
English (``golden/en/``), and the French sample as an editor reworked it, with
Markdown, notes of their own and a section heading (``golden/markdown/``).

Any change to the templates, the typography or the toolchain (mjml-python,
premailer) shows here as a diff to review. After an intended change, refresh with

    DIGEST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render_golden.py

and read the diff of ``tests/golden/`` before committing it.

Rendering has no volatile parts (no clock, no random ids: the date comes from the
issue's period), so the normalization only evens out line ends and trailing spaces.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from render_sample import (
    english_issue,
    english_settings,
    markdown_issue,
    sample_issue,
    sample_settings,
)

from digest.models import NAME_MARKER, UNSUBSCRIBE_MARKER, RenderedIssue
from digest.render import render_issue

GOLDEN = Path(__file__).resolve().parent / "golden"
# Read at import: the autouse fixture clears DIGEST_* variables before each test runs.
UPDATE = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"


def normalize(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines)


def _french() -> RenderedIssue:
    settings = sample_settings(logo_url="https://exemple.org/logo.png", logo_alt="Institut")
    return render_issue(sample_issue(3), settings)


def _english() -> RenderedIssue:
    return render_issue(english_issue(), english_settings())


def _markdown() -> RenderedIssue:
    settings = sample_settings(logo_url="https://exemple.org/logo.png", logo_alt="Institut")
    return render_issue(markdown_issue(), settings)


CASES = {"": _french, "en": _english, "markdown": _markdown}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", ["email.html", "email.txt"])
def test_matches_golden_file(name: str, case: str) -> None:
    rendered = CASES[case]()
    actual = normalize(rendered.html if name.endswith(".html") else rendered.text)
    # Each render draws its own recipient markers; the golden files show the fixed ones.
    actual = actual.replace(rendered.name_marker, NAME_MARKER)
    actual = actual.replace(rendered.unsubscribe_marker, UNSUBSCRIBE_MARKER)
    path = GOLDEN / case / name
    shown_path = path.relative_to(GOLDEN.parent)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}: run DIGEST_UPDATE_GOLDEN=1 pytest {__file__}"
    expected = normalize(path.read_text(encoding="utf-8"))
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), str(shown_path), "rendered", lineterm=""
        )
        shown = "\n".join(list(diff)[:80])
        pytest.fail(
            f"{name} differs from {shown_path}; if intended, refresh with "
            f"DIGEST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render_golden.py\n{shown}"
        )
