"""A capture SMTP server for local use: every message it receives becomes an ``.eml`` file.

It lets an editor run the whole pipeline on one machine and open, in any mail
program, exactly what a subscriber would get. It is not a relay: nothing leaves.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

__all__ = ["CaptureHandler", "CaptureServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CaptureHandler:
    """aiosmtpd handler writing each message to ``folder`` as ``NNNN-recipient.eml``."""

    def __init__(self, folder: Path, on_message: Callable[[Path], None] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_message = on_message
        self._lock = threading.Lock()
        existing = [
            int(m.group(1)) for p in folder.glob("*.eml") if (m := re.match(r"(\d+)-", p.name))
        ]
        self._counter = itertools.count(max(existing, default=0) + 1)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # One file per envelope recipient, as each would find it in their inbox.
        for recipient in envelope.rcpt_tos:
            with self._lock:
                number = next(self._counter)
            safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient)[:80]
            path = self.folder / f"{number:05d}-{safe}.eml"
            received = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
            header = (
                f"X-Digest-Envelope-From: {envelope.mail_from}\r\n"
                f"X-Digest-Envelope-To: {recipient}\r\n"
                f"X-Digest-Received: {received}\r\n"
            ).encode()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(header + content)
            tmp.replace(path)  # whole files only: a reader never sees half a message
            if self.on_message:
                self.on_message(path)
        return "250 OK: captured"


class CaptureServer:
    """Run a ``CaptureHandler`` on ``host:port`` in a background thread."""

    def __init__(
        self,
        folder: Path,
        host: str = "127.0.0.1",
        port: int = 1025,
        on_message: Callable[[Path], None] | None = None,
    ) -> None:
        self.handler = CaptureHandler(folder, on_message)
        if port == 0:  # aiosmtpd cannot bind port 0 itself: it probes the port it was given
            port = free_port(host)
        self.controller = Controller(
            self.handler, hostname=host, port=port, data_size_limit=50_000_000
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> CaptureServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
