"""Shared fixtures: every test gets its own folder and a clean environment.

Servers are real and on loopback: ``smtp_capture`` is digest's own capture SMTP
server (aiosmtpd); ``http_server`` is a threaded ``http.server`` whose routes a
test sets up front; ``postgres_server`` a throwaway PostgreSQL cluster, and
``db_url`` runs a test once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import http.server
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pg_server
import pytest

from digest.capture import CaptureServer
from digest.db import Store, articles, schema
from digest.models import Article

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DIGEST_* variables or writes outside its folder."""

    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DIGEST_SECRET_KEY", "test-secret-key-not-for-production")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def smtp_capture(tmp_path: Path) -> Iterator[CaptureServer]:
    box = CaptureServer(tmp_path / "mailbox", port=0)
    box.start()
    yield box
    box.stop()


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class HTTPServer:
    """A loopback HTTP server; ``routes`` maps a path to a ``Route`` or a handler function."""

    server: http.server.ThreadingHTTPServer
    routes: dict[str, Route | Handler]
    requests: list[tuple[str, str, dict[str, str]]]

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    routes: dict[str, Route | Handler] = {}
    requests: list[tuple[str, str, dict[str, str]]] = []

    class RequestHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet tests
            pass

        def _serve(self) -> None:
            requests.append((self.command, self.path, dict(self.headers.items())))
            route = routes.get(self.path.split("?")[0])
            if route is None:
                route = Route(404, b"not found")
            if callable(route):
                route(self)
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(route.body)

        do_GET = do_POST = do_HEAD = _serve

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    server.daemon_threads = True
    # A short poll interval: shutdown() waits up to one interval, once per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield HTTPServer(server, routes, requests)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port, for the whole session.

    Needs ``initdb``/``pg_ctl`` on the PATH and the ``psycopg`` driver (``.ci/run``
    installs both); tests using it are skipped without them.
    """
    pytest.importorskip("psycopg")
    if not pg_server.available():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    with pg_server.throwaway_postgres("fsync=off") as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    import sqlalchemy as sa

    name = f"digest_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file, then a PostgreSQL database (skipped without one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'digest.db'}"
    return str(request.getfixturevalue("postgres_url"))


def store_article(store: Store, article: Article) -> int:
    """Store ``article`` as the collector would a new one; return its id."""
    now = article.published
    with store.begin() as conn:
        (article_id,) = articles.insert(
            conn, [dict(articles.row_values(article, now), collected_at=now)]
        )
    return article_id


def token_of(store: Store, email: str) -> str:
    """The unsubscribe token of the subscriber ``email`` (tests only: the app never needs it)."""
    import sqlalchemy as sa

    table = schema.subscribers
    with store.connect() as conn:
        return str(
            conn.execute(sa.select(table.c.token).where(table.c.email == email)).scalar_one()
        )
