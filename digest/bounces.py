"""``digest bounces``: read the bounce mailbox and clean the list with what came back.

Each message is read from an IMAP folder (TLS), a Maildir or an mbox file,
classified by ``digest.dsn``, and acted on in one transaction with its record
in ``bounce_events``:

* a hard bounce (5.x.x) suppresses the address at once (status ``bounced``);
* a soft bounce (4.x.x) is counted; ``[bounces] soft_limit`` of them suppress;
* a complaint (ARF) or a mailto unsubscribe request unsubscribes.

Only then is the message marked as done in the mailbox: flagged ``\\Seen
$DigestProcessed`` on IMAP, moved to the ``processed`` sub-folder of a Maildir.
An mbox is not rewritten (the mail server appends to it while we read); the
record, keyed by a hash of the message's bytes, is what keeps a second run from
counting a message twice, whatever the mailbox. Messages not understood, and
messages over ``[bounces] max_message_bytes``, are left exactly where they are.
``dry_run`` reads and reports, and changes nothing anywhere.
"""

from __future__ import annotations

import contextlib
import email
import hashlib
import imaplib
import logging
import mailbox
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from . import dsn
from .config import Settings
from .db import Connection, Store
from .db import bounces as bounce_rows
from .db import subscribers as subscriber_rows
from .errors import DigestError, SubscriberError
from .models import Subscriber
from .subscribers import normalize_email

__all__ = [
    "BounceReport",
    "Item",
    "Outcome",
    "mask",
    "open_source",
    "process",
    "process_on_schedule",
]

log = logging.getLogger(__name__)

