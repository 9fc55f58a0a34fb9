"""The database: SQLAlchemy Core tables, schema migrations, and the queries stages share.

SQLite in a file by default (WAL, so the preview can read while a send writes);
any SQLAlchemy URL works, PostgreSQL included: queries here use only portable
constructs. The schema carries a version in ``meta``; ``MIGRATIONS`` lists the
steps from each version to the next, so opening an older database upgrades it
in place and never drops data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from .errors import LockedError, StoreError
from .models import Article, Issue, IssueItem, Subscriber, decode_lessons, encode_lessons

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Store",
    "article_values",
    "articles",
    "deliveries",
    "issue_items",
    "issues",
    "locks",
    "metadata",
    "runs",
    "sources",
    "subscribers",
    "summary_cache",
    "suppressions",
    "utcnow",
]

metadata = sa.MetaData()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones; storing naive UTC and re-attaching UTC on the way
    out keeps comparisons right on SQLite and PostgreSQL alike.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_fetch_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_status", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    sa.Column("retry_after", UTCDateTime),
    sa.Column("new_articles", sa.Integer, nullable=False, default=0),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("guid", sa.Text, nullable=False, default=""),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.Text, nullable=False, default=""),
    sa.Column("language", sa.String(16), nullable=False, default=""),
    sa.Column("image_url", sa.Text, nullable=False, default=""),
    sa.Column("image_alt", sa.Text, nullable=False, default=""),
    sa.Column("fingerprint", sa.String(64), nullable=False, default=""),
    sa.Column("published_at", UTCDateTime, nullable=False),
    sa.Column("collected_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_articles_published", "published_at"),
    sa.Index("ix_articles_url", "url"),
    sa.Index("ix_articles_guid", "guid"),
    sa.Index("ix_articles_fingerprint", "fingerprint"),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("period", sa.String(16), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("intro", sa.Text, nullable=False, default=""),
    sa.Column("language", sa.String(16), nullable=False, default="fr"),
    sa.Column("status", sa.String(16), nullable=False, default="draft"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("approved_at", UTCDateTime),
    sa.Column("sending_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
)

issue_items = sa.Table(
    "issue_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("article_id", sa.ForeignKey("articles.id", ondelete="SET NULL")),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("lessons", sa.Text, nullable=False),  # a JSON list of strings
    sa.Column("published_at", UTCDateTime),
    sa.Column("image_url", sa.Text, nullable=False, default=""),
    sa.Column("image_alt", sa.Text, nullable=False, default=""),
    sa.Column("section", sa.Text, nullable=False, default=""),
    sa.Column("backend", sa.String(64), nullable=False, default=""),
    sa.Column("grounded", sa.Boolean, nullable=False, default=True),
    sa.Column("edited", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("issue_id", "article_id", name="uq_issue_items_article"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("language", sa.String(16), nullable=False, default="fr"),
    sa.Column("status", sa.String(16), nullable=False, default="active"),
    sa.Column("tags", sa.Text, nullable=False, default=""),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("unsubscribed_at", UTCDateTime),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("subscriber_id", sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_recipient"),
    sa.Index("ix_deliveries_status", "issue_id", "status"),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

summary_cache = sa.Table(
    "summary_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False, default="manual"),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("outcome", sa.String(32)),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn)


# MIGRATIONS[n] upgrades a database at version n to n + 1. Append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def lock_owner() -> str:
    """Who holds a lock: enough to find the process on its machine."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Store:
    """A handle on the database; cheap to create, one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(
                f"cannot use database URL {url!r}: {exc}",
                hint="set [database] url or DIGEST_DATABASE_URL to a SQLAlchemy URL",
            ) from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    # -- schema ----------------------------------------------------------------

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("meta"):
                return 0
            value = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar()
            return int(value or 0)

    def migrate(self) -> None:
        """Bring the schema up to ``SCHEMA_VERSION``, one step per transaction."""
        try:
            version = self.schema_version()
        except OperationalError as exc:
            raise StoreError(f"cannot open the database {self.url}: {exc.orig}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database is at schema version {version}, newer than this digest "
                f"({SCHEMA_VERSION})",
                hint="upgrade digest",
            )
        while version < SCHEMA_VERSION:
            with self.engine.begin() as conn:
                MIGRATIONS[version](conn)
                version += 1
                conn.execute(sa.delete(meta).where(meta.c.key == "schema_version"))
                conn.execute(sa.insert(meta).values(key="schema_version", value=str(version)))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- locks -----------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: dt.timedelta) -> bool:
        """Take lock ``name`` unless someone else holds an unexpired lease on it.

        A lease that expires lets a crashed holder's lock go without anyone
        cleaning up; holders renew it with ``renew_lock`` while they work.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(locks)
                .where(locks.c.name == name)
                .where(sa.or_(locks.c.expires_at < now, locks.c.owner == owner))
                .values(owner=owner, expires_at=now + ttl)
            ).rowcount
            if taken:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(locks).values(name=name, owner=owner, expires_at=now + ttl)
                    )
            except IntegrityError:
                return False
            return True

    def renew_lock(self, name: str, owner: str, ttl: dt.timedelta) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    sa.update(locks)
                    .where(locks.c.name == name, locks.c.owner == owner)
                    .values(expires_at=utcnow() + ttl)
                ).rowcount
            )

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(locks).where(locks.c.name == name, locks.c.owner == owner))

    def lock_holder(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(locks.c.owner).where(locks.c.name == name, locks.c.expires_at >= utcnow())
            ).first()
            return None if row is None else str(row.owner)

    @contextmanager
    def lock(self, name: str, ttl: dt.timedelta = dt.timedelta(minutes=2)) -> Iterator[str]:
        """Hold lock ``name`` for the block, or raise ``LockedError`` at once.

        The lease is short and renewed in the background while the block runs, so
        a long send keeps its lock and a killed process loses it within ``ttl``.
        """
        owner = lock_owner()
        if not self.acquire_lock(name, owner, ttl):
            holder = self.lock_holder(name) or "another process"
            raise LockedError(
                f"{name} is already running ({holder})",
                hint="wait for it to finish; a crashed holder's lock expires by itself",
            )
        done = threading.Event()

        def renew() -> None:
            while not done.wait(ttl.total_seconds() / 3):
                self.renew_lock(name, owner, ttl)

        renewer = threading.Thread(target=renew, name=f"lock:{name}", daemon=True)
        renewer.start()
        try:
            yield owner
        finally:
            done.set()
            renewer.join()
            self.release_lock(name, owner)

    # -- sources and articles --------------------------------------------------

    def source_state(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sources).where(sources.c.name == name)).mappings().first()
            return None if row is None else dict(row)

    def source_states(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(sources).order_by(sources.c.name)).mappings().all()
            return [dict(r) for r in rows]

    def record_fetch(self, name: str, url: str, **values: Any) -> None:
        """Update a source's fetch state (``etag``, ``last_error``…), creating its row."""
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(sources).where(sources.c.name == name).values(url=url, **values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(sources).values(name=name, url=url, **values))

    def save_article(self, article: Article, conn: Connection | None = None) -> tuple[int, bool]:
        """Store ``article`` unless already known; return its id and whether it was new.

        Known means the same GUID from the same source, else the same URL, else the
        same content fingerprint: the same story collected twice is kept once, and an
        updated entry updates the stored one.
        """
        if conn is None:
            with self.engine.begin() as new_conn:
                return self.save_article(article, new_conn)
        existing = None
        if article.guid:
            existing = conn.execute(
                sa.select(articles.c.id).where(
                    articles.c.guid == article.guid, articles.c.source == article.source
                )
            ).first()
        if existing is None:
            existing = conn.execute(
                sa.select(articles.c.id).where(articles.c.url == article.url)
            ).first()
        if existing is None and article.fingerprint:
            existing = conn.execute(
                sa.select(articles.c.id).where(articles.c.fingerprint == article.fingerprint)
            ).first()
        now = utcnow()
        values = article_values(article, now)
        if existing is not None:
            article_id = int(existing.id)
            del values["source"]  # the first source to bring a story keeps it
            conn.execute(sa.update(articles).where(articles.c.id == article_id).values(**values))
            return article_id, False
        result = conn.execute(sa.insert(articles).values(collected_at=now, **values))
        return _new_id(result), True

    def articles_between(self, start: dt.datetime, end: dt.datetime) -> list[Article]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(articles)
                .where(articles.c.published_at >= start, articles.c.published_at < end)
                .order_by(articles.c.published_at.desc(), articles.c.id)
            ).mappings()
            return [_article(r) for r in rows]

    def article(self, article_id: int) -> Article | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(articles).where(articles.c.id == article_id))
                .mappings()
                .first()
            )
            return None if row is None else _article(row)

    # -- issues ------------------------------------------------------------------

    def issue(self, period: str) -> Issue | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(issues).where(issues.c.period == period)).mappings().first()
            )
            if row is None:
                return None
            items = conn.execute(
                sa.select(issue_items)
                .where(issue_items.c.issue_id == row["id"])
                .order_by(issue_items.c.position)
            ).mappings()
            return Issue(
                id=row["id"],
                period=row["period"],
                title=row["title"],
                intro=row["intro"],
                language=row["language"],
                status=row["status"],
                items=tuple(_issue_item(i) for i in items),
            )

    def latest_issue(self) -> Issue | None:
        with self.engine.connect() as conn:
            period = conn.execute(
                sa.select(issues.c.period).order_by(issues.c.period.desc()).limit(1)
            ).scalar()
        return None if period is None else self.issue(period)

    def save_issue(self, issue: Issue) -> Issue:
        """Create or replace the issue for ``issue.period`` with its items.

        Refuses to touch an issue that has started sending: what went out is history.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(issues.c.id, issues.c.status).where(issues.c.period == issue.period)
            ).first()
            fields = {
                "title": issue.title,
                "intro": issue.intro,
                "language": issue.language,
                "status": issue.status,
            }
            if row is None:
                issue_id = _new_id(
                    conn.execute(
                        sa.insert(issues).values(period=issue.period, created_at=now, **fields)
                    )
                )
            else:
                issue_id = int(row.id)
                if row.status in ("sending", "sent"):
                    raise StoreError(f"issue {issue.period} is {row.status}; it cannot be changed")
                conn.execute(sa.update(issues).where(issues.c.id == issue_id).values(**fields))
                conn.execute(sa.delete(issue_items).where(issue_items.c.issue_id == issue_id))
            if issue.items:
                conn.execute(
                    sa.insert(issue_items),
                    [_issue_item_values(issue_id, item) for item in issue.items],
                )
        saved = self.issue(issue.period)
        assert saved is not None
        return saved

    def set_issue_status(self, period: str, status: str, *, expect: Sequence[str] = ()) -> bool:
        """Move an issue to ``status``; with ``expect``, only from one of those statuses.

        The conditional update is what makes "send this period once" safe between
        processes: only one of them sees its update succeed.
        """
        stamp = {"approved": "approved_at", "sending": "sending_at", "sent": "sent_at"}
        values: dict[str, Any] = {"status": status}
        if status in stamp:
            values[stamp[status]] = utcnow()
        query = sa.update(issues).where(issues.c.period == period)
        if expect:
            query = query.where(issues.c.status.in_(list(expect)))
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    # -- subscribers ---------------------------------------------------------------

    def subscribers(self, status: str | None = None) -> list[Subscriber]:
        query = sa.select(subscribers).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self.engine.connect() as conn:
            return [_subscriber(r) for r in conn.execute(query).mappings()]

    # -- summaries cache -------------------------------------------------------------

    def cached_summary(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(summary_cache.c.value).where(summary_cache.c.key == key)
            ).scalar()
            return None if value is None else dict(json.loads(value))

    def cache_summary(self, key: str, value: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(summary_cache).where(summary_cache.c.key == key))
            conn.execute(
                sa.insert(summary_cache).values(
                    key=key, value=json.dumps(value, ensure_ascii=False), created_at=utcnow()
                )
            )

    # -- runs --------------------------------------------------------------------------

    def start_run(self, run_id: str, period: str, trigger: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.insert(runs).values(
                    run_id=run_id, period=period, trigger=trigger, started_at=utcnow(), detail=""
                )
            )
            return _new_id(result)

    def finish_run(self, row_id: int, outcome: str, detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == row_id)
                .values(finished_at=utcnow(), outcome=outcome, detail=detail)
            )

    def last_run(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(1)).mappings().first()
            )
            return None if row is None else dict(row)

    def delivery_counts(self, period: str | None = None) -> dict[str, int]:
        query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        if period:
            query = query.join(issues, issues.c.id == deliveries.c.issue_id).where(
                issues.c.period == period
            )
        with self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query)}


def article_values(article: Article, now: dt.datetime) -> dict[str, Any]:
    """The ``articles`` row for ``article`` (without ``collected_at``), stamped ``now``."""
    return {
        "source": article.source,
        "guid": article.guid,
        "url": article.url,
        "title": article.title,
        "text": article.text,
        "html": article.html,
        "author": article.author,
        "language": article.language,
        "image_url": article.image_url,
        "image_alt": article.image_alt,
        "fingerprint": article.fingerprint,
        "published_at": article.published,
        "updated_at": now,
    }


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _article(row: Any) -> Article:
    return Article(
        id=row["id"],
        source=row["source"],
        guid=row["guid"],
        url=row["url"],
        title=row["title"],
        text=row["text"],
        html=row["html"],
        author=row["author"],
        language=row["language"],
        image_url=row["image_url"],
        image_alt=row["image_alt"],
        fingerprint=row["fingerprint"],
        published=row["published_at"],
    )


def _issue_item(row: Any) -> IssueItem:
    return IssueItem(
        article_id=row["article_id"],
        position=row["position"],
        source=row["source"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        lessons=decode_lessons(row["lessons"]),
        published=row["published_at"],
        image_url=row["image_url"],
        image_alt=row["image_alt"],
        section=row["section"],
        backend=row["backend"],
        grounded=row["grounded"],
        edited=row["edited"],
    )


def _issue_item_values(issue_id: int, item: IssueItem) -> dict[str, Any]:
    return {
        "issue_id": issue_id,
        "article_id": item.article_id,
        "position": item.position,
        "source": item.source,
        "title": item.title,
        "url": item.url,
        "summary": item.summary,
        "lessons": encode_lessons(item.lessons),
        "published_at": item.published,
        "image_url": item.image_url,
        "image_alt": item.image_alt,
        "section": item.section,
        "backend": item.backend,
        "grounded": item.grounded,
        "edited": item.edited,
    }


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        language=row["language"],
        status=row["status"],
        tags=tuple(t for t in row["tags"].split(",") if t),
    )
