"""The email in a real headless Chromium: no horizontal scroll at 375 and 600 px, dark mode.

Headless Chromium will not lay a window out narrower than 500 px, so the email is
loaded in an iframe of the exact width (an ``srcdoc`` iframe, same origin as its
page, so a script can measure inside it), and ``--dump-dom`` brings the figures
back. Screenshots go to ``$TEST_ARTIFACTS`` (default: the test's tmp folder) so a
person can look at them; CI keeps them.

Skipped only when Chromium is missing on a developer machine; in CI (``CI=true``)
a missing Chromium fails the run.
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from render_sample import sample_issue, sample_items, sample_settings

from digest.models import Lesson
from digest.render import render_issue
from digest.theme import contrast_ratio

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
if CHROMIUM is None:
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("CI needs Chromium for the email tests: apt-get install chromium")
    pytest.skip("Chromium not installed (apt-get install chromium)", allow_module_level=True)

UNSUBSCRIBE = "https://veille.exemple.org/u/tok3n"

# Runs inside the page once the iframe has loaded; writes its findings into the DOM.
MEASURE = """
addEventListener("load", () => {
  const frame = document.getElementById("email");
  const doc = frame.contentDocument, win = frame.contentWindow;
  let right = 0;
  for (const el of doc.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width && box.height) right = Math.max(right, box.right);
  }
  const style = (sel, prop) => {
    const el = doc.querySelector(sel);
    return el ? win.getComputedStyle(el)[prop] : null;
  };
  const found = {
    viewport: win.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
    scrollHeight: doc.documentElement.scrollHeight,
    right: right,
    dark: win.matchMedia("(prefers-color-scheme: dark)").matches,
    cardBackground: style(".dg-article", "backgroundColor"),
    summaryColour: style(".dg-summary", "color"),
    lessonsBackground: style(".dg-lessons-box", "backgroundColor"),
    lessonsColour: style(".dg-lessons-box li", "color"),
    titleSize: style(".dg-article-title", "fontSize"),
  };
  document.getElementById("out").textContent = JSON.stringify(found);
});
"""


def _page(email_html: str, width: int, height: int) -> str:
    return (
        '<!doctype html><html><body style="margin:0">'
        f'<iframe id="email" style="display:block;border:0;width:{width}px;height:{height}px" '
        f'srcdoc="{html_lib.escape(email_html)}"></iframe>'
        f'<pre id="out"></pre><script>{MEASURE}</script></body></html>'
    )


def _chromium(page: Path, profile: Path, *args: str, dark: bool = False) -> str:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *(["--force-dark-mode"] if dark else []),
        *args,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def measure(email_html: str, width: int, tmp: Path, dark: bool = False) -> dict[str, object]:
    page = tmp / f"measure-{width}.html"
    page.write_text(_page(email_html, width, 900), encoding="utf-8")
    dom = _chromium(page, tmp / "profile", "--window-size=1000,900", "--dump-dom", dark=dark)
    match = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert match and match.group(1), "the measuring script did not run"
    return json.loads(html_lib.unescape(match.group(1)))


def screenshot(email_html: str, width: int, height: int, out: Path, tmp: Path, dark: bool) -> None:
    page = tmp / f"shot-{width}.html"
    page.write_text(_page(email_html, width, height), encoding="utf-8")
    size = f"--window-size={width},{height}"
    _chromium(page, tmp / "profile", size, f"--screenshot={out}", dark=dark)
    assert out.stat().st_size > 10_000, "the screenshot is empty"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _rgb(css: object) -> str:
    numbers = re.findall(r"\d+", str(css))[:3]
    assert len(numbers) == 3, css
    return "#" + "".join(f"{int(n):02x}" for n in numbers)


@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_scroll_and_a_screenshot(width: int, tmp_path: Path, artifacts: Path) -> None:
    settings = sample_settings(logo_url="https://exemple.org/logo.png")
    email = render_issue(sample_issue(10), settings).personalize("Marie", UNSUBSCRIBE)
    found = measure(email.html, width, tmp_path)
    assert found["viewport"] == width
    assert found["scrollWidth"] == width, found
    assert float(found["right"]) <= width + 0.5, found  # type: ignore[arg-type]
    if width == 375:  # the mobile rules apply
        assert found["titleSize"] == "20px"
    height = min(int(found["scrollHeight"]), 16_000)  # type: ignore[call-overload]
    screenshot(email.html, width, height, artifacts / f"email-{width}.png", tmp_path, dark=False)


def test_hostile_content_does_not_break_the_layout_on_a_phone(tmp_path: Path) -> None:
    long_word = "https://exemple.org/" + "a" * 300
    a, b = sample_items(2)
    items = (
        dataclasses.replace(a, title="T" * 3000, summary=f"Voir {long_word} maintenant."),
        dataclasses.replace(b, lessons=(Lesson("x" * 400),), source="S" * 200),
    )
    email = render_issue(sample_issue(2, items=items), sample_settings()).personalize(
        "", UNSUBSCRIBE
    )
    found = measure(email.html, 375, tmp_path)
    assert found["scrollWidth"] == 375, found
    assert float(found["right"]) <= 375.5, found  # type: ignore[arg-type]


def test_dark_mode_swaps_to_a_dark_palette_with_readable_text(
    tmp_path: Path, artifacts: Path
) -> None:
    email = render_issue(sample_issue(3), sample_settings()).personalize("Marie", UNSUBSCRIBE)
    light = measure(email.html, 600, tmp_path)
    dark = measure(email.html, 600, tmp_path, dark=True)
    assert (light["dark"], dark["dark"]) == (False, True)
    assert _rgb(light["cardBackground"]) == "#ffffff"
    card = _rgb(dark["cardBackground"])
    assert card != "#ffffff"
    assert contrast_ratio(_rgb(dark["summaryColour"]), card) >= 7
    assert contrast_ratio(_rgb(dark["lessonsColour"]), _rgb(dark["lessonsBackground"])) >= 4.5
    height = min(int(dark["scrollHeight"]), 16_000)  # type: ignore[call-overload]
    screenshot(email.html, 600, height, artifacts / "email-600-dark.png", tmp_path, dark=True)
