"""The demo configuration run through the CLI, shared by the end-to-end test modules."""

from __future__ import annotations

import email
import email.policy
import shutil
from pathlib import Path

from conftest import ROOT

from digest.capture import CaptureServer
from digest.cli import main

ACTIVE_EXAMPLE_SUBSCRIBERS = 5  # subscribers.example.csv: six people, one unsubscribed


def make_config(
    folder: Path,
    smtp_port: int,
    sources: str | None = None,
    extra: str = "",
    edit: dict[str, str] | None = None,
) -> Path:
    """A copy of the demo configuration in ``folder``, sending to ``smtp_port``.

    ``edit`` replaces text in it (each old text must be there).
    """
    shutil.copytree(ROOT / "examples" / "feeds", folder / "feeds")
    shutil.copy(ROOT / "subscribers.example.csv", folder / "subscribers.example.csv")
    text = (ROOT / "examples" / "digest.toml").read_text(encoding="utf-8")
    text = text.replace("port = 1025", f"port = {smtp_port}")
    for old, new in (edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if sources is not None:
        head, _, rest = text.partition("[[sources]]")
        text = head + sources + "\n[collect]" + rest.partition("[collect]")[2]
    path = folder / "digest.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def cli(config: Path, *args: str) -> int:
    """Run ``digest --config CONFIG ARGS…`` in-process; return its exit code."""
    return main(["--config", str(config), *args])


def captured(box: CaptureServer) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(box.handler.folder.glob("*.eml"))
    ]
