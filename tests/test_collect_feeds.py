"""The regression corpus: one folder of ``tests/feeds`` per case, collected for real.

Each folder holds one or more feeds (any file but ``expected.json``, ``*.headers``
and ``pages/``), each served from the loopback HTTP server with the headers in
``<file>.headers`` and collected as a source named after the file's stem; article
pages in ``pages/`` are served as HTML for full text. ``expected.json`` says what
must be stored: exactly these articles (source, title, link), and for some of
them the sentences their text must and must not contain. Every case is
collected twice: the second run of an unchanged feed stores nothing new and
changes nothing, whatever the dates.

``report`` in ``expected.json`` checks the first run's health lines (new articles,
notes), ``report_again`` the second's.

``http://server.invalid`` in any file stands for the loopback server's address.
A new regression is a new folder.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import HTTPServer, Route

from digest.collect import CollectReport, collect
from digest.config import CollectSettings, DatabaseSettings, Settings, SourceSettings
from digest.db import Store
from digest.db.articles import between
from digest.models import Article

CASES = Path(__file__).parent / "feeds"
PLACEHOLDER = b"http://server.invalid"
EPOCH = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
FAR = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _headers(path: Path) -> dict[str, str]:
    headers = {}
    for line in path.read_text().splitlines():
        if line.strip():
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
    return headers


def _feeds(case: Path) -> list[Path]:
    return sorted(
        p
        for p in case.iterdir()
        if p.is_file() and p.name != "expected.json" and p.suffix != ".headers"
    )


def _serve(case: Path, server: HTTPServer) -> dict[str, str]:
    """Routes for the case's feeds and pages; the source URL of each feed, by name."""
    base = server.base_url.encode()
    urls = {}
    for feed in _feeds(case):
        path = f"/{case.name}/{feed.name}"
        body = feed.read_bytes().replace(PLACEHOLDER, base)
        server.routes[path] = Route(200, body, _headers(feed.with_name(feed.name + ".headers")))
        urls[feed.stem] = server.url(path)
    pages = case / "pages"
    if pages.is_dir():
        for page in pages.iterdir():
            server.routes[f"/{case.name}/pages/{page.name}"] = Route(
                200,
                page.read_bytes().replace(PLACEHOLDER, base),
                {"Content-Type": "text/html; charset=utf-8"},
            )
    return urls


def _expected(case: Path, server: HTTPServer) -> dict[str, Any]:
    raw = (case / "expected.json").read_bytes().replace(PLACEHOLDER, server.base_url.encode())
    return json.loads(raw)


def _stored(store: Store) -> list[Article]:
    return between(store, EPOCH, FAR)


def _check_article(article: Article, expected: dict[str, Any]) -> None:
    where = f"{article.source}: {article.title!r}"
    for key in ("guid", "author", "language", "image_url"):
        if key in expected:
            assert getattr(article, key) == expected[key], where
    if "published" in expected:
        assert article.published.isoformat() == expected["published"], where
    if "text" in expected:
        assert article.text == expected["text"], where
    for sentence in expected.get("text_has", []):
        assert sentence in article.text, f"{where}: {sentence!r} missing from {article.text!r}"
    for sentence in expected.get("text_lacks", []):
        assert sentence not in article.text, f"{where}: {sentence!r} in {article.text!r}"
    if "paragraphs" in expected:
        assert len(article.text.split("\n")) == expected["paragraphs"], where
    for fragment in expected.get("html_has", []):
        assert fragment in article.html, f"{where}: {fragment!r} missing from {article.html!r}"
    for fragment in expected.get("html_lacks", []):
        assert fragment not in article.html, where


def _check_report(report: CollectReport, expected: dict[str, Any]) -> None:
    assert all(line.status in ("ok", "not_modified") for line in report.sources), report
    lines = {line.name: line for line in report.sources}
    for name, want in expected.items():
        line = lines[name]
        if "new" in want:
            assert line.new == want["new"], line
        for words in want.get("error_has", []):
            assert words in line.error, line
        if not want.get("error_has"):
            assert line.error == "", line


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_feed_case(case: str, tmp_path: Path, http_server: HTTPServer) -> None:
    folder = CASES / case
    urls = _serve(folder, http_server)
    expected = _expected(folder, http_server)
    options = expected.get("sources", {})
    settings = Settings(
        path=tmp_path / "digest.toml",
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'digest.db'}"),
        sources=tuple(
            SourceSettings(name=name, url=url, **{"full_text": "never", **options.get(name, {})})
            for name, url in urls.items()
        ),
        collect=CollectSettings(allow_private=("127.0.0.1",), timeout=10.0),
    )
    store = Store(settings.database.url)
    try:
        report = collect(settings, store)
        _check_report(report, expected.get("report", {}))
        articles = _stored(store)
        got = sorted((a.source, a.title, a.url) for a in articles)
        want_rows = sorted((a["source"], a["title"], a["url"]) for a in expected["articles"])
        assert got == want_rows
        by_key = {(a.source, a.title, a.url): a for a in articles}
        for want in expected["articles"]:
            _check_article(by_key[(want["source"], want["title"], want["url"])], want)

        again = collect(settings, store)
        assert again.new == 0, again
        _check_report(again, expected.get("report_again", {}))
        assert _stored(store) == articles  # nothing new, nothing changed
    finally:
        store.close()
