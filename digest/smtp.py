"""The one SMTP client: every connection the program opens goes through here.

The sender, the editors' notifications and the test send share one policy:

- TLS certificates are verified (``verify_tls = false`` only for a test
  server); ``ssl`` is TLS from the first byte (port 465), ``starttls`` upgrades
  and never falls back to cleartext when the server does not offer it;
- no password ever goes in cleartext to a host that is not this machine: the
  client refuses before it even connects, and says how to fix the settings;
- the EHLO name is cheap to find (``smtplib`` would call ``socket.getfqdn()``,
  which can stall for seconds on a machine without working reverse DNS);
- every command has a deadline (``[smtp] timeout``) and every message one more
  (``MESSAGE_DEADLINE_FACTOR`` times it), whatever the server trickles: a
  server sending endless ``250-`` continuation lines or one byte a second is cut
  off, because each read checks a monotonic clock, not only the socket's idle
  timeout;
- replies are classified in one place (``reply_class``); the password is only
  ever handed to the AUTH exchange, never to an error, a log line or a repr.

Errors that make the server unusable (unreachable, TLS or login refused, our
sender refused) raise ``DeliveryError``; one message's result comes back as an
``Outcome``. The final ``.`` of DATA is the point where a server takes a
message: ``SmtpClient.send`` calls ``before_final_dot`` right before writing it,
so that the caller can record that from now on the message may have been
accepted, and reports a missing or malformed answer after it as ``uncertain``,
never as something to send again.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, Literal, NamedTuple

from .config import SmtpSettings
from .errors import DeliveryError

__all__ = [
    "MESSAGE_DEADLINE_FACTOR",
    "Envelope",
    "Outcome",
    "SmtpClient",
    "is_loopback",
    "local_hostname",
    "reply_class",
    "send_one",
]

MESSAGE_DEADLINE_FACTOR = 2.0
"""A whole message (MAIL to the answer after the final dot) gets this many command timeouts."""

SEND_BUFFER = 1 << 20
"""Bytes of socket send buffer asked for (the kernel may grant less): a few messages."""

ReplyClass = Literal["ok", "temporary", "permanent", "malformed"]
OutcomeStatus = Literal["sent", "failed_temp", "failed_perm", "requeue", "uncertain"]


class Outcome(NamedTuple):
    """What became of one message."""

    status: OutcomeStatus
    """sent | failed_temp | failed_perm | requeue (not accepted, no fault of the address: send
    it again) | uncertain (the final dot may have reached the server, the answer did not)."""
    detail: str = ""
    bounce: bool = False
    """A permanent refusal of the address itself (hard bounce)."""


def reply_class(code: int) -> ReplyClass:
    """2xx/3xx ok, 4xx temporary, 5xx permanent; anything else (smtplib's -1) malformed."""
    if 200 <= code < 400:
        return "ok"
    if 400 <= code < 500:
        return "temporary"
    if 500 <= code < 600:
        return "permanent"
    return "malformed"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: the only place a cleartext password may go."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_hostname(from_address: str) -> str:
    """The EHLO name: this host's name when fully qualified, else the sender's domain."""
    name = socket.gethostname()
    if "." in name:
        return name
    return from_address.rpartition("@")[2] or "localhost"


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"[:300]


_ADDRESS_ENHANCED = re.compile(r"\b5\.1\.\d+\b")


# -- deadlines -----------------------------------------------------------------------------

_DEADLINE_PASSED = "no complete answer from the server within the deadline"


class _DeadlineReader:
    """The reply reader smtplib uses, checking the deadline before every ``recv``.

    A buffered socket file would keep reading a line one trickled byte at a
    time without ever coming back to us; here each read gets only the time left.
    """

    def __init__(self, sock: socket.socket, remaining: Callable[[], float]) -> None:
        self.sock = sock
        self.remaining = remaining
        self.buffer = bytearray()

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                size = end + 1 if limit < 0 else min(end + 1, limit)
                break
            if 0 <= limit <= len(self.buffer):
                size = limit
                break
            self.sock.settimeout(self.remaining())
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(_DEADLINE_PASSED) from None
            if not chunk:
                size = len(self.buffer)  # closed: smtplib sees a short (or empty) line
                break
            self.buffer += chunk
        line = bytes(self.buffer[:size])
        del self.buffer[:size]
        return line

    def close(self) -> None:
        self.buffer.clear()


class _Session(smtplib.SMTP):
    """``smtplib.SMTP`` with a deadline per command and, while a message is sent, per message."""

    message_deadline: float | None = None
    """A ``time.monotonic()`` value, or None outside a message."""
    command_deadline: float = 0.0

    def _remaining(self) -> float:
        deadline = self.command_deadline
        if self.message_deadline is not None:
            deadline = min(deadline, self.message_deadline)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(_DEADLINE_PASSED)
        return left

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: Any = None
    ) -> tuple[int, bytes]:
        self.command_deadline = time.monotonic() + float(self.timeout)
        self._host = host  # the name TLS checks the certificate against (set by __init__ only)
        return super().connect(host, port, source_address)

    def send(self, s: Any) -> None:
        self.command_deadline = time.monotonic() + float(self.timeout)
        if self.sock is not None:
            try:
                self.sock.settimeout(self._remaining())
            except TimeoutError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(str(exc)) from None
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            self.file = _DeadlineReader(self.sock, self._remaining)
        return super().getreply()


