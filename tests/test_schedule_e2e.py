"""End to end: a real scheduler fires the real pipeline into a real capture SMTP server.

The demo configuration (bundled feeds, SQLite in tmp_path) is used as shipped;
only the SMTP port points at the test's capture server, and the editors'
address gets the run report.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT

from digest.capture import CaptureServer
from digest.cli import main
from digest.config import Settings, load_settings
from digest.db import Store, issues, locks, runs
from digest.db.schema import utcnow
from digest.pipeline import run_and_notify
from digest.schedule import JOB_ID, Scheduler, next_fire_time, scheduled_run

ACTIVE_SUBSCRIBERS = 5  # subscribers.example.csv: six people, one unsubscribed
EDITOR = "redaction@ian.example"
PARIS = ZoneInfo("Europe/Paris")


def demo_config(folder: Path, smtp_port: int) -> Path:
    shutil.copytree(ROOT / "examples" / "feeds", folder / "feeds")
    shutil.copy(ROOT / "subscribers.example.csv", folder / "subscribers.example.csv")
    text = (ROOT / "examples" / "digest.toml").read_text(encoding="utf-8")
    text = text.replace("port = 1025", f"port = {smtp_port}")
    text = text.replace("[run]\n", f'[run]\nnotify = ["{EDITOR}"]\n', 1)
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def demo(tmp_path: Path, smtp_capture: CaptureServer) -> Iterator[tuple[Settings, Store]]:
    config = demo_config(tmp_path, smtp_capture.port)
    assert main(["--config", str(config), "subscribers", "import", "subscribers.example.csv"]) == 0
    settings = load_settings(config)
    store = Store(settings.database.url)
    yield settings, store
    store.close()


def messages(box: CaptureServer) -> list[tuple[str, EmailMessage]]:
    found = []
    for path in sorted(box.handler.folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append((str(message["X-Digest-Envelope-To"]), message))
    return found


def newsletters(box: CaptureServer) -> list[str]:
    return [to for to, _ in messages(box) if to != EDITOR]


def reports(box: CaptureServer) -> list[EmailMessage]:
    return [m for to, m in messages(box) if to == EDITOR]


def wait_for(condition: object, what: str, seconds: float = 120) -> None:
    """Poll until ``condition()`` is true; the limit only guards against a hang."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_real_scheduler_sends_the_demo_issue_once_then_waits_for_next_week(
    demo: tuple[Settings, Store], smtp_capture: CaptureServer
) -> None:
    settings, store = demo
    wednesday = dt.datetime(2026, 12, 2, 12, tzinfo=PARIS)  # no fire time in the grace window
    scheduler = Scheduler(settings, store, now=lambda: wednesday)
    plan = scheduler.start()
    try:
        assert plan.catch_up_period is None
        scheduler.aps.modify_job(JOB_ID, next_run_time=utcnow() + dt.timedelta(seconds=2))
        # The editors' report (or alert) is the run's last act, whatever its outcome.
        wait_for(lambda: reports(smtp_capture), "the editors' report")
    finally:
        scheduler.close()

    run = runs.last(store)
    assert run is not None
    assert (run["trigger"], run["outcome"]) == ("schedule", "sent")
    sent_to = newsletters(smtp_capture)
    assert len(sent_to) == ACTIVE_SUBSCRIBERS
    assert len(set(sent_to)) == ACTIVE_SUBSCRIBERS
    issue = issues.get(store, run["period"])
    assert issue is not None and issue.status == "sent"
    (report,) = reports(smtp_capture)
    assert f"{run['period']}\u00a0: envoyé" in report["Subject"]

    # The weekly job now waits for next Monday 07:00, shown in local time.
    upcoming = next_fire_time(settings, store)
    assert upcoming is not None
    assert upcoming.strftime("%a %H:%M") == "Mon 07:00"
    assert upcoming > dt.datetime.now(dt.UTC)

    # Triggered again (the job, a manual run): nothing more goes out.
    scheduled_run(str(settings.path), period=run["period"])
    assert main(["--config", str(settings.path), "run", "--period", run["period"]]) == 0
    assert len(newsletters(smtp_capture)) == ACTIVE_SUBSCRIBERS
    assert len(reports(smtp_capture)) == 1  # "already sent" is not news


def test_a_run_triggered_twice_at_once_sends_once(
    demo: tuple[Settings, Store], smtp_capture: CaptureServer
) -> None:
    settings, store = demo
    outcomes: list[str] = []

    def trigger(name: str) -> None:
        own = Store(settings.database.url)  # as a second process would
        try:
            outcomes.append(run_and_notify(settings, own, trigger=name).outcome)
        finally:
            own.close()

    threads = [threading.Thread(target=trigger, args=(n,)) for n in ("schedule", "manual")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert "sent" in outcomes
    assert len(newsletters(smtp_capture)) == ACTIVE_SUBSCRIBERS
    assert len(set(newsletters(smtp_capture))) == ACTIVE_SUBSCRIBERS


def test_an_unreviewed_draft_stops_at_draft_ready_and_mails_the_preview(
    demo: tuple[Settings, Store], smtp_capture: CaptureServer
) -> None:
    settings, store = demo
    path = settings.path
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "send_unreviewed = true", "send_unreviewed = false"
        ),
        encoding="utf-8",
    )
    settings = load_settings(path)
    report = run_and_notify(settings, store, trigger="schedule")
    assert report.outcome == "draft_ready"
    assert newsletters(smtp_capture) == []  # nothing reached a subscriber
    (mail,) = reports(smtp_capture)
    assert "brouillon prêt à relire" in mail["Subject"]
    (preview,) = list(mail.iter_attachments())
    assert preview.get_filename() == f"preview-{report.period}.html"
    assert '<html lang="fr"' in preview.get_content()


def test_digest_run_refuses_while_a_scheduled_run_holds_the_run_lock(
    demo: tuple[Settings, Store], smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, store = demo
    with locks.hold(store, "run"):  # a scheduled run is in progress
        assert main(["--config", str(settings.path), "run"]) == 1
    assert "already running" in capsys.readouterr().err
    assert newsletters(smtp_capture) == []
