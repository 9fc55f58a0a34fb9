"""Delivery under faults, with real servers on loopback that misbehave on cue.

``FaultyServer`` is a small SMTP server written for these tests: it trickles
endless ``250-`` continuation lines, answers one byte at a time, answers
garbage after the final dot, or stalls before or after it. The ``digest send``
runs that must die are real CLI processes, killed with SIGKILL or SIGTERM.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT

from digest.capture import CaptureServer
from digest.cli import main
from digest.config import NewsletterSettings, Settings, SmtpSettings
from digest.db import Store, issues
from digest.db.schema import deliveries
from digest.errors import DeliveryError
from digest.models import Issue, RenderedIssue, RunReport
from digest.notify import notify_editors
from digest.send import send_issue
from digest.smtp import Outcome, SmtpClient, send_one
from digest.subscribers import import_csv

PERIOD = "2026-W48"
RENDERED = RenderedIssue(subject="Semaine 48", preheader="", html="<p>Bonjour</p>", text="Bonjour")


# -- a server that misbehaves ----------------------------------------------------------------


class FaultyServer(socketserver.ThreadingTCPServer):
    """An SMTP server on loopback; ``mode`` says how it misbehaves (``ok``: it does not)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.delivered: collections.Counter[str] = collections.Counter()
        self.reached = threading.Event()
        """Set when the misbehaviour starts (or a message is received, for ``ok``)."""
        self.closing = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(socketserver.StreamRequestHandler):
    server: FaultyServer

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client hung up on us: the point of most tests
            self._session()

    def _stall(self) -> None:
        self.server.reached.set()
        while not self.server.closing.wait(0.05):
            pass

    def _session(self) -> None:
        srv, write = self.server, self.wfile.write
        write(b"220 faulty ESMTP\r\n")
        recipient = ""
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                write(b"250-faulty\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL" and srv.mode == "one-byte-at-a-time":
                srv.reached.set()
                write(b"250 ")
                while not srv.closing.wait(0.2):
                    write(b"o")
            elif verb == b"RCPT" and srv.mode == "endless-continuation":
                srv.reached.set()
                while not srv.closing.wait(0.02):
                    write(b"250-still thinking\r\n")
            elif verb == b"RCPT" and b"nobody" in line:
                write(b"550 5.1.1 no such user\r\n")
            elif verb == b"RCPT":
                recipient = line.decode().partition("<")[2].partition(">")[0]
                write(b"250 OK\r\n")
            elif verb == b"DATA":
                if srv.mode == "stall-before-dot":
                    self._stall()
                    return
                write(b"354 go ahead\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                srv.delivered[recipient] += 1
                if srv.mode == "garbage-after-dot":
                    write(b"garbage\r\n")
                    return
                if srv.mode == "stall-after-dot":
                    self._stall()
                    return
                srv.reached.set()
                write(b"250 queued\r\n")
            elif verb == b"QUIT":
                write(b"221 bye\r\n")
                return
            else:
                write(b"250 OK\r\n")


@pytest.fixture
def faulty(request: pytest.FixtureRequest) -> Iterator[FaultyServer]:
    server = FaultyServer(request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


# -- helpers ---------------------------------------------------------------------------------


def settings_for(tmp_path: Path, port: int, timeout: float = 5.0) -> Settings:
    return Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(from_address="veille@ecole.example"),
        smtp=SmtpSettings(host="127.0.0.1", port=port, timeout=timeout),
    )


def subscribers_csv(folder: Path, count: int) -> Path:
    path = folder / "list.csv"
    rows = "".join(f"r{i:03d}@exemple.fr,Lecteur {i},fr\n" for i in range(count))
    path.write_text("email,name,language\n" + rows, encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both databases; every store opened on them is closed after the test."""
    if request.param == "postgresql":
        yield str(request.getfixturevalue("postgres_url"))
    else:
        yield f"sqlite:///{tmp_path / 'digest.db'}"
    for store in _opened:
        store.close()
    _opened.clear()


_opened: list[Store] = []


def small_store(tmp_path: Path, count: int, url: str = "") -> tuple[Store, Issue]:
    store = Store(url or f"sqlite:///{tmp_path / 'digest.db'}")
    _opened.append(store)
    assert not import_csv(store, subscribers_csv(tmp_path, count)).errors
    issue = issues.save(store, Issue(PERIOD, "La veille", "", (), status="sending"))
    return store, issue


def ledger(store: Store) -> dict[str, str]:
    with store.begin() as conn:
        return dict(conn.execute(sa.select(deliveries.c.email, deliveries.c.status)).all())


def in_thread(target: object, *args: object) -> list[object]:
    """Run ``target`` in a thread; a client that never returns fails the test, not hangs it."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(target(*args)), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the SMTP client is still waiting: no deadline"
    return result


class Newsletter:
    """A demo configuration with an approved issue and ``count`` subscribers, sent by the CLI."""

    def __init__(self, folder: Path, port: int, count: int, send: str = "") -> None:
        self.folder = folder
        shutil.copytree(ROOT / "examples" / "feeds", folder / "feeds")
        self.template = (ROOT / "examples" / "digest.toml").read_text(encoding="utf-8")
        self.send = send
        self.config = folder / "digest.toml"
        self.point_at(port)
        for args in (
            ("subscribers", "import", str(subscribers_csv(folder, count))),
            ("collect",),
            ("draft",),
            ("approve",),
        ):
            assert main(["--config", str(self.config), *args]) == 0, args
        self.store = Store(f"sqlite:///{folder / 'data' / 'digest.db'}")

    def point_at(self, port: int, timeout: float = 5.0) -> None:
        text = self.template.replace("port = 1025", f"port = {port}\ntimeout = {timeout}")
        self.config.write_text(text + f"\n[send]\n{self.send}\n", encoding="utf-8")

    def start(self) -> subprocess.Popen[bytes]:
        """``digest send`` as a process of its own, to be killed."""
        return subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(self.config), "send"],
            cwd=self.folder,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def issue_status(self) -> str:
        issue = issues.latest(self.store)
        assert issue is not None
        return issue.status

    def send_again(self, *args: str) -> int:
        return main(["--config", str(self.config), "send", *args])


def kill(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> str:
    """Signal ``proc``, wait for it; return what it wrote on stderr."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return err.decode()


def deliveries_by_recipient(box: CaptureServer) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in box.handler.folder.glob("*.eml"):
        for line in path.read_bytes().splitlines():
            if line.startswith(b"X-Digest-Envelope-To: "):
                counts[line.split(b": ", 1)[1].decode()] += 1
                break
    return counts


# -- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize("faulty", ["endless-continuation", "one-byte-at-a-time"], indirect=True)
def test_a_trickling_server_is_cut_off_by_the_deadline(
    tmp_path: Path, faulty: FaultyServer
) -> None:
    settings = settings_for(tmp_path, faulty.port, timeout=0.5)
    client = SmtpClient(settings.smtp, "client.example")
    (outcome,) = in_thread(client.send, "veille@ecole.example", "ana@exemple.fr", b"Hi\r\n")
    client.close()
    assert isinstance(outcome, Outcome)
    # Before the final dot: the server cannot have taken the message; send it again.
    assert outcome.status == "requeue" and "deadline" in outcome.detail
    assert not faulty.delivered


@pytest.mark.parametrize("faulty", ["endless-continuation"], indirect=True)
def test_sigterm_stops_a_send_stuck_on_a_trickling_server_resumably(
    tmp_path: Path, faulty: FaultyServer, smtp_capture: CaptureServer
) -> None:
    news = Newsletter(tmp_path, faulty.port, 5)
    news.point_at(faulty.port, timeout=1.0)
    proc = news.start()
    assert faulty.reached.wait(60)
    err = kill(proc, signal.SIGTERM)
    assert proc.returncode == 2, err  # stopped early: not a success
    # Nobody stranded, nobody uncertain: nobody was sent it, so the issue is editable again.
    assert ledger(news.store) == {}
    reopened = issues.get(news.store, PERIOD)
    assert reopened is not None and reopened.status == "approved"
    news.point_at(smtp_capture.port)
    assert news.send_again() == 0
    assert deliveries_by_recipient(smtp_capture) == {f"r{i:03d}@exemple.fr": 1 for i in range(5)}


# -- after the final dot -----------------------------------------------------------------------


@pytest.mark.parametrize("faulty", ["garbage-after-dot"], indirect=True)
def test_garbage_after_the_final_dot_is_uncertain_never_a_requeue(
    tmp_path: Path, faulty: FaultyServer, database_url: str
) -> None:
    store, issue = small_store(tmp_path, 1, database_url)
    settings = settings_for(tmp_path, faulty.port)
    report = send_issue(settings, store, issue, RENDERED)
    assert faulty.delivered == {"r000@exemple.fr": 1}  # exactly one delivery
    assert ledger(store) == {"r000@exemple.fr": "uncertain"}
    assert report.uncertain == ["r000@exemple.fr"] and not report.complete
    send_issue(settings, store, issue, RENDERED)  # a plain resume does not send it again
    assert faulty.delivered == {"r000@exemple.fr": 1}


def test_a_restart_requeues_messages_without_their_dot_and_reports_the_others(
    tmp_path: Path, smtp_capture: CaptureServer, database_url: str
) -> None:
    store, issue = small_store(tmp_path, 3, database_url)
    settings = settings_for(tmp_path, smtp_capture.port)
    send_issue(settings, store, issue, RENDERED, stop=threading.Event())
    # As a process killed mid-send leaves them: one before its dot, one after.
    with store.begin() as conn:
        for address, status in (
            ("r000@exemple.fr", "sending"),
            ("r001@exemple.fr", "awaiting_reply"),
        ):
            conn.execute(
                sa.update(deliveries).where(deliveries.c.email == address).values(status=status)
            )
    before = deliveries_by_recipient(smtp_capture)
    report = send_issue(settings, store, issue, RENDERED)
    assert ledger(store) == {
        "r000@exemple.fr": "sent",
        "r001@exemple.fr": "uncertain",
        "r002@exemple.fr": "sent",
    }
    assert deliveries_by_recipient(smtp_capture) - before == {"r000@exemple.fr": 1}
    assert report.uncertain == ["r001@exemple.fr"] and not report.complete
    assert "--resend-uncertain" in report.summary()


def test_after_a_reboot_the_rows_of_the_dead_claim_are_uncertain_never_resent(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    """SQLite writes a message's dot mark and outcome without waiting for the disk, so
    after an operating-system crash they may be lost: a ``sending`` row claimed before
    the machine last booted may in fact have had its dot written. A real power cut
    cannot be staged here: the claim's stored boot id is changed instead."""
    from digest.db.deliveries import boot_id

    store, issue = small_store(tmp_path, 4, f"sqlite:///{tmp_path / 'digest.db'}")
    settings = settings_for(tmp_path, smtp_capture.port)
    send_issue(settings, store, issue, RENDERED, stop=threading.Event())
    before = deliveries_by_recipient(smtp_capture)
    dead = "another-host:1:dead"
    with store.begin() as conn:
        for address, status, boot in (
            ("r000@exemple.fr", "sending", "a-boot-before-the-crash"),
            ("r001@exemple.fr", "awaiting_reply", "a-boot-before-the-crash"),
            ("r002@exemple.fr", "sending", boot_id()),  # same boot: only the process died
        ):
            conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.email == address)
                .values(status=status, claim_boot=boot, claim_owner=dead)
            )
    report = send_issue(settings, store, issue, RENDERED)
    assert ledger(store) == {
        "r000@exemple.fr": "uncertain",
        "r001@exemple.fr": "uncertain",
        "r002@exemple.fr": "sent",
        "r003@exemple.fr": "sent",
    }
    assert deliveries_by_recipient(smtp_capture) - before == {"r002@exemple.fr": 1}
    assert report.uncertain == ["r000@exemple.fr", "r001@exemple.fr"] and not report.complete
    send_issue(settings, store, issue, RENDERED, resend_uncertain=True)  # the editor's call
    assert deliveries_by_recipient(smtp_capture) - before == {
        "r000@exemple.fr": 1,
        "r001@exemple.fr": 1,
        "r002@exemple.fr": 1,
    }


def test_a_send_takes_one_durable_commit_per_batch_not_per_message(
    tmp_path: Path, smtp_capture: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-message commits are unsynced on SQLite: counted at the connection."""
    store, issue = small_store(tmp_path, 120, f"sqlite:///{tmp_path / 'digest.db'}")
    from digest.db import deliveries as ledger_module

    calls: list[str] = []
    original = ledger_module.Ledger._pragma

    def pragma(self: ledger_module.Ledger, level: str) -> None:
        calls.append(level)
        original(self, level)

    monkeypatch.setattr(ledger_module.Ledger, "_pragma", pragma)
    report = send_issue(settings_for(tmp_path, smtp_capture.port), store, issue, RENDERED)
    assert report.sent == 120 and report.complete
    durable = calls.count("FULL") - 1  # the last FULL hands the connection back as it came
    # recover, three claims of 50 (the last one empty), release: far fewer than 240.
    assert 0 < durable <= 6, calls


# -- kill -9: before the dot, after the dot, anywhere -------------------------------------------


@pytest.mark.parametrize("faulty", ["stall-before-dot"], indirect=True)
def test_killed_before_the_final_dot_the_recipient_is_simply_sent_later(
    tmp_path: Path, faulty: FaultyServer, smtp_capture: CaptureServer
) -> None:
    news = Newsletter(tmp_path, faulty.port, 3)
    proc = news.start()
    assert faulty.reached.wait(60)  # the message is being handed over, its dot not written
    kill(proc)
    news.point_at(smtp_capture.port)
    assert news.send_again() == 0
    assert ledger(news.store) == {f"r{i:03d}@exemple.fr": "sent" for i in range(3)}
    assert deliveries_by_recipient(smtp_capture) == {f"r{i:03d}@exemple.fr": 1 for i in range(3)}


@pytest.mark.parametrize("faulty", ["stall-after-dot"], indirect=True)
def test_killed_after_the_final_dot_the_recipient_is_uncertain_and_the_exit_says_so(
    tmp_path: Path,
    faulty: FaultyServer,
    smtp_capture: CaptureServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    news = Newsletter(tmp_path, faulty.port, 3)
    proc = news.start()
    assert faulty.reached.wait(60)  # the server has the whole message
    kill(proc)
    news.point_at(smtp_capture.port)
    capsys.readouterr()
    assert news.send_again() == 2
    out = capsys.readouterr()
    assert "--resend-uncertain" in out.out + out.err
    assert ledger(news.store) == {
        "r000@exemple.fr": "uncertain",
        "r001@exemple.fr": "sent",
        "r002@exemple.fr": "sent",
    }
    assert news.issue_status() == "sending"  # not sent while anyone is uncertain
    # An earlier version marked such an issue sent: the editor can still resend.
    issue = issues.latest(news.store)
    assert issue is not None and issues.set_status(news.store, issue.period, "sent")
    # The editor checked: r000 did not get it. Only then is it sent again.
    assert news.send_again("--resend-uncertain") == 0
    assert deliveries_by_recipient(smtp_capture) == {f"r{i:03d}@exemple.fr": 1 for i in range(3)}
    assert news.issue_status() == "sent"


@pytest.mark.parametrize("connections", [1, 4])
def test_kill_9_at_random_points_then_resume_delivers_everyone_once(
    tmp_path: Path, smtp_capture: CaptureServer, connections: int
) -> None:
    count = 120
    news = Newsletter(tmp_path, smtp_capture.port, count, send=f"connections = {connections}")
    for _ in range(3):
        before = sum(deliveries_by_recipient(smtp_capture).values())
        proc = news.start()
        threshold = before + random.randint(1, 25)
        while (
            proc.poll() is None and sum(deliveries_by_recipient(smtp_capture).values()) < threshold
        ):
            time.sleep(0.002)
        time.sleep(random.uniform(0, 0.01))  # anywhere in the SMTP exchange
        kill(proc)
    news.send_again()
    received = deliveries_by_recipient(smtp_capture)
    states = ledger(news.store)
    uncertain = {address for address, status in states.items() if status == "uncertain"}
    assert max(received.values()) == 1, "someone got the issue twice"
    # Uncertain is reported only for messages in flight past the mark before the final
    # dot: at most one per connection per kill (a kill between the mark and the dot
    # itself leaves an uncertain row the server never got, which is what it means).
    assert len(uncertain) <= 3 * connections
    missing = {f"r{i:03d}@exemple.fr" for i in range(count)} - set(received)
    assert missing <= uncertain, "someone is missing without being reported"
    assert set(states.values()) <= {"sent", "uncertain"}


# -- who settles, and what the exit code says ---------------------------------------------------


def test_a_lost_lease_stops_the_send_at_once_and_strands_no_one(
    tmp_path: Path, smtp_capture: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("digest.send.LOCK_RENEW_SECONDS", 0.05)
    store, issue = small_store(tmp_path, 40)
    settings = settings_for(tmp_path, smtp_capture.port)
    stolen = threading.Event()

    def steal(event: object) -> None:
        if not stolen.is_set():
            stolen.set()
            with store.begin() as conn:  # another process takes the lock over
                conn.execute(sa.text("UPDATE locks SET owner = 'elsewhere:1:x'"))
            time.sleep(0.5)  # the next renewal finds it gone

    report = send_issue(settings, store, issue, RENDERED, progress=steal)
    assert "lost the send lock" in report.stopped and not report.complete
    states = collections.Counter(ledger(store).values())
    assert set(states) <= {"sent", "queued"} and states["queued"] > 0
    assert sum(deliveries_by_recipient(smtp_capture).values()) == states["sent"]


# -- one policy for every connection -------------------------------------------------------------


def test_notifications_never_send_a_password_in_cleartext(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.config import RunSettings

    settings = Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(from_address="veille@ecole.example"),
        smtp=SmtpSettings(
            host="smtp.ecole.example", port=25, username="veille", password="s3cret-pass"
        ),
        run=RunSettings(notify=("redaction@ecole.example",)),
    )
    with caplog.at_level(logging.INFO):
        assert not notify_editors(settings, RunReport(PERIOD, "sent", "ok"))
    assert "refusing to send the SMTP password" in caplog.text
    assert "s3cret-pass" not in caplog.text
    with pytest.raises(DeliveryError) as caught:
        send_one(settings.smtp, "veille@ecole.example", ["a@ecole.example"], b"x\r\n")
    assert "starttls" in (caught.value.hint or "") and "s3cret-pass" not in str(caught.value)
    assert "s3cret-pass" not in repr(SmtpClient(settings.smtp, "client.example"))


@pytest.mark.parametrize("faulty", ["ok"], indirect=True)
def test_a_notification_reads_which_recipients_were_refused(
    tmp_path: Path, faulty: FaultyServer
) -> None:
    smtp = settings_for(tmp_path, faulty.port).smtp
    recipients = ["redaction@ecole.example", "nobody@ecole.example"]
    refused = send_one(smtp, "veille@ecole.example", recipients, b"Subject: x\r\n\r\nx\r\n")
    assert list(refused) == ["nobody@ecole.example"] and "550" in refused["nobody@ecole.example"]
    assert faulty.delivered == {"redaction@ecole.example": 1}
    with pytest.raises(DeliveryError, match="refused every recipient"):
        send_one(smtp, "veille@ecole.example", ["nobody@ecole.example"], b"x\r\n")
