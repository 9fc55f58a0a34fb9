"""What one message in the bounce mailbox is, and whom it is about. Pure: no I/O.

Three kinds of message are understood, each by its standard:

* a delivery status notification (RFC 3464, ``multipart/report;
  report-type=delivery-status``), what Postfix, Exim, Gmail, Exchange and the
  relays send: a ``5.x.x`` status that failed is a hard bounce, a ``4.x.x`` (or
  ``Action: delayed``) a soft one; a report of a success is no bounce;
* a feedback report (ARF, RFC 5965, ``report-type=feedback-report``): a
  complaint, unless its type is ``not-spam``;
* a mailto unsubscribe request (RFC 2369's ``List-Unsubscribe: <mailto:…>``):
  subject ``unsubscribe``, sent by the subscriber.

Anything else (an out-of-office reply, a person answering the newsletter, a
report without a status) is ``not_understood`` and its reason says why; the
caller leaves such messages where they are.

Whom: the recipient is named three ways, most trusted first. The envelope
address the bounce came back to (VERP: ``bounces+TOKEN@domain``, see
``return_path``); the unsubscribe token in the ``List-Unsubscribe`` header of
our message, which DSNs and feedback reports carry back in the original's
headers; and last the addresses the report names (``Final-Recipient``,
``Original-Rcpt-To``) or, for an unsubscribe request, its ``From``.

Why not flufl.bounce: it is maintained, but it answers with addresses guessed
from many historic formats, without the status code that separates a hard from
a soft bounce; every current server sends RFC 3464, and the token identifies
the recipient without guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Literal

__all__ = ["Kind", "Verdict", "classify", "return_path", "verp_token"]

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "not_understood"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([245])\d\d[ -]+(?:([245]\.\d{1,3}\.\d{1,3})\b)?")
# Headers naming the address a message was delivered to (where a VERP token shows).
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


@dataclass(frozen=True)
class Verdict:
    """What a message is (``kind``), whom it names, and why, in one line (``detail``)."""

    kind: Kind
    detail: str
    status: str = ""
    """The enhanced status code of a bounce, e.g. ``5.1.1``."""
    tokens: tuple[str, ...] = ()
    """Unsubscribe tokens the message carries: most trusted first."""
    addresses: tuple[str, ...] = ()
    """Addresses it names: the bounced recipient, the complainer, the requester."""


def return_path(base: str, token: str) -> str:
    """The envelope sender for one recipient: ``bounces@d`` and a token give ``bounces+TOKEN@d``.

    Bounces go to the envelope sender, so the address they come back to names
    the recipient whatever the bounce's format (VERP).
    """
    local, _, domain = base.rpartition("@")
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be URL-safe base64")
    return f"{local}+{token}@{domain}"


def verp_token(address: str, base: str) -> str | None:
    """The token in ``address`` if it is a ``return_path`` of ``base``, else None."""
    local, _, domain = base.rpartition("@")
    got_local, _, got_domain = parseaddr(address)[1].rpartition("@")
    prefix = local + "+"
    if not local or got_domain.lower() != domain.lower():
        return None
    if not got_local.lower().startswith(prefix.lower()):
        return None
    token = got_local[len(prefix) :]
    return token if _TOKEN.fullmatch(token) else None


def classify(
    message: Message, *, return_base: str = "", unsubscribe_address: str = "", base_url: str = ""
) -> Verdict:
    """Read one message: a bounce, a complaint, an unsubscribe request, or not understood.

    ``return_base`` is the configured VERP base, ``unsubscribe_address`` the
    ``List-Unsubscribe`` mailto address, ``base_url`` the public URL whose
    ``/u/TOKEN`` links are ours.
    """
    envelope = _verp_tokens(message, return_base)
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()
        if report_type == "delivery-status":
            return _delivery_status(message, envelope, base_url)
        if report_type == "feedback-report":
            return _feedback(message, envelope, base_url)
        return Verdict("not_understood", f"a report of an unknown type {report_type!r}")
    if _is_automatic(message):
        return Verdict("not_understood", "an automatic reply (out of office?), not a bounce")
    subject = " ".join(_header(message, "Subject").split()).lower()
    if subject == "unsubscribe":
        return _unsubscribe_request(message, unsubscribe_address)
    return Verdict("not_understood", "neither a delivery report, a complaint nor an unsubscribe")


# -- delivery status notifications (RFC 3464) ----------------------------------------------


def _delivery_status(message: Message, envelope: list[str], base_url: str) -> Verdict:
    groups = _status_groups(message)
    if groups is None:
        return Verdict("not_understood", "a delivery report without its delivery-status part")
    tokens = tuple(dict.fromkeys([*envelope, *_returned_tokens(message, base_url)]))
    hard: list[tuple[str, str]] = []
    soft: list[tuple[str, str]] = []
    for fields in groups[1:]:  # the first group is about the message, the rest per recipient
        action = fields.get("action", "").strip().lower()
        status = _status_code(fields)
        recipient = _recipient(fields)
        if not status and not action:
            continue
        if action in ("delivered", "relayed", "expanded"):
            continue
        if status.startswith("5") and action in ("failed", ""):
            hard.append((recipient, status))
        elif status.startswith("4") or action == "delayed":
            soft.append((recipient, status or "4.0.0"))
    if not hard and not soft:
        if any(f.get("action") for f in groups[1:]):
            return Verdict("not_understood", "a delivery report of a success, not a bounce")
        return Verdict("not_understood", "a malformed delivery report (no recipient's status)")
    kind: Kind = "hard_bounce" if hard else "soft_bounce"
    chosen = hard or soft
    addresses = tuple(a for a, _ in chosen if a)
    status = chosen[0][1]
    what = "permanent failure" if hard else "temporary failure"
    return Verdict(kind, f"{what} {status}", status, tokens, addresses)


def _status_groups(message: Message) -> list[dict[str, str]] | None:
    """The delivery-status part's field groups (lower-case names), or None if missing."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):  # the email package parses each group as headers
            return [_fields(group) for group in payload if isinstance(group, Message)]
        if isinstance(payload, str):  # e.g. base64 encoded: parse it ourselves
            text = part.get_payload(decode=True)
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else payload
            blocks = re.split(r"\r?\n\s*\r?\n", raw.strip())
            return [_fields(HeaderParser().parsestr(block)) for block in blocks]
    return None


