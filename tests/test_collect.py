"""The collector against real feeds on a real loopback HTTP server, into a real SQLite file.

Each hostile or broken case checks what a user cares about: the failing source
gets a clear one-line error, nothing of it is half-stored, and the other
sources in the same run are collected as usual.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collect_helpers import (
    answer_feed,
    feed_route,
    item,
    make_settings,
    rss,
    source,
    stored,
    unique_text,
)
from conftest import Handler, HTTPServer, Route

from digest.collect import CollectReport, SourceReport, collect, health_table
from digest.db import Store
from digest.db.articles import source_states

LONG = (
    "Ce paragraphe raconte une nouvelle sur le design et la création numérique, avec des "
    "faits précis et des chiffres que les lecteurs de la veille attendent chaque semaine. "
) * 6


def conditional(body: bytes, etag: str) -> Handler:
    """A feed that answers 304 to a request carrying its ETag, like a real server."""

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.headers.get("If-None-Match") == etag:
            request.send_response(304)
            request.send_header("ETag", etag)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("ETag", etag)
        request.send_header("Last-Modified", "Mon, 23 Nov 2026 08:00:00 GMT")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    yield db
    db.close()


def source_state(db: Store, name: str) -> dict[str, Any] | None:
    return next((row for row in source_states(db) if row["name"] == name), None)


def by_name(report: CollectReport) -> dict[str, SourceReport]:
    return {line.name: line for line in report.sources}


# -- formats and sources -------------------------------------------------------------

RSS1 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
  xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://rdf.example/"><title>RDF</title><link>https://rdf.example/</link>
<description>d</description></channel>
<item rdf:about="https://rdf.example/one"><title>RSS one dot zero entry</title>
<link>https://rdf.example/one</link><description>An RSS 1.0 entry about design.</description>
<dc:date>2026-11-20T10:00:00+01:00</dc:date></item>
</rdf:RDF>"""

RSS091 = b"""<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title>
<link>https://old.example/</link><description>d</description><language>en</language>
<item><title>An RSS 0.91 entry</title><link>https://old.example/a</link>
<description>Old but still readable.</description></item></channel></rss>"""

