"""The tables, their column types, and the migrations that bring a database up to date.

The schema carries a version in ``meta``; ``MIGRATIONS[n]`` upgrades a database
at version n to n + 1, so opening an older database upgrades it in place and
never drops data. Migrations are append-only: a released step is never edited,
since databases in the field have already run it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UTCDateTime",
    "as_utc",
    "article_merges",
    "articles",
    "consents",
    "bounce_events",
    "deliveries",
    "issue_items",
    "issues",
    "locks",
    "meta",
    "metadata",
    "pacing",
    "rate_limits",
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


def as_utc(value: Any) -> dt.datetime | None:
    """An aggregate's datetime as aware UTC: ``min()`` loses the column type on some backends."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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
    # Why every sender of this issue stopped (many failures in a row), until a send resumes it.
    sa.Column("send_stopped", sa.Text),
    # The other languages' own title and introduction: JSON [{language, title, intro}].
    sa.Column("editions", sa.Text),
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
    sa.Column("lessons", sa.Text, nullable=False),  # JSON: models.encode_lessons
    sa.Column("published_at", UTCDateTime),
    sa.Column("image_url", sa.Text, nullable=False, default=""),
    sa.Column("image_alt", sa.Text, nullable=False, default=""),
    sa.Column("section", sa.Text, nullable=False, default=""),
    sa.Column("backend", sa.String(64), nullable=False, default=""),
    sa.Column("grounded", sa.Boolean, nullable=False, default=True),
    sa.Column("edited", sa.Boolean, nullable=False, default=False),
    # The item's sections, comma-separated (see ``editions``); NULL or "" for everyone.
    sa.Column("tags", sa.Text),
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
    # The claim on a row being sent (``sending``/``awaiting_reply``): which sender holds
    # it, until when (renewed while it works), and on SQLite the boot of the machine
    # that claimed it (see ``deliveries.Ledger``: it tells a dead process from a reboot).
    sa.Column("claim_owner", sa.String(200)),
    sa.Column("claim_expires", UTCDateTime),
    sa.Column("claim_boot", sa.String(64)),
    # Which edition (``editions.Edition.key``) the recipient was queued with; NULL or ""
    # (rows queued before editions existed) is the issue's default edition.
    sa.Column("edition", sa.String(200)),
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

pacing = sa.Table(
    "pacing",
    metadata,
    # A shared pace (``[send] rate`` across every sender): the next free sending slot.
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("next_slot", UTCDateTime, nullable=False),
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


article_merges = sa.Table(
    "article_merges",
    metadata,
    # Why an entry has no row of its own: which article absorbed it, and why
    # ("same link", "near-identical text"…). Also how later runs find the story again.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("article_id", sa.ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("guid", sa.Text, nullable=False, default=""),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False, default=""),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("merged_at", UTCDateTime, nullable=False),
    sa.Index("ix_article_merges_source_url", "source", "url"),
    sa.Index("ix_article_merges_article", "article_id"),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subscriber_id", sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    # The confirmation link's one-time nonce: a replayed link finds it here and changes nothing.
    sa.Column("nonce", sa.String(64), nullable=False, unique=True),
    sa.Column("form", sa.String(32), nullable=False),
    sa.Column("wording", sa.Text, nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime, nullable=False),
)


bounce_events = sa.Table(
    "bounce_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # SHA-256 of the message bytes: a second run never counts the same message twice
    sa.Column("message_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("subscriber_id", sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    sa.Column("status_code", sa.String(16), nullable=False, default=""),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_bounce_events_subscriber", "subscriber_id", "kind"),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    # Signup floods counted across every `digest serve` process: one window per key.
    # The key is a SHA-256 of what is counted (an address, a client), never the value.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_rate_limits_window_start", "window_start"),
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _add_article_merges_v2(conn: Connection) -> None:
    # A database created at version 1 by this code already has the table (v1 creates
    # every table of the metadata): create it only where it is missing.
    article_merges.create(conn, checkfirst=True)


def _add_consents_v3(conn: Connection) -> None:
    # Likewise: a database created by _create_v1 with this code already has it.
    consents.create(conn, checkfirst=True)


def _add_bounce_events_v4(conn: Connection) -> None:
    # checkfirst, for the same reason: a newer database already has it from v1
    bounce_events.create(conn, checkfirst=True)


def _add_columns(conn: Connection, table: sa.Table, names: tuple[str, ...]) -> None:
    """Add ``table``'s columns ``names`` where missing (v1 creates today's tables whole)."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


def _claims_v5(conn: Connection) -> None:
    _add_columns(conn, deliveries, ("claim_owner", "claim_expires", "claim_boot"))
    _add_columns(conn, issues, ("send_stopped",))
    pacing.create(conn, checkfirst=True)


def _add_rate_limits_v6(conn: Connection) -> None:
    rate_limits.create(conn, checkfirst=True)


def _editions_v7(conn: Connection) -> None:
    _add_columns(conn, deliveries, ("edition",))
    _add_columns(conn, issue_items, ("tags",))
    _add_columns(conn, issues, ("editions",))


# MIGRATIONS[n] upgrades a database at version n to n + 1. Append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [
    _create_v1,
    _add_article_merges_v2,
    _add_consents_v3,
    _add_bounce_events_v4,
    _claims_v5,
    _add_rate_limits_v6,
    _editions_v7,
]
SCHEMA_VERSION = len(MIGRATIONS)
