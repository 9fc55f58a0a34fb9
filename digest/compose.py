"""One MIME message per recipient, built from parts encoded once per issue.

Building an ``EmailMessage`` per recipient costs milliseconds; at 100,000
subscribers that is minutes of CPU for the same bytes over and over. So
``MessageFactory`` does the work once: it splits the rendered HTML and text at
the recipient markers, quoted-printable encodes every constant segment, and
prepares the constant headers. ``build`` then encodes only the few bytes that
differ (name, unsubscribe URL, To, Date, Message-ID) and joins bytes.

Why that is still a correct message:

* each encoded segment ends with a soft line break (``=`` CRLF) unless it ends a
  line, so joined segments decode to exactly the personalized text, and no line
  is longer than 76 octets (RFC 2045), far under SMTP's 998 (MJML writes 30 KB
  lines: sending them 7bit/8bit would be cut or refused);
* the MIME boundary contains ``=_``, which quoted-printable output can never
  contain (every ``=`` in it starts ``=XX`` or a soft break), so no body line
  can end the part early;
* a line starting with ``.`` is written ``=2E`` and one starting ``From `` as
  ``=46rom``: SMTP dot-stuffing and mbox ``>From`` mangling never touch the body;
* every header value that comes from a person or a feed (subject, names) is
  folded onto one line and RFC 2047 encoded, so CR/LF can never start a header.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import re
import secrets
import time
from collections.abc import Sequence
from email.header import Header
from pathlib import Path

from .config import Settings
from .dsn import return_path
from .errors import ConfigError
from .models import (
    NAME_MARKER,
    UNSUBSCRIBE_MARKER,
    RenderedIssue,
    Subscriber,
)

__all__ = ["MessageFactory", "one_line", "unsubscribe_url"]

CRLF = b"\r\n"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
# Headers a DKIM signature covers; List-Unsubscribe(-Post) must be signed for
# Gmail and Yahoo to honour one-click unsubscribe (RFC 8058 section 4).
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


def one_line(value: str) -> str:
    """``value`` with every control character and line break folded into one space."""
    return " ".join(_CONTROL.sub(" ", value).split())


def unsubscribe_url(settings: Settings, token: str) -> str:
    """The one-click unsubscribe URL for ``token`` (served by ``digest serve``)."""
    return f"{settings.web.base_url.rstrip('/')}/u/{token}"


def _qp(data: str) -> bytes:
    """Quoted-printable with CRLF line ends, ready to join: see the module docstring."""
    if not data:
        return b""
    text = data.replace("\r\n", "\n").replace("\r", "\n")
    out = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    if b"\n." in out or b"\nFrom " in out or out.startswith((b".", b"From ")):
        out = b"\n".join(part for line in out.split(b"\n") for part in _safe_start(line))
    out = out.replace(b"\n", CRLF)
    if not out.endswith(CRLF):
        out += b"=" + CRLF  # soft line break: the next segment continues this line
    return out


def _safe_start(line: bytes) -> list[bytes]:
    """A QP line that starts with neither ``.`` nor ``From ``, split to stay within 76."""
    if line.startswith(b"."):
        line = b"=2E" + line[1:]
    elif line.startswith(b"From "):
        line = b"=46rom " + line[5:]
    else:
        return [line]
    if len(line) <= 76:
        return [line]
    cut = 75
    escape = line.rfind(b"=", cut - 2, cut)
    if escape != -1:
        cut = escape  # never split an =XX escape
    return [line[:cut] + b"=", *_safe_start(line[cut:])]


def _segments(rendered: RenderedIssue, field_name: str, named: bool) -> list[bytes | str]:
    """Constant parts encoded once (bytes); where the issue's own markers were, the
    string ``NAME_MARKER`` or ``UNSUBSCRIBE_MARKER`` (only those ``str`` get filled)."""
    kinds = {rendered.name_marker: NAME_MARKER, rendered.unsubscribe_marker: UNSUBSCRIBE_MARKER}
    parts = rendered.split(field_name, named)
    return [kinds[part] if index % 2 else _qp(part) for index, part in enumerate(parts) if part]


def _encode_header(name: str, value: str) -> bytes:
    """A complete header line (with CRLF), RFC 2047 encoded and folded when needed."""
    value = one_line(value)
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, maxlinelen=76, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _phrase(display: str) -> str:
    """A display name as a quoted string, or RFC 2047 encoded words if not ASCII.

    Written out rather than ``email.header.Header``, which costs ~100 µs a call:
    base64 words of at most 45 UTF-8 bytes (72 characters, RFC 2047's limit is
    75), one per line, never splitting a character.
    """
    if display.isascii():
        return '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    words: list[bytes] = []
    chunk = b""
    for char in display:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 45:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def _address(display: str, address: str) -> bytes:
    """``"Name" <address>`` with the name encoded if needed (no CRLF at the end)."""
    display = one_line(display)
    if not display:
        return address.encode("utf-8")
    # An internationalised address (RFC 6531) goes out as raw UTF-8 with SMTPUTF8.
    phrase = _phrase(display)
    last_line = phrase.rpartition("\n")[2]
    # Fold before the address rather than run past 78 characters (with "From: ").
    space = " " if len(last_line) + len(address) + 12 <= 78 else "\r\n "
    return f"{phrase}{space}<{address}>".encode()


def _language_tag(language: str) -> bytes:
    """A language tag safe for a header: letters, digits and hyphens, else French."""
    tag = language.replace("_", "-").strip()
    return (tag if re.fullmatch(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", tag) else "fr").encode()


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip().lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _check_address(label: str, address: str) -> str:
    address = address.strip()
    if not address or one_line(address) != address or "@" not in address or " " in address:
        raise ConfigError(f"[newsletter] {label}: not a plain address: {address!r}")
    return address


class MessageFactory:
    """Builds each recipient's wire message (bytes, CRLF) from one rendered issue."""

    def __init__(self, rendered: RenderedIssue, settings: Settings) -> None:
        news = settings.newsletter
        self.settings = settings
        self.rendered = rendered
        self.sender = _check_address("from_address", news.from_address)
        """The envelope sender (MAIL FROM): bounces come back here."""
        self.domain = _domain(self.sender)
        self._return_base = settings.bounces.return_path
        self._unsubscribe_base = unsubscribe_url(settings, "")
        mailto = _check_address(
            "unsubscribe_mailto", news.unsubscribe_mailto.removeprefix("mailto:") or self.sender
        )
        self._mailto = f"mailto:{mailto}?subject=unsubscribe".encode()
        self._boundary = f"=_digest_{secrets.token_hex(8)}".encode()

        head = [
            b"From: " + _address(news.from_name, self.sender) + CRLF,
            _encode_header("Subject", rendered.subject),
        ]
        if news.reply_to:
            head.append(b"Reply-To: " + _check_address("reply_to", news.reply_to).encode() + CRLF)
        head.append(b"List-Id: " + self._list_id(news.list_id, news.title) + CRLF)
        self._head_before = b"".join(head)  # then the recipient's List-Unsubscribe
        self._head_after = b"".join(
            (
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + CRLF,
                # RFC 3834: auto-responders (out-of-office replies) ignore bulk mail.
                b"Precedence: bulk" + CRLF,
                # The edition's language (RFC 3282), as the HTML's <html lang> says.
                b"Content-Language: " + _language_tag(rendered.language) + CRLF,
                b"MIME-Version: 1.0" + CRLF,
                b'Content-Type: multipart/alternative; boundary="' + self._boundary + b'"' + CRLF,
            )
        )

        part = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        self._text_open = (
            CRLF
            + b"--"
            + self._boundary
            + CRLF
            + b'Content-Type: text/plain; charset="utf-8"'
            + CRLF
            + part
        )
        self._html_open = (
            CRLF
            + b"--"
            + self._boundary
            + CRLF
            + b'Content-Type: text/html; charset="utf-8"'
            + CRLF
            + part
        )
        self._close = CRLF + b"--" + self._boundary + b"--" + CRLF
        # Two variants, as RenderedIssue.personalize has: without a name and with one.
        self._text = (_segments(rendered, "text", False), _segments(rendered, "text", True))
        self._html = (_segments(rendered, "html", False), _segments(rendered, "html", True))
        self._date_second = -1
        self._date = b""
        self._dkim = _DkimSigner.from_settings(settings)

    def _list_id(self, configured: str, title: str) -> bytes:
        list_id = configured.strip().strip("<>")
        if not list_id:
            local = self.sender.partition("@")[0]
            list_id = f"{re.sub(r'[^A-Za-z0-9-]', '-', local)}.{self.domain}"
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+", list_id):
            raise ConfigError(f"[newsletter] list_id: not a valid list identifier: {list_id!r}")
        title = one_line(title)
        return (f"{_phrase(title)} <{list_id}>" if title else f"<{list_id}>").encode()

    def unsubscribe_url(self, token: str) -> str:
        return self._unsubscribe_base + token

    def envelope_sender(self, token: str) -> str:
        """MAIL FROM for one recipient: ``bounces+TOKEN@…`` with ``[bounces] return_path``.

        A bounce goes back to the envelope sender, so this address tells
        ``digest bounces`` whom it is about (VERP); without the setting, the
        sender address.
        """
        return return_path(self._return_base, token) if self._return_base else self.sender

    @staticmethod
    def needs_smtputf8(address: str) -> bool:
        return not address.isascii()

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            stamp = email.utils.format_datetime(dt.datetime.fromtimestamp(second, dt.UTC))
            self._date = b"Date: " + stamp.replace("-0000", "+0000").encode() + CRLF
            self._date_second = second
        return self._date

    def build(self, subscriber: Subscriber, token: str) -> bytes:
        """The whole message for one recipient, CRLF line ends, ready for SMTP DATA."""
        if not _TOKEN.match(token):
            raise ValueError("unsubscribe token must be URL-safe base64")
        address = subscriber.email
        if one_line(address) != address or " " in address or "@" not in address:
            raise ValueError(f"refusing to write a header for address {address!r}")
        name = one_line(subscriber.name)
        url = self._unsubscribe_base + token
        head = b"".join(
            (
                self._now(),
                b"Message-ID: <"
                + secrets.token_hex(16).encode()
                + b"@"
                + self.domain.encode()
                + b">"
                + CRLF,
                b"To: " + _address(name, address) + CRLF,
                self._head_before,
                b"List-Unsubscribe: <"
                + url.encode()
                + b">,"
                + CRLF
                + b" <"
                + self._mailto
                + b">"
                + CRLF,
                self._head_after,
            )
        )
        message = b"".join(
            (
                head,
                self._text_open,
                *_fill(self._text[bool(name)], name, url, escape=False),
                self._html_open,
                *_fill(self._html[bool(name)], name, url, escape=True),
                self._close,
            )
        )
        if self._dkim is not None:
            message = self._dkim.sign(message)
        return message


