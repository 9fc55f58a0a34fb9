"""The delivery ledger: the ``deliveries`` rows of one issue, and every write to them.

One row per issue and subscriber; its status says what is known about that
recipient's message::

    queued ──▶ sending ──▶ awaiting_reply ──▶ sent
      ▲           │              ├──────────▶ failed_temp (4xx: retried later, within the window)
      │           │              ├──────────▶ failed_perm (5xx: never retried)
      │           │              └──────────▶ uncertain   (no readable answer after the dot)
      └───────────┘  (not accepted: connection lost or 4xx before the final dot)
    queued ──▶ skipped   (the subscriber left after the snapshot)

``sending`` means the message is being written but its final dot is not:
the server cannot have accepted it. ``awaiting_reply`` is committed right
before the final dot is written: from then on the server may have the message.
After a crash or ``kill -9`` the next send puts ``sending`` rows back in the
queue and marks ``awaiting_reply`` rows ``uncertain``, reported and re-sent only
when the editor asks (``recover(resend_uncertain=True)``).

The ledger is also a work queue. A sender *claims* a batch of due rows in one
transaction (they become ``sending`` with the sender's id, a lease expiry that
it renews while working, and on SQLite the machine's boot id); on PostgreSQL
the claim reads with ``FOR UPDATE SKIP LOCKED``, so several senders on any
number of machines take disjoint batches. A sender that dies loses its claims
when their lease runs out, and the next sender settles them by the rules above.

Durable writes, cheaply (SQLite). Every commit that must survive an operating-
system crash waits for an fsync (1 to 4 ms here), and a message needs two
writes (the dot mark, the outcome). So only the batch claim and the end of a
send are ``synchronous=FULL`` commits; the per-message writes are
``synchronous=NORMAL``: written to the WAL (a process crash or ``kill -9`` loses
nothing) but not synced. A power cut can lose the last unsynced commits, and
WAL replays a prefix of the commits, never one without those before it. Each
FULL commit also syncs every earlier NORMAL one (they are earlier in the same
file), so at most one batch's per-message states are at risk. Which rows those
are is known: the claim (durable) names the boot that made it. On recovery:

- claimed during the current boot: only the process died and every commit it
  made is there, so the states are exact (``sending`` back to the queue,
  ``awaiting_reply`` uncertain);
- claimed during an earlier boot: the machine went down and the last
  per-message commits may be gone, so a ``sending`` row may in fact have had
  its dot written. Every in-flight row of that claim becomes ``uncertain``:
  never sent again on a guess (no duplicate), always reported (no silent loss).

That is one fsync per batch (50 messages per connection) instead of two per
message. Without a readable boot id every commit is FULL. PostgreSQL commits
are durable as usual; its group commit shares fsyncs between concurrent senders.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import subscribers as subscriber_rows
from .engine import Store
from .locks import owner_gone
from .schema import UTCDateTime, deliveries, subscribers, utcnow

__all__ = [
    "Claim",
    "Due",
    "Finished",
    "Ledger",
    "NO_SECTION",
    "boot_id",
    "discard_if_untouched",
    "test_recipient",
]

log = logging.getLogger("digest.send")


class Due(NamedTuple):
    """A row ready to send, with what the message needs of its subscriber."""

    id: int
    subscriber_id: int
    email: str
    name: str
    language: str
    token: str
    attempts: int
    edition: str = ""
    """The edition the recipient was queued with ("": the issue's default)."""


NO_SECTION = "none of this issue's sections matches the subscriber's tags"
"""Why a recipient whose edition holds no article is ``skipped``."""

EditionOf = Callable[[str, str], str | None]
"""A subscriber's edition key from their ``language`` and stored ``tags``; None: nothing to send."""


class Finished(NamedTuple):
    """What to record for ``row`` once its message is done with."""

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


_IN_FLIGHT = "status IN ('sending', 'awaiting_reply')"
# The subscriber has not left since the claim: checked in the dot mark's own statement,
# so that a message costs no extra round trip for it.
_STILL_ACTIVE = (
    "EXISTS (SELECT 1 FROM subscribers WHERE subscribers.id = {subscriber} "
    "AND subscribers.status = 'active')"
)
_MINE = "claim_owner = :owner"
_SQL_SENT = _sql(
    "UPDATE deliveries SET status = 'sent', updated_at = :now, sent_at = :now, "
    f"next_attempt_at = NULL, last_error = NULL WHERE id = :id AND {_IN_FLIGHT} AND {_MINE}"
)
_SQL_FINISH = _sql(
    "UPDATE deliveries SET status = :status, updated_at = :now, next_attempt_at = :retry_at, "
    f"last_error = :error WHERE id = :id AND {_IN_FLIGHT} AND {_MINE}"
)
# The same in the driver's own parameter style: the one write added to every message,
# so it skips SQLAlchemy's statement and transaction handling (most of its cost).
_DRIVER_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# A claim on PostgreSQL, in one statement (one round trip in autocommit): take up to
# ``limit`` due rows nobody else is claiming (queued first, then retries now due,
# each walking the (issue, status) index in id order), and in the same statement
# make them ``sending`` for us, or ``skipped`` if their subscriber left. Nothing is
# claimed once a sender stopped the issue on an error storm (``issues.send_stopped``).
_PG_CLAIM = """
WITH queued AS (
    SELECT id FROM deliveries WHERE issue_id = %(issue)s AND status = 'queued'
    AND NOT EXISTS (SELECT 1 FROM issues WHERE issues.id = %(issue)s
                    AND COALESCE(issues.send_stopped, '') <> '')
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), retries AS (
    SELECT id FROM deliveries WHERE issue_id = %(issue)s AND status = 'failed_temp'
    AND next_attempt_at IS NOT NULL AND next_attempt_at <= %(now)s
    AND NOT EXISTS (SELECT 1 FROM issues WHERE issues.id = %(issue)s
                    AND COALESCE(issues.send_stopped, '') <> '')
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM queued UNION ALL SELECT id FROM retries LIMIT %(limit)s
)
UPDATE deliveries AS d SET
    status = CASE WHEN s.status = 'active' THEN 'sending' ELSE 'skipped' END,
    attempts = d.attempts + CASE WHEN s.status = 'active' THEN 1 ELSE 0 END,
    updated_at = %(now)s,
    claim_owner = CASE WHEN s.status = 'active' THEN %(owner)s ELSE d.claim_owner END,
    claim_expires = CASE WHEN s.status = 'active' THEN %(expires)s ELSE d.claim_expires END,
    claim_boot = CASE WHEN s.status = 'active' THEN NULL ELSE d.claim_boot END,
    next_attempt_at = CASE WHEN s.status = 'active' THEN d.next_attempt_at ELSE NULL END,
    last_error = CASE WHEN s.status = 'active' THEN d.last_error
        ELSE 'no longer subscribed' END
FROM picked, subscribers AS s
WHERE d.id = picked.id AND s.id = d.subscriber_id
RETURNING d.id, d.subscriber_id, s.email, s.name, s.language, s.token, d.attempts, s.status,
    d.edition
"""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CLAIM_TTL = dt.timedelta(minutes=2)
"""A claim's lease: longer than a message's deadline, renewed while the sender works."""


def boot_id() -> str | None:
    """This machine's boot id (Linux), None where the system does not say."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


class Claim(NamedTuple):
    """A batch taken from the queue: rows now ``sending`` for us, and those skipped."""

    rows: list[Due]
    skipped: list[str]
    """Addresses whose subscriber left since the snapshot (now ``skipped``)."""


class Ledger:
    """The ``deliveries`` rows of one issue, as seen by one sender (``owner``).

    One lock serializes this process's writes: SQLite has a single writer, and
    waiting on our own lock is cheaper than SQLite's busy-retry sleeps.
    """

    def __init__(self, store: Store, issue_id: int, owner: str = "", boot: str | None = None):
        self.store = store
        self.issue_id = issue_id
        self.owner = owner
        self.lock = threading.Lock()
        self.conn: Connection = store.engine.connect()
        self.pg = store.engine.dialect.name == "postgresql"
        sqlite = store.engine.dialect.name == "sqlite"
        self.boot = (boot or boot_id()) if sqlite else None
        # Cheap (unsynced) per-message commits only where a reboot can be told apart.
        self.cheap = sqlite and self.boot is not None
        placeholder = _DRIVER_PLACEHOLDERS.get(store.engine.dialect.paramstyle)
        self.dot_sql = (
            "UPDATE deliveries SET status = 'awaiting_reply' "
            f"WHERE id = {placeholder} AND status = 'sending' AND claim_owner = {placeholder} "
            f"AND {_STILL_ACTIVE.format(subscriber=placeholder)}"
            if placeholder
            else None
        )
        self.active_sql = (
            f"SELECT 1 FROM subscribers WHERE id = {placeholder} AND status = 'active'"
            if placeholder
            else None
        )
        self.sent_sql = (
            f"UPDATE deliveries SET status = 'sent', updated_at = {placeholder}, "
            f"sent_at = {placeholder}, next_attempt_at = NULL, last_error = NULL "
            f"WHERE id = {placeholder} AND {_IN_FLIGHT} AND claim_owner = {placeholder}"
            if placeholder
            else None
        )
        self.sqlite = store.engine.dialect.name == "sqlite"
        self.claim_checks_stop = self.pg and store.engine.dialect.driver == "psycopg"
        """``claim`` takes nothing once the issue's senders were told to stop, in the
        same statement: no separate read per batch for it."""
        if self.cheap:
            self._pragma("NORMAL")

    def close(self) -> None:
        if self.cheap:
            self._pragma("FULL")  # the connection goes back to the pool as it came
        self.conn.close()

    def _pragma(self, level: str) -> None:
        """Set this connection's ``synchronous`` level (only ever between transactions)."""
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(f"PRAGMA synchronous={level}")
        finally:
            cursor.close()

    def _direct(self, sql: str, params: tuple[Any, ...], *, read: bool = False) -> bool:
        """One statement straight through the driver, committed: for the writes and the
        read made once per message, where SQLAlchemy's statement and transaction handling
        cost more than the database itself. This connection is idle between our
        transactions, and ``self.lock`` keeps it ours. Returns whether a row was found
        (``read``) or changed."""
        with self.lock:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            if self.pg:
                # One statement is its own transaction: in autocommit the driver sends
                # no BEGIN and no COMMIT, so the statement is one round trip, not three.
                raw.autocommit = True
                try:
                    cursor = raw.cursor()
                    try:
                        cursor.execute(sql, params)
                        return cursor.fetchone() is not None if read else cursor.rowcount == 1
                    finally:
                        cursor.close()
                finally:
                    raw.autocommit = False
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                hit = cursor.fetchone() is not None if read else cursor.rowcount == 1
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
            return hit

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A transaction; on SQLite with a boot id, committed without waiting for the disk."""
        with self.lock, self.conn.begin():
            yield self.conn

    @contextmanager
    def _durable_tx(self) -> Iterator[Connection]:
        """A transaction on disk when it commits, and with it every commit before it."""
        with self.lock:
            if self.cheap:
                self._pragma("FULL")
            try:
                with self.conn.begin():
                    yield self.conn
            finally:
                if self.cheap:
                    self._pragma("NORMAL")

    def snapshot(self, edition_of: EditionOf | None = None, default_edition: str = "") -> int:
        """Queue every active subscriber, once per issue; return how many were added.

        The list is the one taken when sending started: a resume or a retry run
        finds the ledger already filled and adds nobody, so someone who subscribed
        since waits for the next issue. ``edition_of`` gives each recipient's
        edition, recorded with the row so that a resumed send keeps it; a
        recipient it gives None is ``skipped`` (nothing of the issue is for them).
        ``default_edition`` is written with the insert (most recipients' edition), so
        only the others cost an update.
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
            sa.literal(default_edition),
        ).where(subscribers.c.status == "active", ~sa.exists(already))
        try:
            with self._tx() as conn:
                started = conn.execute(
                    sa.select(deliveries.c.id)
                    .where(deliveries.c.issue_id == self.issue_id)
                    .limit(1)
                ).first()
                if started is not None:
                    return 0
                result = conn.execute(
                    sa.insert(deliveries).from_select(
                        [
                            *("issue_id", "subscriber_id", "email", "status", "attempts"),
                            *("updated_at", "edition"),
                        ],
                        source,
                    )
                )
                if edition_of is not None:
                    self._set_editions(conn, edition_of, default_edition, now)
                return max(int(result.rowcount or 0), 0)
        except IntegrityError:
            return 0  # another sender took the snapshot at the same moment: theirs stands

    def _set_editions(
        self, conn: Connection, edition_of: EditionOf, default: str, now: dt.datetime
    ) -> None:
        """Record each row's edition: one UPDATE per distinct edition (few), in chunks."""
        rows = conn.execute(
            sa.select(deliveries.c.id, subscribers.c.language, subscribers.c.tags)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.issue_id == self.issue_id)
        )
        groups: dict[str | None, list[int]] = {}
        known: dict[tuple[str, str], str | None] = {}  # few distinct (language, tags) pairs
        for row_id, language, tags in rows:
            pair = (language or "", tags or "")
            if pair not in known:
                known[pair] = edition_of(*pair)
            groups.setdefault(known[pair], []).append(row_id)
        for edition, ids in groups.items():
            if edition == default:
                continue  # written by the insert
            values: dict[str, Any] = {"edition": edition}
            if edition is None:
                values = {"status": "skipped", "last_error": NO_SECTION, "updated_at": now}
            for start in range(0, len(ids), 500):
                conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id.in_(ids[start : start + 500]))
                    .values(**values)
                )

    def recover(self, resend_uncertain: bool, *, expired_only: bool = False) -> None:
        """Settle rows a dead sender left in flight; maybe re-queue the uncertain ones.

        ``sending``: the final dot was never written, so the server discarded the
        message: back in the queue. ``awaiting_reply``: the server may have it:
        ``uncertain``. A claim made before the machine last booted may have lost
        its last per-message commits (see the module docstring): all its rows in
        flight are ``uncertain``. ``expired_only``: leave claims whose lease still
        runs (other live senders' work) alone.
        """
        now = utcnow()
        where = [deliveries.c.issue_id == self.issue_id]
        in_flight = deliveries.c.status.in_(("sending", "awaiting_reply"))
        if expired_only:
            # A claim also ends when its owner is a process of this machine that is gone.
            with self._tx() as conn:
                owners = conn.execute(
                    sa.select(deliveries.c.claim_owner)
                    .where(*where, in_flight, deliveries.c.claim_owner.is_not(None))
                    .distinct()
                ).scalars()
                dead = [o for o in owners if owner_gone(o, live_owners=(self.owner,))]
            where.append(
                sa.or_(
                    deliveries.c.claim_expires.is_(None),
                    deliveries.c.claim_expires < now,
                    deliveries.c.claim_owner.in_(dead),
                )
            )
        other_boot = sa.and_(
            deliveries.c.claim_boot.is_not(None),
            deliveries.c.claim_boot != (self.boot or ""),
        )
        released = {"claim_owner": None, "claim_expires": None, "updated_at": now}
        with self._durable_tx() as conn:
            rebooted = conn.execute(
                sa.update(deliveries)
                .where(*where, in_flight, other_boot)
                .values(
                    status="uncertain",
                    last_error="the machine restarted during the send: the message may have "
                    "been handed to the server",
                    **released,
                )
            ).rowcount
            if rebooted:
                log.warning(
                    "%d recipient(s) marked uncertain: the machine restarted while sending them",
                    rebooted,
                )
            requeued = conn.execute(
                sa.update(deliveries)
                .where(*where, deliveries.c.status == "sending")
                .values(status="queued", **released)
            ).rowcount
            if requeued:
                log.info(
                    "%d recipient(s) back in the queue after an interrupted send "
                    "(their messages had not been handed over)",
                    requeued,
                )
            stale = conn.execute(
                sa.update(deliveries)
                .where(*where, deliveries.c.status == "awaiting_reply")
                .values(
                    status="uncertain",
                    last_error="the process stopped after handing the message to the server "
                    "and before recording the answer",
                    **released,
                )
            ).rowcount
            if stale:
                log.warning("%d recipient(s) marked uncertain after an interrupted send", stale)
            if resend_uncertain:
                conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.issue_id == self.issue_id, deliveries.c.status == "uncertain"
                    )
                    .values(status="queued", updated_at=now, next_attempt_at=None)
                )

    def claim(self, limit: int, ttl: dt.timedelta = CLAIM_TTL) -> Claim:
        """Take up to ``limit`` due rows (queued, then retries now due) in one durable commit.

        The rows become ``sending`` for this sender until ``ttl`` from now (renew
        with ``renew_claims``); rows whose subscriber left become ``skipped``. On
        PostgreSQL, rows another sender is claiming at the same moment are
        skipped over (``SKIP LOCKED``), so concurrent claims never overlap.
        Two queries rather than one with OR: each walks the (issue, status)
        index in id order and stops at ``limit``.
        """
        now = utcnow()
        if self.claim_checks_stop:
            return self._claim_pg(limit, now, ttl)
        columns = (
            deliveries.c.id,
            deliveries.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.language,
            subscribers.c.token,
            deliveries.c.attempts,
            deliveries.c.edition,
            subscribers.c.status,
        )
        queued = deliveries.c.status == "queued"
        retries = sa.and_(
            deliveries.c.status == "failed_temp",
            deliveries.c.next_attempt_at.is_not(None),
            deliveries.c.next_attempt_at <= now,
        )
        found: list[Any] = []
        with self._durable_tx() as conn:
            for condition in (queued, retries):
                if len(found) >= limit:
                    break
                query = (
                    sa.select(*columns)
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .where(deliveries.c.issue_id == self.issue_id, condition)
                    .order_by(deliveries.c.id)
                    .limit(limit - len(found))
                )
                if self.pg:
                    query = query.with_for_update(of=deliveries, skip_locked=True)
                found.extend(conn.execute(query))
            active = [row for row in found if row.status == "active"]
            gone = [row for row in found if row.status != "active"]
            if active:
                conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id.in_([row.id for row in active]))
                    .values(
                        status="sending",
                        attempts=deliveries.c.attempts + 1,
                        updated_at=now,
                        claim_owner=self.owner,
                        claim_expires=now + ttl,
                        claim_boot=self.boot,
                    )
                )
            if gone:
                conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id.in_([row.id for row in gone]))
                    .values(
                        status="skipped",
                        updated_at=now,
                        next_attempt_at=None,
                        last_error="no longer subscribed",
                    )
                )
        return Claim(
            [Due._make((*row[:7], row.edition or "")) for row in active],
            [row.email for row in gone],
        )

    def _claim_pg(self, limit: int, now: dt.datetime, ttl: dt.timedelta) -> Claim:
        """``claim`` in one statement and one round trip (PostgreSQL's commits are durable)."""
        naive = now.astimezone(dt.UTC).replace(tzinfo=None)  # as ``UTCDateTime`` stores it
        params = {
            "issue": self.issue_id,
            "limit": limit,
            "now": naive,
            "owner": self.owner,
            "expires": naive + ttl,
        }
        with self.lock:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            raw.autocommit = True
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(_PG_CLAIM, params)
                    found = sorted(cursor.fetchall())
                finally:
                    cursor.close()
            finally:
                raw.autocommit = False
        active = [
            # attempts before this claim; the edition the row was queued with
            Due(row[0], row[1], row[2], row[3], row[4], row[5], row[6] - 1, row[8] or "")
            for row in found
            if row[7] == "active"
        ]
        return Claim(active, [row[2] for row in found if row[7] != "active"])

    def _own_rows(self, *statuses: str) -> sa.Update:
        """An update of this sender's rows of this issue in ``statuses``."""
        return sa.update(deliveries).where(
            deliveries.c.issue_id == self.issue_id,
            deliveries.c.claim_owner == self.owner,
            deliveries.c.status.in_(statuses),
        )

    def renew_claims(self, ttl: dt.timedelta = CLAIM_TTL) -> int:
        """Extend the lease on this sender's rows in flight; how many it still holds."""
        with self._tx() as conn:
            return int(
                conn.execute(
                    self._own_rows("sending", "awaiting_reply").values(claim_expires=utcnow() + ttl)
                ).rowcount
                or 0
            )

    def release(self) -> int:
        """Put this sender's claimed rows that were not begun back in the queue (durably).

        Called when no message of ours is being written: a ``sending`` row of
        ours then never had its final dot written.
        """
        with self._durable_tx() as conn:
            return int(
                conn.execute(
                    self._own_rows("sending").values(
                        status="queued", updated_at=utcnow(), claim_owner=None
                    )
                ).rowcount
                or 0
            )

    def due_count(self) -> int:
        now = utcnow()
        due = sa.and_(
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
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(due)).scalar_one())

    def finish(self, done: Finished) -> bool:
        """Record ``done``'s outcome (a cheap commit); False if the row is no longer ours."""
        now = utcnow()
        if self.sent_sql is not None and done.status == "sent" and not done.bounce:
            return self._sent_fast(done.row, now)
        with self._tx() as conn:
            if done.status == "sent":
                params: dict[str, Any] = {"id": done.row.id, "now": now, "owner": self.owner}
                recorded = conn.execute(_SQL_SENT, params).rowcount
            else:
                recorded = conn.execute(
                    _SQL_FINISH,
                    {
                        "id": done.row.id,
                        "now": now,
                        "status": done.status,
                        "retry_at": done.retry_at,
                        "error": done.detail,
                        "owner": self.owner,
                    },
                ).rowcount
            if done.bounce:
                # 5xx: a hard bounce, recorded by the one function that marks bounces.
                subscriber_rows.mark_bounced(conn, done.row.subscriber_id)
        return bool(recorded)

    def _sent_fast(self, row: Due, now: dt.datetime) -> bool:
        """``finish`` for the common case, straight to the driver, as ``before_final_dot``.

        Through SQLAlchemy this one UPDATE cost about half a millisecond of CPU, as much
        as composing the message; the time is bound as ``UTCDateTime`` stores it.
        """
        naive = now.astimezone(dt.UTC).replace(tzinfo=None)
        when: Any = f"{naive:%Y-%m-%d %H:%M:%S.%f}" if self.sqlite else naive
        assert self.sent_sql is not None
        return self._direct(self.sent_sql, (when, when, row.id, self.owner))

    def still_subscribed(self, row: Due) -> bool:
        """Whether ``row``'s subscriber is still active.

        A batch is claimed ahead of sending: someone who leaves meanwhile must
        not get the message. ``before_final_dot`` checks it on every message;
        this says why a dot mark was refused. A read, so it costs no commit.
        """
        if self.active_sql is None:
            with self._tx() as conn:
                query = sa.select(subscribers.c.id).where(
                    subscribers.c.id == row.subscriber_id, subscribers.c.status == "active"
                )
                return conn.execute(query).first() is not None
        return self._direct(self.active_sql, (row.subscriber_id,), read=True)

    def before_final_dot(self, row: Due) -> bool:
        """Record that ``row``'s final dot is about to be written; False if it is no longer ours.

        Committed before the dot goes out, so that a crash from here on leaves
        the row ``uncertain`` and a crash before it leaves it simply queued. Also
        False when the subscriber left since the claim (``still_subscribed`` then
        tells the two apart): they must not get it.
        """
        if self.dot_sql is None:
            with self._tx() as conn:
                return bool(
                    conn.execute(
                        _sql(
                            "UPDATE deliveries SET status = 'awaiting_reply' "
                            f"WHERE id = :id AND status = 'sending' AND {_MINE} "
                            f"AND {_STILL_ACTIVE.format(subscriber=':subscriber')}"
                        ),
                        {"id": row.id, "owner": self.owner, "subscriber": row.subscriber_id},
                    ).rowcount
                )
        return self._direct(self.dot_sql, (row.id, self.owner, row.subscriber_id))

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

    def would_queue(self) -> dict[str, int]:
        """The counts a send would start from now (a dry run): today's rows plus newcomers."""
        with self._tx() as conn:
            already = sa.select(deliveries.c.id).where(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.subscriber_id == subscribers.c.id,
            )
            new = conn.execute(
                sa.select(sa.func.count()).where(
                    subscribers.c.status == "active", ~sa.exists(already)
                )
            ).scalar_one()
        counts = self.counts()
        counts["queued"] = counts.get("queued", 0) + int(new)
        return counts


def discard_if_untouched(store: Store, issue_id: int) -> bool:
    """Delete the issue's ledger if no message of it can have reached anyone; say if it did.

    True when every row is still ``queued`` (or ``skipped``): a send that could
    not reach its server. The issue can then go back to ``approved`` and be
    edited, and the next send takes a fresh snapshot of the list.
    """
    mine = deliveries.c.issue_id == issue_id
    with store.begin() as conn:
        touched = conn.execute(
            sa.select(deliveries.c.id)
            .where(mine, deliveries.c.status.not_in(("queued", "skipped")))
            .limit(1)
        ).first()
        if touched is not None:
            return False
        conn.execute(sa.delete(deliveries).where(mine))
    return True


def test_recipient(store: Store, address: str) -> tuple[str, str]:
    """Name and token for a test send to ``address``: the subscriber's own if on the list.

    A test send is outside the ledger; an address not on the list gets a
    placeholder token that unsubscribes nobody.
    """
    with store.begin() as conn:
        row = conn.execute(
            sa.select(subscribers.c.name, subscribers.c.token).where(
                sa.func.lower(subscribers.c.email) == address.lower()
            )
        ).first()
    return (row.name, row.token) if row is not None else ("", "test-send-no-token")
