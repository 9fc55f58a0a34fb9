"""The weekly scheduler: APScheduler wiring, catch-up after downtime, one instance at a time.

Why it is built this way:

- The weekly job lives in a persistent SQLAlchemy job store, referenced by import
  path (``digest.schedule:scheduled_run``) with the config path as its argument:
  a restart keeps the stored next run time, and no function object is pickled.
- The job is (re)written only when it is absent or its trigger changed:
  ``replace_existing`` at every start would reset the stored next run time and
  silently drop a run that was missed while the machine was down.
- ``coalesce`` plus a ``misfire_grace_time`` of hours (the library default is one
  second, which would skip the week after a reboot at the wrong moment).
- APScheduler's misfire handling only helps a job stored before the downtime.
  Our own catch-up at start covers the rest (first start after the fire time, a
  changed cron, a lost job store): if the latest fire time is within the grace
  window and nothing ran for its period since, run that period now, once.
  Several missed weeks give one run: only the latest fire time counts.
- The unique period in the store (``pipeline.run``) is the real guarantee
  against double sends, whatever started the run: the scheduler, a manual
  ``digest run``, a second process.
- A lease lock in the database (``schedule``) keeps a second scheduler out, on
  this machine or another; the lease expiring lets a crashed scheduler's lock go.

Time is injected (``now``) wherever a decision is made, so tests check fire
times, misfires and catch-up on a fake clock instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from . import pipeline
from .config import Settings, load_settings
from .db import Store, issues, locks, runs
from .db.jobstore import close_job_store, open_job_store, stored_next_run
from .db.schema import utcnow
from .errors import ConfigError, LockedError
from .period import current_period, period_of

if TYPE_CHECKING:
    from apscheduler.job import Job


__all__ = [
    "JOB_FUNC",
    "JOB_ID",
    "LOCK_NAME",
    "DigestCronTrigger",
    "Scheduler",
    "StartPlan",
    "cron_trigger",
    "jobstore_url",
    "latest_fire_time",
    "next_fire_time",
    "plan_start",
    "run_scheduler",
    "scheduled_run",
]

log = logging.getLogger(__name__)

JOB_ID = "digest-weekly-run"
JOB_FUNC = "digest.schedule:scheduled_run"
CATCH_UP_ID = "digest-catch-up"
JOBSTORE_TABLE = "digest_schedule_jobs"
LOCK_NAME = "schedule"
LOCK_TTL = dt.timedelta(minutes=5)
RENEW_EVERY = 60.0  # seconds; several renewals fit in one lease

# Lock owners held by schedulers of this process (to tell a dead holder with our pid).
_LIVE_OWNERS: set[str] = set()

# The scheduler running in this process, for the job function: it hands the
# scheduler's stop event to the run (a SIGTERM during a send lets the messages in
# flight finish, then returns, resumable) and asks it for a follow-up run when a
# send is left unfinished.
_active: Scheduler | None = None

FOLLOW_UP_ID = "digest-follow-up"
FOLLOW_UP_DELAY = dt.timedelta(minutes=15)
"""When a send stopped with nothing scheduled to retry (server down): try again after this."""


# -- the trigger ----------------------------------------------------------------------------


class DigestCronTrigger(CronTrigger):
    """A cron trigger that fires once for a wall-clock time the clocks go through twice.

    When clocks fall back (last Sunday of October in Europe), 02:30 happens twice;
    APScheduler's ``CronTrigger`` fires at both. A weekly run is meant once: we
    keep the first occurrence, as cron does. (A time skipped when clocks spring
    forward fires an hour later, at 03:30, which is what we want too.)
    """

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        fire: dt.datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and _is_repeat(fire):  # at most one hour of repeats
            after = fire.astimezone(dt.UTC) + dt.timedelta(seconds=1)
            fire = super().get_next_fire_time(None, after)
        return fire


def _is_repeat(moment: dt.datetime) -> bool:
    """True for the second occurrence of an ambiguous local time (``fold=1``)."""
    first = moment.replace(fold=0)
    return moment.fold == 1 and first.utcoffset() != moment.utcoffset()


def cron_trigger(settings: Settings) -> DigestCronTrigger:
    """The trigger ``[schedule] cron`` and ``timezone`` describe; a clear error if wrong."""
    where = f"{settings.path}: [schedule]"
    grace_window(settings)  # checked with the rest of [schedule], before anything starts
    try:
        zone = ZoneInfo(settings.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where} timezone: unknown time zone {settings.schedule.timezone!r}",
            hint="use an IANA name such as Europe/Paris",
        ) from None
    try:
        return DigestCronTrigger.from_crontab(settings.schedule.cron, timezone=zone)
    except ValueError as exc:
        raise ConfigError(
            f"{where} cron: {settings.schedule.cron!r} is not a crontab expression ({exc})",
            hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 7 * * mon'",
        ) from None


def grace_window(settings: Settings) -> dt.timedelta:
    """How late a run may still start; long enough to survive a reboot at fire time."""
    hours = settings.schedule.misfire_grace_hours
    if hours * 3600 < 1:
        raise ConfigError(
            f"{settings.path}: [schedule] misfire_grace_hours must be more than 0, got {hours}",
            hint="a few hours lets a run missed during a reboot still happen (default 12)",
        )
    return dt.timedelta(hours=hours)


def latest_fire_time(
    trigger: CronTrigger, now: dt.datetime, window: dt.timedelta
) -> dt.datetime | None:
    """The last fire time in ``(now - window, now]``, or None.

    Cron triggers only look forward, so this walks forward from the start of
    the window; arithmetic is done in UTC so a fold is never lost.
    """
    now = now.astimezone(dt.UTC)
    fire = trigger.get_next_fire_time(None, now - window)
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire.astimezone(dt.UTC) + dt.timedelta(seconds=1))
    return latest


def scheduled_period(settings: Settings, now: dt.datetime) -> str:
    """The period a run at ``now`` is for: that of the fire time it belongs to.

    A run started late (within the grace window) is still for the week it was
    scheduled in, even if midnight on Sunday has passed since.
    """
    fire = latest_fire_time(cron_trigger(settings), now, grace_window(settings))
    zone = settings.newsletter.timezone
    return period_of(fire, zone) if fire is not None else current_period(zone, now)


# -- where the job lives ----------------------------------------------------------------------


def jobstore_url(settings: Settings) -> str:
    """The job store's database: its own SQLite file beside a SQLite database, else the same one.

    A separate file keeps APScheduler's writes out of the main database's single
    writer slot during a long send; on PostgreSQL the job table simply sits in
    the configured database, with everything else.
    """
    url = settings.database.url
    if not url.startswith("sqlite"):
        return url
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or path in ("", ":memory:"):
        return "sqlite://"  # an in-memory main database: nothing outlives the process anyway
    database = Path(path)
    own = database.with_name(database.stem + "-schedule" + (database.suffix or ".db"))
    return f"sqlite:///{own}"


def next_fire_time(settings: Settings, store: Store) -> dt.datetime | None:
    """The stored next run time in the schedule's time zone, or None if nothing is scheduled."""
    stored = stored_next_run(store, jobstore_url(settings), JOBSTORE_TABLE, JOB_ID)
    return None if stored is None else stored.astimezone(ZoneInfo(settings.schedule.timezone))


