"""A pace shared by every sender: sending slots handed out from one row in the database.

``[send] rate`` is what the relay allows the whole installation, not each process.
One process spaces its own messages itself; several (on PostgreSQL, possibly on
several machines) take their slots from a row holding the next free slot time: a
sender takes the slot and moves it on by ``1 / rate`` in one short transaction,
then waits until its slot comes. The row lock serialises takers, so the slots
never overlap, however many senders there are. Senders' clocks are assumed to
agree (NTP), since a slot is a wall-clock time.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .engine import Store
from .schema import pacing, utcnow

__all__ = ["take_slot"]


def take_slot(store: Store, name: str, interval: float) -> dt.datetime:
    """Reserve the next sending slot of pace ``name``; return when it starts."""
    step = dt.timedelta(seconds=interval)
    for _ in range(2):
        now = utcnow()
        with store.begin() as conn:
            current = conn.execute(
                sa.select(pacing.c.next_slot).where(pacing.c.name == name).with_for_update()
            ).scalar()
            if current is None:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(pacing).values(name=name, next_slot=now + step))
                except IntegrityError:
                    continue  # another sender created it at the same moment: take from theirs
                return now
            slot = max(current, now)
            conn.execute(
                sa.update(pacing).where(pacing.c.name == name).values(next_slot=slot + step)
            )
            return slot
    raise RuntimeError("the pacing row kept disappearing")  # pragma: no cover
