"""Rate limits shared by every process on one database: signup floods.

Several `digest serve` processes (behind one proxy, or on several machines) must
enforce one limit together, so the counts live in the database, not in memory.
Each key has one window that starts at its first event and lasts ``seconds``;
within it at most ``limit`` events are allowed. (Across a window's end a key can
get up to twice the limit in a short time: enough to stop a flood, and one row
per key.) Keys are hashed: the table never holds an address or a client's IP.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .engine import Store
from .schema import rate_limits, utcnow

__all__ = ["allow"]

# Windows here last an hour at most; rows idle for a day are dropped.
KEEP = dt.timedelta(days=1)


def allow(store: Store, kind: str, value: str, limit: int, seconds: float) -> bool:
    """Count one event of ``value`` (an address, a client) for ``kind``; False when over."""
    key = hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()
    window = dt.timedelta(seconds=seconds)
    for _ in range(2):
        now = utcnow()
        with store.begin() as conn:
            row = conn.execute(
                sa.select(rate_limits.c.window_start, rate_limits.c.count)
                .where(rate_limits.c.key == key)
                .with_for_update()
            ).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.insert(rate_limits).values(key=key, window_start=now, count=1)
                        )
                except IntegrityError:
                    continue  # another process counted the same key first: count on theirs
                conn.execute(sa.delete(rate_limits).where(rate_limits.c.window_start < now - KEEP))
                return limit > 0
            started, count = row  # (``row.count`` is the tuple's own method)
            if started <= now - window:
                values = {"window_start": now, "count": 1}
            elif count >= limit:
                return False
            else:
                values = {"count": count + 1}
            conn.execute(sa.update(rate_limits).where(rate_limits.c.key == key).values(**values))
            return True
    raise RuntimeError("the rate-limit row kept disappearing")  # pragma: no cover
