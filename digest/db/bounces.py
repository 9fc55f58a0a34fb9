"""What ``digest bounces`` did with each message it understood, one row per message.

The row is keyed by a hash of the message's bytes, so the same bounce read
twice (a second run, a mailbox that could not be flagged) is counted once; the
soft-bounce count that decides when someone is suppressed is read from here.
"""

from __future__ import annotations

import sqlalchemy as sa

from .engine import Connection
from .schema import bounce_events, utcnow

__all__ = ["is_recorded", "record", "soft_bounces"]


def is_recorded(conn: Connection, message_hash: str) -> bool:
    """True when a message with these bytes was processed before."""
    found = conn.execute(
        sa.select(bounce_events.c.id).where(bounce_events.c.message_hash == message_hash)
    ).first()
    return found is not None


def record(
    conn: Connection,
    *,
    message_hash: str,
    kind: str,
    subscriber_id: int | None,
    status_code: str,
    action: str,
    detail: str,
) -> None:
    """Remember one processed message and what was done about it."""
    conn.execute(
        sa.insert(bounce_events).values(
            message_hash=message_hash,
            kind=kind,
            subscriber_id=subscriber_id,
            status_code=status_code[:16],
            action=action[:64],
            detail=detail[:1000],
            created_at=utcnow(),
        )
    )


def soft_bounces(conn: Connection, subscriber_id: int) -> int:
    """How many soft bounces have been recorded for this subscriber."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(bounce_events)
        .where(
            bounce_events.c.subscriber_id == subscriber_id, bounce_events.c.kind == "soft_bounce"
        )
    ).scalar()
    return int(count or 0)
