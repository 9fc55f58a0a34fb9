"""Several sender processes share one issue through PostgreSQL (``SKIP LOCKED`` claims).

Real processes, a real PostgreSQL server (the ``postgres_url`` fixture) and a real
SMTP server on loopback that counts what it accepted per recipient. Leases are
short here (two seconds) so that a killed sender's claims come back quickly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from send_helpers import PERIOD, RENDERED, ScriptedServer, make_settings

from digest.db import Store, issues, schema
from digest.models import Issue
from digest.send import send_issue
from digest.subscribers import import_csv

RECIPIENTS = 3000
LEASE = 2.0

WORKER = """
import sys
from pathlib import Path
from digest.config import NewsletterSettings, SendSettings, Settings, SmtpSettings
from digest.db import Store, issues
from digest.send import send_issue
from tests.send_helpers import RENDERED, PERIOD

url, port, lease, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
connections = int(sys.argv[5])
store = Store(url)
settings = Settings(
    path=Path("digest.toml"),
    newsletter=NewsletterSettings(from_address="veille@ecole.example"),
    smtp=SmtpSettings(host="127.0.0.1", port=port, timeout=5.0),
    send=SendSettings(lease_seconds=lease, rate=rate, connections=connections),
)
report = send_issue(settings, store, issues.get(store, PERIOD), RENDERED)
print(report.sent)
"""


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    yield srv
    srv.stop()


def fill(store: Store, tmp_path: Path, count: int) -> None:
    rows = "".join(f"r{i:04d}@exemple.fr,Lecteur {i},fr\n" for i in range(count))
    path = tmp_path / "list.csv"
    path.write_text("email,name,language\n" + rows, encoding="utf-8")
    assert not import_csv(store, path).errors
    issues.save(
        store, Issue(period=PERIOD, title="La veille", intro="", items=(), status="sending")
    )


@pytest.fixture
def store(postgres_url: str, tmp_path: Path) -> Iterator[Store]:
    store = Store(postgres_url)
    fill(store, tmp_path, RECIPIENTS)
    yield store
    store.close()


def start_worker(
    tmp_path: Path, url: str, port: int, rate: float = 0.0, connections: int = 1
) -> subprocess.Popen[bytes]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, str(script), url, str(port), str(LEASE), str(rate), str(connections)],
        env=dict(os.environ, PYTHONPATH=str(root)),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def statuses(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(schema.deliveries.c.status, sa.func.count()).group_by(
                schema.deliveries.c.status
            )
        )
        return {str(status): int(n) for status, n in rows}


def everyone() -> set[str]:
    return {f"r{i:04d}@exemple.fr" for i in range(RECIPIENTS)}


def test_three_workers_send_one_issue_each_recipient_once(
    store: Store, postgres_url: str, tmp_path: Path, server: ScriptedServer
) -> None:
    # Three connections for the three of them: each gets its share.
    workers = [start_worker(tmp_path, postgres_url, server.port, connections=3) for _ in range(3)]
    seen: set[str] = set()  # the live senders `digest status` lists, sampled while they work
    while any(worker.poll() is None for worker in workers):
        seen |= set(issues.live_senders(store, PERIOD))
        time.sleep(0.05)
    sent = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()
        sent.append(int(out.decode().split()[-1]))
    received = server.script.received()
    assert set(received) == everyone() and set(received.values()) == {1}
    assert statuses(store) == {"sent": RECIPIENTS}
    assert sum(sent) == RECIPIENTS
    assert sum(1 for n in sent if n > 0) >= 2, f"the work was not shared: {sent}"
    assert len(seen) >= 2, seen
    assert issues.live_senders(store, PERIOD) == {}  # all done: nobody holds a claim


def test_kill_9_of_one_worker_while_the_others_go_on_loses_and_duplicates_no_one(
    store: Store, postgres_url: str, tmp_path: Path, server: ScriptedServer
) -> None:
    workers = [start_worker(tmp_path, postgres_url, server.port) for _ in range(3)]
    kills = 0
    for _ in range(3):  # kill one at a random moment, start a new one, again
        target = len(server.script.accepted) + random.randint(20, 300)
        while len(server.script.accepted) < target and workers[0].poll() is None:
            time.sleep(0.005)
        if workers[0].poll() is None:
            workers[0].send_signal(signal.SIGKILL)
            kills += 1
        workers[0].communicate()  # killed or already done: its pipes are closed either way
        workers = [*workers[1:], start_worker(tmp_path, postgres_url, server.port)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode in (0, -signal.SIGKILL), err.decode()
    assert kills >= 1, "no kill landed during the send"

    time.sleep(LEASE + 0.5)  # the dead workers' claims run out
    settings = make_settings(tmp_path, server.port, lease_seconds=LEASE)
    report = send_issue(settings, store, issues.get(store, PERIOD), RENDERED)
    received = server.script.received()
    uncertain = set(report.uncertain)
    assert len(uncertain) <= kills  # at most the message in flight of each kill
    assert all(n == 1 for n in received.values()), "someone got the issue twice"
    assert everyone() - set(received) <= uncertain  # only an uncertain one may lack it
    expected = {"sent": RECIPIENTS - len(uncertain), "uncertain": len(uncertain)}
    assert statuses(store) == {k: n for k, n in expected.items() if n}

    # The editor's call: send the uncertain ones again. Nobody is then missing.
    send_issue(settings, store, issues.get(store, PERIOD), RENDERED, resend_uncertain=True)
    assert set(server.script.received()) == everyone()
    assert statuses(store) == {"sent": RECIPIENTS}


@pytest.mark.parametrize("senders", [1, 2, 4])
def test_the_configured_rate_holds_for_all_senders_together(
    senders: int, postgres_url: str, tmp_path: Path, server: ScriptedServer
) -> None:
    rate, count = 5.0, 30  # slow enough for one sender on a loaded machine
    store = Store(postgres_url)
    fill(store, tmp_path, count)
    workers = [start_worker(tmp_path, postgres_url, server.port, rate) for _ in range(senders)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()
    with store.connect() as conn:
        first, last, sent = conn.execute(
            sa.select(
                sa.func.min(schema.deliveries.c.sent_at),
                sa.func.max(schema.deliveries.c.sent_at),
                sa.func.count(),
            ).where(schema.deliveries.c.status == "sent")
        ).one()
    store.close()
    assert sent == count
    measured = (count - 1) / (last - first).total_seconds()
    assert abs(measured - rate) <= 0.1 * rate, f"{measured:.1f} msg/s with {senders} sender(s)"


def test_sigterm_stops_one_worker_and_hands_its_batch_back_while_the_others_go_on(
    postgres_url: str, tmp_path: Path, server: ScriptedServer
) -> None:
    count = 600
    store = Store(postgres_url)
    fill(store, tmp_path, count)
    workers = [start_worker(tmp_path, postgres_url, server.port) for _ in range(3)]
    mine = f":{workers[0].pid}:"  # a sender's id names its process

    def working() -> bool:
        return any(mine in owner for owner in issues.live_senders(store, PERIOD))

    while not working() and workers[0].poll() is None:
        time.sleep(0.01)
    target = len(server.script.accepted) + random.randint(10, 100)
    while len(server.script.accepted) < target and workers[0].poll() is None:
        time.sleep(0.005)
    workers[0].send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()  # the stopped one too: it stopped cleanly
    # No lease had to run out: the stopped worker handed back what it had not begun.
    assert statuses(store) == {"sent": count}
    received = server.script.received()
    assert len(received) == count and set(received.values()) == {1}
    store.close()


def test_the_connection_limit_holds_for_all_workers_together(
    postgres_url: str, tmp_path: Path, server: ScriptedServer
) -> None:
    # Three workers each allowed two connections: a relay allowing two sessions
    # must never see more than two at once, whoever opens them.
    count = 600
    server.script.data_delay = 0.002  # each session stays busy: they overlap in time
    store = Store(postgres_url)
    fill(store, tmp_path, count)
    workers = [start_worker(tmp_path, postgres_url, server.port, connections=2) for _ in range(3)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()
    assert server.script.most_open == 2, server.script.most_open
    received = server.script.received()
    assert len(received) == count and set(received.values()) == {1}
    assert statuses(store) == {"sent": count}
    with store.connect() as conn:  # every slot handed back: the next send finds them free
        held = conn.execute(
            sa.select(sa.func.count()).where(schema.locks.c.name.like("smtp-slot:%"))
        ).scalar_one()
    assert held == 0
    store.close()