def _fill(segments: Sequence[bytes | str], name: str, url: str, *, escape: bool) -> list[bytes]:
    if escape:
        from html import escape as html_escape

        name, url = html_escape(name), html_escape(url)
    values = {NAME_MARKER: _qp(name), UNSUBSCRIBE_MARKER: _qp(url)}
    return [values[s] if isinstance(s, str) else s for s in segments]


class _DkimSigner:
    """DKIM signature (dkimpy) covering the List-Unsubscribe headers."""

    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        self.selector = selector.encode()
        self.domain = domain.encode()
        self.key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> _DkimSigner | None:
        send = settings.send
        key_file: Path | None = getattr(send, "dkim_private_key_file", None)
        selector: str = getattr(send, "dkim_selector", "")
        if not key_file and not selector:
            return None
        if not key_file or not selector:
            raise ConfigError(
                "[send] DKIM needs both dkim_selector and dkim_private_key_file",
                hint="set both, or neither to send unsigned",
            )
        try:
            import dkim  # noqa: F401
        except ImportError:
            raise ConfigError(
                "[send] DKIM signing needs the dkimpy package",
                hint="pip install 'dkimpy>=1.1,<2', or unset dkim_selector",
            ) from None
        path = key_file if key_file.is_absolute() else settings.base_dir / key_file
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"[send] dkim_private_key_file: cannot read {path}: {exc.strerror}"
            ) from None
        domain = getattr(send, "dkim_domain", "") or _domain(settings.newsletter.from_address)
        signer = cls(selector, domain, key)
        signer.sign(b"From: a@b.c\r\nTo: d@e.f\r\nSubject: check\r\n\r\nbody\r\n")  # fail early
        return signer

    def sign(self, message: bytes) -> bytes:
        import dkim

        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.key,
                include_headers=[h for h in DKIM_HEADERS if _has_header(message, h)],
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:
            raise ConfigError(f"[send] DKIM signing failed: {exc}") from None
        return bytes(signature) + message


def _has_header(message: bytes, name: bytes) -> bool:
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(name + b":") or (b"\r\n" + name + b":") in head
