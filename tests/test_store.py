from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest import store as store_module
from digest.errors import LockedError, StoreError
from digest.models import Article, Issue, IssueItem, Lesson
from digest.store import SCHEMA_VERSION, Store, meta

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


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


def test_new_database_is_at_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sub' / 'digest.db'}")
    assert store.schema_version() == SCHEMA_VERSION
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reopening_keeps_data_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    Store(url).save_article(article())
    store = Store(url)
    assert len(store.articles_between(NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1))) == 1
    with store.engine.begin() as conn:
        conn.execute(sa.update(meta).values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match="newer than this digest"):
        Store(url)


def test_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="database URL"):
        Store("nosuchdb://x")


def test_same_article_twice_is_stored_once_and_updated(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    first, new = store.save_article(article())
    assert new
    again, new = store.save_article(article(title="Titre corrigé"))
    assert (again, new) == (first, False)
    stored = store.article(first)
    assert stored is not None and stored.title == "Titre corrigé"
    by_url, new = store.save_article(article(guid="other", fingerprint="x"))
    assert (by_url, new) == (first, False)
    by_text, new = store.save_article(
        article(guid="g2", url="https://example.org/b", fingerprint="x")
    )
    assert (by_text, new) == (first, False)


def test_issue_round_trip_and_sent_issue_is_frozen(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    item = IssueItem(
        None,
        1,
        "Feed",
        "Titre",
        "https://e.org/a",
        "Résumé.",
        (Lesson("Leçon une.", "Une citation de l'article.", 10, 37), Lesson("Deux.")),
    )
    saved = store.save_issue(Issue("2026-W48", "Semaine", "Intro", (item,)))
    assert saved.items[0].lessons == item.lessons  # the evidence is kept
    assert store.set_issue_status("2026-W48", "sending", expect=("draft",))
    assert not store.set_issue_status("2026-W48", "sending", expect=("draft",))
    with pytest.raises(StoreError, match="cannot be changed"):
        store.save_issue(saved)


def test_lock_is_exclusive_and_expires(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    one, two = Store(url), Store(url)
    with (
        one.lock("send:2026-W48"),
        pytest.raises(LockedError, match="already running"),
        two.lock("send:2026-W48"),
    ):
        pass
    with two.lock("send:2026-W48"):
        pass
    # a crashed holder's lease runs out by itself
    assert one.acquire_lock("run", "crashed", dt.timedelta(seconds=-1))
    assert two.acquire_lock("run", "next", dt.timedelta(minutes=1))


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    with pytest.raises(sa.exc.StatementError):
        store.save_article(article(published=dt.datetime(2026, 1, 1)))


def test_a_held_lock_is_renewed_past_its_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    holder, other = Store(url), Store(url)
    with holder.lock("run", ttl=dt.timedelta(seconds=0.3)):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # well past the first lease
            assert not other.acquire_lock("run", "other", dt.timedelta(seconds=1))
            time.sleep(0.1)
    assert other.acquire_lock("run", "other", dt.timedelta(seconds=1))


def test_an_upgrade_runs_new_migrations_and_keeps_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    Store(url).save_article(article())

    def add_column(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE articles ADD COLUMN summary_hint TEXT DEFAULT ''"))

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_column])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    upgraded = Store(url)
    assert upgraded.schema_version() == SCHEMA_VERSION + 1
    with upgraded.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT title, summary_hint FROM articles")).all()
    assert [tuple(r) for r in rows] == [("Titre", "")]