ATOM = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title><id>urn:x</id>
<updated>2026-11-21T10:00:00Z</updated>
<entry><id>urn:atom:1</id><title>Une entrée Atom en français</title>
<link rel="alternate" href="https://atom.example/entree"/>
<published>2026-11-21T10:00:00+01:00</published><author><name>Alice</name></author>
<content type="html">&lt;p&gt;{LONG}&lt;/p&gt;</content></entry></feed>"""


def test_reads_rss_atom_and_local_files(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/rss2"] = feed_route(rss(item("RSS two entry", "https://a.example/1")))
    http_server.routes["/rss1"] = Route(200, RSS1, {"Content-Type": "application/rdf+xml"})
    http_server.routes["/rss091"] = Route(200, RSS091, {"Content-Type": "text/xml"})
    local = tmp_path / "feed.atom"
    local.write_text(ATOM, encoding="utf-8")
    settings = make_settings(
        tmp_path,
        source("rss2", http_server.url("/rss2")),
        source("rss1", http_server.url("/rss1")),
        source("rss091", http_server.url("/rss091")),
        source("atom-path", str(local)),
    )
    seen: list[SourceReport] = []
    report = collect(settings, store, progress=seen.append)

    assert [line.status for line in report.sources] == ["ok"] * 4, report
    assert sorted(line.name for line in seen) == ["atom-path", "rss091", "rss1", "rss2"]
    assert report.new == 4 and not report.failed
    articles = {a.source: a for a in stored(store)}
    atom = articles["atom-path"]
    assert atom.title == "Une entrée Atom en français"
    assert atom.url == "https://atom.example/entree"
    assert atom.author == "Alice"
    assert atom.language == "fr"
    assert atom.published == dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    assert atom.published.tzinfo is not None and atom.published.utcoffset() == dt.timedelta(0)
    assert articles["rss1"].published == dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    assert articles["rss091"].title == "An RSS 0.91 entry"
    assert len(articles["rss2"].text) > 300
    assert articles["rss2"].fingerprint and articles["atom-path"].fingerprint
    assert articles["rss091"].fingerprint == ""  # four words identify no story


def test_file_url_source_and_missing_file(tmp_path: Path, store: Store) -> None:
    local = tmp_path / "feed.xml"
    local.write_bytes(rss(item("From a file URL", "https://f.example/1")))
    settings = make_settings(
        tmp_path,
        source("file-url", local.as_uri()),
        source("missing", str(tmp_path / "nope.xml")),
    )
    report = by_name(collect(settings, store))
    assert report["file-url"].status == "ok" and report["file-url"].new == 1
    assert report["missing"].status == "error"
    assert "No such file" in report["missing"].error


def test_second_run_sends_conditional_requests_and_stores_nothing(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    body = rss(item("Stable story", "https://s.example/1", guid="s1"))
    http_server.routes["/feed"] = conditional(body, '"v1"')
    local = tmp_path / "local.xml"
    local.write_bytes(rss(item("Local story", "https://l.example/1")))
    settings = make_settings(
        tmp_path, source("http", http_server.url("/feed")), source("file", str(local))
    )

    first = collect(settings, store)
    assert first.new == 2
    second = collect(settings, store)

    assert [line.status for line in second.sources] == ["not_modified", "not_modified"]
    assert second.new == 0 and second.updated == 0
    assert len(stored(store)) == 2
    (_, _, first_headers), (_, _, second_headers) = http_server.requests
    assert "If-None-Match" not in first_headers
    assert second_headers["If-None-Match"] == '"v1"'
    assert second_headers["If-Modified-Since"] == "Mon, 23 Nov 2026 08:00:00 GMT"
    assert second_headers["User-Agent"].startswith("digest/")
    state = source_state(store, "http")
    assert state is not None and state["etag"] == '"v1"' and state["last_status"] == "not_modified"
    assert state["last_success_at"] is not None and state["consecutive_failures"] == 0


def test_unchanged_feed_without_validators_updates_nothing(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/feed"] = feed_route(
        rss(item("Undated story", "https://u.example/1", guid="u1", date=None))
    )
    settings = make_settings(tmp_path, source("plain", http_server.url("/feed")))
    first = collect(settings, store)
    published = stored(store)[0].published
    second = collect(settings, store)
    assert first.new == 1
    assert (second.new, second.updated) == (0, 0)
    assert stored(store)[0].published == published  # an undated entry keeps its first date


def test_updated_entry_updates_the_stored_article(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/feed"] = feed_route(
        rss(item("First title", "https://e.example/1", guid="g"))
    )
    settings = make_settings(tmp_path, source("s", http_server.url("/feed")))
    collect(settings, store)
    http_server.routes["/feed"] = feed_route(
        rss(item("Corrected title", "https://e.example/1", guid="g"))
    )
    report = collect(settings, store)
    assert (report.new, report.updated) == (0, 1)
    assert [a.title for a in stored(store)] == ["Corrected title"]


def test_web_page_with_feed_link_is_discovered(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    page = (
        b'<!doctype html><html><head><link rel="alternate" type="application/rss+xml" '
        b'href="/the-feed.xml"></head><body>Blog</body></html>'
    )
    http_server.routes["/blog"] = Route(200, page, {"Content-Type": "text/html"})
    http_server.routes["/the-feed.xml"] = conditional(
        rss(item("Discovered", "https://d.example/1")), '"d1"'
    )
    settings = make_settings(tmp_path, source("blog", http_server.url("/blog")))
    assert collect(settings, store).new == 1
    report = collect(settings, store)
    assert report.sources[0].status == "not_modified"
    feed_requests = [h for _, path, h in http_server.requests if path == "/the-feed.xml"]
    assert feed_requests[-1].get("If-None-Match") == '"d1"'


# -- broken input -------------------------------------------------------------------------


def test_html_instead_of_a_feed_and_empty_feed(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/html"] = Route(
        200, b"<html><body><p>Hello</p></body></html>", {"Content-Type": "text/html"}
    )
    http_server.routes["/empty"] = feed_route(rss())
    http_server.routes["/good"] = feed_route(rss(item("Good", "https://g.example/1")))
    settings = make_settings(
        tmp_path,
        source("html", http_server.url("/html")),
        source("empty", http_server.url("/empty")),
        source("good", http_server.url("/good")),
    )
    report = by_name(collect(settings, store))
    assert report["html"].status == "error"
    assert report["html"].error == "not a feed: got HTML"
    assert report["empty"].status == "ok" and report["empty"].new == 0
    assert report["good"].new == 1


def test_malformed_xml_keeps_usable_entries(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    broken = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title>'
        b"<item><title>Usable entry & more</title><link>https://m.example/1</link>"
        b"<description>Text with <b>unclosed tags and a stray &nbsp; entity</description></item>"
        b"<item><title>Second usable</title><link>https://m.example/2</link>"
    )
    http_server.routes["/broken"] = feed_route(broken)
    settings = make_settings(tmp_path, source("broken", http_server.url("/broken")))
    report = collect(settings, store)
    assert report.sources[0].status == "ok"
    titles = {a.title for a in stored(store)}
    assert "Usable entry & more" in titles


@pytest.mark.parametrize(
    ("declaration", "content_type"),
    [
        ('<?xml version="1.0" encoding="utf-8"?>', "application/rss+xml"),
        ('<?xml version="1.0"?>', "application/rss+xml"),
        ("", "text/xml"),
    ],
    ids=["wrong-declaration", "no-encoding", "no-declaration"],
)
def test_wrong_or_missing_encoding(
    tmp_path: Path,
    http_server: HTTPServer,
    store: Store,
    declaration: str,
    content_type: str,
) -> None:
    body = (
        f'{declaration}<rss version="2.0"><channel><title>Latin</title>'
        "<item><title>Café à Noël : une fête élégante</title><link>https://l.example/1</link>"
        "<description>Un été très réussi.</description></item></channel></rss>"
    ).encode("latin-1")
    http_server.routes["/latin"] = Route(200, body, {"Content-Type": content_type})
    settings = make_settings(tmp_path, source("latin", http_server.url("/latin")))
    assert collect(settings, store).sources[0].status == "ok"
    (article,) = stored(store)
    assert article.title == "Café à Noël : une fête élégante"
    assert article.text == "Un été très réussi."


@pytest.mark.parametrize("status", [404, 410, 500])
def test_http_errors_are_reported_and_counted(
    tmp_path: Path, http_server: HTTPServer, store: Store, status: int
) -> None:
    http_server.routes["/bad"] = Route(status, b"nope", {"Content-Type": "text/plain"})
    http_server.routes["/good"] = feed_route(rss(item("Good", "https://g.example/1")))
    settings = make_settings(
        tmp_path,
        source("bad", http_server.url("/bad")),
        source("good", http_server.url("/good")),
        failing_after=2,
    )
    first = by_name(collect(settings, store))
    assert first["bad"].error == f"HTTP {status}"
    assert (first["bad"].consecutive_failures, first["bad"].flagged) == (1, False)
    assert first["good"].status == "ok" and first["good"].new == 1
    second = by_name(collect(settings, store))
    assert (second["bad"].consecutive_failures, second["bad"].flagged) == (2, True)
    state = source_state(store, "bad")
    assert state is not None and state["last_error"] == f"HTTP {status}"
    assert state["consecutive_failures"] == 2 and state["last_success_at"] is None

    http_server.routes["/bad"] = feed_route(rss(item("Back", "https://b.example/1")))
    third = by_name(collect(settings, store))
    assert third["bad"].status == "ok"
    assert (third["bad"].consecutive_failures, third["bad"].flagged) == (0, False)
    assert third["bad"].error == ""


def test_429_retry_after_skips_the_source_until_then(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/busy"] = Route(429, b"slow down", {"Retry-After": "3600"})
    settings = make_settings(tmp_path, source("busy", http_server.url("/busy")))
    first = collect(settings, store).sources[0]
    assert first.status == "error" and first.error.startswith("HTTP 429")
    state = source_state(store, "busy")
    assert state is not None and state["retry_after"] is not None
    assert state["retry_after"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)

    second = collect(settings, store).sources[0]
    assert second.status == "skipped" and "next try after" in second.error
    assert len(http_server.requests) == 1  # nothing was asked the second time
    assert second not in collect(settings, store).failed


def test_connection_refused(tmp_path: Path, http_server: HTTPServer, store: Store) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    http_server.routes["/good"] = feed_route(rss(item("Good", "https://g.example/1")))
    settings = make_settings(
        tmp_path,
        source("down", f"http://127.0.0.1:{closed_port}/feed"),
        source("good", http_server.url("/good")),
    )
    report = by_name(collect(settings, store))
    assert report["down"].error == "cannot connect: connection refused", report
    assert report["good"].new == 1


def test_server_that_never_answers_and_one_that_trickles(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    release = threading.Event()

    def silent(request: http.server.BaseHTTPRequestHandler) -> None:
        release.wait(10)

    def trickle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Length", "100000")
        request.end_headers()
        try:
            # Always faster than the read timeout, never done before the total deadline.
            while not release.is_set():
                request.wfile.write(b" ")
                request.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    http_server.routes["/silent"] = silent
    http_server.routes["/trickle"] = trickle
    http_server.routes["/good"] = feed_route(rss(item("Good", "https://g.example/1")))
    settings = make_settings(
        tmp_path,
        source("silent", http_server.url("/silent")),
        source("trickle", http_server.url("/trickle")),
        source("good", http_server.url("/good")),
        timeout=1.0,
    )
    try:
        report = by_name(collect(settings, store))
    finally:
        release.set()
    assert report["silent"].error == "timed out after 1s"
    assert report["trickle"].error == "timed out after 1s"
    assert report["good"].new == 1


def test_gzip_bomb_and_huge_bodies_stop_at_the_cap(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    bomb = gzip.compress(b"\0" * 30_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    http_server.routes["/bomb"] = Route(
        200, bomb, {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
    )
    written: list[int] = []

    def endless(request: http.server.BaseHTTPRequestHandler) -> None:
        # 50 MB, no Content-Length: the client must stop reading on its own.
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Connection", "close")
        request.end_headers()
        chunk = b"<rss>" + b" " * 65531
        try:
            for _ in range(50_000_000 // len(chunk)):
                request.wfile.write(chunk)
                written.append(len(chunk))
        except OSError:
            pass

    def declared(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Length", str(50_000_000))
        request.end_headers()

    http_server.routes["/endless"] = endless
    http_server.routes["/declared"] = declared
    http_server.routes["/gzip-ok"] = Route(
        200,
        gzip.compress(rss(item("Compressed fine", "https://z.example/1"))),
        {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
    )
    http_server.routes["/corrupt"] = Route(
        200, b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}
    )
    settings = make_settings(
        tmp_path,
        source("corrupt", http_server.url("/corrupt")),
        source("bomb", http_server.url("/bomb")),
        source("endless", http_server.url("/endless")),
        source("declared", http_server.url("/declared")),
        source("gzip-ok", http_server.url("/gzip-ok")),
        max_bytes=1_000_000,
    )
    report = by_name(collect(settings, store))
    for name in ("bomb", "endless", "declared"):
        assert report[name].error == "response larger than 1000000 bytes ([collect] max_bytes)"
    assert report["gzip-ok"].new == 1
    assert report["corrupt"].error == "corrupt compressed response"
    assert sum(written) < 50_000_000  # we hung up long before the end


def test_redirects_are_followed_and_bounded(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/moved"] = Route(301, b"", {"Location": "/here"})
    http_server.routes["/here"] = feed_route(rss(item("Moved", "https://r.example/1")))
    http_server.routes["/loop-a"] = Route(302, b"", {"Location": "/loop-b"})
    http_server.routes["/loop-b"] = Route(302, b"", {"Location": "/loop-a"})
    for hop in range(10):
        http_server.routes[f"/chain{hop}"] = Route(302, b"", {"Location": f"/chain{hop + 1}"})
    http_server.routes["/to-file"] = Route(302, b"", {"Location": "file:///etc/passwd"})
    settings = make_settings(
        tmp_path,
        source("moved", http_server.url("/moved")),
        source("loop", http_server.url("/loop-a")),
        source("chain", http_server.url("/chain0")),
        source("to-file", http_server.url("/to-file")),
        max_redirects=3,
    )
    report = by_name(collect(settings, store))
    assert report["moved"].new == 1
    assert report["loop"].error.startswith("redirect loop at")
    assert report["chain"].error == "too many redirects (more than 3)"
    assert report["to-file"].error.startswith("refused: file URL")
    assert not any(path == "/chain5" for _, path, _ in http_server.requests)


@pytest.fixture
def second_host() -> Iterator[HTTPServer]:
    """A server on 127.0.0.2, standing in for a public host the config allows."""
    routes: dict[str, object] = {}
    requests: list[tuple[str, str, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            requests.append((self.command, self.path, dict(self.headers.items())))
            route = routes.get(self.path)
            assert isinstance(route, Route)
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield HTTPServer(server, routes, requests)  # type: ignore[arg-type]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "spelling", ["2130706433", "0x7f.1", "017700000001", "localhost", "[::ffff:127.0.0.1]"]
)
def test_redirect_to_a_private_address_is_refused_whatever_the_spelling(
    tmp_path: Path, http_server: HTTPServer, second_host: HTTPServer, store: Store, spelling: str
) -> None:
    port = http_server.server.server_address[1]
    http_server.routes["/internal"] = feed_route(rss(item("Internal secret", "https://i.example/")))
    second_host.routes["/feed"] = Route(
        302, b"", {"Location": f"http://{spelling}:{port}/internal"}
    )
    settings = make_settings(
        tmp_path, source("public", second_host.url("/feed")), allow_private=("127.0.0.2",)
    )
    report = collect(settings, store).sources[0]
    assert report.status == "error"
    assert report.error.startswith("refused: ")
    assert "loopback address" in report.error
    assert not http_server.requests  # the internal server never saw a request
    assert stored(store) == []


def test_the_same_redirect_works_when_the_address_is_allowed(
    tmp_path: Path, http_server: HTTPServer, second_host: HTTPServer, store: Store
) -> None:
    # The control for the test above: the guard, not the setup, makes the difference.
    port = http_server.server.server_address[1]
    http_server.routes["/internal"] = feed_route(rss(item("Internal", "https://i.example/")))
    second_host.routes["/feed"] = Route(
        302, b"", {"Location": f"http://2130706433:{port}/internal"}
    )
    settings = make_settings(
        tmp_path, source("public", second_host.url("/feed")), allow_private=("127.0.0.0/8",)
    )
    assert collect(settings, store).sources[0].new == 1


def test_private_source_urls_are_refused_by_default(tmp_path: Path, store: Store) -> None:
    settings = make_settings(
        tmp_path,
        source("metadata", "http://169.254.169.254/latest/meta-data/"),
        source("lan", "http://10.0.0.1/feed"),
        source("ftp", "ftp://example.org/feed"),
        allow_private=(),
        connect_timeout=1.0,
    )
    report = by_name(collect(settings, store))
    assert report["metadata"].error.startswith("refused: address is link-local address")
    assert report["lan"].error.startswith("refused: address is private address 10.0.0.1")
    assert report["ftp"].error == "unsupported URL scheme 'ftp' (http, https or a file path)"


# -- hostile content ------------------------------------------------------------------------


def test_xxe_and_billion_laughs_are_not_expanded(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    xxe = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        '<rss version="2.0"><channel><title>x</title><item><title>XXE &xxe; entry</title>'
        "<link>https://x.example/1</link><description>before &xxe; after</description>"
        "</item></channel></rss>"
    ).encode()
    levels = "".join(f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">' for n in range(1, 10))
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol0 "lol">\n'
        f"{levels}\n]>\n"
        '<rss version="2.0"><channel><title>l</title><item><title>Laughs</title>'
        "<link>https://x.example/2</link><description>&lol9;</description></item>"
        "</channel></rss>"
    ).encode()
    http_server.routes["/xxe"] = feed_route(xxe)
    http_server.routes["/laughs"] = feed_route(laughs)
    settings = make_settings(
        tmp_path,
        source("xxe", http_server.url("/xxe")),
        source("laughs", http_server.url("/laughs")),
    )
    report = by_name(collect(settings, store))
    assert report["xxe"].status == "ok" and report["laughs"].status == "ok"
    articles = stored(store)
    assert {a.url for a in articles} == {"https://x.example/1", "https://x.example/2"}
    for article in articles:
        assert "TOP-SECRET" not in article.title + article.text + article.html
        assert len(article.text) < 1000 and "lollol" not in article.text


def test_entry_html_links_and_titles_are_cleaned(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    evil_html = (
        '<p onclick="steal()">Hello <script>alert(1)</script>'
        '<img src="/pic.png" onerror="alert(2)" alt="A picture">'
        '<a href="javascript:alert(3)">bad link</a> <a href="/relative">relative</a>'
        '<a href="file:///etc/passwd">file</a></p><style>body{}</style>'
    )
    http_server.routes["/evil"] = feed_route(
        rss(
            item(
                "Line one\r\nBcc: victim@example.org\x07",
                "https://h.example/post?x=1#c",
                description=evil_html,
            ),
            item("Points to a file", "file:///etc/passwd"),
            item("Points to javascript", "javascript:alert(1)"),
            item("Tracked", "https://h.example/t?utm_source=rss&utm_medium=x&id=7&fbclid=abc#top"),
        )
    )
    settings = make_settings(tmp_path, source("evil", http_server.url("/evil")))
    assert collect(settings, store).sources[0].status == "ok"
    articles = {a.title: a for a in stored(store)}
    assert set(articles) == {
        "Line one Bcc: victim@example.org",
        "Tracked",
        "Points to a file",
        "Points to javascript",
    }
    # An entry whose link is not a web link keeps its content, linked to the feed's site.
    assert articles["Points to a file"].url == "https://news.example/"
    assert articles["Points to javascript"].url == "https://news.example/"
    clean = articles["Line one Bcc: victim@example.org"]
    assert "\r" not in clean.title and "\n" not in clean.title
    html = clean.html
    for bad in ("<script", "onerror", "onclick", "javascript:", "file:", "alert(", "<style"):
        assert bad not in html
    # Relative links resolve against the feed's own URL, as feed readers do.
    assert f'src="{http_server.url("/pic.png")}"' in html
    assert f'href="{http_server.url("/relative")}"' in html
    assert clean.url == "https://h.example/post?x=1#c"  # a fragment can name the entry
    assert clean.image_url == http_server.url("/pic.png") and clean.image_alt == "A picture"
    assert "alert" not in clean.text and clean.text.startswith("Hello")
    assert articles["Tracked"].url == "https://h.example/t?id=7#top"


def test_dates_in_the_future_are_clamped_and_missing_dates_are_collection_time(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/dates"] = feed_route(
        rss(
            item("From the future", "https://t.example/1", date="Fri, 01 Jan 2100 00:00:00 +0000"),
            item("Undated", "https://t.example/2", date=None),
            item("Garbage date", "https://t.example/3", date="not a date at all"),
        )
    )
    settings = make_settings(tmp_path, source("dates", http_server.url("/dates")))
    before = dt.datetime.now(dt.UTC)
    collect(settings, store)
    after = dt.datetime.now(dt.UTC)
    articles = stored(store)
    assert len(articles) == 3
    for article in articles:
        assert before - dt.timedelta(seconds=1) <= article.published <= after


# -- full text --------------------------------------------------------------------------------


ARTICLE_PAGE = """<!doctype html><html lang="fr"><head><title>Page</title>
<link rel="canonical" href="{canonical}">
<meta property="og:image" content="https://img.example/lead.jpg">
<meta name="author" content="Camille Martin"></head>
<body><nav>Accueil | Contact | Menu</nav><article><h1>Le vrai titre</h1>
{paragraphs}</article><footer>Mentions légales</footer></body></html>"""


def test_teasers_get_their_full_text_once(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    paragraphs = "".join(
        f"<p>Paragraphe {n} : l'école ouvre un atelier de création numérique pour les "
        "étudiants, avec des intervenants du secteur et des projets réels à rendre.</p>"
        for n in range(12)
    )
    canonical = http_server.url("/articles/atelier")
    http_server.routes["/articles/atelier"] = Route(
        200,
        ARTICLE_PAGE.format(canonical=canonical, paragraphs=paragraphs).encode(),
        {"Content-Type": "text/html; charset=utf-8"},
    )
    http_server.routes["/feed"] = feed_route(
        rss(
            item("Un atelier", canonical + "?utm_source=rss", guid="a1", description="Court."),
            item("Page absente", http_server.url("/gone"), guid="a2", description="Teaser seul."),
        )
    )
    settings = make_settings(tmp_path, source("school", http_server.url("/feed"), full_text="auto"))
    first = collect(settings, store)
    assert first.new == 2
    articles = {a.guid: a for a in stored(store)}
    full = articles["a1"]
    assert "Paragraphe 11" in full.text and len(full.text) > 600
    assert "Mentions légales" not in full.text
    assert full.url == canonical
    assert full.title == "Un atelier"
    assert full.author == "Camille Martin"
    assert full.image_url == "https://img.example/lead.jpg"
    assert articles["a2"].text == "Teaser seul."  # extraction failed: the teaser stays

    second = collect(settings, store)
    assert (second.new, second.updated) == (0, 0)
    page_requests = [p for _, p, _ in http_server.requests if p.startswith("/articles/")]
    assert len(page_requests) == 1
    assert "Paragraphe 11" in stored(store)[0].text + stored(store)[1].text


def test_article_pages_are_fetched_a_few_at_a_time_per_host(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow_page(request: http.server.BaseHTTPRequestHandler) -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        request.send_response(404)
        request.send_header("Content-Length", "0")
        request.end_headers()

    teasers = []
    for n in range(10):
        http_server.routes[f"/page{n}"] = slow_page
        teasers.append(item(f"Teaser {n}", http_server.url(f"/page{n}"), description="Court."))
    http_server.routes["/feed"] = feed_route(rss(*teasers))
    settings = make_settings(tmp_path, source("t", http_server.url("/feed"), full_text="auto"))
    assert collect(settings, store).new == 10
    assert state["peak"] <= 4


# -- deduplication across sources ------------------------------------------------------------


def test_the_same_story_from_two_feeds_is_kept_once_for_the_heavier_source(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/light"] = feed_route(
        rss(
            item(
                "Tessella 2.0 : le logiciel libre de retopologie accélère",
                "https://light.example/t",
            )
        )
    )
    http_server.routes["/heavy"] = feed_route(
        rss(
            item(
                "Tessella 2.0: le logiciel libre de retopologie accélère !",
                "https://heavy.example/tessella",
                description="Une autre rédaction, un autre texte, la même nouvelle.",
            )
        )
    )
    light = source("light", http_server.url("/light"), weight=1.0)
    heavy = source("heavy", http_server.url("/heavy"), weight=3.0)

    collect(make_settings(tmp_path, light), store)
    assert [a.source for a in stored(store)] == ["light"]
    report = by_name(collect(make_settings(tmp_path, light, heavy), store))
    (article,) = stored(store)
    assert article.source == "heavy" and article.url == "https://heavy.example/tessella"
    assert report["heavy"].updated == 1

    # Next run, the light source's copy stays out.
    again = collect(make_settings(tmp_path, light, heavy), store)
    assert again.new == 0 and len(stored(store)) == 1 and stored(store)[0].source == "heavy"


def test_near_identical_texts_under_different_titles_are_one_story(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    text = " ".join(
        f"Phrase {n} de la dépêche sur les métiers du jeu vidéo à Lille." for n in range(20)
    )
    http_server.routes["/a"] = feed_route(
        rss(item("Titre de A", "https://a.example/1", description=text))
    )
    http_server.routes["/b"] = feed_route(
        rss(item("Autre titre chez B", "https://b.example/1", description=text + " Source : AFP."))
    )
    settings = make_settings(
        tmp_path,
        source("a", http_server.url("/a"), weight=2.0),
        source("b", http_server.url("/b"), weight=1.0),
    )
    report = collect(settings, store)
    assert report.new == 1
    assert [a.source for a in stored(store)] == ["a"]


def test_different_stories_with_similar_short_titles_are_both_kept(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/a"] = feed_route(rss(item("Édito", "https://a.example/edito")))
    http_server.routes["/b"] = feed_route(
        rss(item("Edito", "https://b.example/edito", description="Un tout autre sujet, " * 20))
    )
    settings = make_settings(
        tmp_path, source("a", http_server.url("/a")), source("b", http_server.url("/b"))
    )
    assert collect(settings, store).new == 2


# -- settings per source ----------------------------------------------------------------------


def test_include_and_exclude_keywords_and_language_hint(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    http_server.routes["/feed"] = feed_route(
        rss(
            item("Nouvelle formation en Motion Design", "https://k.example/1"),
            item("Motion design et publicité", "https://k.example/2", description="Sponsorisé."),
            item("Rien à voir", "https://k.example/3"),
            item("Short", "https://k.example/4", description="Ok."),
        )
    )
    settings = make_settings(
        tmp_path,
        source(
            "kw",
            http_server.url("/feed"),
            include=("motion design", "short"),
            exclude=("publicite",),
            language="de",
        ),
    )
    collect(settings, store)
    articles = {a.url: a for a in stored(store)}
    assert set(articles) == {"https://k.example/1", "https://k.example/4"}
    assert articles["https://k.example/1"].language == "fr"  # detected
    assert articles["https://k.example/4"].language == "de"  # too short: the hint


# -- the run as a whole ------------------------------------------------------------------------


def test_requests_in_flight_stay_within_the_bound_over_kept_alive_connections(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    ports: set[int] = set()

    def slow(request: http.server.BaseHTTPRequestHandler) -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            ports.add(request.client_address[1])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        answer_feed(request, rss(item(f"Story {request.path}", f"https://c.example{request.path}")))

    sources = []
    for n in range(12):
        http_server.routes[f"/f{n}"] = slow
        sources.append(source(f"s{n}", http_server.url(f"/f{n}")))
    report = collect(make_settings(tmp_path, *sources, concurrency=3), store)
    assert report.new == 12
    assert state["peak"] <= 3
    assert len(ports) <= 3  # 12 requests over at most 3 connections: keep-alive


def test_one_source_is_stored_whole_or_not_at_all(
    tmp_path: Path, http_server: HTTPServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.collect import dedupe

    original = dedupe.Deduper._match

    def failing(
        self: dedupe.Deduper,
        conn: object,
        known: object,
        candidate: dedupe.Candidate,
        *rest: object,
    ) -> object:
        if candidate.article.title == "Boom":
            raise RuntimeError("disk on fire")
        return original(self, conn, known, candidate, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(dedupe.Deduper, "_match", failing)
    http_server.routes["/half"] = feed_route(
        rss(item("Fine first", "https://h.example/1"), item("Boom", "https://h.example/2")),
        ETag='"e1"',
    )
    http_server.routes["/other"] = feed_route(rss(item("Other", "https://o.example/1")))
    settings = make_settings(
        tmp_path,
        source("half", http_server.url("/half")),
        source("other", http_server.url("/other")),
    )
    report = by_name(collect(settings, store))
    assert report["half"].status == "error"
    assert report["half"].error == "internal error: RuntimeError: disk on fire"
    assert [a.source for a in stored(store)] == ["other"]
    state = source_state(store, "half")
    assert state is not None and state["etag"] is None  # no validator hides the lost entries


def test_collect_from_inside_a_running_event_loop(tmp_path: Path, store: Store) -> None:
    local = tmp_path / "feed.xml"
    local.write_bytes(rss(item("Inside a loop", "https://loop.example/1")))
    settings = make_settings(tmp_path, source("local", str(local)))

    async def caller() -> CollectReport:
        return collect(settings, store)

    assert asyncio.run(caller()).new == 1


def test_health_table_lists_every_source(tmp_path: Path, store: Store) -> None:
    from rich.console import Console

    settings = make_settings(tmp_path, source("missing [x]", str(tmp_path / "none.xml")))
    report = collect(settings, store)
    console = Console(width=200, record=True)
    console.print(health_table(report))
    text = console.export_text()
    assert "missing [x]" in text and "error" in text and "No such file" in text


# -- TLS through the guard ----------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An HTTPS feed server on 127.0.0.1 whose certificate names only ``localhost``."""
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    hosts: list[str] = []
    body = rss(item("Over TLS", "https://tls.example/1"))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield server.server_address[1], cert, hosts
    server.shutdown()
    server.server_close()


