"""Collected articles, the sources' fetch state, and the summary cache.

The collector's deduplication decides *what* to store (``digest.collect.dedupe``);
this module only reads and writes the rows. A source's batch and its fetch
state are written in one transaction (``store.begin()``), so the functions that
take part in it take that connection rather than the store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ..models import Article
from .engine import Connection, Store
from .schema import article_merges, articles, sources, summary_cache, utcnow

__all__ = [
    "between",
    "cache_summary",
    "cached_summary",
    "insert",
    "known_keys",
    "matching",
    "merged_entries",
    "merges",
    "record_fetch",
    "record_merges",
    "recent_stories",
    "row",
    "row_values",
    "save_fetch_state",
    "source_states",
    "stories_between",
    "update",
]

_CHUNK = 500
"""Values bound in one IN (...) list: well under every database's limit on parameters."""

# Built once: the lists are bound at execution (an empty one matches nothing), so
# each batch costs one cached statement rather than a new one with every value coerced.
_EXISTING = (
    sa.select(articles)
    .where(
        sa.or_(
            # A GUID identifies an entry only within its own feed.
            sa.and_(
                articles.c.source == sa.bindparam("source"),
                articles.c.guid.in_(sa.bindparam("guid", expanding=True)),
            ),
            articles.c.url.in_(sa.bindparam("url", expanding=True)),
            articles.c.fingerprint.in_(sa.bindparam("fingerprint", expanding=True)),
            articles.c.id.in_(sa.bindparam("id", expanding=True)),
        )
    )
    .order_by(articles.c.id)
)
# A source's entries that earlier runs merged into other articles.
_MERGED = sa.select(
    article_merges.c.article_id,
    article_merges.c.guid,
    article_merges.c.url,
    article_merges.c.reason,
).where(
    article_merges.c.source == sa.bindparam("source"),
    sa.or_(
        article_merges.c.url.in_(sa.bindparam("url", expanding=True)),
        sa.and_(
            article_merges.c.guid != "",
            article_merges.c.guid.in_(sa.bindparam("guid", expanding=True)),
        ),
    ),
)
_STORIES_BETWEEN = sa.select(
    articles.c.id,
    articles.c.source,
    articles.c.title,
    articles.c.text,
    articles.c.published_at,
).where(
    articles.c.published_at >= sa.bindparam("start"),
    articles.c.published_at < sa.bindparam("end"),
)


# -- articles ------------------------------------------------------------------------------


def row_values(article: Article, now: dt.datetime) -> dict[str, Any]:
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


