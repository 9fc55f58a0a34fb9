"""The persistence layer, the same tests on SQLite and on PostgreSQL (the ``db_url`` fixture).

PostgreSQL runs as a throwaway cluster on loopback; its half of each test is
skipped only when the server binaries are not installed.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import store_article

from digest.cli import main
from digest.config import DatabaseSettings, Settings
from digest.db import Store, articles, issues, locks, mask_url, ratelimits, runs, schema
from digest.db import subscribers as subscriber_rows
from digest.db.jobstore import stored_next_run
from digest.errors import LockedError, StoreError
from digest.models import Article, Issue, IssueItem, Lesson

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[[], Store]]:
    """Opens handles on the test's database, closed at the end (PostgreSQL counts them)."""
    opened: list[Store] = []

    def factory() -> Store:
        opened.append(Store(db_url))
        return opened[-1]

    yield factory
    for handle in opened:
        handle.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


def article(**changes: object) -> Article:
    values: dict[str, object] = {
        "source": "Feed",
        "guid": "g1",
        "url": "https://example.org/a",
        "title": "Titre",
        "text": "Texte.",
        "published": NOW,
        "fingerprint": "f1",
    }
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def add_subscribers(store: Store, *emails: str) -> None:
    with store.begin() as conn:
        subscriber_rows.add_many(
            conn,
            [
                {"email": e, "name": "", "language": "fr", "status": "active", "tags": "a,b"}
                for e in emails
            ],
        )


# -- the handle and the schema ---------------------------------------------------------------


def test_new_database_is_at_the_current_schema(store: Store) -> None:
    assert store.schema_version() == schema.SCHEMA_VERSION
    assert issues.latest(store) is None


def test_sqlite_is_opened_in_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sub' / 'digest.db'}")
    with store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_reopening_keeps_data_and_a_newer_schema_is_refused(
    db_url: str, open_store: Callable[[], Store]
) -> None:
    store_article(open_store(), article())
    store = open_store()
    assert len(articles.between(store, NOW - DAY, NOW + DAY)) == 1
    with store.begin() as conn:
        conn.execute(sa.update(schema.meta).values(value=str(schema.SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match="newer than this digest"):
        Store(db_url)


def test_an_upgrade_runs_new_migrations_and_keeps_data(
    open_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_article(open_store(), article())

    def add_column(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE articles ADD COLUMN summary_hint TEXT DEFAULT ''"))

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_column])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    upgraded = open_store()
    assert upgraded.schema_version() == schema.SCHEMA_VERSION
    with upgraded.connect() as conn:
        rows = conn.execute(sa.text("SELECT title, summary_hint FROM articles")).all()
    assert [tuple(r) for r in rows] == [("Titre", "")]


def test_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="database URL"):
        Store("nosuchdb://x")


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError):
        store_article(store, article(published=dt.datetime(2026, 1, 1)))


# -- the password of a database URL is never shown ------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mask_url_hides_the_password_and_keeps_the_rest() -> None:
    masked = mask_url("postgresql+psycopg://digest:s3cr%40t@db.example:5433/lettre")
    assert "s3cr" not in masked
    assert masked == "postgresql+psycopg://digest:***@db.example:5433/lettre"
    assert mask_url("sqlite:///data/digest.db") == "sqlite:///data/digest.db"
    # Even a URL SQLAlchemy cannot read is masked before it is quoted.
    assert "hunter2" not in mask_url("no such scheme://me:hunter2@host/db")


def test_errors_and_repr_never_show_the_database_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://digest:hunter2@127.0.0.1:{_closed_port()}/lettre"
    with pytest.raises(StoreError) as caught:
        Store(url)
    assert "hunter2" not in str(caught.value)
    assert "digest:***@127.0.0.1" in str(caught.value)
    with pytest.raises(StoreError) as caught:
        Store("nosuchdb://digest:hunter2@host/db")
    assert "hunter2" not in str(caught.value)


def test_the_cli_never_prints_the_database_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://digest:hunter2@127.0.0.1:{_closed_port()}/lettre"
    monkeypatch.setenv("DIGEST_DATABASE_URL", url)
    (tmp_path / "digest.toml").write_text("", encoding="utf-8")
    assert main(["--config", str(tmp_path / "digest.toml"), "status"]) == 1
    out = capsys.readouterr()
    assert "cannot open the database" in out.err
    assert "hunter2" not in out.out + out.err