def _fields(group: Message) -> dict[str, str]:
    return {name.lower(): " ".join(str(value).split()) for name, value in group.items()}


def _status_code(fields: dict[str, str]) -> str:
    """``Status``, else the enhanced code or class of the ``Diagnostic-Code`` reply."""
    match = _STATUS.match(fields.get("status", ""))
    if match:
        return ".".join(match.groups())
    diagnostic = fields.get("diagnostic-code", "").partition(";")[2]
    reply = _SMTP_REPLY.search(diagnostic)
    if reply:
        return reply.group(2) or f"{reply.group(1)}.0.0"
    return ""


def _recipient(fields: dict[str, str]) -> str:
    for name in ("final-recipient", "original-recipient"):
        value = fields.get(name, "")
        address = value.partition(";")[2].strip() if ";" in value else value.strip()
        if "@" in address:
            return address.strip("<>")
    return ""


# -- feedback reports (ARF, RFC 5965) ------------------------------------------------------


def _feedback(message: Message, envelope: list[str], base_url: str) -> Verdict:
    report = next(
        (p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if report is None:
        return Verdict("not_understood", "a feedback report without its feedback-report part")
    payload = report.get_payload()
    groups = payload if isinstance(payload, list) else [HeaderParser().parsestr(str(payload))]
    fields: dict[str, str] = {}
    for group in groups:
        if isinstance(group, Message):
            fields.update(_fields(group))
    feedback_type = fields.get("feedback-type", "").lower()
    if not feedback_type:
        return Verdict("not_understood", "a malformed feedback report (no Feedback-Type)")
    if feedback_type == "not-spam":
        return Verdict("not_understood", "a feedback report saying the message is not spam")
    tokens = tuple(dict.fromkeys([*envelope, *_returned_tokens(message, base_url)]))
    addresses = [a for _, a in getaddresses([fields.get("original-rcpt-to", "")]) if "@" in a]
    original = _original_headers(message)
    if original is not None:
        addresses += [a for _, a in getaddresses([_header(original, "To")]) if "@" in a]
    return Verdict(
        "complaint", f"{feedback_type} complaint", "", tokens, tuple(dict.fromkeys(addresses))
    )


# -- unsubscribe requests and automatic replies --------------------------------------------


def _unsubscribe_request(message: Message, unsubscribe_address: str) -> Verdict:
    if unsubscribe_address:
        sent_to = {
            a.lower()
            for name in ("To", "Delivered-To", "X-Original-To", "Cc")
            for _, a in getaddresses([_header(message, name)])
        }
        if unsubscribe_address.lower() not in sent_to:
            return Verdict("not_understood", "subject 'unsubscribe' but not sent to its address")
    sender = parseaddr(_header(message, "From"))[1]
    if "@" not in sender:
        return Verdict("not_understood", "an unsubscribe request without a sender address")
    return Verdict("unsubscribe", "request by email", "", (), (sender,))


def _is_automatic(message: Message) -> bool:
    """An auto-reply (RFC 3834 ``Auto-Submitted`` and the common older markers)."""
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return True
    if any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    return _header(message, "Precedence").strip().lower() in ("auto_reply", "bulk", "junk")


# -- helpers --------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _verp_tokens(message: Message, base: str) -> list[str]:
    if not base:
        return []
    found = []
    for name in _ENVELOPE_HEADERS:
        for value in message.get_all(name) or []:
            for _, address in getaddresses([str(value)]):
                token = verp_token(address, base)
                if token:
                    found.append(token)
    return found


def _original_headers(message: Message) -> Message | None:
    """The headers of our message that the report carries back, if it does."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "text/rfc822-header"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def _returned_tokens(message: Message, base_url: str) -> list[str]:
    """Tokens in the returned ``List-Unsubscribe`` header: ``<{base_url}/u/TOKEN>``."""
    original = _original_headers(message)
    if original is None:
        return []
    value = " ".join(_header(original, "List-Unsubscribe").split())
    prefix = re.escape(base_url.rstrip("/")) if base_url else r"https?://[^\s<>]*?"
    return re.findall(prefix + r"/u/(" + _TOKEN.pattern + r")>", value)