def insert(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (from ``row_values`` plus ``collected_at``); return their ids in order."""
    if not rows:
        return []
    query = sa.insert(articles).returning(articles.c.id, sort_by_parameter_order=True)
    return [int(i) for i in conn.execute(query, rows).scalars().all()]


# Built once, like the sources' statements below: the parameters' keys say what is set.
_UPDATE_ARTICLE = sa.update(articles).where(articles.c.id == sa.bindparam("article_id"))


def update(conn: Connection, article_id: int, values: dict[str, Any]) -> None:
    conn.execute(_UPDATE_ARTICLE, {**values, "article_id": article_id})


def row(conn: Connection, article_id: int) -> dict[str, Any] | None:
    """One stored article as a dict of its columns, or None."""
    found = conn.execute(sa.select(articles).where(articles.c.id == article_id)).mappings().first()
    return None if found is None else dict(found)


def missing(store: Store, article_ids: list[int]) -> set[int]:
    """Those of ``article_ids`` that no stored article has (a draft naming a deleted one)."""
    wanted = sorted(set(article_ids))
    found: set[int] = set()
    with store.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            query = sa.select(articles.c.id).where(articles.c.id.in_(chunk))
            found.update(conn.execute(query).scalars())
    return set(wanted) - found


def matching(conn: Connection, source: str, wanted: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Stored rows sharing a GUID (of ``source``), URL or fingerprint with ``wanted``, or an id.

    ``wanted`` maps ``guid``, ``url``, ``fingerprint`` and ``id`` to a few hundred
    values at most each (every value is a bound parameter). One statement, built
    once, for the three kinds: building and running a query costs far more in
    SQLAlchemy than in the database. Rows come
    in id order, oldest first.
    """
    params: dict[str, Any] = {"guid": [], "url": [], "fingerprint": [], "id": [], **wanted}
    return [dict(r) for r in conn.execute(_EXISTING, dict(params, source=source)).mappings()]


def recent_stories(
    conn: Connection, since: dt.datetime
) -> Iterator[tuple[int, str, str, str, dt.datetime]]:
    """``(id, source, title, text, published)`` of the stories published since ``since``."""
    rows = conn.execute(
        sa.select(
            articles.c.id,
            articles.c.source,
            articles.c.title,
            articles.c.text,
            articles.c.published_at,
        ).where(articles.c.published_at >= since)
    )
    for r in rows:
        yield int(r.id), str(r.source), str(r.title), str(r.text), r.published_at


def stories_between(
    conn: Connection, start: dt.datetime, end: dt.datetime
) -> Iterator[tuple[int, str, str, str, dt.datetime]]:
    """``(id, source, title, text, published)`` of the stories published in ``[start, end)``."""
    for r in conn.execute(_STORIES_BETWEEN, {"start": start, "end": end}):
        yield int(r.id), str(r.source), str(r.title), str(r.text), r.published_at


# -- merges --------------------------------------------------------------------------------


def merged_entries(
    conn: Connection, source: str, urls: list[str], guids: list[str]
) -> list[dict[str, Any]]:
    """``source``'s entries (by URL or GUID) that earlier runs merged into other articles.

    Dicts of ``article_id``, ``guid``, ``url`` and ``reason``; a few hundred values
    at most in each list.
    """
    query = conn.execute(_MERGED, {"source": source, "url": urls, "guid": guids})
    return [dict(r) for r in query.mappings()]


def sources_with_merges(conn: Connection) -> set[str]:
    """The sources with at least one entry recorded as merged (``merged_entries`` finds some)."""
    return set(conn.execute(sa.select(article_merges.c.source).distinct()).scalars())


def record_merges(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record absorbed entries: ``article_id``, ``source``, ``guid``, ``url``, ``title``,
    ``reason``, ``merged_at``."""
    if rows:
        conn.execute(sa.insert(article_merges), rows)


def merges(store: Store) -> list[dict[str, Any]]:
    """Every recorded merge, oldest first: which entry, absorbed into which article, and why."""
    with store.connect() as conn:
        query = sa.select(article_merges).order_by(article_merges.c.id)
        return [dict(r) for r in conn.execute(query).mappings()]


def known_keys(store: Store, source: str, urls: list[str], guids: list[str]) -> set[str]:
    """Which of these URLs (any source) and GUIDs (of ``source``) are already stored or merged."""
    found: set[str] = set()
    with store.connect() as conn:
        for chunk in _chunks(urls):
            found |= {
                r.url
                for r in conn.execute(sa.select(articles.c.url).where(articles.c.url.in_(chunk)))
            }
        for chunk in _chunks([g for g in guids if g]):
            found |= {
                r.guid
                for r in conn.execute(
                    sa.select(articles.c.guid).where(
                        articles.c.source == source, articles.c.guid.in_(chunk)
                    )
                )
            }
        for chunk in _chunks(urls):
            found |= {m["url"] for m in merged_entries(conn, source, chunk, [])}
        for chunk in _chunks([g for g in guids if g]):
            found |= {m["guid"] for m in merged_entries(conn, source, [], chunk)}
    return found


def between(store: Store, start: dt.datetime, end: dt.datetime) -> list[Article]:
    """Articles published in ``[start, end)``, newest first."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(articles)
            .where(articles.c.published_at >= start, articles.c.published_at < end)
            .order_by(articles.c.published_at.desc(), articles.c.id)
        ).mappings()
        return [_article(r) for r in rows]


def _chunks(values: list[str], size: int = _CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _article(r: Any) -> Article:
    return Article(
        id=r["id"],
        source=r["source"],
        guid=r["guid"],
        url=r["url"],
        title=r["title"],
        text=r["text"],
        html=r["html"],
        author=r["author"],
        language=r["language"],
        image_url=r["image_url"],
        image_alt=r["image_alt"],
        fingerprint=r["fingerprint"],
        published=r["published_at"],
    )


# -- sources' fetch state --------------------------------------------------------------------


def source_states(store: Store) -> list[dict[str, Any]]:
    """Every source's fetch state (``name``, ``etag``, ``last_error``…), by name."""
    with store.connect() as conn:
        rows = conn.execute(sa.select(sources).order_by(sources.c.name)).mappings().all()
        return [dict(r) for r in rows]


# Built once: the columns to set come from the parameters' keys. A statement built
# per call with ``.values(...)`` spent more CPU in SQLAlchemy (building it and its
# cache key) than the database spent running it, once per source and run.
_UPDATE_SOURCE = sa.update(sources).where(sources.c.name == sa.bindparam("source_name"))
_INSERT_SOURCE = sa.insert(sources)


def save_fetch_state(conn: Connection, name: str, url: str, values: dict[str, Any]) -> None:
    """Update a source's fetch state (``etag``, ``last_error``…), creating its row."""
    updated = conn.execute(_UPDATE_SOURCE, {"source_name": name, **values, "url": url}).rowcount
    if not updated:
        conn.execute(_INSERT_SOURCE, {**values, "name": name, "url": url})


def record_fetch(store: Store, name: str, url: str, **values: Any) -> None:
    """``save_fetch_state`` in a transaction of its own (a failed fetch stores nothing else)."""
    with store.begin() as conn:
        save_fetch_state(conn, name, url, values)


# -- summary cache -------------------------------------------------------------------------------


def cached_summary(store: Store, key: str) -> dict[str, Any] | None:
    with store.connect() as conn:
        value = conn.execute(
            sa.select(summary_cache.c.value).where(summary_cache.c.key == key)
        ).scalar()
        return None if value is None else dict(json.loads(value))


def cache_summary(store: Store, key: str, value: dict[str, Any]) -> None:
    with store.begin() as conn:
        conn.execute(sa.delete(summary_cache).where(summary_cache.c.key == key))
        conn.execute(
            sa.insert(summary_cache).values(
                key=key, value=json.dumps(value, ensure_ascii=False), created_at=utcnow()
            )
        )
