"""Sending an issue: claiming due recipients, pacing, threads, retries, recording outcomes.

The SMTP protocol lives in ``smtp.py`` and the ledger's SQL in
``db/deliveries.py`` (whose docstring draws the states); this module decides
what to send, when, over how many connections, and what each outcome means
for the ledger:

- a recipient is claimed (``sending``) before its message is built and sent;
  right before the final dot of DATA the row becomes ``awaiting_reply``, so a
  crash before that point leaves it simply queued and only a crash after it
  leaves it ``uncertain``;
- the server's answer is committed at once: ``sent``, ``failed_temp`` (4xx,
  retried with backoff within ``[send] retry_window_hours``), ``failed_perm``
  (5xx), back to ``queued`` (not accepted: connection lost before the dot, or
  421), or ``uncertain`` (no readable answer after the dot: never re-sent
  unless the editor asks with ``resend_uncertain``);
- many failures in a row, SIGTERM, a ``stop`` event or a lost lease end the
  send early and resumably; the message in flight finishes within its
  deadline (a lost lease does not even write its final dot).

Rows are claimed a batch at a time (``Ledger.claim``: one durable commit per
batch, the per-message writes cheap; the ledger's docstring says why that is
safe). On SQLite one process sends a given issue (the ``send:PERIOD`` lock, a
lease in the database renewed while sending). On PostgreSQL any number of
processes, on any machines, share it: each claims disjoint batches with
``SKIP LOCKED`` and renews its claims' lease; a dead sender's claims go back
by the ledger's rules once their lease runs out. Inside a process,
``SendSettings.connections`` threads share a rate limiter and the ledger; on
PostgreSQL that number of sessions is for all senders together, each taking a
connection slot (``db.slots``) before it connects.

Per message, the work is kept off the critical path: the next row's envelope
goes out with the current final dot (PIPELINING), its message is built while
the server takes the current one, and the ledger sees one statement per state
change (the dot mark, which also checks the subscription, then the outcome).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import editions
from .compose import MessageFactory
from .config import Settings
from .db import Store, issues, locks, pacing
from .db.deliveries import Due, EditionOf, Finished, Ledger
from .db.schema import utcnow
from .db.slots import ConnectionSlots
from .errors import DeliveryError, IssueError, LockedError
from .models import Failure, Issue, RenderedIssue, SendProgress, SendReport, Subscriber
from .smtp import Envelope, Outcome, SmtpClient, local_hostname

__all__ = ["Factories", "SendAborted", "retry_time", "send_issue"]

log = logging.getLogger("digest.send")

BATCH = 50
LOCK_TTL = dt.timedelta(minutes=2)
"""Longer than a message's deadline (``smtp.MESSAGE_DEADLINE_FACTOR`` x ``[smtp] timeout``)."""
LOCK_RENEW_SECONDS = 30.0
MAX_REQUEUES = 3
"""A message whose connection drops this many times is treated as a 4xx (backoff)."""
RETRY_DELAYS_MINUTES = (5, 10, 20, 40, 80, 160, 240)
"""Backoff after each temporary failure; the last value repeats until the window closes."""
CONNECT_ATTEMPTS = 3


