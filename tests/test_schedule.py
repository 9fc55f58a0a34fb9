"""The scheduler on a fake clock: fire times across DST, misfires, catch-up, one instance.

Decisions take an injected ``now``; where a real APScheduler runs, its job is a
counter standing in for ``pipeline.run``, and the tests wait on an event, never
on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from digest import pipeline
from digest.config import Settings, load_settings
from digest.db import Store, issues, locks, runs, schema
from digest.errors import ConfigError, LockedError
from digest.models import Issue
from digest.schedule import (
    CATCH_UP_ID,
    FOLLOW_UP_DELAY,
    FOLLOW_UP_ID,
    JOB_FUNC,
    JOB_ID,
    JOBSTORE_TABLE,
    LOCK_NAME,
    Scheduler,
    cron_trigger,
    jobstore_url,
    latest_fire_time,
    next_fire_time,
    plan_start,
    scheduled_period,
    scheduled_run,
)

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


def paris(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def write_settings(folder: Path, cron: str = "0 7 * * mon", grace_hours: float = 12) -> Settings:
    path = folder / "digest.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///data/digest.db"

[schedule]
cron = "{cron}"
timezone = "Europe/Paris"
misfire_grace_hours = {grace_hours}
""",
        encoding="utf-8",
    )
    return load_settings(path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return write_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database.url)
    yield store
    store.close()


