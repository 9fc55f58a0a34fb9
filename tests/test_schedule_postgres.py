"""The scheduler on PostgreSQL: job store, locks and run queries in the one configured database.

A throwaway PostgreSQL server on loopback (the ``postgres_url`` fixture in conftest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from digest.config import Settings, load_settings
from digest.db import Store, runs, schema
from digest.errors import LockedError
from digest.schedule import (
    JOB_ID,
    JOBSTORE_TABLE,
    Scheduler,
    jobstore_url,
    next_fire_time,
    plan_start,
)

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    path = tmp_path / "digest.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n[schedule]\ncron = "0 7 * * mon"\n',
        encoding="utf-8",
    )
    return load_settings(path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database.url)
    yield store
    store.close()


def test_the_job_lives_in_the_configured_database_and_survives_a_restart(
    settings: Settings, store: Store
) -> None:
    assert jobstore_url(settings) == settings.database.url
    wednesday = dt.datetime(2026, 12, 2, 12, tzinfo=PARIS)
    first = Scheduler(settings, store, now=lambda: wednesday)
    first.start()
    odd = dt.datetime(2026, 12, 9, 7, 13, tzinfo=PARIS)
    first.aps.modify_job(JOB_ID, next_run_time=odd)
    first.close()
    with store.engine.connect() as conn:
        assert sa.inspect(conn).has_table(JOBSTORE_TABLE)
    assert next_fire_time(settings, store) == odd

    second = Scheduler(settings, store, now=lambda: wednesday)
    second.start()
    try:
        assert next_fire_time(settings, store) == odd
    finally:
        second.close()


def test_a_second_scheduler_on_another_machine_refuses(settings: Settings, store: Store) -> None:
    now = dt.datetime(2026, 12, 2, 12, tzinfo=PARIS)
    first = Scheduler(settings, store, now=lambda: now)
    first.start()
    other = Store(settings.database.url)  # another process, another machine: same database
    try:
        with pytest.raises(LockedError, match="already running"):
            Scheduler(settings, other, now=lambda: now).start()
    finally:
        first.close()
        other.close()


def test_catch_up_decisions_read_runs_on_postgresql(settings: Settings, store: Store) -> None:
    fire = dt.datetime(2026, 11, 30, 7, tzinfo=PARIS)
    now = fire + dt.timedelta(hours=2)
    assert plan_start(settings, store, now=now, stored_next_run=fire).catch_up_period == "2026-W49"
    row = runs.start(store, "r1", "2026-W49", "schedule")
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id == row)
            .values(started_at=fire + dt.timedelta(minutes=1))
        )
    runs.finish(store, row, "draft_ready", "")
    assert plan_start(settings, store, now=now, stored_next_run=fire).catch_up_period is None
