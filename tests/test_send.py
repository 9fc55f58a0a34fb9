"""Sending through a real SMTP server on loopback that misbehaves on cue.

``ScriptedServer`` is aiosmtpd with a handler whose answers a test sets per
address: 4xx/5xx at RCPT or at the end of DATA, a dropped connection before or
after the final dot, a slow answer, being down and coming back. Every accepted
message is kept with its envelope, so tests can check that nobody ever gets an
issue twice and that each message has exactly one recipient.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import AuthResult, LoginPassword
from send_helpers import PERIOD, RENDERED, ScriptedServer, make_settings, make_store

from digest.capture import free_port
from digest.config import SmtpSettings
from digest.db import Store, issues, locks, schema
from digest.errors import DeliveryError, LockedError
from digest.models import SendProgress
from digest.send import SendAborted, send_issue
from digest.subscribers import unsubscribe


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def either_server(request: pytest.FixtureRequest, server: ScriptedServer) -> ScriptedServer:
    """The same server, with and without PIPELINING (RFC 2920) offered."""
    server.script.pipelining = request.param
    return server


# -- helpers ----------------------------------------------------------------------------


def ledger(store: Store) -> dict[str, str]:
    with store.begin() as conn:
        return dict(
            conn.execute(sa.select(schema.deliveries.c.email, schema.deliveries.c.status)).all()
        )


def status_of(store: Store, email: str) -> str:
    with store.begin() as conn:
        return str(
            conn.execute(
                sa.select(schema.subscribers.c.status).where(schema.subscribers.c.email == email)
            ).scalar_one()
        )


# -- the happy path, and one recipient per message (docs/quality.md) ---------------------------


def test_everyone_gets_one_message_with_one_recipient(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 20)
    events: list[SendProgress] = []
    report = send_issue(
        make_settings(tmp_path, either_server.port), store, issue, RENDERED, progress=events.append
    )
    assert report.complete and report.sent == 20 and report.counts == {"sent": 20}
    assert not report.failures
    received = either_server.script.received()
    assert sorted(received) == [f"r{i:03d}@exemple.fr" for i in range(20)]
    assert set(received.values()) == {1}
    everyone = [f"r{i:03d}@exemple.fr" for i in range(20)]
    for rcpts, content in either_server.script.accepted:
        assert len(rcpts) == 1  # one envelope recipient per message
        others = [a for a in everyone if a != rcpts[0]]
        assert not any(a.encode() in content for a in others)
        assert f"Lecteur {int(rcpts[0][1:4])}".encode() in content
    assert events[-1].done == events[-1].total == 20
    assert either_server.script.sessions == 1  # one connection, reused for every message
    # A second run sends nothing more.
    again = send_issue(make_settings(tmp_path, either_server.port), store, issue, RENDERED)
    assert again.sent == 0 and again.complete
    assert len(either_server.script.accepted) == 20


def test_unicode_address_is_sent_with_smtputf8(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 1, extra="zoé@café.fr,Zoé,fr\n")
    report = send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    assert report.sent == 2
    assert "zoé@xn--caf-dma.fr" in server.script.received()


def test_dry_run_and_test_send_touch_no_ledger(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 5)
    settings = make_settings(tmp_path, server.port)
    dry = send_issue(settings, store, issue, RENDERED, dry_run=True)
    assert dry.dry_run and dry.counts == {"queued": 5} and not server.script.accepted
    test = send_issue(settings, store, issue, RENDERED, only_to="Editor@Ecole.example")
    assert test.sent == 1 and test.test_to == "Editor@ecole.example"
    assert server.script.received() == {"Editor@ecole.example": 1}
    assert ledger(store) == {}
    assert all(s == "active" for s in (status_of(store, "r000@exemple.fr"),))


# -- 4xx, 5xx, the refused-recipients answer -----------------------------------------------


def test_4xx_is_retried_later_and_5xx_bounces(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 5)
    script = either_server.script
    script.rcpt["r001@exemple.fr"] = ["450 4.2.0 greylisted, try later"]
    script.rcpt["r002@exemple.fr"] = ["550 5.1.1 no such user"]
    script.data["r003@exemple.fr"] = ["554 5.7.1 message looks like spam"]
    settings = make_settings(tmp_path, either_server.port)
    report = send_issue(settings, store, issue, RENDERED)
    assert report.counts == {"sent": 2, "failed_temp": 1, "failed_perm": 2}
    assert not report.complete and report.retry_pending == 1 and report.retry_at is not None
    assert sorted(report.failures) == [
        ("r002@exemple.fr", "RCPT TO: 550 5.1.1 no such user"),
        ("r003@exemple.fr", "end of DATA: 554 5.7.1 message looks like spam"),
    ]
    assert status_of(store, "r002@exemple.fr") == "bounced"  # the address is bad
    assert status_of(store, "r003@exemple.fr") == "active"  # the content was refused
    assert status_of(store, "r001@exemple.fr") == "active"
    # Nothing is due yet: running again sends nobody.
    assert send_issue(settings, store, issue, RENDERED).attempted == 0
    # Once the retry time has come, the greylisted address gets its copy.
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.deliveries)
            .where(schema.deliveries.c.status == "failed_temp")
            .values(next_attempt_at=sa.func.datetime("now", "-1 minute"))
        )
    later = send_issue(settings, store, issue, RENDERED)
    assert later.sent == 1 and later.complete
    assert script.received()["r001@exemple.fr"] == 1


def test_4xx_past_the_retry_window_fails_for_good(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 1)
    server.script.rcpt["r000@exemple.fr"] = ["451 4.3.0 try again"]
    report = send_issue(
        make_settings(tmp_path, server.port, retry_window_hours=0.0), store, issue, RENDERED
    )
    assert report.counts == {"failed_temp": 1} and report.complete
    assert report.failures[0].address == "r000@exemple.fr"
    assert "gave up" in report.failures[0].reason


def test_many_failures_in_a_row_stop_the_send_resumably(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 10)
    for i in range(10):
        either_server.script.rcpt[f"r{i:03d}@exemple.fr"] = ["452 4.3.1 insufficient storage"]
    report = send_issue(
        make_settings(tmp_path, either_server.port, max_consecutive_failures=3),
        store,
        issue,
        RENDERED,
    )
    assert "3 failures in a row" in report.stopped
    assert report.counts == {"failed_temp": 3, "queued": 7} and not report.complete


def test_an_error_storm_stops_every_sender_of_the_issue_until_a_send_resumes_it(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 10)
    for i in range(10):
        server.script.rcpt[f"r{i:03d}@exemple.fr"] = ["452 4.3.1 insufficient storage"]
    settings = make_settings(tmp_path, server.port, max_consecutive_failures=3)
    first = send_issue(settings, store, issue, RENDERED)
    assert "3 failures in a row" in first.stopped
    assert "3 failures in a row" in (issues.send_stopped(store, PERIOD) or "")
    assert PERIOD not in issues.sendable(store)  # workers leave it alone

    server.script.rcpt.clear()  # the relay is fine again, but nobody has looked yet
    other = send_issue(settings, store, issue, RENDERED)  # another sender of the issue
    assert other.stopped.startswith("another sender stopped: 3 failures in a row")
    assert other.sent == 0 and server.script.received() == collections.Counter()

    issues.stop_sending(store, PERIOD, None)  # what an explicit `digest send` does first
    assert send_issue(settings, store, issue, RENDERED).sent == 7


# -- connections dropping, servers down, slow servers --------------------------------------


def test_connection_dropped_before_data_reconnects_and_continues(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 6)
    either_server.script.rcpt["r002@exemple.fr"] = ["drop"]
    either_server.script.rcpt["r004@exemple.fr"] = ["421 4.3.2 shutting down"]
    report = send_issue(make_settings(tmp_path, either_server.port), store, issue, RENDERED)
    assert report.complete and report.counts == {"sent": 6}
    assert set(either_server.script.received().values()) == {1}
    assert len(either_server.script.received()) == 6


def test_connection_dropped_mid_data_is_not_accepted_so_it_is_resent(
    tmp_path: Path, server: ScriptedServer
) -> None:
    # A message larger than the socket buffers: the drop happens while we still write.
    big = dataclasses.replace(RENDERED, html=RENDERED.html + "<p>" + "x" * 16_000_000 + "</p>")
    store, issue = make_store(tmp_path, 3)
    server.script.data["r001@exemple.fr#mid"] = ["yes"]
    report = send_issue(make_settings(tmp_path, server.port), store, issue, big)
    assert report.counts == {"sent": 3} and report.complete
    assert server.script.received() == {f"r{i:03d}@exemple.fr": 1 for i in range(3)}


def test_connection_dropped_after_the_final_dot_is_uncertain_never_resent(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 4)
    either_server.script.data["r001@exemple.fr"] = ["drop-after-dot"]
    settings = make_settings(tmp_path, either_server.port)
    report = send_issue(settings, store, issue, RENDERED)
    assert report.counts == {"sent": 3, "uncertain": 1}
    # Not settled: the issue is not sent, and the summary says what to run.
    assert report.uncertain == ["r001@exemple.fr"] and not report.complete
    assert "digest send --resend-uncertain" in report.summary()
    again = send_issue(settings, store, issue, RENDERED)
    assert "r001@exemple.fr" not in either_server.script.received() and not again.complete
    # Only when the editor asks:
    resent = send_issue(settings, store, issue, RENDERED, resend_uncertain=True)
    assert resent.sent == 1 and either_server.script.received()["r001@exemple.fr"] == 1
    assert resent.complete


def test_slow_server_answer_past_the_timeout_is_uncertain(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 1)
    server.script.data_delay = 1.0
    settings = dataclasses.replace(
        make_settings(tmp_path, server.port),
        smtp=SmtpSettings(host="127.0.0.1", port=server.port, timeout=0.3),
    )
    report = send_issue(settings, store, issue, RENDERED)
    assert report.counts == {"uncertain": 1}


def test_server_down_fails_clearly_and_marks_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("digest.send.CONNECT_ATTEMPTS", 1)
    store, issue = make_store(tmp_path, 3)
    port = free_port()
    settings = make_settings(tmp_path, port)
    with pytest.raises(DeliveryError) as caught:
        send_issue(settings, store, issue, RENDERED)
    message = str(caught.value)
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in message
    assert "Connection refused; nobody was marked sent or failed" in message
    assert isinstance(caught.value, SendAborted)
    assert caught.value.report.counts == {"queued": 3} and not caught.value.report.complete
    assert set(ledger(store).values()) == {"queued"}
    # The server comes back: the send resumes and completes.
    srv = ScriptedServer(port)
    srv.start()
    try:
        report = send_issue(settings, store, issue, RENDERED)
    finally:
        srv.stop()
    assert report.complete and report.sent == 3


def test_server_restarting_mid_send_is_waited_for(tmp_path: Path) -> None:
    store, issue = make_store(tmp_path, 6)
    srv = ScriptedServer()
    srv.start()
    settings = make_settings(tmp_path, srv.port)
    restarted: list[ScriptedServer] = []

    def bounce_server(event: SendProgress) -> None:
        if event.done == 2 and not restarted:
            srv.stop()
            again = ScriptedServer(srv.port)
            again.script = srv.script
            threading.Timer(0.3, again.start).start()
            restarted.append(again)

    try:
        report = send_issue(settings, store, issue, RENDERED, progress=bounce_server)
    finally:
        for s in restarted:
            s.stop()
    assert report.complete and report.counts == {"sent": 6}
    assert set(srv.script.received().values()) == {1}


# -- TLS and AUTH --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made now (nothing shipped, nothing fetched)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_context(certificate: tuple[Path, Path]) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_self_signed_tls_is_refused_unless_verify_tls_is_false(
    tmp_path: Path, certificate: tuple[Path, Path], security: str
) -> None:
    context = tls_context(certificate)
    kwargs = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        else {"ssl_context": context}
    )
    srv = ScriptedServer(**kwargs)
    srv.start()
    try:
        store, issue = make_store(tmp_path, 2)
        base = make_settings(tmp_path, srv.port)
        smtp = dataclasses.replace(base.smtp, security=security)
        with pytest.raises(DeliveryError, match="certificate not accepted"):
            send_issue(dataclasses.replace(base, smtp=smtp), store, issue, RENDERED)
        assert set(ledger(store).values()) == {"queued"}
        insecure = dataclasses.replace(smtp, verify_tls=False)
        report = send_issue(dataclasses.replace(base, smtp=insecure), store, issue, RENDERED)
        assert report.sent == 2
    finally:
        srv.stop()


def test_starttls_not_offered_means_no_cleartext_fallback(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 1)
    base = make_settings(tmp_path, server.port)
    settings = dataclasses.replace(base, smtp=dataclasses.replace(base.smtp, security="starttls"))
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        send_issue(settings, store, issue, RENDERED)
    assert not server.script.accepted


def test_auth_failure_is_clear_and_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "s3cr3t-Pa55word-never-print"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data.password == b"right"
        return AuthResult(success=ok, handled=False)

    srv = ScriptedServer(authenticator=authenticator, auth_require_tls=False)
    srv.start()
    caplog.set_level(logging.DEBUG)
    try:
        store, issue = make_store(tmp_path, 2)
        base = make_settings(tmp_path, srv.port)
        smtp = dataclasses.replace(base.smtp, username="veille", password=password)
        with pytest.raises(DeliveryError) as caught:
            send_issue(dataclasses.replace(base, smtp=smtp), store, issue, RENDERED)
        error = caught.value
        assert "refused the login of 'veille'" in str(error)
        assert "DIGEST_SMTP_PASSWORD" in str(error)
        for text in (str(error), repr(error), caplog.text, *capsys.readouterr()):
            assert password not in text
        assert error.__cause__ is None and error.__suppress_context__
        assert set(ledger(store).values()) == {"queued"}
        good = dataclasses.replace(smtp, password="right")
        assert send_issue(dataclasses.replace(base, smtp=good), store, issue, RENDERED).sent == 2
    finally:
        srv.stop()


# -- subscribers leaving, locks, stopping --------------------------------------------------


def test_someone_who_unsubscribes_mid_send_is_skipped(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 6)

    def leave(event: SendProgress) -> None:
        if event.done == 1:
            unsubscribe(store, "r004@exemple.fr")

    report = send_issue(
        make_settings(tmp_path, server.port), store, issue, RENDERED, progress=leave
    )
    assert "r004@exemple.fr" not in server.script.received()
    assert report.counts == {"sent": 5, "skipped": 1} and report.complete


def test_a_second_sender_refuses(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 3)
    import datetime as dt

    assert locks.acquire(store, f"send:{PERIOD}", "elsewhere:1:x", dt.timedelta(minutes=5))
    with pytest.raises(LockedError, match="already running"):
        send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    assert ledger(store) == {} and not server.script.accepted


def test_stop_event_finishes_in_flight_and_resumes(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    server = either_server
    store, issue = make_store(tmp_path, 10)
    stop = threading.Event()

    def halt(event: SendProgress) -> None:
        if event.done == 4:
            stop.set()

    settings = make_settings(tmp_path, server.port)
    report = send_issue(settings, store, issue, RENDERED, progress=halt, stop=stop)
    assert report.sent == 4 and not report.complete and "interrupted" in report.stopped
    # With PIPELINING the fifth envelope went out with the fourth final dot: stopping
    # there must leave that DATA unfinished (discarded), never an empty message sent.
    assert len(server.script.accepted) == 4
    assert ledger(store)["r004@exemple.fr"] == "queued"
    rest = send_issue(settings, store, issue, RENDERED)
    assert rest.sent == 6 and rest.complete
    assert set(server.script.received().values()) == {1} and len(server.script.received()) == 10


def test_multiple_connections_send_everyone_once(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 120)
    report = send_issue(make_settings(tmp_path, server.port, connections=3), store, issue, RENDERED)
    assert report.complete and report.sent == 120
    assert set(server.script.received().values()) == {1} and len(server.script.received()) == 120


# -- crashes: a real process killed with SIGKILL ----------------------------------------------

CRASHER = """
import os, signal, sys
from pathlib import Path
import digest.send as send
from digest.db.deliveries import Ledger
from digest.config import NewsletterSettings, SendSettings, Settings, SmtpSettings
from digest.db import Store, issues
from tests.send_helpers import RENDERED, PERIOD

