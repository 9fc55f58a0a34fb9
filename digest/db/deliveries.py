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
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .engine import Store
from .schema import UTCDateTime, deliveries, subscribers, utcnow

__all__ = ["Due", "Finished", "Ledger", "test_recipient"]

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
_SQL_SENT = _sql(
    "UPDATE deliveries SET status = 'sent', updated_at = :now, sent_at = :now, "
    f"next_attempt_at = NULL, last_error = NULL WHERE id = :id AND {_IN_FLIGHT}"
)
_SQL_FINISH = _sql(
    "UPDATE deliveries SET status = :status, updated_at = :now, next_attempt_at = :retry_at, "
    f"last_error = :error WHERE id = :id AND {_IN_FLIGHT}"
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
_SQL_DOT = _sql(
    "UPDATE deliveries SET status = 'awaiting_reply' WHERE id = :id AND status = 'sending'"
)
# The same in the driver's own parameter style: the one write added to every message,
# so it skips SQLAlchemy's statement and transaction handling (most of its cost).
_DRIVER_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


class Ledger:
    """The ``deliveries`` rows of one issue, written one short transaction at a time.

    One lock serializes this process's writes: SQLite has a single writer, and
    waiting on our own lock is cheaper than SQLite's busy-retry sleeps.
    """

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self.lock = threading.Lock()
        self.conn: Connection = store.engine.connect()
        self.pg = store.engine.dialect.name == "postgresql"
        placeholder = _DRIVER_PLACEHOLDERS.get(store.engine.dialect.paramstyle)
        self.dot_sql = (
            "UPDATE deliveries SET status = 'awaiting_reply' "
            f"WHERE id = {placeholder} AND status = 'sending'"
            if placeholder
            else None
        )

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
        """Settle rows a dead process left in flight; maybe re-queue the uncertain ones.

        ``sending``: the final dot was never written, so the server discarded the
        message: back in the queue. ``awaiting_reply``: the server may have it:
        ``uncertain``.
        """
        now = utcnow()
        mine = deliveries.c.issue_id == self.issue_id
        with self._tx() as conn:
            requeued = conn.execute(
                sa.update(deliveries)
                .where(mine, deliveries.c.status == "sending")
                .values(status="queued", updated_at=now)
            ).rowcount
            if requeued:
                log.info(
                    "%d recipient(s) back in the queue after an interrupted send "
                    "(their messages had not been handed over)",
                    requeued,
                )
            stale = conn.execute(
                sa.update(deliveries)
                .where(mine, deliveries.c.status == "awaiting_reply")
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

    def step(self, done: Finished | None, start: Due | None) -> str:
        """Record ``done``'s outcome and/or mark ``start`` as being sent, in one transaction.

        ``start`` is only marked if its subscriber is still active (else it
        becomes ``skipped``) and nobody else took it; returns ``"started"``,
        ``"skipped"`` or ``"taken"`` (``""`` without ``start``).
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

    def before_final_dot(self, row: Due) -> bool:
        """Record that ``row``'s final dot is about to be written; False if it is no longer ours.

        Committed before the dot goes out, so that a crash from here on leaves
        the row ``uncertain`` and a crash before it leaves it simply queued.
        """
        if self.dot_sql is None:
            with self._tx() as conn:
                return bool(conn.execute(_SQL_DOT, {"id": row.id}).rowcount)
        # Straight to the driver: this connection is idle between our transactions,
        # and SQLAlchemy's transaction handling would cost more than the write itself.
        with self.lock:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            try:
                cursor.execute(self.dot_sql, (row.id,))
                marked = cursor.rowcount == 1
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
            return marked

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
