"""Feeds, sources and settings for the collector tests, written the way real feeds are."""

from __future__ import annotations

import datetime as dt
import http.server
import random
from pathlib import Path

from conftest import Route

from digest.config import CollectSettings, DatabaseSettings, Settings, SourceSettings
from digest.db import Store
from digest.db.articles import between
from digest.models import Article

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FAR = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
RSS_TYPE = {"Content-Type": "application/rss+xml; charset=utf-8"}
_VOCABULARY_TEXT = (
    "le la les des une pour dans avec design atelier école studio image son jeu vidéo projet "
    "étudiant création numérique écran couleur lumière forme récit public exposition ville "
    "musée logiciel libre code graphiste illustrateur métier formation semaine mois année"
)
VOCABULARY = _VOCABULARY_TEXT.split()


def unique_text(seed: str, count: int = 90) -> str:
    """A text of its own for each entry: unrelated entries must not look like duplicates."""
    pick = random.Random(seed)
    return " ".join(pick.choice(VOCABULARY) for _ in range(count)) + "."


def item(
    title: str,
    link: str,
    *,
    guid: str = "",
    description: str | None = None,
    date: str | None = "Mon, 23 Nov 2026 08:00:00 +0000",
) -> str:
    if description is None:
        description = unique_text(title + link)
    guid_xml = f"<guid isPermaLink='false'>{guid}</guid>" if guid else ""
    date_xml = f"<pubDate>{date}</pubDate>" if date else ""
    return (
        f"<item><title>{title}</title><link>{link}</link>{guid_xml}{date_xml}"
        f"<description><![CDATA[{description}]]></description></item>"
    )


def rss(*items: str, title: str = "Feed") -> bytes:
    body = "".join(items)
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://news.example/</link>{body}</channel></rss>"
    ).encode()


def feed_route(body: bytes, **headers: str) -> Route:
    return Route(200, body, {**RSS_TYPE, **headers})


def answer_feed(request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer ``request`` with ``body`` as an RSS feed (from a route's handler function)."""
    request.send_response(200)
    request.send_header("Content-Type", "application/rss+xml")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def make_settings(tmp_path: Path, *sources: SourceSettings, **collect_options: object) -> Settings:
    options: dict[str, object] = {"allow_private": ("127.0.0.1",), "timeout": 5.0}
    options.update(collect_options)
    return Settings(
        path=tmp_path / "digest.toml",
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'digest.db'}"),
        sources=sources,
        collect=CollectSettings(**options),  # type: ignore[arg-type]
    )


def source(name: str, url: str, **options: object) -> SourceSettings:
    options.setdefault("full_text", "never")
    return SourceSettings(name=name, url=url, **options)  # type: ignore[arg-type]


def stored(db: Store) -> list[Article]:
    return between(db, EPOCH, FAR)
