"""The subscriber list and the delivery ledger on PostgreSQL: the same code, another backend.

A throwaway PostgreSQL server on loopback (the ``postgres_url`` fixture in conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from send_helpers import PERIOD, RENDERED, ScriptedServer, make_settings

from digest.db import Store, issues, schema
from digest.models import Issue, SendProgress
from digest.send import send_issue
from digest.subscribers import delete, export_csv, import_csv, unsubscribe


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    yield store
    store.close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    yield srv
    srv.stop()


def test_import_export_delete_on_postgres(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,language,tags\nLéa@Exemple.fr,Léa,fr,a;b\nLÉA@exemple.FR,,fr,c\nbad,X,fr,\n",
        encoding="utf-8",
    )
    report = import_csv(store, path)
    assert report.added == 1 and report.duplicates == 1 and len(report.errors) == 1
    out = tmp_path / "out.csv"
    assert export_csv(store, out) == 1
    assert delete(store, "LÉA@exemple.fr") is True
    assert import_csv(store, path).suppressed == 1


def test_the_ledger_on_postgres(store: Store, tmp_path: Path, server: ScriptedServer) -> None:
    path = tmp_path / "list.csv"
    rows = "".join(f"r{i:03d}@exemple.fr,Lecteur {i},fr\n" for i in range(12))
    path.write_text("email,name,language\n" + rows, encoding="utf-8")
    import_csv(store, path)
    issue = issues.save(
        store, Issue(period=PERIOD, title="La veille", intro="", items=(), status="sending")
    )
    server.script.rcpt["r001@exemple.fr"] = ["450 4.2.0 greylisted"]
    server.script.rcpt["r002@exemple.fr"] = ["550 5.1.1 no such user"]

    def leave(event: SendProgress) -> None:
        if event.done == 1:
            unsubscribe(store, "r011@exemple.fr")

    settings = make_settings(tmp_path, server.port, connections=2)
    report = send_issue(settings, store, issue, RENDERED, progress=leave)
    assert report.counts == {"sent": 9, "failed_temp": 1, "failed_perm": 1, "skipped": 1}
    assert report.retry_pending == 1 and not report.complete
    with store.begin() as conn:
        bounced = conn.execute(
            sa.select(schema.subscribers.c.email).where(schema.subscribers.c.status == "bounced")
        ).scalars()
        assert list(bounced) == ["r002@exemple.fr"]
        conn.execute(
            sa.update(schema.deliveries)
            .where(schema.deliveries.c.status == "failed_temp")
            .values(next_attempt_at=sa.func.now() - sa.text("interval '1 minute'"))
        )
    again = send_issue(settings, store, issue, RENDERED)
    assert again.sent == 1 and again.complete
    assert set(server.script.received().values()) == {1}
    assert len(server.script.received()) == 10


def test_an_error_storm_stops_the_other_senders_on_postgres(
    store: Store, tmp_path: Path, server: ScriptedServer
) -> None:
    # On PostgreSQL the claim itself refuses rows of a stopped issue: the other
    # senders must still notice, say why, and send nothing.
    rows = "".join(f"r{i:03d}@exemple.fr,Lecteur {i},fr\n" for i in range(10))
    path = tmp_path / "list.csv"
    path.write_text("email,name,language\n" + rows, encoding="utf-8")
    assert not import_csv(store, path).errors
    issue = issues.save(
        store, Issue(period=PERIOD, title="La veille", intro="", items=(), status="sending")
    )
    for i in range(10):
        server.script.rcpt[f"r{i:03d}@exemple.fr"] = ["452 4.3.1 insufficient storage"]
    settings = make_settings(tmp_path, server.port, max_consecutive_failures=3)
    assert "3 failures in a row" in send_issue(settings, store, issue, RENDERED).stopped
    server.script.rcpt.clear()
    other = send_issue(settings, store, issue, RENDERED)
    assert other.stopped.startswith("another sender stopped: 3 failures in a row")
    assert other.sent == 0 and not server.script.received()
    issues.stop_sending(store, PERIOD, None)
    assert send_issue(settings, store, issue, RENDERED).sent == 7
