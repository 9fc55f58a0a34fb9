"""Where the scheduler's weekly job is kept: APScheduler's SQLAlchemy job store.

The job lives in a database like everything else, so that a restarted (or
moved) scheduler finds it. Which database is the scheduler's choice
(``digest.schedule.jobstore_url``); opening it, and reading its next run time
without starting a scheduler, are here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from .engine import Store

__all__ = ["close_job_store", "open_job_store", "stored_next_run"]


def open_job_store(url: str, table: str) -> SQLAlchemyJobStore:
    """APScheduler's job store on ``url``, waiting (not failing) while SQLite is busy."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":

        def pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        sa.event.listen(engine, "connect", pragmas)
    return SQLAlchemyJobStore(engine=engine, tablename=table)


def close_job_store(job_store: BaseJobStore) -> None:
    """Let go of the job store's connections.

    Called after the scheduler shut down, not by it: its main loop queries the
    job store once more after shutting it down.
    """
    if isinstance(job_store, SQLAlchemyJobStore):
        job_store.engine.dispose()


def stored_next_run(store: Store, url: str, table: str, job_id: str) -> dt.datetime | None:
    """The job's stored next run time (UTC), or None: no store, no job, or a paused one.

    Reads the job table directly: ``digest status`` must not start (or need) a
    scheduler, and must not create a job store where there is none.
    """
    if url == "sqlite://":
        return None
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = store.engine if url == store.url else sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return None
            jobs = sa.table(table, sa.column("id"), sa.column("next_run_time"))
            stamp = conn.execute(
                sa.select(jobs.c.next_run_time).where(jobs.c.id == job_id)
            ).scalar()
    finally:
        if engine is not store.engine:
            engine.dispose()
    return None if stamp is None else dt.datetime.fromtimestamp(float(stamp), dt.UTC)