PROCESSED_KEYWORD = "$DigestProcessed"
PROCESSED_FOLDER = "processed"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_MULTIPARTS = 50
_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One message: where it is (``label``), its key in the mailbox, its bytes.

    ``data`` is None when the message is over the size cap; ``size`` says how big.
    """

    label: str
    key: str
    data: bytes | None
    size: int


class Source(Protocol):
    """A mailbox: its messages, and a way to set one aside once processed."""

    name: str

    def messages(self) -> Iterator[Item]: ...

    def mark_done(self, item: Item) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """One row of the report: the message, what it was, whom it concerned, what was done."""

    message: str
    kind: str
    subscriber: str
    action: str


@dataclass
class BounceReport:
    source: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        listed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items()))
        prefix = "Dry run, nothing changed: " if self.dry_run else ""
        return f"{prefix}{len(self.outcomes)} message(s) in {self.source}: {listed or 'none'}."


def mask(address: str) -> str:
    """``jeanne@example.org`` → ``j***@example.org``: enough to recognize, not to harvest."""
    local, at, domain = address.rpartition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


# -- processing -----------------------------------------------------------------------------


def process(
    settings: Settings, store: Store, source: Source, *, dry_run: bool = False
) -> BounceReport:
    """Classify every message of ``source`` and act on those understood."""
    report = BounceReport(source.name, dry_run)
    mailto = settings.newsletter.unsubscribe_mailto.removeprefix("mailto:")
    options = {
        "return_base": settings.bounces.return_path,
        "unsubscribe_address": mailto or settings.newsletter.from_address,
        "base_url": settings.web.base_url,
    }
    for item in source.messages():
        if item.data is None:
            cap = settings.bounces.max_message_bytes
            action = f"left untouched: {item.size} bytes, over the {cap}-byte cap"
            report.outcomes.append(Outcome(item.label, "too_large", "", action))
            continue
        verdict = _classify(item.data, options)
        if verdict.kind == "not_understood":
            outcome = Outcome(item.label, verdict.kind, "", f"left untouched: {verdict.detail}")
            report.outcomes.append(outcome)
            continue
        digest = hashlib.sha256(item.data).hexdigest()
        with store.begin() as conn:
            outcome = _act(conn, settings, item, verdict, digest, dry_run)
        report.outcomes.append(outcome)
        if not dry_run:
            source.mark_done(item)
    return report


def _classify(data: bytes, options: dict[str, str]) -> dsn.Verdict:
    # A bounce has a handful of MIME parts; the email package takes seconds on
    # hundreds of nested ones, so such a message is not parsed at all.
    if len(_BOUNDARY.findall(data)) > MAX_MULTIPARTS:
        return dsn.Verdict("not_understood", f"more than {MAX_MULTIPARTS} multipart sections")
    try:
        return dsn.classify(email.message_from_bytes(data), **options)
    except RecursionError:  # the email package recurses once per nested part
        return dsn.Verdict("not_understood", "MIME parts nested too deeply to read")


def _act(
    conn: Connection,
    settings: Settings,
    item: Item,
    verdict: dsn.Verdict,
    digest: str,
    dry_run: bool,
) -> Outcome:
    """Apply one understood message to the list and record it (unless ``dry_run``)."""
    if bounce_rows.is_recorded(conn, digest):
        return Outcome(item.label, verdict.kind, "", "processed by an earlier run: not counted")
    found = _subscriber(conn, verdict)
    would = "would be " if dry_run else ""
    if found is None or found.id is None:
        action = "unknown recipient: nothing changed"
    elif verdict.kind == "hard_bounce":
        changed = _leave(conn, found, "bounced", dry_run)
        action = f"{would}suppressed ({verdict.detail})" if changed else _unchanged(found)
    elif verdict.kind == "soft_bounce":
        count = bounce_rows.soft_bounces(conn, found.id) + 1
        limit = settings.bounces.soft_limit
        if count < limit:
            action = f"soft bounce {count} of {limit} counted ({verdict.detail})"
        elif _leave(conn, found, "bounced", dry_run):
            action = f"{would}suppressed after {count} soft bounces"
        else:
            action = _unchanged(found)
    else:  # complaint or unsubscribe request
        changed = _leave(conn, found, "unsubscribed", dry_run)
        action = f"{would}unsubscribed ({verdict.detail})" if changed else _unchanged(found)
    if not dry_run:
        bounce_rows.record(
            conn,
            message_hash=digest,
            kind=verdict.kind,
            subscriber_id=None if found is None else found.id,
            status_code=verdict.status,
            action=action,
            detail=verdict.detail,
        )
    return Outcome(item.label, verdict.kind, mask(found.email) if found else "", action)


def _leave(conn: Connection, found: Subscriber, status: str, dry_run: bool) -> bool:
    """Take ``found`` off the list as ``status``; False if they were not active.

    In a dry run nothing is written; the answer says whether it would change.
    """
    assert found.id is not None
    if dry_run:
        return found.status == "active"
    if status == "bounced":
        return subscriber_rows.mark_bounced(conn, found.id)
    return subscriber_rows.unsubscribe(conn, found.id)


def _unchanged(found: Subscriber) -> str:
    return f"already {found.status}: nothing changed"


def _subscriber(conn: Connection, verdict: dsn.Verdict) -> Subscriber | None:
    """The subscriber a message names: by token first, then by address."""
    for token in verdict.tokens:
        found = subscriber_rows.with_token(conn, token)
        if found is not None:
            return found
    for address in verdict.addresses:
        try:
            folded = normalize_email(address).casefold()  # as the list compares addresses
        except SubscriberError:
            continue  # a report naming garbage names nobody
        found = subscriber_rows.find(conn, folded, str.casefold)
        if found is not None:
            return found
    return None


# -- choosing the mailbox -------------------------------------------------------------------


def open_source(
    settings: Settings,
    *,
    imap: str | None = None,
    maildir: str | Path | None = None,
    mbox: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Source:
    """The mailbox the command line names, else the one ``[bounces]`` configures."""
    given = [(k, v) for k, v in (("imap", imap), ("maildir", maildir), ("mbox", mbox)) if v]
    if len(given) > 1:
        raise DigestError("give one mailbox: --imap, --maildir or --mbox, not several")
    if not given:
        configured = settings.bounces
        given = [
            (k, v)
            for k, v in (
                ("imap", configured.imap),
                ("maildir", configured.maildir and settings.base_dir / configured.maildir),
                ("mbox", configured.mbox and settings.base_dir / configured.mbox),
            )
            if v
        ][:1]
    if not given:
        raise DigestError(
            "no bounce mailbox given",
            hint="pass --imap URL, --maildir DIR or --mbox FILE, or set one in [bounces]",
        )
    kind, where = given[0]
    cap = settings.bounces.max_message_bytes
    if kind == "maildir":
        return MaildirSource(Path(where), cap)
    if kind == "mbox":
        return MboxSource(Path(where), cap)
    env = os.environ if environ is None else environ
    return ImapSource(str(where), env.get("DIGEST_IMAP_PASSWORD", ""), cap)


def process_on_schedule(settings: Settings, store: Store) -> BounceReport | None:
    """The scheduler's hook: process the configured mailbox if ``[bounces] on_schedule``.

    Never raises: a mailbox that cannot be read is logged, and next week's run
    goes ahead.
    """
    if not settings.bounces.on_schedule:
        return None
    try:
        source = open_source(settings)
        try:
            report = process(settings, store, source)
        finally:
            source.close()
    except DigestError as exc:
        log.error("bounce processing failed: %s", exc)
        return None
    log.info("bounces: %s", report.summary())
    return report


# -- mailboxes ------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int | None = ..., /) -> bytes: ...


def _read_capped(handle: _Readable, cap: int) -> tuple[bytes | None, int]:
    """The message's bytes, or None and its size when over ``cap`` (never all in memory)."""
    data = handle.read(cap + 1)
    if len(data) <= cap:
        return data, len(data)
    size = len(data)
    while chunk := handle.read(1 << 20):
        size += len(chunk)
    return None, size


class MaildirSource:
    """A Maildir folder; processed messages move to its ``processed`` sub-folder."""

    def __init__(self, path: Path, cap: int) -> None:
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise DigestError(
                f"{path}: not a Maildir folder (it has no cur/ and new/ folders)",
                hint="give the folder that holds cur/, new/ and tmp/",
            )
        self.name = str(path)
        self.box = mailbox.Maildir(path, factory=None, create=False)
        self.cap = cap

    def messages(self) -> Iterator[Item]:
        for key in sorted(self.box.keys()):
            with self.box.get_file(key) as handle:
                data, size = _read_capped(handle, self.cap)
            yield Item(key, key, data, size)

    def mark_done(self, item: Item) -> None:
        message = self.box.get_message(item.key)
        message.set_subdir("cur")
        message.add_flag("S")
        self.box.add_folder(PROCESSED_FOLDER).add(message)
        self.box.remove(item.key)

    def close(self) -> None:
        self.box.close()


