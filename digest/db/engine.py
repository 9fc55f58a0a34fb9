"""The database handle: one engine per process, SQLite settings, schema upgrades.

SQLite in a file by default (WAL, so the preview can read while a send writes);
any SQLAlchemy URL works, PostgreSQL included: the record modules beside this
one use only portable constructs.

A database URL may carry a password. It never appears in a message, a log line
or a ``repr``: everything here that names the URL names ``mask_url(url)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from ..errors import StoreError
from . import schema

__all__ = ["Connection", "Store", "mask_url"]

_USERINFO = re.compile(r"(?<=://)([^/@:]*):[^/@]*@")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe to print or log.

    URLs SQLAlchemy cannot parse are masked by pattern, so that even the error
    about a malformed URL does not show what looks like its password.
    """
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\1:***@", url)


def _scrub(text: str, url: str) -> str:
    """``text`` (a driver's message) with the URL's password masked, should it quote it."""
    try:
        password = sa.engine.make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    text = text.replace(url, mask_url(url))
    return text.replace(str(password), "***") if password else text


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL, not WAL's usual NORMAL: with NORMAL a commit is durable only once the
    # WAL is checkpointed, so an operating-system crash or power cut can roll back
    # a committed ledger row. A lost `sending` row means a recipient may be sent
    # the issue twice; a lost `sent` row, that they get it again. FULL syncs the
    # WAL at every commit, which costs little next to an SMTP exchange.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """A handle on the database; cheap to create, one per process.

    The record modules (``digest.db.issues``, ``.subscribers``…) take it as their
    first argument; ``begin`` gives them one transaction.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = sa.create_engine(url)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(
                f"cannot use database URL {mask_url(url)!r}: {_scrub(str(exc), url)}",
                hint="set [database] url or DIGEST_DATABASE_URL to a SQLAlchemy URL",
            ) from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.migrate()
        except BaseException:
            self.engine.dispose()  # a handle that failed to open keeps no connection
            raise

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    # -- schema ----------------------------------------------------------------

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("meta"):
                return 0
            value = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar()
            return int(value or 0)

    def migrate(self) -> None:
        """Bring the schema up to ``SCHEMA_VERSION``, one step per transaction."""
        try:
            version = self.schema_version()
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the database {mask_url(self.url)}: {_scrub(str(exc.orig), self.url)}"
            ) from None
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"the database is at schema version {version}, newer than this digest "
                f"({schema.SCHEMA_VERSION})",
                hint="upgrade digest",
            )
        while version < schema.SCHEMA_VERSION:
            with self.engine.begin() as conn:
                schema.MIGRATIONS[version](conn)
                version += 1
                conn.execute(sa.delete(schema.meta).where(schema.meta.c.key == "schema_version"))
                conn.execute(
                    sa.insert(schema.meta).values(key="schema_version", value=str(version))
                )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (no transaction of its own to commit)."""
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