class _SslSession(_Session, smtplib.SMTP_SSL):
    """The same, TLS from the first byte (port 465)."""


# -- the client ----------------------------------------------------------------------------


class SmtpClient:
    """One SMTP connection, reused across messages and reopened when dropped."""

    def __init__(self, settings: SmtpSettings, local_hostname: str) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.session: _Session | None = None
        self.where = f"{settings.host}:{settings.port}"
        self.message_timeout = settings.timeout * MESSAGE_DEADLINE_FACTOR
        self.ahead: Envelope | None = None
        """The envelope written with the last final dot (pipelined), its replies not read."""

    def __repr__(self) -> str:  # the settings hold the password: never show them
        return f"SmtpClient({self.where}, security={self.settings.security})"

    @property
    def connected(self) -> bool:
        return self.session is not None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def check_policy(self) -> None:
        """Refuse, before any connection, settings that would send a password in cleartext."""
        s = self.settings
        if s.username and s.security == "none" and not is_loopback(s.host):
            raise DeliveryError(
                f"refusing to send the SMTP password to {self.where} in cleartext",
                hint="set [smtp] security = 'starttls' (port 587) or 'ssl' (port 465), "
                "or DIGEST_SMTP_SECURITY",
            )

    def connect(self) -> None:
        self.check_policy()
        s = self.settings
        session: _Session | None = None
        try:
            if s.security == "ssl":
                session = _SslSession(
                    local_hostname=self.local_hostname, timeout=s.timeout, context=self._context()
                )
            else:
                session = _Session(local_hostname=self.local_hostname, timeout=s.timeout)
            session.connect(s.host, s.port)
            session.ehlo()
            if s.security == "starttls":
                if not session.has_extn("starttls"):
                    raise DeliveryError(
                        f"SMTP server {self.where} does not offer STARTTLS; "
                        "refusing to send in cleartext",
                        hint="use security = 'ssl' if the server expects TLS from the start "
                        "(port 465), or fix the server",
                    )
                session.starttls(context=self._context())
                session.ehlo()
            if s.username:
                self._login(session)
        except ssl.SSLCertVerificationError as exc:
            _close(session)
            raise DeliveryError(
                f"SMTP server {self.where}: TLS certificate not accepted: {exc.verify_message}",
                hint="fix the server's certificate; set [smtp] verify_tls = false only for a "
                "test server",
            ) from None
        except smtplib.SMTPConnectError as exc:
            _close(session)
            raise DeliveryError(
                f"cannot reach SMTP server {self.where}: {_reply(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except DeliveryError:
            _close(session)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            _close(session)
            raise DeliveryError(
                f"cannot reach SMTP server {self.where}: {exc}",
                hint="check [smtp] host, port and security (or DIGEST_SMTP_HOST/PORT/SECURITY)",
            ) from None
        with suppress(OSError, AttributeError):
            # Commands are small writes each awaiting a reply: Nagle's algorithm
            # would hold the tail of each message back waiting for an ACK.
            session.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
            # Room for a whole message in the kernel: the write returns at once and
            # the ledger's dot mark is committed while the server is still reading.
            session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)  # type: ignore[union-attr]
        self.session = session

    def _login(self, session: _Session) -> None:
        s = self.settings
        if not session.has_extn("auth"):
            raise DeliveryError(
                f"SMTP server {self.where} does not offer AUTH, but a username is set",
                hint="unset DIGEST_SMTP_USERNAME, or use security = 'starttls'/'ssl' "
                "(many servers offer AUTH only over TLS)",
            )
        offered = session.esmtp_features.get("auth", "").upper().split()
        try:
            # One mechanism, not smtplib's try-them-all: each failed attempt counts
            # against the account on many relays.
            if "PLAIN" in offered or "LOGIN" in offered:
                mechanism = "PLAIN" if "PLAIN" in offered else "LOGIN"
                session.user, session.password = s.username, s.password
                try:
                    authenticate = (
                        session.auth_plain if mechanism == "PLAIN" else session.auth_login
                    )
                    session.auth(mechanism, authenticate, initial_response_ok=True)
                finally:
                    session.password = ""
            else:
                session.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP server {self.where} refused the login of {s.username!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}",
                hint="check DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(
                f"SMTP server {self.where}: login of {s.username!r} failed: {type(exc).__name__}",
                hint="check DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD",
            ) from None

    def close(self) -> None:
        """QUIT politely, then close.

        Not with an envelope sent ahead: the server may be reading a message by
        now, so QUIT would be data; closing makes it discard that message.
        """
        if self.session is not None and self.ahead is None:
            with suppress(Exception):
                self.session.quit()
        self._drop()

    def _drop(self) -> None:
        _close(self.session)
        self.session = None
        self.ahead = None

    # -- one message to one recipient (the newsletter) --------------------------------

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        smtputf8: bool = False,
        before_final_dot: Callable[[], bool] | None = None,
        *,
        dot_safe: bool = False,
        while_waiting: Callable[[], None] | None = None,
        next_envelope: Envelope | None = None,
    ) -> Outcome:
        """One SMTP transaction for one recipient; never raises for a per-message problem.

        Written out (MAIL, RCPT, DATA, the body, the final dot, the reply) rather
        than ``sendmail``, so that we know on which side of the final dot a
        problem happened. ``before_final_dot`` is called right before the dot is
        written; if it returns False the dot is not written, the connection is
        dropped (so the server discards the message) and the outcome is
        ``requeue``. Raises ``DeliveryError`` only when the server cannot be used
        at all (unreachable, our sender refused).

        ``dot_safe``: the caller guarantees that no line of ``message`` starts with
        ``.`` and that it ends with CRLF (``MessageFactory`` writes them so), which
        spares scanning 70 KB per message for lines to dot-stuff: that scan alone
        cost as much CPU as building the message. ``while_waiting`` is called once
        the final dot is written, before the answer is read: work that does not
        depend on the answer (building the next message) then overlaps the
        server's own work on this one. It must not raise.

        ``next_envelope``: the envelope of the message the caller will send next
        on this connection. With PIPELINING, its MAIL, RCPT and DATA go out in
        the same write as this message's final dot (RFC 2920 allows message
        content first in a group and DATA last), and their replies are read by
        the next ``send``, one round trip fewer per message. Each reply is still
        classified as if the commands had been sent then. If the next ``send``
        is for another envelope, or none comes, the connection is dropped
        instead of finishing that DATA, so the server discards it.
        """
        envelope = Envelope(sender, recipient, smtputf8)
        if self.ahead is not None and self.ahead != envelope:
            self._drop()  # out of step with what was sent ahead: start afresh
        if self.session is None:
            self.connect()
        session = self.session
        assert session is not None
        session.message_deadline = time.monotonic() + self.message_timeout
        try:
            return self._transaction(
                session,
                envelope,
                message,
                before_final_dot,
                dot_safe,
                while_waiting,
                next_envelope,
            )
        finally:
            session.message_deadline = None

    def _transaction(
        self,
        session: _Session,
        envelope: Envelope,
        message: bytes,
        before_final_dot: Callable[[], bool] | None,
        dot_safe: bool,
        while_waiting: Callable[[], None] | None,
        next_envelope: Envelope | None,
    ) -> Outcome:
        try:
            if envelope.smtputf8 and not session.has_extn("smtputf8"):
                return Outcome(
                    "failed_perm",
                    "the server does not accept addresses with non-ASCII characters (no SMTPUTF8)",
                )
            if self.ahead is not None:
                # Written with the previous message's final dot: only the replies are left.
                self.ahead = None
                session.command_deadline = time.monotonic() + float(session.timeout)
                replies = [session.getreply() for _ in range(3)]
            elif session.has_extn("pipelining"):
                # RFC 2920: the three commands in one write, then their three
                # replies in order: one round trip instead of three.
                session.send(_commands(envelope))
                replies = [session.getreply() for _ in range(3)]
            else:
                replies = []
                for command in _commands(envelope).splitlines(keepends=True):
                    session.send(command)
                    replies.append(session.getreply())
                    if replies[-1][0] not in (250, 251):
                        break
            refusal = self._check_envelope(replies)
            if refusal is not None:
                return refusal
            if not dot_safe:
                if b"\n." in message or message.startswith(b"."):
                    message = re.sub(rb"(?m)^\.", b"..", message)  # RFC 5321 4.5.2
                if not message.endswith(b"\r\n"):
                    message += b"\r\n"
            session.send(message)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The server only takes a message at the final dot: not accepted.
            self._drop()
            return Outcome("requeue", f"connection lost before the end of the message: {exc}")
        if before_final_dot is not None and not before_final_dot():
            self._drop()  # no dot: the server discards what it got
            return Outcome("requeue", "stopped before the end of the message")
        end = b".\r\n"
        if (
            next_envelope is not None
            and session.has_extn("pipelining")
            and (not next_envelope.smtputf8 or session.has_extn("smtputf8"))
        ):
            end += _commands(next_envelope)
            self.ahead = next_envelope
        try:
            session.send(end)
            if while_waiting is not None:
                while_waiting()
            code, reply = session.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("uncertain", f"no answer after the end of the message: {exc}")
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
            if len(replies) == 3 and replies[2][0] == 354 and self.session is not None:
                # Pipelined, and the server still opened DATA after a refusal:
                # close it with an empty message so the session stays in step.
                self.session.send(b".\r\n")
                self.session.getreply()
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
        kind = reply_class(code)
        if kind == "malformed":
            self._drop()  # out of step with the server: start a fresh session
            if after_data:
                # The server had the whole message and did not say clearly what it
                # did with it: it may have taken it, and sending again could
                # deliver it twice.
                return Outcome(
                    "uncertain", f"unreadable answer to the end of the message: {detail}"
                )
            return Outcome("requeue", detail)
        if code == 421:  # the server is closing; a clear refusal, even after the dot
            self._drop()
            return Outcome("requeue", detail)
        if not after_data and self.session is not None:
            with suppress(smtplib.SMTPException, OSError):
                self.session.rset()
        if sender_refused and kind == "permanent":
            raise DeliveryError(
                f"SMTP server {self.where} refuses our sender address: {detail}",
                hint="check [newsletter] from_address and [bounces] return_path, and that the "
                "relay lets you send as them",
            )
        if kind == "temporary":
            return Outcome("failed_temp", detail)
        if not bounce and after_data:
            # 5xx at the end of DATA is mostly about the content (spam, size), not
            # the address; only an enhanced code 5.1.x says the mailbox is bad.
            bounce = bool(_ADDRESS_ENHANCED.search(detail))
        return Outcome("failed_perm", detail, bounce=bounce)

    # -- one message to a few addresses (notifications, test sends) -------------------

    def send_many(self, sender: str, recipients: Sequence[str], message: bytes) -> dict[str, str]:
        """Send ``message`` to ``recipients`` in one transaction; return the refused ones.

        Raises ``DeliveryError`` when nobody got it (every recipient refused, the
        sender or the message refused, the connection lost).
        """
        if self.ahead is not None:
            self._drop()
        if self.session is None:
            self.connect()
        session = self.session
        assert session is not None
        options: list[str] = []
        if not all(address.isascii() for address in (sender, *recipients)):
            options = ["SMTPUTF8", "BODY=8BITMIME"]  # a server without SMTPUTF8 says no
        session.message_deadline = time.monotonic() + self.message_timeout
        try:
            refused = session.sendmail(sender, list(recipients), message, options)
        except smtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(
                f"{address}: {_reply(code, text)}"
                for address, (code, text) in exc.recipients.items()
            )
            raise DeliveryError(
                f"SMTP server {self.where} refused every recipient: {reasons}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP server {self.where} refused the message: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise DeliveryError(f"SMTP server {self.where}: {exc}") from None
        finally:
            session.message_deadline = None
        return {address: _reply(code, text) for address, (code, text) in refused.items()}


class Envelope(NamedTuple):
    """Who one message is from and to (MAIL FROM, RCPT TO), and whether it needs SMTPUTF8."""

    sender: str
    recipient: str
    smtputf8: bool = False


def _commands(envelope: Envelope) -> bytes:
    """MAIL, RCPT and DATA for ``envelope``, written out rather than smtplib's mail()/rcpt(),
    which re-parse each address with email.utils (a cost per recipient)."""
    options = " SMTPUTF8 BODY=8BITMIME" if envelope.smtputf8 else ""
    text = f"MAIL FROM:<{envelope.sender}>{options}\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n"
    return text.encode("utf-8" if envelope.smtputf8 else "ascii")


def _close(session: smtplib.SMTP | None) -> None:
    if session is not None:
        with suppress(Exception):
            session.close()


def send_one(
    settings: SmtpSettings, from_address: str, recipients: Sequence[str], message: bytes
) -> dict[str, str]:
    """Connect, send ``message`` to ``recipients``, quit; return the refused addresses.

    For the occasional message (editors' notifications): the same policy and
    deadlines as the newsletter itself.
    """
    client = SmtpClient(settings, local_hostname(from_address))
    try:
        return client.send_many(from_address, recipients, message)
    finally:
        client.close()
