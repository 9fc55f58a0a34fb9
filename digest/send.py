"""Sending an issue: the delivery ledger, the SMTP transport, rate and retries.

The ledger (table ``deliveries``, one row per issue and subscriber) is the
source of truth, not a cursor. Its states::

    queued ──▶ sending ──▶ sent
                  │  ├───▶ failed_temp (4xx: retried later with backoff, within the window)
                  │  ├───▶ failed_perm (5xx: never retried; a refused address bounces)
                  │  └───▶ queued      (connection lost before the end of DATA: not accepted)
                  └──(process died)──▶ uncertain (found in ``sending`` at the next start)
    queued ──▶ skipped   (the subscriber left after the snapshot)

A row is committed as ``sending`` before its message's last byte goes to the
server and as ``sent`` right after the server's ``250``. A crash between those
two commits leaves ``sending``; the next run cannot know whether the server
took the message, so it marks the row ``uncertain`` and reports it instead of
sending twice (``resend_uncertain=True`` re-queues them when the editor says
so). Every other row is either done or still ``queued``: a crash or ``kill -9``
at any moment loses no one and duplicates no one.

A connection lost while the message is still being written cannot have been
accepted (the server only takes a message at the final ``.``), so that row goes
back to ``queued`` and the send reconnects. A connection lost while waiting for
the answer to the final ``.`` may have been accepted: ``uncertain``.

Only one process sends a given issue (``Store.lock("send:PERIOD")``, a lease in
the database renewed while sending); inside it, ``SendSettings.connections``
threads share a rate limiter and the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import signal
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .compose import MessageFactory
from .config import Settings, SmtpSettings
from .db import Store, issues, locks
from .db.schema import UTCDateTime, deliveries, subscribers, utcnow
from .errors import DeliveryError, IssueError
from .models import Issue, RenderedIssue, Subscriber

__all__ = [
    "Failure",
    "SendAborted",
    "SendProgress",
    "SendReport",
    "SmtpTransport",
    "send_issue",
]

log = logging.getLogger("digest.send")

BATCH = 50
LOCK_TTL = dt.timedelta(minutes=2)
LOCK_RENEW_SECONDS = 30.0
MAX_REQUEUES = 3
"""A message whose connection drops this many times is treated as a 4xx (backoff)."""
RETRY_DELAYS_MINUTES = (5, 10, 20, 40, 80, 160, 240)
"""Backoff after each temporary failure; the last value repeats until the window closes."""
CONNECT_ATTEMPTS = 3


class Failure(NamedTuple):
    address: str
    reason: str


@dataclass
class SendProgress:
    """Passed to the ``progress`` callback after each message."""

    done: int
    total: int
    status: str
    address: str
    counts: dict[str, int]


@dataclass
class SendReport:
    period: str
    counts: dict[str, int] = field(default_factory=dict)
    """Every ledger row of the issue by status, after this run."""
    attempted: int = 0
    """Messages handed to the server by this run."""
    sent: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    """Addresses that failed for good in this run (5xx, or 4xx past the retry window)."""
    uncertain: list[str] = field(default_factory=list)
    """Addresses whose message may or may not have been accepted (crash after handing it)."""
    retry_pending: int = 0
    retry_at: dt.datetime | None = None
    complete: bool = False
    """Everyone in the snapshot was attempted: nothing queued, sending or awaiting a retry."""
    stopped: str = ""
    """Why the run ended before ``complete``, when it did."""
    dry_run: bool = False
    test_to: str = ""

    def summary(self) -> str:
        if self.test_to:
            return f"test message for {self.period} sent to {self.test_to}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "no deliveries"
        if self.dry_run:
            return f"{self.period}: dry run: {counts}; nothing sent"
        text = f"{self.period}: {counts}"
        if self.retry_pending:
            text += f"; {self.retry_pending} awaiting retry"
            if self.retry_at:
                text += f" (next at {self.retry_at:%Y-%m-%d %H:%M} UTC)"
        if self.uncertain:
            text += (
                f"; {len(self.uncertain)} uncertain (may have been delivered; "
                "re-send them only if they did not get it)"
            )
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        return text


class SendAborted(DeliveryError):
    """The send stopped early; ``report`` says where it got. Running again resumes."""

    def __init__(self, message: str, report: SendReport, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.report = report


# -- SMTP ----------------------------------------------------------------------------------


class Outcome(NamedTuple):
    status: str
    """sent | failed_temp | failed_perm | requeue (not accepted, no fault of the address)
    | uncertain."""
    detail: str = ""
    bounce: bool = False
    """A permanent refusal of the address itself (hard bounce)."""


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"[:300]


_ADDRESS_ENHANCED = re.compile(r"\b5\.1\.\d+\b")


class SmtpTransport:
    """One SMTP connection, reused across messages and reopened when dropped.

    Errors that stop the whole send (server unreachable, TLS or login refused,
    our sender refused) raise ``DeliveryError``; per-message results come back
    as an ``Outcome``. The password is only ever handed to ``smtplib.login``.
    """

    def __init__(self, settings: SmtpSettings, local_hostname: str) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.smtp: smtplib.SMTP | None = None
        self.where = f"{settings.host}:{settings.port}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def connect(self) -> None:
        s = self.settings
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, self.local_hostname, timeout=s.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, self.local_hostname, timeout=s.timeout)
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise DeliveryError(
                        f"SMTP server {self.where} does not offer STARTTLS; "
                        "refusing to send in cleartext",
                        hint="use security = 'ssl' if the server expects TLS from the start "
                        "(port 465), or fix the server",
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.username:
                self._login(smtp)
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"SMTP server {self.where}: TLS certificate not accepted: {exc.verify_message}",
                hint="fix the server's certificate; set [smtp] verify_tls = false only for a "
                "test server",
            ) from None
        except smtplib.SMTPConnectError as exc:
            raise DeliveryError(
                f"cannot reach SMTP server {self.where}: {_reply(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(
                f"cannot reach SMTP server {self.where}: {exc}",
                hint="check [smtp] host, port and security (or DIGEST_SMTP_HOST/PORT/SECURITY)",
            ) from None
        with suppress(OSError, AttributeError):
            # Commands are small writes each awaiting a reply: Nagle's algorithm
            # would hold the tail of each message back waiting for an ACK.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        self.smtp = smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if s.security == "none" and s.host not in ("localhost", "127.0.0.1", "::1"):
            smtp.close()
            raise DeliveryError(
                f"refusing to send the SMTP password to {self.where} in cleartext",
                hint="set [smtp] security = 'starttls' or 'ssl'",
            )
        if not smtp.has_extn("auth"):
            smtp.close()
            raise DeliveryError(
                f"SMTP server {self.where} does not offer AUTH, but a username is set",
                hint="unset DIGEST_SMTP_USERNAME, or use security = 'starttls'/'ssl' "
                "(many servers offer AUTH only over TLS)",
            )
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        try:
            # One mechanism, not smtplib's try-them-all: each failed attempt counts
            # against the account on many relays.
            if "PLAIN" in offered or "LOGIN" in offered:
                mechanism = "PLAIN" if "PLAIN" in offered else "LOGIN"
                smtp.user, smtp.password = s.username, s.password
                try:
                    authenticate = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
                    smtp.auth(mechanism, authenticate, initial_response_ok=True)
                finally:
                    smtp.password = ""
            else:
                smtp.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DeliveryError(
                f"SMTP server {self.where} refused the login of {s.username!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}",
                hint="check DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPException as exc:
            smtp.close()
            raise DeliveryError(
                f"SMTP server {self.where}: login of {s.username!r} failed: {type(exc).__name__}",
                hint="check DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD",
            ) from None

    def close(self) -> None:
        if self.smtp is not None:
            with suppress(Exception):
                self.smtp.quit()
            with suppress(Exception):
                self.smtp.close()
        self.smtp = None

    def _drop(self) -> None:
        if self.smtp is not None:
            with suppress(Exception):
                self.smtp.close()
        self.smtp = None

    def send(self, sender: str, recipient: str, message: bytes, smtputf8: bool) -> Outcome:
        """One SMTP transaction for one recipient; never raises for a per-message problem.

        Written out (MAIL, RCPT, DATA, the body, the final reply) rather than
        ``sendmail`` so that a dropped connection tells us on which side of the
        final ``.`` it happened: before, the message was not accepted; after, it
        may have been.
        """
        if self.smtp is None:
            self.connect()
        smtp = self.smtp
        assert smtp is not None
        try:
            options = ""
            smtp.command_encoding = "ascii"
            if smtputf8:
                if not smtp.has_extn("smtputf8"):
                    return Outcome(
                        "failed_perm",
                        "the server does not accept addresses "
                        "with non-ASCII characters (no SMTPUTF8)",
                    )
                options = " SMTPUTF8 BODY=8BITMIME"
                smtp.command_encoding = "utf-8"
            # Commands written out rather than mail()/rcpt(): those re-parse each
            # address with email.utils, a cost per recipient for validated addresses.
            commands = f"MAIL FROM:<{sender}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
            if smtp.has_extn("pipelining"):
                # RFC 2920: the three commands in one write, then their three
                # replies in order: one round trip instead of three.
                smtp.send(commands)
                replies = [smtp.getreply() for _ in range(3)]
            else:
                replies = []
                for command in commands.splitlines():
                    smtp.send(command + "\r\n")
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in (250, 251):
                        break
            refusal = self._check_envelope(replies)
            if refusal is not None:
                return refusal
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("requeue", f"connection lost before the message was sent: {exc}")
        try:
            if b"\n." in message or message.startswith(b"."):
                message = re.sub(rb"(?m)^\.", b"..", message)  # RFC 5321 4.5.2
            if not message.endswith(b"\r\n"):
                message += b"\r\n"
            smtp.send(message + b".\r\n")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("requeue", f"connection lost while sending the message: {exc}")
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("uncertain", f"connection lost waiting for the server's answer: {exc}")
        if code == 250:
            return Outcome("sent", _reply(code, reply))
        return self._refused("end of DATA", code, reply, after_data=True)

    def _check_envelope(self, replies: list[tuple[int, bytes]]) -> Outcome | None:
        """None if MAIL, RCPT and DATA were accepted (354), else the outcome to record."""
        stages = ("MAIL FROM", "RCPT TO", "DATA")
        for index, (code, reply) in enumerate(replies):
            accepted = code == 354 if index == 2 else code in (250, 251)
            if accepted:
                continue
            if len(replies) == 3 and replies[2][0] == 354:
                # Pipelined, and the server still opened DATA after a refusal:
                # close it with an empty message so the session stays in step.
                assert self.smtp is not None
                self.smtp.send(b".\r\n")
                self.smtp.getreply()
            return self._refused(
                stages[index],
                code,
                reply,
                sender_refused=index == 0,
                bounce=index == 1 and code >= 500,
            )
        return None

    def _refused(
        self,
        stage: str,
        code: int,
        reply: bytes,
        *,
        bounce: bool = False,
        sender_refused: bool = False,
        after_data: bool = False,
    ) -> Outcome:
        detail = f"{stage}: {_reply(code, reply)}"
        if code == 421 or code == -1:  # the server is closing the connection
            self._drop()
            return Outcome("requeue", detail)
        if not after_data:
            with suppress(smtplib.SMTPException, OSError):
                self.smtp.rset()  # type: ignore[union-attr]
        if sender_refused and code >= 500:
            raise DeliveryError(
                f"SMTP server {self.where} refuses our sender address: {detail}",
                hint="check [newsletter] from_address and that the relay lets you send as it",
            )
        if 400 <= code < 500:
            return Outcome("failed_temp", detail)
        if not bounce and after_data:
            # 5xx at the end of DATA is mostly about the content (spam, size), not
            # the address; only an enhanced code 5.1.x says the mailbox is bad.
            bounce = bool(_ADDRESS_ENHANCED.search(detail))
        return Outcome("failed_perm", detail, bounce=bounce)


# -- the ledger ----------------------------------------------------------------------------


class Due(NamedTuple):
    id: int
    subscriber_id: int
    email: str
    name: str
    language: str
    token: str
    attempts: int


class Finished(NamedTuple):
    row: Due
    status: str
    detail: str
    retry_at: dt.datetime | None = None
    bounce: bool = False


# The per-message statements, written once: built per call, SQLAlchemy's statement
# construction and cache-key work would cost more than SQLite itself.
def _sql(text: str) -> sa.TextClause:
    return sa.text(text).bindparams(
        *(
            sa.bindparam(name, type_=UTCDateTime())
            for name in ("now", "retry_at")
            if f":{name}" in text
        )
    )


_SQL_SENT = _sql(
    "UPDATE deliveries SET status = 'sent', updated_at = :now, sent_at = :now, "
    "next_attempt_at = NULL, last_error = NULL WHERE id = :id AND status = 'sending'"
)
_SQL_FINISH = _sql(
    "UPDATE deliveries SET status = :status, updated_at = :now, next_attempt_at = :retry_at, "
    "last_error = :error WHERE id = :id AND status = 'sending'"
)
_SQL_BOUNCE = _sql(
    "UPDATE subscribers SET status = 'bounced', updated_at = :now "
    "WHERE id = :sid AND status = 'active'"
)
_SQL_START = _sql(
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = :now "
    "WHERE id = :id AND status IN ('queued', 'failed_temp') AND EXISTS "
    "(SELECT 1 FROM subscribers WHERE subscribers.id = :sid AND subscribers.status = 'active')"
)
_SQL_SKIP = _sql(
    "UPDATE deliveries SET status = 'skipped', updated_at = :now, next_attempt_at = NULL, "
    "last_error = 'no longer subscribed' WHERE id = :id AND status IN ('queued', 'failed_temp')"
)


class Ledger:
    """The ``deliveries`` rows of one issue, written one short transaction at a time.

    One lock serialises this process's writes: SQLite has a single writer, and
    waiting on our own lock is cheaper than SQLite's busy-retry sleeps.
    """

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self.lock = threading.Lock()
        self.conn: Connection = store.engine.connect()
        self.pg = store.engine.dialect.name == "postgresql"

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.lock, self.conn.begin():
            yield self.conn

    def snapshot(self) -> int:
        """Queue every active subscriber, once per issue; return how many were added.

        The list is the one taken when sending started: a resume or a retry run
        finds the ledger already filled and adds nobody, so someone who subscribed
        since waits for the next issue.
        """
        now = utcnow()
        already = sa.select(deliveries.c.id).where(
            deliveries.c.issue_id == self.issue_id,
            deliveries.c.subscriber_id == subscribers.c.id,
        )
        source = sa.select(
            sa.literal(self.issue_id),
            subscribers.c.id,
            subscribers.c.email,
            sa.literal("queued"),
            sa.literal(0),
            sa.literal(now, type_=deliveries.c.updated_at.type),
        ).where(subscribers.c.status == "active", ~sa.exists(already))
        with self._tx() as conn:
            started = conn.execute(
                sa.select(deliveries.c.id).where(deliveries.c.issue_id == self.issue_id).limit(1)
            ).first()
            if started is not None:
                return 0
            result = conn.execute(
                sa.insert(deliveries).from_select(
                    ["issue_id", "subscriber_id", "email", "status", "attempts", "updated_at"],
                    source,
                )
            )
            return max(int(result.rowcount or 0), 0)

    def recover(self, resend_uncertain: bool) -> None:
        """Rows left ``sending`` by a dead process become ``uncertain``; maybe re-queue those."""
        now = utcnow()
        mine = deliveries.c.issue_id == self.issue_id
        with self._tx() as conn:
            stale = conn.execute(
                sa.update(deliveries)
                .where(mine, deliveries.c.status == "sending")
                .values(
                    status="uncertain",
                    updated_at=now,
                    last_error="the process stopped after handing the message to the server "
                    "and before recording the answer",
                )
            ).rowcount
            if stale:
                log.warning("%d recipient(s) marked uncertain after an interrupted send", stale)
            if resend_uncertain:
                conn.execute(
                    sa.update(deliveries)
                    .where(mine, deliveries.c.status == "uncertain")
                    .values(status="queued", updated_at=now, next_attempt_at=None)
                )

    def due(self, after_id: int, limit: int) -> list[Due]:
        """The next rows to send after ``after_id``: queued ones and retries now due.

        Two queries rather than one with OR: each walks the (issue, status)
        index in id order and stops at ``limit``; the OR form made SQLite
        collect and sort every remaining row for each batch (quadratic).
        """
        now = utcnow()
        columns = (
            deliveries.c.id,
            deliveries.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.language,
            subscribers.c.token,
            deliveries.c.attempts,
        )
        queued = deliveries.c.status == "queued"
        retries = sa.and_(
            deliveries.c.status == "failed_temp",
            deliveries.c.next_attempt_at.is_not(None),
            deliveries.c.next_attempt_at <= now,
        )
        rows: list[Due] = []
        with self._tx() as conn:
            for condition in (queued, retries):
                query = (
                    sa.select(*columns)
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .where(
                        deliveries.c.issue_id == self.issue_id,
                        condition,
                        deliveries.c.id > after_id,
                    )
                    .order_by(deliveries.c.id)
                    .limit(limit)
                )
                if self.pg:
                    # Several senders (one per machine) can share an issue's queue.
                    query = query.with_for_update(of=deliveries, skip_locked=True)
                rows.extend(Due(*row) for row in conn.execute(query))
        return sorted(rows)[:limit]

    def _due_clause(self, now: dt.datetime) -> sa.ColumnElement[bool]:
        return sa.and_(
            deliveries.c.issue_id == self.issue_id,
            sa.or_(
                deliveries.c.status == "queued",
                sa.and_(
                    deliveries.c.status == "failed_temp",
                    deliveries.c.next_attempt_at.is_not(None),
                    deliveries.c.next_attempt_at <= now,
                ),
            ),
        )

    def due_count(self) -> int:
        with self._tx() as conn:
            query = sa.select(sa.func.count()).where(self._due_clause(utcnow()))
            return int(conn.execute(query).scalar_one())

    def step(self, done: Finished | None, start: Due | None) -> str:
        """Record ``done``'s outcome and/or mark ``start`` as being sent, in one transaction.

        ``start`` is only marked if its subscriber is still active (else it
        becomes ``skipped``) and nobody else took it; returns ``"started"``,
        ``"skipped"`` or ``"taken"`` (``""`` without ``start``). The sender calls it
        twice per message (start, then outcome), so that a crash between two
        recipients leaves nobody ``uncertain``.
        """
        now = utcnow()
        result = ""
        with self._tx() as conn:
            if done is not None:
                if done.status == "sent":
                    conn.execute(_SQL_SENT, {"id": done.row.id, "now": now})
                else:
                    conn.execute(
                        _SQL_FINISH,
                        {
                            "id": done.row.id,
                            "now": now,
                            "status": done.status,
                            "retry_at": done.retry_at,
                            "error": done.detail,
                        },
                    )
                if done.bounce:
                    conn.execute(_SQL_BOUNCE, {"sid": done.row.subscriber_id, "now": now})
            if start is not None:
                params = {"id": start.id, "sid": start.subscriber_id, "now": now}
                if conn.execute(_SQL_START, params).rowcount:
                    result = "started"
                elif conn.execute(_SQL_SKIP, {"id": start.id, "now": now}).rowcount:
                    result = "skipped"
                else:
                    result = "taken"  # another sender got there first (shared queue)
        return result

    def counts(self) -> dict[str, int]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_id == self.issue_id)
                .group_by(deliveries.c.status)
            )
            return {str(status): int(n) for status, n in rows}

    def pending_retries(self) -> tuple[int, dt.datetime | None]:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.issue_id == self.issue_id,
                    deliveries.c.status == "failed_temp",
                    deliveries.c.next_attempt_at.is_not(None),
                )
            ).one()
            return int(row[0]), row[1]

    def uncertain(self) -> list[str]:
        with self._tx() as conn:
            return list(
                conn.execute(
                    sa.select(deliveries.c.email)
                    .where(
                        deliveries.c.issue_id == self.issue_id, deliveries.c.status == "uncertain"
                    )
                    .order_by(deliveries.c.id)
                ).scalars()
            )


def retry_time(attempts: int, window_hours: float, now: dt.datetime) -> dt.datetime | None:
    """When to retry after the ``attempts``-th temporary failure; None once past the window."""
    delays = [RETRY_DELAYS_MINUTES[min(i, len(RETRY_DELAYS_MINUTES) - 1)] for i in range(attempts)]
    # Time already spent retrying (approximately: the delays before this failure) plus the next.
    if sum(delays) > window_hours * 60:
        return None
    return now + dt.timedelta(minutes=delays[-1])


# -- the send loop -------------------------------------------------------------------------


class _Pacer:
    """Spaces messages ``1/rate`` seconds apart across every connection."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        if slot > now:
            stop.wait(slot - now)