def test_tls_keeps_the_host_name_while_connecting_to_the_checked_address(
    tmp_path: Path, store: Store, tls_server: tuple[int, Path, list[str]]
) -> None:
    import ssl

    import httpx

    from digest.collect.guard import GuardedTransport, parse_allow_list

    port, cert, hosts = tls_server
    allowed = ("127.0.0.1", "::1")
    transport = GuardedTransport(
        parse_allow_list(allowed), httpx.Limits(), ssl.create_default_context(cafile=str(cert))
    )
    settings = make_settings(
        tmp_path,
        source("by-name", f"https://localhost:{port}/feed"),
        # The control: the certificate does not name the address, so TLS checks fail there.
        source("by-address", f"https://127.0.0.1:{port}/feed"),
        allow_private=allowed,
    )
    report = by_name(collect(settings, store, transport=transport))
    assert report["by-name"].status == "ok" and report["by-name"].new == 1
    assert hosts[0] == f"localhost:{port}"
    assert report["by-address"].status == "error"
    assert "CERTIFICATE_VERIFY_FAILED" in report["by-address"].error


# -- installing --------------------------------------------------------------------------


def test_the_html_cleaner_trafilatura_needs_is_declared() -> None:
    import tomllib

    from conftest import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        dependency.split(";")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
        for dependency in project["dependencies"]
    }
    assert {"trafilatura", "lxml_html_clean"} <= {n.replace("-", "_") for n in names}