def test_settings_repr_masks_the_database_password() -> None:
    url = "postgresql+psycopg://digest:hunter2@db.example/lettre"
    settings = Settings(path=Path("digest.toml"), database=DatabaseSettings(url=url))
    assert "hunter2" not in repr(settings)
    assert "digest:***@db.example" in repr(settings)


def test_the_store_repr_masks_the_password(postgres_server: str) -> None:
    url = postgres_server.replace("postgres@", "postgres:hunter2@") + "/postgres"
    store = Store(url)  # trust authentication: the password is not even checked
    try:
        assert "hunter2" not in repr(store) and "***" in repr(store)
    finally:
        store.close()


# -- articles, sources, summaries ---------------------------------------------------------------


def test_articles_are_written_updated_and_found_by_their_keys(store: Store) -> None:
    first = store_article(store, article())
    second = store_article(store, article(guid="g2", url="https://example.org/b", fingerprint=""))
    with store.begin() as conn:
        articles.update(conn, first, articles.row_values(article(title="Titre corrigé"), NOW))
        found = articles.matching(
            conn, "Feed", {"guid": ["g2"], "url": ["https://example.org/a"], "fingerprint": []}
        )
        assert [r["id"] for r in found] == [first, second]  # oldest first
        # A GUID is only an identity within its own feed.
        other = {"guid": ["g1"], "url": [], "fingerprint": []}
        assert articles.matching(conn, "Elsewhere", other) == []
        row = articles.row(conn, first)
        assert row is not None and row["title"] == "Titre corrigé"
        assert articles.row(conn, 10_000) is None
        stories = list(articles.recent_stories(conn, NOW - DAY))
    assert {s[0] for s in stories} == {first, second}
    assert articles.known_keys(
        store, "Feed", ["https://example.org/b", "https://example.org/new"], ["g1", "g9"]
    ) == {"https://example.org/b", "g1"}
    window = articles.between(store, NOW - DAY, NOW + DAY)
    assert [a.id for a in window] == [first, second]
    assert window[0].title == "Titre corrigé" and window[0].published == NOW
    assert articles.between(store, NOW + DAY, NOW + 2 * DAY) == []


def test_a_source_fetch_state_is_created_then_updated(store: Store) -> None:
    articles.record_fetch(store, "Feed", "https://e.org/feed", etag='"v1"', last_fetch_at=NOW)
    articles.record_fetch(
        store, "Feed", "https://e.org/moved", last_error="HTTP 503", consecutive_failures=2
    )
    (state,) = articles.source_states(store)
    assert state["url"] == "https://e.org/moved"
    assert state["etag"] == '"v1"' and state["last_fetch_at"] == NOW
    assert state["last_error"] == "HTTP 503" and state["consecutive_failures"] == 2


def test_the_summary_cache_keeps_the_latest_value(store: Store) -> None:
    assert articles.cached_summary(store, "k") is None
    articles.cache_summary(store, "k", {"summary": "Un.", "lessons": ["é"]})
    articles.cache_summary(store, "k", {"summary": "Deux.", "lessons": []})
    assert articles.cached_summary(store, "k") == {"summary": "Deux.", "lessons": []}


# -- issues ---------------------------------------------------------------------------------------


def test_issue_round_trip_and_sent_issue_is_frozen(store: Store) -> None:
    item = IssueItem(
        None,
        1,
        "Feed",
        "Titre",
        "https://e.org/a",
        "Résumé.",
        (Lesson("Leçon une.", "Une citation de l'article.", 10, 37), Lesson("Deux.")),
    )
    saved = issues.save(store, Issue("2026-W48", "Semaine", "Intro", (item,)))
    assert saved.id is not None and saved.items[0].lessons == item.lessons  # evidence kept
    assert issues.get(store, "2026-W48") == saved
    assert issues.get(store, "2026-W47") is None
    assert issues.sent_issues(store) == []
    assert issues.set_status(store, "2026-W48", "sending", expect=("draft",))
    assert not issues.set_status(store, "2026-W48", "sending", expect=("draft",))
    with pytest.raises(StoreError, match="cannot be changed"):
        issues.save(store, saved)
    issues.save(store, Issue("2026-W49", "Suivante", "", ()))
    latest = issues.latest(store)
    assert latest is not None and latest.period == "2026-W49"
    assert issues.sent_issues(store) == [("2026-W48", "Semaine")]