@dataclass
class _Run:
    """State shared by the sending threads of one ``send_issue`` call."""

    report: SendReport
    total: int
    max_failures: int
    progress: Callable[..., None] | None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    consecutive_failures: int = 0
    last_failure: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    fatal: BaseException | None = None

    def record(self, status: str, address: str, detail: str) -> None:
        with self.lock:
            self.done += 1
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "sent":
                self.consecutive_failures = 0
            elif status in ("failed_temp", "failed_perm", "requeue", "uncertain"):
                self.consecutive_failures += 1
                self.last_failure = f"{address}: {detail}"
                if self.consecutive_failures >= self.max_failures and not self.stop.is_set():
                    self.report.stopped = (
                        f"{self.consecutive_failures} failures in a row (last: {detail})"
                    )
                    log.error("stopping: %s", self.report.stopped)
                    self.stop.set()
            event = SendProgress(self.done, self.total, status, address, dict(self.counts))
        if self.progress is not None:
            self.progress(event)


def _local_hostname(settings: Settings) -> str:
    """The EHLO name: this host's name when fully qualified, else the sender's domain.

    ``smtplib`` would call ``socket.getfqdn()``, which can hang on a machine
    without working reverse DNS.
    """
    name = socket.gethostname()
    if "." in name:
        return name
    return settings.newsletter.from_address.rpartition("@")[2] or "localhost"