def test_a_missing_html_cleaner_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "digest.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n'
        f'[[sources]]\nname = "local"\nurl = "{tmp_path / "feed.xml"}"\n'
    )
    (tmp_path / "feed.xml").write_bytes(rss(item("One", "https://h.example/1")))
    # What an install without lxml_html_clean looks like: the import fails.
    program = (
        "import sys; sys.modules['lxml_html_clean'] = None; sys.modules['lxml.html.clean'] = None\n"
        "from digest.cli import main\n"
        f"sys.exit(main(['--config', {str(config)!r}, 'collect']))\n"
    )
    import os

    wide = dict(os.environ, COLUMNS="400")  # rich wraps at the terminal's width
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, env=wide
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "full-text extraction is unavailable" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- merges, explained ---------------------------------------------------------------------


def test_every_merge_is_recorded_with_its_reason_and_shown_in_status(
    tmp_path: Path,
    http_server: HTTPServer,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from digest.cli import main
    from digest.db.articles import merges as recorded_merges

    shared = unique_text("the shared story")
    http_server.routes["/wire"] = feed_route(
        rss(
            item("Wire copy", "https://wire.example/a", guid="w1", description=shared),
            item("Linked twice", "https://both.example/story", guid="w2"),
        )
    )
    http_server.routes["/paper"] = feed_route(
        rss(
            item("Paper copy", "https://paper.example/a", guid="p1", description=shared),
            item("Linked twice too", "https://both.example/story", guid="p2"),
        )
    )
    settings = make_settings(
        tmp_path,
        source("wire", http_server.url("/wire")),
        source("paper", http_server.url("/paper"), weight=2.0),
    )
    collect(settings, store)
    report = by_name(collect(settings, store))  # merges are the same on every run
    assert [a.source for a in stored(store)] == ["paper", "paper"]
    assert report["wire"].status == "ok" and report["wire"].new == 0
    assert report["wire"].error == (
        "2 entries merged into stories kept for other sources (same link: 1, same text: 1)"
    )
    merges = [(m["source"], m["guid"], m["reason"]) for m in recorded_merges(store)]
    # Each absorbed entry is recorded once, whichever source came first.
    assert sorted(merges) == [("wire", "w1", "same text"), ("wire", "w2", "same link")]

    config = tmp_path / "digest.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "digest.db"}"\n'
        f'[[sources]]\nname = "wire"\nurl = "{http_server.url("/wire")}"\n'
    )
    monkeypatch.setenv("COLUMNS", "400")
    capsys.readouterr()
    assert main(["--config", str(config), "status"]) == 0
    assert "2 entries merged into stories kept for other sources" in capsys.readouterr().out