def fires(settings: Settings, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Fire times in [start, end) as a running scheduler computes them (UTC ``now``)."""
    trigger = cron_trigger(settings)
    result: list[dt.datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        result.append(fire.astimezone(UTC))
        # APScheduler asks again a moment after the run time, with an aware UTC now.
        fire = trigger.get_next_fire_time(fire, fire.astimezone(UTC) + dt.timedelta(milliseconds=3))
    return result


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- fire times across daylight-saving changes ---------------------------------------------


def test_0230_on_spring_forward_day_fires_once_an_hour_later(tmp_path: Path) -> None:
    # 2027-03-28: clocks go from 02:00 to 03:00 in Paris; 02:30 does not exist that day.
    settings = write_settings(tmp_path, cron="30 2 * * *")
    got = fires(settings, paris(2027, 3, 27), paris(2027, 3, 30))
    assert got == [utc(2027, 3, 27, 1, 30), utc(2027, 3, 28, 1, 30), utc(2027, 3, 29, 0, 30)]
    assert got[1].astimezone(PARIS).strftime("%H:%M %Z") == "03:30 CEST"


@pytest.mark.parametrize("cron", ["30 2 * * *", "30 2 * * sun"])
@pytest.mark.parametrize(
    "day, first_occurrence",
    [((2026, 10, 25), utc(2026, 10, 25, 0, 30)), ((2027, 10, 31), utc(2027, 10, 31, 0, 30))],
)
def test_0230_on_fall_back_day_fires_once_at_its_first_occurrence(
    tmp_path: Path, cron: str, day: tuple[int, int, int], first_occurrence: dt.datetime
) -> None:
    # 02:30 happens twice when clocks go back from 03:00 to 02:00; a weekly run is meant once.
    settings = write_settings(tmp_path, cron=cron)
    got = fires(settings, paris(*day), paris(*day) + dt.timedelta(days=1))
    assert got == [first_occurrence]
    assert got[0].astimezone(PARIS).strftime("%H:%M %Z") == "02:30 CEST"
    after = fires(settings, first_occurrence + dt.timedelta(seconds=1), paris(2028, 1, 1))
    assert after[0].astimezone(PARIS).date() > got[0].astimezone(PARIS).date()


@pytest.mark.parametrize(
    "day, expected",
    [
        ((2027, 3, 28), utc(2027, 3, 28, 5, 0)),  # CEST from this morning: UTC+2
        ((2026, 10, 25), utc(2026, 10, 25, 6, 0)),  # CET from this morning: UTC+1
        ((2027, 10, 31), utc(2027, 10, 31, 6, 0)),
    ],
)
def test_0700_on_dst_sundays_stays_at_seven_local(
    tmp_path: Path, day: tuple[int, int, int], expected: dt.datetime
) -> None:
    settings = write_settings(tmp_path, cron="0 7 * * sun")
    got = fires(settings, paris(*day), paris(*day) + dt.timedelta(days=1))
    assert got == [expected]
    assert got[0].astimezone(PARIS).hour == 7


def test_weekly_cron_fires_every_monday_at_seven_through_a_dst_change(settings: Settings) -> None:
    got = fires(settings, paris(2027, 3, 15), paris(2027, 4, 13))
    assert [f.astimezone(PARIS).strftime("%a %d %H:%M") for f in got] == [
        "Mon 15 07:00",
        "Mon 22 07:00",
        "Mon 29 07:00",
        "Mon 05 07:00",
        "Mon 12 07:00",
    ]


def test_a_wrong_cron_or_time_zone_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    # both are refused when the config is read, before any trigger is built
    with pytest.raises(ConfigError, match=r"\[schedule\] cron"):
        cron_trigger(write_settings(tmp_path, cron="every monday"))
    path = tmp_path / "digest.toml"
    path.write_text(
        path.read_text(encoding="utf-8")
        .replace("every monday", "0 7 * * mon")
        .replace("Europe/Paris", "Europe/Atlantis"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"\[schedule\] timezone"):
        cron_trigger(load_settings(path))


def test_latest_fire_time_looks_back_only_within_the_window(settings: Settings) -> None:
    trigger = cron_trigger(settings)
    monday_seven = paris(2026, 11, 30, 7)
    window = dt.timedelta(hours=12)
    assert latest_fire_time(trigger, monday_seven, window) == monday_seven
    assert latest_fire_time(trigger, paris(2026, 11, 30, 18, 59), window) == monday_seven
    assert latest_fire_time(trigger, paris(2026, 11, 30, 19, 1), window) is None
    assert latest_fire_time(trigger, paris(2026, 11, 30, 6, 59), window) is None


def test_a_late_run_is_for_the_week_it_was_scheduled_in(tmp_path: Path) -> None:
    # Sunday 23:00 fire, run at Monday 01:00 (within the grace window): still last week's issue.
    settings = write_settings(tmp_path, cron="0 23 * * sun")
    assert scheduled_period(settings, paris(2026, 11, 30, 1)) == "2026-W48"
    assert scheduled_period(settings, paris(2026, 11, 29, 23, 0, 5)) == "2026-W48"


# -- the start plan: downtime, misfires, catch-up --------------------------------------------

FIRE = paris(2026, 11, 30, 7)  # Monday of 2026-W49
NEXT_FIRE = paris(2026, 12, 7, 7)


def test_down_at_fire_time_and_back_within_the_grace_window_runs_now(
    settings: Settings, store: Store
) -> None:
    plan = plan_start(settings, store, now=paris(2026, 11, 30, 9), stored_next_run=FIRE)
    assert plan.catch_up_period == "2026-W49"
    assert plan.next_run_time == NEXT_FIRE


def test_down_at_fire_time_and_back_after_the_grace_window_waits_for_next_week(
    settings: Settings, store: Store
) -> None:
    plan = plan_start(settings, store, now=paris(2026, 11, 30, 19, 30), stored_next_run=FIRE)
    assert plan.catch_up_period is None
    assert plan.next_run_time == NEXT_FIRE


def test_three_missed_weeks_give_one_run_for_the_latest_week(
    settings: Settings, store: Store
) -> None:
    three_weeks_ago = paris(2026, 11, 9, 7)
    plan = plan_start(settings, store, now=paris(2026, 11, 30, 8), stored_next_run=three_weeks_ago)
    assert plan.catch_up_period == "2026-W49"
    assert plan.next_run_time == NEXT_FIRE


def test_first_start_after_the_fire_time_catches_up_even_with_no_stored_job(
    settings: Settings, store: Store
) -> None:
    plan = plan_start(settings, store, now=paris(2026, 11, 30, 7, 30), stored_next_run=None)
    assert plan.catch_up_period == "2026-W49"


def test_a_restart_keeps_a_stored_next_run_time_still_ahead(
    settings: Settings, store: Store
) -> None:
    stored = paris(2026, 12, 7, 7)
    plan = plan_start(settings, store, now=paris(2026, 12, 2, 12), stored_next_run=stored)
    assert plan.next_run_time is stored
    assert plan.catch_up_period is None


def test_no_catch_up_for_a_period_already_sent(settings: Settings, store: Store) -> None:
    issues.save(store, Issue(period="2026-W49", title="t", intro="", items=()))
    issues.set_status(store, "2026-W49", "sent")
    plan = plan_start(settings, store, now=paris(2026, 11, 30, 9), stored_next_run=FIRE)
    assert plan.catch_up_period is None
    assert "already sent" in plan.reason


def test_no_catch_up_when_a_run_finished_since_the_fire_time_but_a_crashed_one_resumes(
    settings: Settings, store: Store
) -> None:
    row = runs.start(store, "r1", "2026-W49", "schedule")
    with store.begin() as conn:  # the run started a minute after the fire time
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id == row)
            .values(started_at=FIRE + dt.timedelta(minutes=1))
        )
    now = FIRE + dt.timedelta(hours=2)
    # Unfinished (the process died mid-run): catch up, which resumes it.
    assert plan_start(settings, store, now=now, stored_next_run=FIRE).catch_up_period == "2026-W49"
    runs.finish(store, row, "draft_ready", "draft ready")
    plan = plan_start(settings, store, now=now, stored_next_run=FIRE)
    assert plan.catch_up_period is None
    assert "already ran" in plan.reason


def test_a_run_before_the_fire_time_does_not_count(settings: Settings, store: Store) -> None:
    row = runs.start(store, "r0", "2026-W49", "manual")
    with store.begin() as conn:  # an editor's manual run on Monday at 06:00
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id == row)
            .values(started_at=FIRE - dt.timedelta(hours=1))
        )
    runs.finish(store, row, "draft_ready", "draft ready")
    plan = plan_start(settings, store, now=FIRE + dt.timedelta(hours=2), stored_next_run=FIRE)
    assert plan.catch_up_period == "2026-W49"


# -- a real APScheduler, with a counter for pipeline.run ---------------------------------------


class FakeRuns:
    """Stands in for ``pipeline.run``: counts calls, signals each one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str]] = []
        self.done = threading.Event()

    def __call__(
        self,
        settings: Settings,
        store: Store,
        *,
        period: str | None = None,
        trigger: str = "manual",
        now: dt.datetime | None = None,
        stop: threading.Event | None = None,
    ) -> pipeline.RunReport:
        self.calls.append((period, trigger))
        self.done.set()
        return pipeline.RunReport(period or "?", "sent", "counted", run_id="fake", sent=1)


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    fake = FakeRuns()
    monkeypatch.setattr(pipeline, "run", fake)
    return fake