def test_delivery_counts_and_the_next_retry(store: Store) -> None:
    issue = issues.save(store, Issue("2026-W48", "Semaine", "", ()))
    add_subscribers(store, "a@exemple.fr", "b@exemple.fr", "c@exemple.fr")
    later, sooner = NOW + dt.timedelta(hours=2), NOW + dt.timedelta(hours=1)
    with store.begin() as conn:
        ids = conn.execute(sa.select(schema.subscribers.c.id)).scalars().all()
        for sid, email, status, when in (
            (ids[0], "a", "sent", None),
            (ids[1], "b", "failed_temp", later),
            (ids[2], "c", "failed_temp", sooner),
        ):
            conn.execute(
                sa.insert(schema.deliveries).values(
                    issue_id=issue.id,
                    subscriber_id=sid,
                    email=email,
                    status=status,
                    next_attempt_at=when,
                    updated_at=NOW,
                )
            )
    assert issues.delivery_counts(store, "2026-W48") == {"sent": 1, "failed_temp": 2}
    assert issues.delivery_counts(store, "2026-W47") == {}
    assert issues.next_retry_at(store, "2026-W48") == sooner
    assert issues.next_retry_at(store, "2026-W47") is None


# -- subscribers -----------------------------------------------------------------------------------


def test_subscribers_are_found_whatever_the_case(store: Store) -> None:
    add_subscribers(store, "Ana@Exemple.fr", "Élodie@exemple.fr")
    with store.connect() as conn:
        ana = subscriber_rows.find(conn, "ana@exemple.fr", str.casefold)
        elodie = subscriber_rows.find(conn, "élodie@exemple.fr", str.casefold)
        nobody = subscriber_rows.find(conn, "nobody@exemple.fr", str.casefold)
    assert ana is not None and ana.email == "Ana@Exemple.fr" and ana.tags == ("a", "b")
    assert elodie is not None and elodie.email == "Élodie@exemple.fr"
    assert nobody is None


