"""The history of ``digest run``: one row per run, for ``digest status`` and the scheduler.

A run without ``outcome`` has not finished: its process died mid-run, and the
scheduler's catch-up resumes it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from .engine import Store
from .schema import as_utc, runs, utcnow

__all__ = ["finish", "first_started", "finished_since", "last", "start"]


def start(store: Store, run_id: str, period: str, trigger: str) -> int:
    """Record that a run of ``period`` started; return the row's id for ``finish``."""
    with store.begin() as conn:
        result = conn.execute(
            sa.insert(runs).values(
                run_id=run_id, period=period, trigger=trigger, started_at=utcnow(), detail=""
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish(store: Store, row_id: int, outcome: str, detail: str) -> None:
    with store.begin() as conn:
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == row_id)
            .values(finished_at=utcnow(), outcome=outcome, detail=detail)
        )


def last(store: Store) -> dict[str, Any] | None:
    """The latest run's row as a dict (``period``, ``outcome``, ``started_at``…), or None."""
    with store.connect() as conn:
        row = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(1)).mappings().first()
        return None if row is None else dict(row)


def finished_since(store: Store, period: str, since: dt.datetime) -> bool:
    """Whether a run of ``period`` started at or after ``since`` and finished."""
    with store.connect() as conn:
        found = conn.execute(
            sa.select(runs.c.id)
            .where(
                runs.c.period == period,
                runs.c.started_at >= since.astimezone(dt.UTC),
                runs.c.outcome.is_not(None),
            )
            .limit(1)
        ).first()
    return found is not None


def first_started(store: Store, period: str) -> dt.datetime | None:
    """When ``period`` first ran, or None if it never did."""
    with store.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.min(runs.c.started_at)).where(runs.c.period == period)
        ).scalar()
    return as_utc(value)
