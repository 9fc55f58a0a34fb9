"""``digest demo``: the whole pipeline once, into a capture mailbox on this machine.

The demo runs the real code paths (collect, draft, render, send over SMTP), only
with the SMTP settings pointed at a built-in capture server for the duration, so
what lands in the outbox is exactly what a subscriber would receive.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from . import pipeline
from .capture import CaptureServer
from .config import Settings
from .db import Store

__all__ = ["run_demo"]


def run_demo(
    settings: Settings,
    store: Store,
    console: Console,
    subscribers_file: Path | None = None,
    outbox: Path | None = None,
) -> int:
    """Import the example subscribers, run once into a capture mailbox; return an exit code."""
    from .subscribers import import_csv

    base = settings.base_dir
    subscribers_file = subscribers_file or _find_example_subscribers(base)
    outbox = outbox or base / "outbox"
    imported = import_csv(store, subscribers_file)
    console.print(
        f"Subscribers from {subscribers_file}: {imported.added} added, {imported.updated} updated."
    )

    captured: list[Path] = []  # this run's messages; the outbox keeps earlier runs' too
    with CaptureServer(outbox, port=0, on_message=captured.append) as box:
        smtp = dataclasses.replace(
            settings.smtp,
            host="127.0.0.1",
            port=box.port,
            security="none",
            username="",
            password="",
        )
        demo_settings = dataclasses.replace(settings, smtp=smtp)
        console.print(f"Capture mailbox listening on 127.0.0.1:{box.port}, writing to {outbox}/")
        report = pipeline.run(demo_settings, store, trigger="demo")
        console.print(f"Run {report.period}: {report.outcome}: {report.detail}")
        if report.outcome == "already_sent":
            data = Path(settings.database.url.removeprefix("sqlite:///")).parent
            console.print(
                f"  An issue goes out once a week. To run the demo from scratch, delete {data}/ "
                f"and {outbox}/ (`make demo-reset` in a checkout)."
            )
        for error in report.source_errors:
            console.print(f"  source failed: {error}")
        preview = pipeline.render(demo_settings, store, report.period, base / "preview")

    console.print("")
    if captured:
        console.print(
            f"Messages captured: {len(captured)} in {outbox.resolve()}/ "
            "(open them in a mail program)"
        )
    else:
        earlier = len(list(outbox.glob("*.eml")))
        console.print(
            f"Messages captured: none this run ({earlier} from earlier runs in {outbox.resolve()}/)"
        )
    console.print(f"HTML preview:      {(base / 'preview' / 'email.html').resolve()}")
    console.print(f"Plain-text part:   {(base / 'preview' / 'email.txt').resolve()}")
    console.print(
        f"Editable draft:    {pipeline.draft_file(demo_settings, report.period).resolve()}"
    )
    errors = [c for c in preview.checks if c.level == "error"]
    console.print(
        f"Pre-send checks:   {len(errors)} error(s), {len(preview.checks) - len(errors)} warning(s)"
    )
    for check in preview.checks:  # a count alone would hide what to fix
        console.print(f"  {check.level} {check.name}: {check.message}")
    if report.outcome in ("failed",):
        return 1
    if report.outcome == "partial" or report.source_errors:
        return 2
    return 0


def _find_example_subscribers(base: Path) -> Path:
    for folder in (base, base.parent):
        candidate = folder / "subscribers.example.csv"
        if candidate.is_file():
            return candidate
    return base / "subscribers.example.csv"