# -- deciding what to do at start ---------------------------------------------------------------


@dataclass(frozen=True)
class StartPlan:
    """What a starting scheduler does, decided from the clock and the store."""

    next_run_time: dt.datetime | None
    """The weekly job's next run time: the stored one if still ahead, else the next fire time."""
    catch_up_period: str | None
    """A period whose fire time passed within the grace window and has not run: run it now."""
    reason: str


def plan_start(
    settings: Settings,
    store: Store,
    *,
    now: dt.datetime,
    stored_next_run: dt.datetime | None,
    trigger: CronTrigger | None = None,
) -> StartPlan:
    """Decide the catch-up and the weekly job's next run time at ``now``.

    The stored next run time is kept while it is ahead: a restart changes
    nothing. One in the past is replaced by the next fire time, because the
    catch-up decided here, not APScheduler's misfire logic, runs what was missed
    (that way a missed week runs once even when the job store is fresh).
    """
    trigger = trigger or cron_trigger(settings)
    now = now.astimezone(dt.UTC)
    if stored_next_run is not None and stored_next_run > now:
        next_run: dt.datetime | None = stored_next_run
    else:
        next_run = trigger.get_next_fire_time(None, now + dt.timedelta(seconds=1))

    fire = latest_fire_time(trigger, now, grace_window(settings))
    if fire is None:
        return StartPlan(next_run, None, "no fire time within the grace window")
    period = period_of(fire, settings.newsletter.timezone)
    issue = issues.get(store, period)
    if issue is not None and issue.status == "sent":
        return StartPlan(next_run, None, f"{period} was already sent")
    if issue is not None and issue.status == "sending":
        # Stopped mid-send (SIGTERM, crash): finish it; the ledger skips who already got it.
        return StartPlan(next_run, period, f"the send of {period} was interrupted: resuming")
    if runs.finished_since(store, period, fire):
        return StartPlan(next_run, None, f"{period} already ran since {fire.isoformat()}")
    late = now - fire.astimezone(dt.UTC)
    return StartPlan(next_run, period, f"{period} was due {late} ago and has not run")