class SendAborted(DeliveryError):
    """The send stopped early; ``report`` says where it got. Running again resumes."""

    def __init__(self, message: str, report: SendReport, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.report = report


def retry_time(attempts: int, window_hours: float, now: dt.datetime) -> dt.datetime | None:
    """When to retry after the ``attempts``-th temporary failure; None once past the window."""
    delays = [RETRY_DELAYS_MINUTES[min(i, len(RETRY_DELAYS_MINUTES) - 1)] for i in range(attempts)]
    # Time already spent retrying (approximately: the delays before this failure) plus the next.
    if sum(delays) > window_hours * 60:
        return None
    return now + dt.timedelta(minutes=delays[-1])


# -- one message factory per edition -------------------------------------------------------


class Factories:
    """The ``MessageFactory`` of each edition, built the first time a recipient needs it.

    ``render`` turns an edition key (``editions.Edition.key``) into its rendered
    issue; each edition is rendered once per send, however many recipients share
    it. ``default`` is the issue's default edition (key ``default_key``, and ""
    for rows queued before editions existed). Without ``render`` every recipient
    gets ``default`` and the ledger records no edition (a hand-built issue, as
    tests and benchmarks send).
    """

    def __init__(
        self,
        settings: Settings,
        default: MessageFactory,
        issue: Issue,
        render: Callable[[str], RenderedIssue] | None = None,
    ) -> None:
        self.settings = settings
        self.default = default
        self.render = render
        self.default_key = ""
        self.edition_of: EditionOf | None = None
        if render is not None:
            self.default_key = editions.Edition(issue.language).key

            def edition_of(language: str, tags: str) -> str | None:
                edition = editions.edition_for(issue, language, tags)
                return None if edition is None else edition.key

            self.edition_of = edition_of
        self.built: dict[str, MessageFactory] = {"": default, self.default_key: default}
        self.lock = threading.Lock()

    def __getitem__(self, edition: str) -> MessageFactory:
        factory = self.built.get(edition)
        if factory is not None:
            return factory
        with self.lock:
            if edition not in self.built:
                self.built[edition] = (
                    MessageFactory(self.render(edition), self.settings)
                    if self.render is not None
                    else self.default
                )
            return self.built[edition]


# -- the send loop -------------------------------------------------------------------------


class _Pacer:
    """Spaces messages ``1/rate`` seconds apart across every connection (and every sender).

    ``shared``: other processes may send the same relay's messages (PostgreSQL), so
    the slots come from the database (``db.pacing``); else they are counted here.
    """

    def __init__(self, rate: float, store: Store | None = None) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()
        self.store = store

    def wait(self, stop: threading.Event) -> None:
        if not self.interval:
            return
        if self.store is not None:
            slot = pacing.take_slot(self.store, "send", self.interval)
            delay = (slot - utcnow()).total_seconds()
            if delay > 0:
                stop.wait(delay)
            return
        with self.lock:
            now = time.monotonic()
            slot_at = max(self.next, now)
            self.next = slot_at + self.interval
        if slot_at > now:
            stop.wait(slot_at - now)


@dataclass
class _Run:
    """State shared by the sending threads of one ``send_issue`` call."""

    report: SendReport
    total: int
    max_failures: int
    progress: Callable[..., None] | None
    stop: threading.Event = field(default_factory=threading.Event)
    lease_lost: threading.Event = field(default_factory=threading.Event)
    """Set when another process may own the issue now: no further final dot is written."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    consecutive_failures: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    fatal: BaseException | None = None
    storm: bool = False
    """Stopped on many failures in a row: every sender of the issue is told to stop."""

    def record(self, status: str, address: str, detail: str) -> None:
        with self.lock:
            self.done += 1
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "sent":
                self.consecutive_failures = 0
            elif status in ("failed_temp", "failed_perm", "requeue", "uncertain"):
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.max_failures and not self.stop.is_set():
                    self.report.stopped = (
                        f"{self.consecutive_failures} failures in a row (last: {detail})"
                    )
                    log.error("stopping: %s", self.report.stopped)
                    self.storm = True
                    self.stop.set()
            event = SendProgress(self.done, self.total, status, address, dict(self.counts))
        if self.progress is not None:
            self.progress(event)


class _Ready(NamedTuple):
    """A claimed row taken from the batch, with its message built (or why it could not be)."""

    row: Due
    message: bytes
    error: Exception | None = None


def _pop(queue: list[Due], queue_lock: threading.Lock) -> Due | None:
    with queue_lock:
        return queue.pop(0) if queue else None


def _build(row: Due, factories: Factories) -> _Ready:
    """``row``'s message, in the edition it was queued with; an error is kept and raised
    when the row is sent, as before."""
    try:
        subscriber = Subscriber(email=row.email, name=row.name, language=row.language)
        return _Ready(row, factories[row.edition].build(subscriber, row.token))
    except Exception as exc:  # noqa: BLE001 - raised by _send
        return _Ready(row, b"", exc)


def _envelope(row: Due, factories: Factories) -> Envelope:
    factory = factories[row.edition]
    return Envelope(
        factory.envelope_sender(row.token), row.email, factory.needs_smtputf8(row.email)
    )


def _worker(
    run: _Run,
    queue: list[Due],
    queue_lock: threading.Lock,
    ledger: Ledger,
    factories: Factories,
    client: SmtpClient,
    window: float,
    pacer: _Pacer,
) -> None:
    """Send the claimed rows of ``queue`` over ``client`` (kept open for the next batch).

    One row ahead: the next row's envelope goes out with this message's final
    dot (``SmtpClient.send``'s ``next_envelope``; not when pacing, which would
    keep the server waiting in DATA), and its message is built while the server
    takes this one (after the dot, before the answer): our CPU and the server's
    overlap. Rows left in ``queue`` or taken ahead when the send stops stay
    claimed until ``Ledger.release``.
    """
    following = _pop(queue, queue_lock)
    built: _Ready | None = None

    def build_next() -> None:
        nonlocal built
        if following is not None:
            built = _build(following, factories)

    try:
        while not run.stop.is_set() and following is not None:
            ready = built if built is not None else _build(following, factories)
            following, built = _pop(queue, queue_lock), None
            ahead = None if following is None or pacer.interval else _envelope(following, factories)
            ledger.finish(
                _send(run, ready, ledger, factories, client, window, pacer, build_next, ahead)
            )
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises
        with run.lock:
            if run.fatal is None:
                run.fatal = exc
        run.stop.set()


def _send(
    run: _Run,
    ready: _Ready,
    ledger: Ledger,
    factories: Factories,
    client: SmtpClient,
    window: float,
    pacer: _Pacer,
    while_waiting: Callable[[], None] | None = None,
    next_envelope: Envelope | None = None,
) -> Finished:
    """Send ``ready``'s message (its row claimed: ``sending``); return what to record."""
    row = ready.row
    if ready.error is not None:
        raise ready.error
    pacer.wait(run.stop)
    if run.stop.is_set():
        return Finished(row, "queued", "the send stopped before this message")
    left = False
    try:
        if not client.connected:
            _connect(client, run)

        def before_final_dot() -> bool:
            # From this commit on, the server may have the message. The same
            # statement checks that the subscriber has not left since the claim.
            nonlocal left
            if run.lease_lost.is_set():
                return False
            if ledger.before_final_dot(row):
                return True
            left = not ledger.still_subscribed(row)
            return False

        envelope = _envelope(row, factories)
        outcome = client.send(
            envelope.sender,
            envelope.recipient,
            ready.message,
            envelope.smtputf8,
            before_final_dot,
            dot_safe=True,
            while_waiting=while_waiting,
            next_envelope=next_envelope,
        )
    except DeliveryError as exc:  # the server is unusable: not this recipient's doing
        ledger.finish(Finished(row, "queued", exc.message))
        raise
    if left:
        with run.lock:
            run.report.skipped += 1
        run.record("skipped", row.email, "no longer subscribed")
        return Finished(row, "skipped", "no longer subscribed")
    return _settle(run, row, outcome, window)


def _connect(client: SmtpClient, run: _Run) -> None:
    """Connect, retrying a few times with a pause: a relay restarting is not a failure."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            client.connect()
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
    status: str = outcome.status
    detail = outcome.detail
    retry_at = None
    if status == "requeue":
        if row.attempts + 1 < MAX_REQUEUES or run.lease_lost.is_set():
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
    """SIGTERM lets in-flight messages finish (within their deadline), then the send returns."""
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
    render_edition: Callable[[str], RenderedIssue] | None = None,
) -> SendReport:
    """Send ``issue`` to everyone in its ledger not yet attempted; return what happened.

    ``only_to``: a test send to that one address, outside the ledger. ``dry_run``:
    count who would get it, send and record nothing. ``progress`` is called with
    a ``SendProgress`` after each message. ``stop`` (or SIGTERM) ends the send
    after the messages in flight. Raises ``LockedError`` when another process is
    sending this issue, ``DeliveryError`` when the server cannot be used
    (``SendAborted``, with the report, once sending had started).
    ``render_edition``: each recipient gets the edition of their language and
    tags (``rendered`` is the default one), rendered by this on first use.
    """
    factory = MessageFactory(rendered, settings)
    factories = Factories(settings, factory, issue, render_edition)
    options: dict[str, Any] = {
        "progress": progress,
        "resend_uncertain": resend_uncertain,
        "stop": stop,
    }
    if only_to is not None:
        return _send_test(settings, store, issue, factory, only_to)
    stored = issues.get(store, issue.period)
    if stored is None or stored.id is None:
        raise IssueError(f"issue {issue.period} is not in the database", hint="run `digest draft`")
    if dry_run:
        ledger = Ledger(store, stored.id)
        try:
            return SendReport(issue.period, counts=ledger.would_queue(), dry_run=True)
        finally:
            ledger.close()

    report = SendReport(issue.period)
    if store.engine.dialect.name == "postgresql":
        # Several senders share the issue, no issue-wide lock: each claims its own batches.
        ledger = Ledger(store, stored.id, locks.owner_id())
        return _send_with(ledger, settings, factories, report, None, **options)
    lock_name = f"send:{issue.period}"
    locks.release_if_gone(store, lock_name)
    try:
        with locks.hold(store, lock_name, ttl=LOCK_TTL) as owner:
            ledger = Ledger(store, stored.id, owner)
            return _send_with(ledger, settings, factories, report, lock_name, **options)
    except LockedError as exc:
        raise LockedError(
            f"issue {issue.period} is being sent by another process ({exc.message})",
            hint="on SQLite one process sends at a time: wait for it to finish (a crashed "
            "sender's lock expires within two minutes); several senders need PostgreSQL",
        ) from None


def _send_with(
    ledger: Ledger,
    settings: Settings,
    factories: Factories,
    report: SendReport,
    lock_name: str | None,
    *,
    progress: Callable[..., None] | None,
    resend_uncertain: bool,
    stop: threading.Event | None,
) -> SendReport:
    """Recover, snapshot, send, release: the ledger's side of a send, for one sender."""
    run: _Run | None = None
    try:
        # Alone (SQLite, under the lock): every row in flight is a dead sender's.
        # Shared: only rows whose claim lease ran out.
        ledger.recover(resend_uncertain, expired_only=lock_name is None)
        added = ledger.snapshot(factories.edition_of, factories.default_key)
        if added:
            log.info("%s: %d recipient(s) queued", report.period, added)
        run = _Run(
            report,
            ledger.due_count(),
            settings.send.max_consecutive_failures,
            progress,
            stop=stop or threading.Event(),
        )
        ttl = dt.timedelta(seconds=settings.send.lease_seconds)
        slots = None
        if lock_name is None:  # several senders: the connection limit is for all of them
            relay = f"{settings.smtp.host}:{settings.smtp.port}"
            limit = max(1, settings.send.connections)
            slots = ConnectionSlots(ledger.store, relay, limit, ledger.owner, ttl)
        with _sigterm_stops(run.stop), _lease(ledger, lock_name, run, ttl, slots):
            try:
                _drive(run, ledger, factories, settings, slots)
            finally:
                ledger.release()  # claimed, not begun: back to the queue, durably
            if run.storm:
                issues.stop_sending(ledger.store, report.period, run.report.stopped)
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
def _lease(
    ledger: Ledger,
    lock_name: str | None,
    run: _Run,
    claim_ttl: dt.timedelta,
    slots: ConnectionSlots | None = None,
) -> Iterator[None]:
    """Renew the send lock (if any) and our row claims while sending; stop if a lease is lost.

    Another process may take the issue over once the lock's lease is gone: from
    then on no final dot is written (the message in flight goes back to the
    queue). A row claim that ran out is caught row by row: its dot mark and its
    outcome only apply while the row is still ours.
    """
    done = threading.Event()
    store = ledger.store

    every = min(LOCK_RENEW_SECONDS, claim_ttl.total_seconds() / 3)

    def renew() -> None:
        while not done.wait(every):
            if lock_name is not None and not locks.renew(store, lock_name, ledger.owner, LOCK_TTL):
                run.report.stopped = "lost the send lock (another process may have taken over)"
                log.error("stopping: %s", run.report.stopped)
                run.lease_lost.set()
                run.stop.set()
                return
            ledger.renew_claims(claim_ttl)
            if slots is not None:
                slots.renew()

    thread = threading.Thread(target=renew, name="digest-send-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _drive(
    run: _Run,
    ledger: Ledger,
    factories: Factories,
    settings: Settings,
    slots: ConnectionSlots | None = None,
) -> None:
    """Feed due rows to the sending threads, batch by batch."""
    shared = ledger.store.engine.dialect.name == "postgresql"
    pacer = _Pacer(settings.send.rate, ledger.store if shared else None)
    connections = max(1, settings.send.connections)
    window = settings.send.retry_window_hours
    ehlo_name = local_hostname(settings.newsletter.from_address)
    clients = [SmtpClient(settings.smtp, ehlo_name) for _ in range(connections)]
    try:
        ttl = dt.timedelta(seconds=settings.send.lease_seconds)
        _feed(run, ledger, factories, clients, window, pacer, ttl, slots)
    finally:
        for client in clients:
            client.close()
        if slots is not None:
            slots.release()  # after the sessions are closed
    if run.stop.is_set() and not run.report.stopped and run.fatal is None:
        run.report.stopped = "interrupted"


def _feed(
    run: _Run,
    ledger: Ledger,
    factories: Factories,
    clients: list[SmtpClient],
    window: float,
    pacer: _Pacer,
    claim_ttl: dt.timedelta,
    slots: ConnectionSlots | None = None,
) -> None:
    """Claim a batch, send it over every connection we may open, again until nothing is due.

    ``slots``: the connection limit is shared with other senders; only as many
    clients as slots held are used (and the others closed).
    """
    while not run.stop.is_set():
        connections = len(clients)
        if slots is not None:
            # Close the sessions beyond our share before giving their slots back.
            share = slots.fair_share(len(clients))
            for client in clients[share:]:
                client.close()
            slots.keep(share)
            connections = slots.wait_for(share, run.stop)
            if not connections:
                break
            for client in clients[connections:]:
                client.close()
        # Another sender of this issue may have stopped on an error storm: stop too.
        # (Where the claim itself checks it, only once nothing more is claimed.)
        if not ledger.claim_checks_stop and _stopped_elsewhere(run, ledger):
            break
        claim = ledger.claim(BATCH * connections, claim_ttl)
        for email in claim.skipped:
            with run.lock:
                run.report.skipped += 1
            run.record("skipped", email, "no longer subscribed")
        if not claim.rows:
            if claim.skipped:
                continue
            if ledger.claim_checks_stop:
                _stopped_elsewhere(run, ledger)
            break
        queue = list(claim.rows)
        queue_lock = threading.Lock()
        if connections == 1:
            _worker(run, queue, queue_lock, ledger, factories, clients[0], window, pacer)
            continue
        threads = [
            threading.Thread(
                target=_worker,
                args=(run, queue, queue_lock, ledger, factories, client, window, pacer),
                name=f"digest-send-{i}",
                daemon=True,
            )
            for i, client in enumerate(clients[: min(connections, len(queue))])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _stopped_elsewhere(run: _Run, ledger: Ledger) -> bool:
    """Whether another sender stopped the issue (an error storm); if so, stop too."""
    stopped = issues.send_stopped(ledger.store, run.report.period)
    if stopped:
        run.report.stopped = f"another sender stopped: {stopped}"
        log.error("stopping: %s", run.report.stopped)
        run.stop.set()
    return bool(stopped)


def _finish_report(report: SendReport, ledger: Ledger) -> None:
    report.counts = ledger.counts()
    report.uncertain = ledger.uncertain()
    report.retry_pending, report.retry_at = ledger.pending_retries()
    unsettled = ("queued", "sending", "awaiting_reply", "uncertain")
    report.complete = not report.retry_pending and not any(
        report.counts.get(status) for status in unsettled
    )


def _send_test(
    settings: Settings, store: Store, issue: Issue, factory: MessageFactory, address: str
) -> SendReport:
    from .db.deliveries import test_recipient
    from .subscribers import normalize_email

    address = normalize_email(address)
    name, token = test_recipient(store, address)
    client = SmtpClient(settings.smtp, local_hostname(settings.newsletter.from_address))
    try:
        client.connect()
        outcome = client.send(
            factory.sender,
            address,
            factory.build(Subscriber(email=address, name=name), token),
            factory.needs_smtputf8(address),
        )
    finally:
        client.close()
    if outcome.status != "sent":
        raise DeliveryError(f"test message to {address} not sent: {outcome.detail}")
    return SendReport(issue.period, attempted=1, sent=1, complete=True, test_to=address)