def _worker(
    run: _Run,
    queue: list[Due],
    queue_lock: threading.Lock,
    ledger: Ledger,
    factory: MessageFactory,
    transport: SmtpTransport,
    window: float,
    pacer: _Pacer,
) -> None:
    """Send from ``queue`` over ``transport`` (kept open for the next batch)."""
    try:
        while not run.stop.is_set():
            with queue_lock:
                if not queue:
                    break
                row = queue.pop(0)
            pacer.wait(run.stop)
            if run.stop.is_set():
                break
            if transport.smtp is None:
                _connect(transport, run)
            message = factory.build(
                Subscriber(email=row.email, name=row.name, language=row.language), row.token
            )
            started = ledger.step(None, row)
            if started == "skipped":
                with run.lock:
                    run.report.skipped += 1
                run.record("skipped", row.email, "no longer subscribed")
            if started != "started":
                continue
            try:
                outcome = transport.send(
                    factory.sender, row.email, message, factory.needs_smtputf8(row.email)
                )
            except DeliveryError as exc:  # our sender refused: not this recipient's doing
                ledger.step(Finished(row, "queued", exc.message), None)
                raise
            # Committed at once: the window in which a crash leaves this recipient
            # ``uncertain`` is only the time between the server's answer and this line.
            ledger.step(_settle(run, row, outcome, window), None)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises
        with run.lock:
            if run.fatal is None:
                run.fatal = exc
        run.stop.set()