def test_a_version_1_database_gains_the_merge_record(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from digest.db.schema import SCHEMA_VERSION, meta

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # what version 1 looked like
        conn.execute(sa.text("DROP TABLE article_merges"))
        conn.execute(sa.update(meta).values(value="1"))
    engine.dispose()
    upgraded = Store(url)
    assert upgraded.schema_version() == SCHEMA_VERSION
    assert sa.inspect(upgraded.engine).has_table("article_merges")
    upgraded.close()


# -- politeness -------------------------------------------------------------------------------


def test_one_host_gets_at_most_per_host_requests_at_once_while_others_go_on(
    tmp_path: Path, http_server: HTTPServer, store: Store
) -> None:
    # One server under two host names: each name is a host to the collector.
    port = http_server.server.server_address[1]
    hosts = {"one": f"127.0.0.1:{port}", "other": f"2130706433:{port}"}
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    most_overall = 0

    def slow_feed(request: http.server.BaseHTTPRequestHandler) -> None:
        nonlocal most_overall
        host = request.headers["Host"]
        with lock:
            in_flight[host] = in_flight.get(host, 0) + 1
            most[host] = max(most.get(host, 0), in_flight[host])
            most_overall = max(most_overall, sum(in_flight.values()))
        time.sleep(0.2)
        with lock:
            in_flight[host] -= 1
        answer_feed(request, rss(item(f"Story {request.path}", f"https://s.example{request.path}")))

    sources = []
    for name, host in hosts.items():
        for n in range(6):
            http_server.routes[f"/{name}/{n}"] = slow_feed
            sources.append(source(f"{name} {n}", f"http://{host}/{name}/{n}"))
    settings = make_settings(
        tmp_path, *sources, concurrency=10, per_host=2, allow_private=("127.0.0.0/8",)
    )
    report = collect(settings, store)

    assert report.new == 12 and not report.failed
    assert most == {hosts["one"]: 2, hosts["other"]: 2}
    assert most_overall == 4  # the two hosts were served side by side


# -- many sources: parsing in worker processes --------------------------------------------


def test_a_large_run_parses_in_worker_processes_with_the_same_results(
    tmp_path: Path, http_server: HTTPServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from digest.collect import parsing, prepare

    pools: list[object] = []

    def recording(sources: int) -> object:
        pool = prepare.parser_pool(sources)
        pools.append(pool)
        return pool

    monkeypatch.setattr(parsing, "parser_pool", recording)
    monkeypatch.setattr(prepare.os, "cpu_count", lambda: 4)  # a pool whatever the machine
    sources = []
    for n in range(prepare.PARALLEL_SOURCES):
        http_server.routes[f"/f{n}"] = feed_route(
            rss(
                item(f"Story {n} one", f"https://s{n}.example/1", guid=f"{n}-1"),
                item(f"Story {n} two", f"https://s{n}.example/2", guid=f"{n}-2", date=None),
            )
        )
        sources.append(source(f"feed {n}", http_server.url(f"/f{n}"), language="fr"))
    # A page announcing its feed (the discovered link comes back from the worker) and junk.
    http_server.routes["/page"] = Route(
        200,
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/f0"></head></html>',
        {"Content-Type": "text/html"},
    )
    http_server.routes["/junk"] = Route(200, b"\x00\x01 not a feed", {"Content-Type": "text/plain"})
    sources += [source("page", http_server.url("/page")), source("junk", http_server.url("/junk"))]
    report = by_name(collect(make_settings(tmp_path, *sources), store))

    assert isinstance(pools[0], ProcessPoolExecutor)
    assert report["junk"].status == "error" and report["junk"].error.startswith("parse error")
    assert report["page"].status == "ok"
    assert all(report[f"feed {n}"].new == 2 for n in range(prepare.PARALLEL_SOURCES))
    articles = stored(store)
    assert {a.title for a in articles} >= {"Story 0 one", "Story 7 two"}
    assert all(a.fingerprint and a.language for a in articles)
    again = collect(make_settings(tmp_path, *sources), store)
    assert again.new == 0 and again.updated == 0