# -- the job ------------------------------------------------------------------------------------


def scheduled_run(config_path: str, period: str | None = None, trigger: str = "schedule") -> None:
    """The job the scheduler fires: load the config afresh, run once, tell the editors.

    Loading the config at each run means an edited ``[run] notify`` list or
    policy applies without restarting the scheduler.
    """
    settings = load_settings(config_path)
    store = Store(settings.database.url)
    scheduler = _active
    try:
        report = pipeline.run_and_notify(
            settings,
            store,
            period=period or scheduled_period(settings, utcnow()),
            trigger=trigger,
            stop=scheduler._stopping if scheduler else None,
        )
        if scheduler is not None:
            scheduler.follow_up(store, report.period)
        from .bounces import process_on_schedule

        process_on_schedule(settings, store)  # only with [bounces] on_schedule; never raises
    finally:
        store.close()


# -- the scheduler ------------------------------------------------------------------------------


class Scheduler:
    """APScheduler around one weekly job, holding the ``schedule`` lock while it runs.

    ``start`` takes the lock (or raises ``LockedError``), writes the job if it is
    absent or changed, plans the catch-up and starts firing; ``serve`` renews
    the lease until ``stop``; ``close`` waits for a run in progress and lets go.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.now = now or utcnow
        self.trigger = cron_trigger(settings)
        self.owner = locks.owner_id()
        self.plan: StartPlan | None = None
        self._stopping = threading.Event()
        self._lost_lock = False
        self._aps: BackgroundScheduler | None = None
        self._job_store: BaseJobStore | None = None

    @property
    def aps(self) -> BackgroundScheduler:
        if self._aps is None:
            raise RuntimeError("the scheduler is not started")
        return self._aps

    def start(self) -> StartPlan:
        locks.release_if_gone(self.store, LOCK_NAME, _LIVE_OWNERS)
        if not locks.acquire(self.store, LOCK_NAME, self.owner, LOCK_TTL):
            holder = locks.holder(self.store, LOCK_NAME) or "another process"
            raise LockedError(
                f"another `digest schedule` is already running ({holder})",
                hint="stop it first; if it crashed, its lock expires within "
                f"{int(LOCK_TTL.total_seconds() // 60)} minutes",
            )
        _LIVE_OWNERS.add(self.owner)
        global _active
        _active = self
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> StartPlan:
        grace = int(grace_window(self.settings).total_seconds())
        self._job_store = open_job_store(jobstore_url(self.settings), JOBSTORE_TABLE)
        self._aps = BackgroundScheduler(
            jobstores={
                "default": self._job_store,
                "memory": MemoryJobStore(),
            },
            # One worker: a catch-up and the weekly job never run side by side.
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=ZoneInfo(self.settings.schedule.timezone),
        )
        self.aps.start(paused=True)  # job store open, nothing fires until we have decided
        job = self._ensure_job()
        plan = plan_start(
            self.settings,
            self.store,
            now=self.now(),
            stored_next_run=job.next_run_time,
            trigger=self.trigger,
        )
        if plan.next_run_time != job.next_run_time:
            job.modify(next_run_time=plan.next_run_time)
        if plan.catch_up_period:
            log.info("catching up: %s", plan.reason, extra={"period": plan.catch_up_period})
            self.aps.add_job(
                JOB_FUNC,
                DateTrigger(run_date=utcnow()),
                id=CATCH_UP_ID,
                jobstore="memory",  # if we die first, the next start plans it again
                kwargs={
                    "config_path": str(self.settings.path),
                    "period": plan.catch_up_period,
                    "trigger": "catch-up",
                },
                replace_existing=True,
            )
        else:
            log.info("no catch-up: %s", plan.reason)
        self.plan = plan
        self.aps.resume()
        return plan

    def _ensure_job(self) -> Job:
        """The weekly job, written only if absent or changed (never blindly replaced)."""
        args = [str(self.settings.path)]
        grace = int(grace_window(self.settings).total_seconds())
        job = self.aps.get_job(JOB_ID)
        if job is None:
            log.info("adding the weekly job: %s", self.settings.schedule.cron)
            return self.aps.add_job(
                JOB_FUNC, self.trigger, id=JOB_ID, args=args, name="weekly digest run"
            )
        if _trigger_key(job.trigger) != _trigger_key(self.trigger):
            log.info("the schedule changed to %s: rescheduling", self.settings.schedule.cron)
            job = self.aps.reschedule_job(JOB_ID, trigger=self.trigger)
        if list(job.args) != args or job.misfire_grace_time != grace or job.func_ref != JOB_FUNC:
            job = self.aps.modify_job(JOB_ID, func=JOB_FUNC, args=args, misfire_grace_time=grace)
        return job

    def follow_up(self, store: Store, period: str) -> dt.datetime | None:
        """Plan another run of ``period`` if its send is unfinished; return when.

        Deferred recipients (4xx) are due again at their ``next_attempt_at``; a
        send stopped by a server that was down is retried after
        ``FOLLOW_UP_DELAY``. Follow-ups end with the retry window
        (``[send] retry_window_hours`` from the period's first run); after that
        the issue waits for an editor's ``digest send``.
        """
        issue = issues.get(store, period)
        if issue is None or issue.status != "sending" or self._stopping.is_set():
            return None
        now = utcnow()
        first_run = runs.first_started(store, period)
        next_retry = issues.next_retry_at(store, period)
        deadline = (first_run or now) + dt.timedelta(hours=self.settings.send.retry_window_hours)
        when = max(next_retry or now + FOLLOW_UP_DELAY, now + dt.timedelta(seconds=30))
        if when > deadline:
            log.warning(
                "the send of %s is unfinished and its retry window is over: run `digest send`",
                period,
                extra={"period": period},
            )
            return None
        self.aps.add_job(
            JOB_FUNC,
            DateTrigger(run_date=when),
            id=FOLLOW_UP_ID,
            jobstore="memory",  # a restart's catch-up resumes an unfinished send anyway
            kwargs={"config_path": str(self.settings.path), "period": period, "trigger": "retry"},
            replace_existing=True,
        )
        log.info("the send of %s is unfinished: next attempt at %s", period, when.isoformat())
        return when

    def serve(self, renew_every: float = RENEW_EVERY) -> None:
        """Block, renewing the lock's lease, until ``stop`` (or the lease is lost)."""
        while not self._stopping.wait(renew_every):
            if not locks.renew(self.store, LOCK_NAME, self.owner, LOCK_TTL):
                self._lost_lock = True
                log.error("lost the schedule lock (lease expired?): stopping")
                return
            # APScheduler sleeps on a monotonic clock, which stands still while the
            # machine is suspended: a week-long sleep would wake up late, maybe past
            # the grace window. A nudge each minute makes it look at the wall clock.
            self.aps.wakeup()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Stop firing, wait for a run in progress to finish, release the lock."""
        global _active
        self._stopping.set()  # a send in progress finishes its messages in flight
        if self._aps is not None and self._aps.running:
            # Pause, then let a job-processing pass in progress end (it holds this lock):
            # APScheduler 3 fails to remove a finished one-off job if shut down mid-pass.
            self._aps.pause()
            with self._aps._jobstores_lock:
                pass
            self._aps.shutdown(wait=True)
        if self._job_store is not None:
            close_job_store(self._job_store)
        if _active is self:
            _active = None
        if not self._lost_lock:
            locks.release(self.store, LOCK_NAME, self.owner)
        _LIVE_OWNERS.discard(self.owner)


def _trigger_key(trigger: Any) -> tuple[str, str, str]:
    return (type(trigger).__name__, str(trigger), str(getattr(trigger, "timezone", "")))


def run_scheduler(
    settings: Settings,
    store: Store,
    *,
    now: Callable[[], dt.datetime] | None = None,
) -> None:
    """``digest schedule``: run the weekly job until SIGTERM or SIGINT (blocking).

    A signal stops the firing; a send in progress finishes its messages in
    flight and the run returns, resumable. A second signal exits at once, as
    ``kill -9`` would: the delivery ledger is built to survive that.
    """
    scheduler = Scheduler(settings, store, now=now)
    # Handlers first: a signal during start-up still stops cleanly and frees the lock.
    with _signals_stop(scheduler):
        plan = scheduler.start()
        log.info(
            "scheduler started (%s, %s); next run %s",
            settings.schedule.cron,
            settings.schedule.timezone,
            plan.next_run_time.isoformat() if plan.next_run_time else "never",
        )
        try:
            scheduler.serve()
        finally:
            log.info("scheduler stopping: waiting for a run in progress, if any")
            scheduler.close()
    if scheduler._lost_lock:
        raise LockedError(
            "the schedule lock was lost (the lease expired, another scheduler took over)",
            hint="check for a second `digest schedule` and restart this one if needed",
        )


@contextmanager
def _signals_stop(scheduler: Scheduler) -> Iterator[None]:
    """SIGTERM and SIGINT ask the scheduler to stop; a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) > 1:
            # Not an exception: worker threads would still be joined at exit.
            log.warning("received %s again: exiting now; the next start resumes", name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info("received %s: stopping after the run in progress, if any", name)
        scheduler.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