def _connect(transport: SmtpTransport, run: _Run) -> None:
    """Connect, retrying a few times with a pause: a relay restarting is not a failure."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            transport.connect()
            return
        except DeliveryError as exc:
            unreachable = exc.message.startswith("cannot reach")
            if not unreachable or attempt == CONNECT_ATTEMPTS - 1:
                raise
            log.warning("%s; retrying in %ds", exc.message, 2**attempt)
            if run.stop.wait(2**attempt):
                raise


def _settle(run: _Run, row: Due, outcome: Outcome, window: float) -> Finished:
    """What to record for ``row`` after ``outcome``; counts it in the report."""
    status, detail = outcome.status, outcome.detail
    retry_at = None
    if status == "requeue":
        if row.attempts + 1 < MAX_REQUEUES:
            # Not accepted by the server: back in the queue, as if never tried.
            log.warning("%s: %s; will retry", row.email, detail)
            run.record("requeue", row.email, detail)
            return Finished(row, "queued", detail)
        status = "failed_temp"
    if status == "failed_temp":
        retry_at = retry_time(row.attempts + 1, window, utcnow())
        if retry_at is None:
            detail = f"{detail} (gave up after {row.attempts + 1} attempts)"
    with run.lock:
        if status == "sent":
            run.report.sent += 1
        run.report.attempted += 1
        if status == "failed_perm" or (status == "failed_temp" and retry_at is None):
            run.report.failures.append(Failure(row.email, detail))
    if status != "sent":
        log.warning("%s: %s: %s", row.email, status, detail)
    run.record(status, row.email, detail)
    return Finished(row, status, detail, retry_at, outcome.bounce)


@contextmanager
def _sigterm_stops(stop: threading.Event) -> Iterator[None]:
    """SIGTERM lets in-flight messages finish, then the send returns, resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        log.warning("SIGTERM: finishing the messages in flight, then stopping")
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def send_issue(
    settings: Settings,
    store: Store,
    issue: Issue,
    rendered: RenderedIssue,
    *,
    only_to: str | None = None,
    dry_run: bool = False,
    progress: Callable[..., None] | None = None,
    resend_uncertain: bool = False,
    stop: threading.Event | None = None,
) -> SendReport:
    """Send ``issue`` to everyone in its ledger not yet attempted; return what happened.

    ``only_to``: a test send to that one address, outside the ledger. ``dry_run``:
    count who would get it, send and record nothing. ``progress`` is called with
    a ``SendProgress`` after each message. ``stop`` (or SIGTERM) ends the send
    after the messages in flight. Raises ``LockedError`` when another process is
    sending this issue, ``DeliveryError`` when the server cannot be used
    (``SendAborted``, with the report, once sending had started).
    """
    factory = MessageFactory(rendered, settings)
    if only_to is not None:
        return _send_test(settings, store, issue, factory, only_to)
    stored = issues.get(store, issue.period)
    if stored is None or stored.id is None:
        raise IssueError(f"issue {issue.period} is not in the database", hint="run `digest draft`")
    if dry_run:
        return _dry_run(store, stored.id, issue.period)

    report = SendReport(issue.period)
    lock_name = f"send:{issue.period}"
    locks.release_if_gone(store, lock_name)
    with locks.hold(store, lock_name, ttl=LOCK_TTL) as owner:
        ledger = Ledger(store, stored.id)
        try:
            ledger.recover(resend_uncertain)
            added = ledger.snapshot()
            if added:
                log.info("%s: %d recipient(s) queued", issue.period, added)
            total = ledger.due_count()
            run = _Run(
                report,
                total,
                settings.send.max_consecutive_failures,
                progress,
                stop=stop or threading.Event(),
            )
            with _sigterm_stops(run.stop), _lease(store, lock_name, owner, run):
                _drive(run, ledger, factory, settings)
        finally:
            _finish_report(report, ledger)
            ledger.close()
        log.info("%s", report.summary())
        if run.fatal is not None:
            fatal = run.fatal
            if isinstance(fatal, DeliveryError):
                sent = report.counts.get("sent", 0)
                where = f"{sent} sent so far, nobody else" if sent else "nobody"
                raise SendAborted(
                    f"{fatal.message}; {where} was marked sent or failed",
                    report,
                    hint=fatal.hint or "fix it and run `digest send` again: it resumes",
                ) from None
            raise fatal
    return report