mode, when, port, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rate = float(sys.argv[5])
calls = 0

def crash_on(wanted):
    original = Ledger.finish
    def finish(self, done):
        global calls
        calls += 1
        if calls == when and wanted == "done":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(self, done)
        if calls == when and wanted == "start":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    Ledger.finish = finish

if mode == "between-recipients":
    crash_on("start")   # an outcome recorded, the next claimed rows not begun
elif mode == "after-250":
    crash_on("done")    # the server said 250; the ledger has not recorded it

store = Store(db)
settings = Settings(
    path=Path(db.removeprefix("sqlite:///")).parent / "digest.toml",
    newsletter=NewsletterSettings(from_address="veille@ecole.example"),
    smtp=SmtpSettings(host="127.0.0.1", port=port),
    send=SendSettings(rate=rate),
)
send.send_issue(settings, store, issues.get(store, PERIOD), RENDERED)
"""


def run_crasher(
    tmp_path: Path,
    mode: str,
    when: int,
    port: int,
    rate: float = 0.0,
    kill_when: Any = None,
    kill_with: signal.Signals = signal.SIGKILL,
) -> int:
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            mode,
            str(when),
            str(port),
            f"sqlite:///{tmp_path / 'digest.db'}",
            str(rate),
        ],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if kill_when is not None:
        while proc.poll() is None and not kill_when():
            time.sleep(0.002)
        proc.send_signal(kill_with)
    proc.communicate(timeout=60)
    return proc.returncode


def test_crash_between_two_recipients_loses_and_duplicates_no_one(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 8)
    assert run_crasher(tmp_path, "between-recipients", 3, server.port) == -signal.SIGKILL
    assert len(server.script.accepted) == 3
    report = send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    assert report.sent == 5 and report.complete and not report.uncertain
    assert server.script.received() == {f"r{i:03d}@exemple.fr": 1 for i in range(8)}


def test_crash_between_the_250_and_the_commit_is_uncertain(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 8)
    assert run_crasher(tmp_path, "after-250", 3, server.port) == -signal.SIGKILL
    assert len(server.script.accepted) == 3  # the server has the third message
    report = send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    assert report.uncertain == ["r002@exemple.fr"]
    assert report.counts == {"sent": 7, "uncertain": 1} and not report.complete
    assert server.script.received() == {f"r{i:03d}@exemple.fr": 1 for i in range(8)}


def test_kill_9_at_any_moment_then_resume(tmp_path: Path, server: ScriptedServer) -> None:
    store, issue = make_store(tmp_path, 60)
    moment = random.randint(1, 50)  # any moment: the property must hold for every one
    run_crasher(
        tmp_path,
        "none",
        0,
        server.port,
        rate=200.0,
        kill_when=lambda: len(server.script.accepted) >= moment,
    )
    first = len(server.script.accepted)
    assert 0 < first < 60, "the kill should land in the middle of the send"
    report = send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    received = server.script.received()
    assert report.complete == (not report.uncertain)  # uncertain: not settled, not sent
    assert max(received.values()) == 1, "someone got the issue twice"
    missing = {f"r{i:03d}@exemple.fr" for i in range(60)} - set(received)
    assert missing <= set(report.uncertain)  # only an uncertain recipient may lack it
    assert len(report.uncertain) <= 1
    assert first <= len(server.script.accepted)


def test_sigterm_lets_the_message_in_flight_finish_then_exits_resumably(
    tmp_path: Path, server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 40)
    code = run_crasher(
        tmp_path,
        "none",
        0,
        server.port,
        rate=100.0,
        kill_when=lambda: len(server.script.accepted) >= 5,
        kill_with=signal.SIGTERM,
    )
    assert code == 0  # a clean exit, not a death
    states = ledger(store)
    assert "sending" not in states.values() and "uncertain" not in states.values()
    assert 5 <= list(states.values()).count("sent") < 40
    report = send_issue(make_settings(tmp_path, server.port), store, issue, RENDERED)
    assert report.complete and not report.uncertain
    assert server.script.received() == {f"r{i:03d}@exemple.fr": 1 for i in range(40)}


def test_a_configured_rate_still_sends_everyone_once(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 10)
    settings = make_settings(tmp_path, either_server.port, rate=500.0, connections=2)
    report = send_issue(settings, store, issue, RENDERED)
    assert report.complete and report.sent == 10
    assert either_server.script.received() == {f"r{i:03d}@exemple.fr": 1 for i in range(10)}


def test_our_sender_refused_stops_the_send_and_blames_no_recipient(
    tmp_path: Path, either_server: ScriptedServer
) -> None:
    store, issue = make_store(tmp_path, 3)
    either_server.script.mail_answer = "550 5.7.1 sender not allowed"
    with pytest.raises(SendAborted, match="refuses our sender address") as caught:
        send_issue(make_settings(tmp_path, either_server.port), store, issue, RENDERED)
    assert "from_address" in str(caught.value)
    assert set(ledger(store).values()) == {"queued"}
    assert all(status_of(store, f"r{i:03d}@exemple.fr") == "active" for i in range(3))
