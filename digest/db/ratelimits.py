"""Rate limits shared by every process: event counts per key and time window, in the database.

Several ``digest serve`` processes (behind one proxy, or on several machines) must
together allow what one would: counters in process memory would each allow the
limit. A limit is a pair of fixed windows whose counts are kept in rows; a new
event is allowed while the current window's count plus the previous window's,
weighted by how much of it still lies within the last ``seconds``, stays under the
limit (the sliding-window estimate: no burst of twice the limit across a window
boundary). The current window's row is only ever changed by a conditional
``UPDATE … SET hits = hits + 1 WHERE … AND hits + 1 <= allowance``, which the
database applies atomically: two processes can never both take the last event.

Keys (an address, a client's IP) are stored as SHA-256 hashes, never in clear, and
windows older than the previous one are deleted as new ones begin.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .engine import Store
from .schema import rate_limits, utcnow

__all__ = ["allow"]


def _hash(name: str, key: str) -> str:
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()


def allow(
    store: Store, name: str, key: str, limit: int, seconds: float, now: dt.datetime | None = None
) -> bool:
    """Record an event of limit ``name`` for ``key``; False (nothing recorded) when over
    ``limit`` events in the last ``seconds``."""
    moment = (now or utcnow()).timestamp()
    slot = int(moment // seconds)
    elapsed = (moment - slot * seconds) / seconds
    digest = _hash(name, key)
    mine = sa.and_(rate_limits.c.name == name, rate_limits.c.key_hash == digest)
    with store.begin() as conn:
        previous = conn.execute(
            sa.select(rate_limits.c.hits).where(mine, rate_limits.c.slot == slot - 1)
        ).scalar()
    # The previous window is closed (nobody adds to it any more): its weight is exact.
    allowance = limit - (previous or 0) * (1.0 - elapsed)
    if allowance < 1:
        return False
    if _increment(store, mine, slot, allowance):
        return True
    try:
        with store.begin() as conn:
            conn.execute(
                sa.insert(rate_limits).values(name=name, key_hash=digest, slot=slot, hits=1)
            )
            conn.execute(
                sa.delete(rate_limits).where(
                    rate_limits.c.name == name, rate_limits.c.slot < slot - 1
                )
            )
        return True
    except IntegrityError:  # another process opened the window at the same moment
        return _increment(store, mine, slot, allowance)


def _increment(store: Store, mine: sa.ColumnElement[bool], slot: int, allowance: float) -> bool:
    with store.begin() as conn:
        result = conn.execute(
            sa.update(rate_limits)
            .where(mine, rate_limits.c.slot == slot, rate_limits.c.hits + 1 <= allowance)
            .values(hits=rate_limits.c.hits + 1)
        )
        return bool(result.rowcount)
