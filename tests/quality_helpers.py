"""What the capture SMTP server received, read back as a subscriber's mail program would."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage

from digest.capture import CaptureServer

PERIOD = "2026-W48"


@dataclass
class Received:
    """One captured message: the bytes as they came off the wire, and their parse."""

    envelope_to: str
    raw: bytes  # without the capture server's own X-Digest-* lines
    message: EmailMessage

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]


def received(box: CaptureServer) -> list[Received]:
    out = []
    for path in sorted(box.handler.folder.glob("*.eml")):
        data = path.read_bytes()
        lines = data.split(b"\r\n")
        ours = [line for line in lines[:3] if line.startswith(b"X-Digest-")]
        assert len(ours) == 3, "the capture server writes three X-Digest-* lines first"
        envelope_to = ours[1].split(b": ", 1)[1].decode()
        raw = b"\r\n".join(lines[3:])
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out.append(Received(envelope_to, raw, message))
    return out