@pytest.fixture
def schedulers() -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.close()


def start(
    settings: Settings, store: Store, schedulers: list[Scheduler], now: dt.datetime
) -> Scheduler:
    scheduler = Scheduler(settings, store, now=lambda: now)
    scheduler.start()
    schedulers.append(scheduler)
    return scheduler


def store_job_as_a_previous_process_left_it(settings: Settings, next_run: dt.datetime) -> None:
    aps = BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(url=jobstore_url(settings), tablename=JOBSTORE_TABLE)
        }
    )
    aps.start(paused=True)
    aps.add_job(
        JOB_FUNC,
        cron_trigger(settings),
        id=JOB_ID,
        args=[str(settings.path)],
        next_run_time=next_run,
    )
    aps.shutdown()


def test_three_missed_weeks_run_once_in_a_real_scheduler(
    settings: Settings, store: Store, fake_runs: FakeRuns, schedulers: list[Scheduler]
) -> None:
    store_job_as_a_previous_process_left_it(settings, paris(2026, 11, 9, 7))
    scheduler = start(settings, store, schedulers, now=paris(2026, 11, 30, 8))
    assert fake_runs.done.wait(20)
    scheduler.close()
    assert fake_runs.calls == [("2026-W49", "catch-up")]
    # Nothing else was due: the weekly job waits for next Monday.
    assert next_fire_time(settings, store) == NEXT_FIRE