@contextmanager
def _lease(store: Store, name: str, owner: str, run: _Run) -> Iterator[None]:
    """Renew the lock's lease in the background while sending; stop if it is lost."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(LOCK_RENEW_SECONDS):
            if not locks.renew(store, name, owner, LOCK_TTL):
                run.report.stopped = "lost the send lock (another process may have taken over)"
                run.stop.set()
                return

    thread = threading.Thread(target=renew, name="digest-send-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _drive(run: _Run, ledger: Ledger, factory: MessageFactory, settings: Settings) -> None:
    """Feed due rows to the sending threads, batch by batch."""
    pacer = _Pacer(settings.send.rate)
    connections = max(1, settings.send.connections)
    window = settings.send.retry_window_hours
    transports = [
        SmtpTransport(settings.smtp, _local_hostname(settings)) for _ in range(connections)
    ]
    try:
        _feed(run, ledger, factory, transports, window, pacer)
    finally:
        for transport in transports:
            transport.close()
    if run.stop.is_set() and not run.report.stopped and run.fatal is None:
        run.report.stopped = "interrupted; run `digest send` again to resume"


def _feed(
    run: _Run,
    ledger: Ledger,
    factory: MessageFactory,
    transports: list[SmtpTransport],
    window: float,
    pacer: _Pacer,
) -> None:
    connections = len(transports)
    after_id = 0
    passes_without_work = 0
    while not run.stop.is_set():
        batch = ledger.due(after_id, BATCH * connections)
        if not batch:
            if after_id == 0:
                break
            after_id = 0  # once more from the top: rows re-queued after a dropped connection
            passes_without_work += 1
            if passes_without_work > MAX_REQUEUES + 1:
                break
            continue
        after_id = batch[-1].id
        queue = list(batch)
        queue_lock = threading.Lock()
        if connections == 1:
            _worker(run, queue, queue_lock, ledger, factory, transports[0], window, pacer)
        else:
            threads = [
                threading.Thread(
                    target=_worker,
                    args=(run, queue, queue_lock, ledger, factory, transport, window, pacer),
                    name=f"digest-send-{i}",
                    daemon=True,
                )
                for i, transport in enumerate(transports[: len(queue)])
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()


def _finish_report(report: SendReport, ledger: Ledger) -> None:
    report.counts = ledger.counts()
    report.uncertain = ledger.uncertain()
    report.retry_pending, report.retry_at = ledger.pending_retries()
    report.complete = (
        not report.counts.get("queued")
        and not report.counts.get("sending")
        and not report.retry_pending
    )


def _dry_run(store: Store, issue_id: int, period: str) -> SendReport:
    with store.begin() as conn:
        already = sa.select(deliveries.c.id).where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id
        )
        new = conn.execute(
            sa.select(sa.func.count()).where(subscribers.c.status == "active", ~sa.exists(already))
        ).scalar_one()
    ledger = Ledger(store, issue_id)
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    counts["queued"] = counts.get("queued", 0) + int(new)
    return SendReport(period, counts=counts, dry_run=True)


def _send_test(
    settings: Settings, store: Store, issue: Issue, factory: MessageFactory, address: str
) -> SendReport:
    from .subscribers import normalise_email

    address = normalise_email(address)
    with store.begin() as conn:
        row = conn.execute(
            sa.select(subscribers.c.name, subscribers.c.token).where(
                sa.func.lower(subscribers.c.email) == address.lower()
            )
        ).first()
    name, token = (row.name, row.token) if row is not None else ("", "test-send-no-token")
    transport = SmtpTransport(settings.smtp, _local_hostname(settings))
    try:
        transport.connect()
        outcome = transport.send(
            factory.sender,
            address,
            factory.build(Subscriber(email=address, name=name), token),
            factory.needs_smtputf8(address),
        )
    finally:
        transport.close()
    if outcome.status != "sent":
        raise DeliveryError(f"test message to {address} not sent: {outcome.detail}")
    return SendReport(issue.period, attempted=1, sent=1, complete=True, test_to=address)