class MboxSource:
    """An mbox file, read only: the database record stops a second count."""

    def __init__(self, path: Path, cap: int) -> None:
        if not path.is_file():
            raise DigestError(f"{path}: no such mbox file", hint="give the path of an mbox file")
        self.name = str(path)
        self.box = mailbox.mbox(path, factory=None, create=False)
        self.cap = cap

    def messages(self) -> Iterator[Item]:
        for number, key in enumerate(self.box.keys(), 1):
            with self.box.get_file(key) as handle:
                data, size = _read_capped(handle, self.cap)
            yield Item(f"#{number}", str(key), data, size)

    def mark_done(self, item: Item) -> None:
        """Nothing: rewriting a spool the mail server appends to would risk losing mail."""

    def close(self) -> None:
        self.box.close()


class ImapSource:
    """An IMAP folder over TLS: ``imaps://user@host[:port]/FOLDER``.

    ``imap://`` (no TLS) is accepted for a server on this machine only, where
    nothing crosses a network. Messages are read with ``BODY.PEEK`` (reading
    does not mark them seen); processed ones get ``\\Seen`` and our keyword,
    and the search skips them next time.
    """

    def __init__(self, url: str, password: str, cap: int, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("imaps", "imap") or not host or not parts.username:
            raise DigestError(
                f"not an IMAP URL: {_without_password(url)}",
                hint="use imaps://user@host[:port]/FOLDER (the password in DIGEST_IMAP_PASSWORD)",
            )
        if parts.password:
            raise DigestError(
                "the IMAP URL carries a password", hint="set DIGEST_IMAP_PASSWORD instead"
            )
        if parts.scheme == "imap" and host not in _LOOPBACK:
            raise DigestError(
                f"imap:// to {host} would send the password in clear",
                hint="use imaps:// (TLS); imap:// is only for a server on this machine",
            )
        if not password:
            raise DigestError(
                "no IMAP password", hint="set DIGEST_IMAP_PASSWORD in the environment"
            )
        self.cap = cap
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.name = f"{parts.scheme}://{host}/{folder}"
        try:
            port = parts.port or (993 if parts.scheme == "imaps" else 143)
        except ValueError:
            raise DigestError(f"not an IMAP URL: bad port in {_without_password(url)}") from None
        try:
            if parts.scheme == "imaps":
                context = ssl.create_default_context()
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=timeout
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise DigestError(f"cannot reach the IMAP server {host}:{port}: {exc}") from None
        try:
            self.imap.login(unquote(parts.username), password)
            status, detail = self.imap.select(_quoted(folder))
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise DigestError(
                f"IMAP server {host} refused the login of {unquote(parts.username)}: {exc}",
                hint="check the user name in the URL and DIGEST_IMAP_PASSWORD",
            ) from None
        if status != "OK":
            self.close()
            raise DigestError(f"IMAP folder {folder!r} cannot be opened: {_text(detail)}")

    def messages(self) -> Iterator[Item]:
        try:
            yield from self._messages()
        except (OSError, imaplib.IMAP4.error) as exc:
            raise DigestError(f"IMAP connection to {self.name} failed: {exc}") from None

    def _messages(self) -> Iterator[Item]:
        status, data = self.imap.uid("SEARCH", "UNKEYWORD", PROCESSED_KEYWORD)
        if status != "OK":
            raise DigestError(f"IMAP search failed: {_text(data)}")
        for raw_uid in (data[0] or b"").split():
            uid = raw_uid.decode("ascii")
            label = f"UID {uid}"
            _, sized = self.imap.uid("FETCH", uid, "(RFC822.SIZE)")
            found = re.search(rb"RFC822\.SIZE (\d+)", _first_bytes(sized))
            size = int(found.group(1)) if found else 0
            if size > self.cap:
                yield Item(label, uid, None, size)
                continue
            _, fetched = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            body = next((p[1] for p in fetched if isinstance(p, tuple)), b"")
            yield Item(label, uid, body, len(body))

    def mark_done(self, item: Item) -> None:
        try:
            self.imap.uid("STORE", item.key, "+FLAGS", f"(\\Seen {PROCESSED_KEYWORD})")
        except (OSError, imaplib.IMAP4.error) as exc:
            # recorded already: the next run skips it by its hash and flags it then
            log.warning("could not flag %s as processed: %s", item.label, exc)

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.imap.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first_bytes(data: list[object]) -> bytes:
    first = data[0] if data else b""
    if isinstance(first, tuple):
        first = first[0]
    return first if isinstance(first, bytes) else b""


def _text(data: object) -> str:
    if isinstance(data, list) and data and isinstance(data[0], bytes):
        return data[0].decode("utf-8", "replace")
    return str(data)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