def test_back_after_the_grace_window_runs_nothing_until_next_week(
    settings: Settings, store: Store, fake_runs: FakeRuns, schedulers: list[Scheduler]
) -> None:
    store_job_as_a_previous_process_left_it(settings, FIRE)
    scheduler = start(settings, store, schedulers, now=paris(2026, 11, 30, 19, 30))
    assert scheduler.aps.get_job(CATCH_UP_ID) is None
    assert scheduler.aps.get_job(JOB_ID).next_run_time == NEXT_FIRE
    scheduler.close()
    assert fake_runs.calls == []


def test_a_restart_keeps_the_stored_next_run_time(
    settings: Settings, store: Store, fake_runs: FakeRuns, schedulers: list[Scheduler]
) -> None:
    odd = paris(2026, 12, 9, 7, 13)  # not what the cron says: only a stored value can give it
    first = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    first.aps.modify_job(JOB_ID, next_run_time=odd)
    first.close()
    assert next_fire_time(settings, store) == odd
    start(settings, store, schedulers, now=paris(2026, 12, 3, 12))
    assert next_fire_time(settings, store) == odd
    assert fake_runs.calls == []


def test_a_changed_cron_reschedules_the_job(
    tmp_path: Path, settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    start(settings, store, schedulers, now=paris(2026, 12, 2, 12)).close()
    friday = write_settings(tmp_path, cron="0 9 * * fri")
    start(friday, store, schedulers, now=paris(2026, 12, 2, 12)).close()
    stored = next_fire_time(friday, store)
    assert stored is not None
    assert stored.strftime("%a %H:%M") == "Fri 09:00"


def test_next_fire_time_reads_the_job_store_in_local_time(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    assert next_fire_time(settings, store) is None  # nothing scheduled yet
    assert not Path(jobstore_url(settings).removeprefix("sqlite:///")).exists()  # nor created
    start(settings, store, schedulers, now=dt.datetime.now(UTC)).close()
    upcoming = next_fire_time(settings, store)
    assert upcoming is not None
    assert upcoming.tzinfo == PARIS
    assert upcoming.strftime("%a %H:%M") == "Mon 07:00"
    assert upcoming > dt.datetime.now(UTC)


def test_a_second_scheduler_refuses_with_a_clear_message(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    now = paris(2026, 12, 2, 12)
    first = start(settings, store, schedulers, now=now)
    second = Scheduler(settings, Store(settings.database.url), now=lambda: now)
    with pytest.raises(LockedError, match="another `digest schedule` is already running"):
        second.start()
    first.close()
    start(settings, store, schedulers, now=now)  # free again once the first has stopped


def test_a_crashed_schedulers_lock_expires_and_a_new_one_starts(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    assert locks.acquire(store, LOCK_NAME, "crashed:1:dead", dt.timedelta(seconds=-1))
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    assert locks.holder(store, LOCK_NAME) == scheduler.owner


def test_the_scheduler_stops_when_it_loses_its_lock(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    locks.release(store, LOCK_NAME, scheduler.owner)
    assert locks.acquire(store, LOCK_NAME, "intruder", dt.timedelta(minutes=5))
    scheduler.serve(renew_every=0.01)  # returns instead of running on with a stolen lock
    scheduler.close()
    assert locks.holder(store, LOCK_NAME) == "intruder"


def test_scheduled_run_loads_the_config_and_runs_the_period_of_the_fire_time(
    settings: Settings, fake_runs: FakeRuns
) -> None:
    scheduled_run(str(settings.path), period="2026-W49", trigger="catch-up")
    assert fake_runs.calls == [("2026-W49", "catch-up")]


def test_the_lock_of_a_scheduler_that_died_on_this_machine_is_taken_over_at_once(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}:deadbeef"
    assert locks.acquire(store, LOCK_NAME, holder, dt.timedelta(minutes=5))
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    assert locks.holder(store, LOCK_NAME) == scheduler.owner


def test_a_live_scheduler_elsewhere_keeps_its_lock(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    assert locks.acquire(store, LOCK_NAME, "other-host:1:cafe", dt.timedelta(minutes=5))
    with pytest.raises(LockedError, match="other-host:1:cafe"):
        start(settings, store, schedulers, now=paris(2026, 12, 2, 12))


def test_a_previous_life_of_this_process_does_not_hold_the_lock(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    import os
    import socket

    # A container restarted as pid 1 finds its own pid in the lock, with another nonce.
    assert locks.acquire(
        store, LOCK_NAME, f"{socket.gethostname()}:{os.getpid()}:0ld", dt.timedelta(minutes=5)
    )
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    assert locks.holder(store, LOCK_NAME) == scheduler.owner


class BlockingRun(FakeRuns):
    """A run that lasts until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.finished: list[str] = []

    def __call__(self, *args: object, **kwargs: object) -> pipeline.RunReport:
        report = super().__call__(*args, **kwargs)  # type: ignore[arg-type]
        self.release.wait(20)
        self.finished.append("run")
        return report


def test_stopping_waits_for_a_run_in_progress(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocking = BlockingRun()
    monkeypatch.setattr(pipeline, "run", blocking)
    scheduler = Scheduler(settings, store, now=lambda: paris(2026, 11, 30, 8))
    scheduler.start()  # catches up 2026-W49 at once
    assert blocking.done.wait(20)
    scheduler.stop()
    closer = threading.Thread(
        target=lambda: (scheduler.close(), blocking.finished.append("closed"))
    )
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # still waiting for the run
    blocking.release.set()
    closer.join(20)
    assert blocking.finished == ["run", "closed"]
    assert locks.holder(store, LOCK_NAME) is None


def test_sigterm_stops_digest_schedule_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys\n"
        "from digest.config import load_settings\n"
        "from digest.logs import configure_logging\n"
        "from digest.schedule import run_scheduler\n"
        "from digest.db import Store\n"
        "configure_logging('json')\n"
        "settings = load_settings(sys.argv[1])\n"
        "run_scheduler(settings, Store(settings.database.url))\n"
    )
    # A cron that cannot have fired in the last minutes: no catch-up run to wait for.
    settings = write_settings(tmp_path, cron="0 7 1 1 *", grace_hours=0.01)
    store = Store(settings.database.url)
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while locks.holder(store, LOCK_NAME) is None:  # started: it holds the lock
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert locks.holder(store, LOCK_NAME) is None
    store.close()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in lines]
    assert any("received SIGTERM" in m for m in messages)
    assert any(m.startswith("scheduler started") for m in messages)


def test_run_logs_carry_run_id_and_period_as_json_fields(
    settings: Settings, fake_runs: FakeRuns
) -> None:
    import io
    import logging

    from digest.logs import JsonLogFormatter
    from digest.pipeline import run_and_notify

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("digest.pipeline")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        store = Store(settings.database.url)
        run_and_notify(settings, store, period="2026-W49", trigger="schedule")
        store.close()
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = [e for e in entries if e.get("run_id") == "fake"]
    assert done and done[-1]["period"] == "2026-W49"
    assert done[-1]["outcome"] == "sent"
    assert "run fake period 2026-W49: sent" in done[-1]["message"]
    assert dt.datetime.fromisoformat(done[-1]["time"]).tzinfo is not None


def test_a_run_already_in_progress_is_reported_as_skipped_not_as_a_failure(
    settings: Settings, store: Store
) -> None:
    from digest.pipeline import run_and_notify

    with locks.hold(store, "run"):  # a manual `digest run` is sending right now
        report = run_and_notify(settings, store, period="2026-W49", trigger="schedule")
    assert report.outcome == "skipped"
    assert "another run is in progress" in report.detail


def test_a_crashing_run_becomes_a_failed_report_and_the_scheduler_lives_on(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.pipeline import run_and_notify

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "run", crash)
    report = run_and_notify(settings, store, period="2026-W49", trigger="schedule")
    assert report.outcome == "failed"
    assert "RuntimeError: disk full" in report.detail


def test_an_interrupted_send_is_resumed_at_start_even_after_a_finished_run(
    settings: Settings, store: Store
) -> None:
    issues.save(store, Issue(period="2026-W49", title="t", intro="", items=()))
    issues.set_status(store, "2026-W49", "sending")  # SIGTERM stopped it half-way
    row = runs.start(store, "r1", "2026-W49", "schedule")
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id == row)
            .values(started_at=FIRE + dt.timedelta(minutes=1))
        )
    runs.finish(store, row, "partial", "interrupted; run `digest send` again to resume")
    plan = plan_start(settings, store, now=FIRE + dt.timedelta(hours=1), stored_next_run=FIRE)
    assert plan.catch_up_period == "2026-W49"
    assert "interrupted" in plan.reason


def test_stopping_the_scheduler_tells_a_run_in_progress_to_stop(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    started = threading.Event()

    def run(
        settings: Settings,
        store: Store,
        *,
        period: str | None = None,
        trigger: str = "manual",
        now: dt.datetime | None = None,
        stop: threading.Event | None = None,
    ) -> pipeline.RunReport:
        assert stop is not None
        started.set()
        seen.append(stop.wait(20))  # a send returns once its messages in flight are done
        return pipeline.RunReport(period or "?", "partial", "interrupted")

    monkeypatch.setattr(pipeline, "run", run)
    scheduler = Scheduler(settings, store, now=lambda: paris(2026, 11, 30, 8))
    scheduler.start()
    assert started.wait(20)
    scheduler.stop()  # what SIGTERM does
    scheduler.close()
    assert seen == [True]


def test_a_grace_window_of_zero_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="misfire_grace_hours"):
        cron_trigger(write_settings(tmp_path, grace_hours=0))


def test_a_frequent_cron_runs_each_wall_clock_time_once_when_clocks_fall_back(
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path, cron="*/15 * * * *")
    got = fires(settings, paris(2026, 10, 25, 1, 50), paris(2026, 10, 25, 3, 20))
    local = [f.astimezone(PARIS).strftime("%H:%M") for f in got]
    assert local == ["02:00", "02:15", "02:30", "02:45", "03:00", "03:15"]


# -- follow-ups: an unfinished send is tried again later --------------------------------------


def wait_until(condition: object, what: str, seconds: float = 20) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_an_unfinished_send_is_followed_up_until_it_completes(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    issues.save(store, Issue(period="2026-W49", title="t", intro="", items=()))

    def run(
        settings: Settings,
        store: Store,
        *,
        period: str | None = None,
        trigger: str = "manual",
        now: dt.datetime | None = None,
        stop: threading.Event | None = None,
    ) -> pipeline.RunReport:
        calls.append(trigger)
        row = runs.start(store, f"r{len(calls)}", "2026-W49", trigger)
        done = len(calls) > 1  # the server was down the first time, back the second
        issues.set_status(store, "2026-W49", "sent" if done else "sending")
        outcome = "sent" if done else "failed"
        runs.finish(store, row, outcome, "")
        return pipeline.RunReport("2026-W49", outcome, "")

    monkeypatch.setattr(pipeline, "run", run)
    scheduler = Scheduler(settings, store, now=lambda: paris(2026, 11, 30, 8))
    scheduler.start()
    try:
        wait_until(lambda: scheduler.aps.get_job(FOLLOW_UP_ID), "a follow-up")
        job = scheduler.aps.get_job(FOLLOW_UP_ID)
        assert job.kwargs["trigger"] == "retry" and job.kwargs["period"] == "2026-W49"
        delay = job.next_run_time - dt.datetime.now(UTC)
        assert dt.timedelta(minutes=14) < delay <= FOLLOW_UP_DELAY
        job.modify(next_run_time=dt.datetime.now(UTC))  # fast-forward to it
        wait_until(lambda: len(calls) == 2, "the follow-up run")
    finally:
        scheduler.close()
    assert calls == ["catch-up", "retry"]
    assert scheduler.aps.get_job(FOLLOW_UP_ID) is None  # sent: nothing more to do


def test_a_follow_up_waits_for_the_earliest_deferred_delivery(
    settings: Settings, store: Store, schedulers: list[Scheduler]
) -> None:
    issue = issues.save(store, Issue(period="2026-W49", title="t", intro="", items=()))
    issues.set_status(store, "2026-W49", "sending")
    runs.start(store, "r1", "2026-W49", "schedule")
    now = dt.datetime.now(UTC)
    retry_at = now + dt.timedelta(minutes=5)
    with store.begin() as conn:
        subscriber_id = conn.execute(
            sa.insert(schema.subscribers).values(
                email="a@example.org", token="t1", created_at=now, updated_at=now
            )
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(schema.deliveries).values(
                issue_id=issue.id,
                subscriber_id=subscriber_id,
                email="a@example.org",
                status="failed_temp",
                attempts=1,
                next_attempt_at=retry_at,
                updated_at=now,
            )
        )
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    assert scheduler.follow_up(store, "2026-W49") == retry_at


def test_no_follow_up_after_the_retry_window(
    settings: Settings, store: Store, schedulers: list[Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    issues.save(store, Issue(period="2026-W49", title="t", intro="", items=()))
    issues.set_status(store, "2026-W49", "sending")
    row = runs.start(store, "r1", "2026-W49", "schedule")
    with store.begin() as conn:  # first ran two days ago; the window is 24 hours
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id == row)
            .values(started_at=dt.datetime.now(UTC) - dt.timedelta(days=2))
        )
    scheduler = start(settings, store, schedulers, now=paris(2026, 12, 2, 12))
    assert scheduler.follow_up(store, "2026-W49") is None
    assert scheduler.aps.get_job(FOLLOW_UP_ID) is None
    assert "retry window is over: run `digest send`" in caplog.text


def test_a_retry_that_leaves_some_for_later_does_not_email_the_editors(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.pipeline import run_and_notify

    mailed: list[str] = []
    monkeypatch.setattr(
        pipeline,
        "notify_editors",
        lambda settings, report, attachment_html=None: mailed.append(report.outcome) or True,
    )

    def partial(*args: object, **kwargs: object) -> pipeline.RunReport:
        return pipeline.RunReport("2026-W49", "partial", "3 awaiting retry")

    monkeypatch.setattr(pipeline, "run", partial)
    run_and_notify(settings, store, period="2026-W49", trigger="retry")
    run_and_notify(settings, store, period="2026-W49", trigger="schedule")
    assert mailed == ["partial"]  # the first report said it; retries stay quiet


def test_a_second_sigterm_exits_at_once_during_a_run(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    settings = write_settings(tmp_path)
    started = tmp_path / "run-started"
    code = (
        "import datetime as dt, sys, threading\n"
        "from zoneinfo import ZoneInfo\n"
        "from pathlib import Path\n"
        "from digest import pipeline\n"
        "from digest.config import load_settings\n"
        "from digest.logs import configure_logging\n"
        "from digest.schedule import run_scheduler\n"
        "from digest.db import Store\n"
        "def endless_run(*args, **kwargs):\n"
        "    Path(sys.argv[2]).touch()\n"
        "    threading.Event().wait()\n"
        "pipeline.run = endless_run\n"
        "configure_logging('plain')\n"
        "settings = load_settings(sys.argv[1])\n"
        "monday = dt.datetime(2026, 11, 30, 8, tzinfo=ZoneInfo('Europe/Paris'))\n"
        "run_scheduler(settings, Store(settings.database.url), now=lambda: monday)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.path), str(started)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():  # the catch-up run is in progress
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        lines: list[str] = []
        assert process.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        process.send_signal(signal.SIGTERM)  # stop after the run... which never ends
        deadline = time.monotonic() + 30
        while not any("stopping after the run in progress" in line for line in lines):
            assert time.monotonic() < deadline, "the first SIGTERM was not handled"
            time.sleep(0.05)
        assert process.poll() is None  # still waiting for the run
        process.send_signal(signal.SIGTERM)  # this one exits at once
        process.wait(timeout=30)
        reader.join(30)
        process.stderr.close()
        stderr = "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "exiting now" in stderr