def test_unsubscribe_happens_once_and_the_token_finds_its_subscriber(store: Store) -> None:
    add_subscribers(store, "a@exemple.fr", "b@exemple.fr")
    first = subscriber_rows.first_active(store)
    assert first is not None
    ana, token = first
    assert len(token) >= 22  # 128 random bits
    assert subscriber_rows.by_token(store, token) == ana
    assert subscriber_rows.by_token(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ana.id is not None
    with store.begin() as conn:
        assert subscriber_rows.unsubscribe(conn, ana.id) is True
        assert subscriber_rows.unsubscribe(conn, ana.id) is False
    assert [s.email for s in subscriber_rows.listed(store, "unsubscribed")] == ["a@exemple.fr"]
    assert [s.email for s in subscriber_rows.listed(store, "active")] == ["b@exemple.fr"]
    assert len(subscriber_rows.listed(store)) == 2
    after = subscriber_rows.first_active(store)
    assert after is not None and after[0].email == "b@exemple.fr"
    with store.connect() as conn:
        left = conn.execute(
            sa.select(schema.subscribers.c.unsubscribed_at).where(schema.subscribers.c.id == ana.id)
        ).scalar()
    assert left is not None


def test_an_update_to_unsubscribed_keeps_the_first_date_of_leaving(store: Store) -> None:
    add_subscribers(store, "a@exemple.fr")
    with store.begin() as conn:
        (known,) = subscriber_rows.known(conn)
        change = {"id": known.id, "name": "Ana", "language": "en", "tags": "", "status": ""}
        subscriber_rows.update_many(conn, [dict(change, status="unsubscribed")])
    with store.connect() as conn:
        table = schema.subscribers
        first = conn.execute(sa.select(table.c.unsubscribed_at)).scalar()
    with store.begin() as conn:
        subscriber_rows.update_many(conn, [dict(change, name="Ana B.", status="unsubscribed")])
        (known,) = subscriber_rows.known(conn)
        again = conn.execute(sa.select(table.c.unsubscribed_at)).scalar()
    assert first is not None and again == first
    assert (known.name, known.language, known.status) == ("Ana B.", "en", "unsubscribed")


def test_erasing_keeps_only_the_hash_once(store: Store) -> None:
    add_subscribers(store, "a@exemple.fr")
    key = subscriber_rows.suppression_key(store)
    assert subscriber_rows.suppression_key(store) == key and len(key) == 32
    with store.begin() as conn:
        (known,) = subscriber_rows.known(conn)
        subscriber_rows.erase(conn, known.id, "h1")
        subscriber_rows.erase(conn, None, "h1")  # asked twice: still one entry
        subscriber_rows.erase(conn, None, "h2")  # never subscribed: remembered anyway
        assert subscriber_rows.suppressed(conn) == {"h1", "h2"}
    assert subscriber_rows.listed(store) == []


# -- locks and runs ----------------------------------------------------------------------------


def test_lock_is_exclusive_and_expires(open_store: Callable[[], Store]) -> None:
    one, two = open_store(), open_store()
    with (
        locks.hold(one, "send:2026-W48") as owner,
        pytest.raises(LockedError, match="already running"),
        locks.hold(two, "send:2026-W48"),
    ):
        pass
    assert locks.holder(one, "send:2026-W48") is None
    with locks.hold(two, "send:2026-W48") as owner:
        assert locks.holder(one, "send:2026-W48") == owner
        locks.release(one, "send:2026-W48", "someone else")  # not theirs: no effect
        assert locks.holder(one, "send:2026-W48") == owner
    # a crashed holder's lease runs out by itself
    assert locks.acquire(one, "run", "crashed", dt.timedelta(seconds=-1))
    assert locks.holder(two, "run") is None
    assert locks.acquire(two, "run", "next", dt.timedelta(minutes=1))
    assert not locks.renew(one, "run", "crashed", dt.timedelta(minutes=1))
    assert locks.renew(two, "run", "next", dt.timedelta(minutes=1))


def test_a_held_lock_is_renewed_past_its_lease(open_store: Callable[[], Store]) -> None:
    holder, other = open_store(), open_store()
    with locks.hold(holder, "run", ttl=dt.timedelta(seconds=0.3)):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # well past the first lease
            assert not locks.acquire(other, "run", "other", dt.timedelta(seconds=1))
            time.sleep(0.1)
    assert locks.acquire(other, "run", "other", dt.timedelta(seconds=1))


def test_a_lock_of_a_dead_process_on_this_machine_is_freed(store: Store) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    ttl = dt.timedelta(minutes=5)
    assert locks.acquire(store, "a", f"{host}:{gone.stdout.strip()}:dead", ttl)
    assert locks.release_if_gone(store, "a") is True
    assert locks.holder(store, "a") is None
    # Alive (ourselves), or on another machine: left to the lease.
    assert locks.acquire(store, "b", f"{host}:{os.getpid()}:mine", ttl)
    assert locks.release_if_gone(store, "b") is False
    assert locks.acquire(store, "c", "elsewhere:1:x", ttl)
    assert locks.release_if_gone(store, "c") is False
    # Our own pid but not one of our live owners: a previous life of this process.
    assert locks.release_if_gone(store, "b", live_owners={f"{host}:{os.getpid()}:other"})
    assert locks.holder(store, "b") is None


def test_runs_are_recorded_and_found(store: Store) -> None:
    assert runs.last(store) is None and runs.first_started(store, "2026-W48") is None
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    row = runs.start(store, "r1", "2026-W48", "schedule")
    assert not runs.finished_since(store, "2026-W48", before)  # still running
    runs.finish(store, row, "sent", "all sent")
    last = runs.last(store)
    assert last is not None
    assert (last["run_id"], last["outcome"], last["detail"]) == ("r1", "sent", "all sent")
    assert runs.finished_since(store, "2026-W48", before)
    assert not runs.finished_since(store, "2026-W48", dt.datetime.now(dt.UTC) + DAY)
    assert not runs.finished_since(store, "2026-W49", before)
    first = runs.first_started(store, "2026-W48")
    assert first is not None and first.tzinfo is not None and first >= before


def test_no_job_store_means_no_next_run(store: Store, tmp_path: Path) -> None:
    assert stored_next_run(store, "sqlite://", "jobs", "weekly") is None
    assert stored_next_run(store, f"sqlite:///{tmp_path / 'none.db'}", "jobs", "weekly") is None
    assert stored_next_run(store, store.url, "jobs", "weekly") is None  # no table yet


def test_rate_limits_are_shared_by_handles_and_reopen_after_their_window(
    open_store: Callable[[], Store],
) -> None:
    one, two = open_store(), open_store()  # two processes, as far as the database can tell
    allowed = [ratelimits.allow(s, "signup", "a@example.org", 3, 3600) for s in (one, two) * 3]
    assert allowed == [True, True, True, False, False, False]
    assert ratelimits.allow(one, "other-kind", "a@example.org", 3, 3600)  # kinds count apart
    # An hour later the window is over and counting starts again.
    with one.begin() as conn:
        conn.execute(
            sa.update(schema.rate_limits).values(
                window_start=schema.utcnow() - dt.timedelta(hours=1, seconds=1)
            )
        )
    assert ratelimits.allow(two, "signup", "a@example.org", 3, 3600)
    assert [ratelimits.allow(one, "signup", "a@example.org", 3, 3600) for _ in range(3)] == [
        True,
        True,
        False,
    ]
