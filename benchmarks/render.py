"""How long does rendering take? One 10-article issue, stage by stage, and personalization.

    .venv/bin/python benchmarks/render.py [--articles 10] [--repeat 30]

Targets (docs/quality.md): the whole render under 50 ms (it runs once per issue) and
per-recipient personalization well under 100 µs (it runs once per subscriber).
Figures are medians of ``--repeat`` runs after a warm-up (templates compiled, CSS
parsed; the first render of a process, shown apart, pays for that). The script
prints figures and ratios to the targets rather than asserting: machines are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from render_sample import sample_issue, sample_settings  # noqa: E402

from digest.render import (  # noqa: E402
    compile_mjml,
    inline_css,
    render_issue,
    render_mjml,
    render_text,
)


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)

    issue = sample_issue(args.articles)
    settings = sample_settings(logo_url="https://exemple.org/logo.png")
    start = time.perf_counter()
    render_issue(issue, settings)
    cold = time.perf_counter() - start
    source = render_mjml(issue, settings)
    compiled = compile_mjml(source)
    rendered = render_issue(issue, settings)

    stages = {
        "jinja (MJML source)": lambda: render_mjml(issue, settings),
        "mjml-python": lambda: compile_mjml(source),
        "premailer": lambda: inline_css(compiled),
        "jinja (text part)": lambda: render_text(issue, settings),
    }
    print(f"render of a {args.articles}-article issue, median of {args.repeat} runs:")
    for name, action in stages.items():
        print(f"  {name:<22} {median_seconds(action, args.repeat) * 1000:8.2f} ms")
    whole = median_seconds(lambda: render_issue(issue, settings), args.repeat)
    print(
        f"  {'render_issue (whole)':<22} {whole * 1000:8.2f} ms",
        f"  ({whole / 0.05:.2f}× the 50 ms target)",
    )
    print(f"  {'first render (cold)':<22} {cold * 1000:8.2f} ms   templates compiled, CSS parsed")
    size = len(rendered.html.encode("utf-8"))
    print(f"  HTML size              {size:8,d} bytes (limit 100,000)")

    count, batches = 4_000, 5
    recipients = [(f"Abonné·e {n}", f"https://veille.exemple.org/u/{n:032x}") for n in range(count)]
    per_batch = []
    for _ in range(batches):
        start = time.perf_counter()
        for name, url in recipients:
            rendered.personalize(name, url)
        per_batch.append((time.perf_counter() - start) / count)
    per_recipient = statistics.median(per_batch)
    naive = median_seconds(
        lambda: rendered.html.replace(rendered.name_marker, "x").replace(
            rendered.unsubscribe_marker, "y"
        ),
        200,
    )
    print(
        f"personalize: {per_recipient * 1e6:.1f} µs per recipient, median of {batches} batches "
        f"of {count:,} (min {min(per_batch) * 1e6:.1f}, max {max(per_batch) * 1e6:.1f}; "
        f"{per_recipient / 100e-6:.2f}× the 100 µs target)"
    )
    print(f"  for scale: two str.replace over the HTML alone take {naive * 1e6:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
