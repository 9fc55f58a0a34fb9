"""Locks with leases, in the database: they coordinate processes on any machine.

A lock is a row with an owner and an expiry. Its holder renews the lease while
it works; a holder that crashed loses the lock when the lease runs out, without
anyone cleaning up. Owners read ``host:pid:nonce``, so a process can also tell
that a holder on its own machine is gone and free the lock at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..errors import LockedError
from .engine import Store
from .schema import locks, utcnow

__all__ = [
    "acquire",
    "held",
    "hold",
    "holder",
    "owner_gone",
    "owner_id",
    "release",
    "release_if_gone",
    "renew",
]

log = logging.getLogger("digest.db.locks")


def owner_id() -> str:
    """Who holds a lock: enough to find the process on its machine."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(store: Store, name: str, owner: str, ttl: dt.timedelta) -> bool:
    """Take lock ``name`` unless someone else holds an unexpired lease on it."""
    now = utcnow()
    with store.begin() as conn:
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
                conn.execute(sa.insert(locks).values(name=name, owner=owner, expires_at=now + ttl))
        except IntegrityError:
            return False
        return True


def renew(store: Store, name: str, owner: str, ttl: dt.timedelta) -> bool:
    """Extend ``owner``'s lease on ``name``; False if the lock is no longer theirs."""
    with store.begin() as conn:
        return bool(
            conn.execute(
                sa.update(locks)
                .where(locks.c.name == name, locks.c.owner == owner)
                .values(expires_at=utcnow() + ttl)
            ).rowcount
        )


def release(store: Store, name: str, owner: str) -> None:
    """Let go of ``name`` if ``owner`` holds it (someone else's lock is left alone)."""
    with store.begin() as conn:
        conn.execute(sa.delete(locks).where(locks.c.name == name, locks.c.owner == owner))


def holder(store: Store, name: str) -> str | None:
    """The owner of an unexpired lease on ``name``, or None."""
    with store.connect() as conn:
        row = conn.execute(
            sa.select(locks.c.owner).where(locks.c.name == name, locks.c.expires_at >= utcnow())
        ).first()
        return None if row is None else str(row.owner)


def held(store: Store, prefix: str) -> dict[str, str]:
    """The locks whose name starts with ``prefix`` and whose lease runs: name -> owner."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(locks.c.name, locks.c.owner).where(
                locks.c.name.startswith(prefix, autoescape=True),
                locks.c.expires_at >= utcnow(),
            )
        )
        return {str(name): str(owner) for name, owner in rows}


def release_if_gone(store: Store, name: str, live_owners: Collection[str] | None = None) -> bool:
    """Free ``name`` if its holder is a process of this machine that no longer exists.

    After a crash or ``kill -9`` the lease would otherwise block a restart until
    it expires. Holders on other machines are left to their lease. A holder with
    our own pid is alive unless ``live_owners`` (the owners this process holds
    right now) is given and does not list it: then it is a previous life of this
    process (a container restarted as pid 1). Returns whether the lock was freed.
    """
    current = holder(store, name)
    if current is None:
        return False
    gone = owner_gone(current, live_owners)
    if gone:
        log.warning("%s was held by %s, which is no longer running: releasing it", name, current)
        release(store, name, current)
    return gone


def owner_gone(owner: str, live_owners: Collection[str] | None = None) -> bool:
    """Whether ``owner`` (from ``owner_id``) is a process of this machine that no longer runs.

    Owners on other machines are never known to be gone (their lease says).
    ``live_owners``: as for ``release_if_gone``.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return live_owners is not None and owner not in live_owners
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@contextmanager
def hold(store: Store, name: str, ttl: dt.timedelta = dt.timedelta(minutes=2)) -> Iterator[str]:
    """Hold lock ``name`` for the block, or raise ``LockedError`` at once; yield the owner.

    The lease is short and renewed in the background while the block runs, so
    a long send keeps its lock and a killed process loses it within ``ttl``.
    """
    owner = owner_id()
    if not acquire(store, name, owner, ttl):
        raise LockedError(
            f"{name} is already running ({holder(store, name) or 'another process'})",
            hint="wait for it to finish; a crashed holder's lock expires by itself",
        )
    done = threading.Event()

    def keep() -> None:
        while not done.wait(ttl.total_seconds() / 3):
            renew(store, name, owner, ttl)

    renewer = threading.Thread(target=keep, name=f"lock:{name}", daemon=True)
    renewer.start()
    try:
        yield owner
    finally:
        done.set()
        renewer.join()
        release(store, name, owner)
