"""SMTP connection slots shared by every sender: ``[send] connections`` for all of them.

A relay limits the sessions a client opens at once, whoever opens them. With
several senders (PostgreSQL, possibly on several machines) each would open its
own ``connections`` sessions; so a session needs a slot first. Slot ``i`` of a
relay is the lock ``smtp-slot:HOST:PORT:i`` (``db.locks``: a row with an owner
and a lease): a sender takes a free one before it connects, renews it while the
session may be open, and lets go of it once the session is closed. A sender
that dies loses its slots when their lease runs out (at once if it was a
process of this machine), so a dead worker never keeps the others waiting for
long.

Sharing: each sender also holds a membership lock ``smtp-member:HOST:PORT:OWNER``
while it sends or waits for a slot, and keeps at most its fair share of the
slots (the limit divided by the live members, rounded up), giving back the rest
at its next batch: a sender that started first does not keep every slot while
others wait. With fewer slots than senders, the senders beyond the limit wait
for one to finish.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from . import locks
from .engine import Store

__all__ = ["ConnectionSlots"]

log = logging.getLogger("digest.send")

POLL_SECONDS = 0.5
"""How often a sender without any slot looks again for one."""
SHARE_SECONDS = 5.0
"""How often a sender counts the others to work out its share (one query)."""


class ConnectionSlots:
    """The slots of one relay held by one sender (one ``owner``), at most ``wanted``."""

    def __init__(self, store: Store, relay: str, limit: int, owner: str, ttl: dt.timedelta) -> None:
        self.store = store
        self.slot_prefix = f"smtp-slot:{relay}:"
        self.names = [f"{self.slot_prefix}{i}" for i in range(max(1, limit))]
        self.owner = owner
        self.ttl = ttl
        self.held: dict[str, str] = {}
        """Slot name -> the owner id it was taken under (one per session we may open)."""
        self.lock = threading.Lock()
        self.tried_at = -POLL_SECONDS
        self.member_prefix = f"smtp-member:{relay}:"
        self.member = f"{self.member_prefix}{owner}"
        self.joined = False
        self.share = len(self.names)
        self.counted_at = -SHARE_SECONDS

    def _owner(self, name: str) -> str:
        # One owner per slot: ``locks.acquire`` lets an owner take its own lock again,
        # and two sessions of one sender must never share a slot.
        return f"{self.owner}:{name.rpartition(':')[2]}"

    def fair_share(self, wanted: int) -> int:
        """How many slots this sender may hold now: ``wanted``, within its fair share."""
        with self.lock:
            if not self.joined:
                self.joined = locks.acquire(self.store, self.member, self.owner, self.ttl)
            if time.monotonic() - self.counted_at >= SHARE_SECONDS:
                self.counted_at = time.monotonic()
                members = max(1, len(locks.held(self.store, self.member_prefix)))
                self.share = max(1, -(-len(self.names) // members))
            return min(wanted, self.share)

    def keep(self, count: int) -> None:
        """Give back the slots beyond ``count`` (their sessions must be closed already)."""
        with self.lock:
            for name in list(self.held)[count:]:
                locks.release(self.store, name, self.held.pop(name))

    def take(self, wanted: int) -> int:
        """Take one more free slot if this sender holds fewer than ``wanted``; return how
        many it holds.

        One at a time (a batch apart), so that a sender starting first does not
        take every slot before the others have even counted themselves in; and
        holding some, it looks again at most every ``POLL_SECONDS``. A look is one
        query for the slots taken; a batch that needs no new slot costs none.
        """
        with self.lock:
            if len(self.held) >= wanted or (
                self.held and time.monotonic() - self.tried_at < POLL_SECONDS
            ):
                return min(len(self.held), wanted)
            self.tried_at = time.monotonic()
            taken = locks.held(self.store, self.slot_prefix)
            for name in self.names:
                if name in self.held:
                    continue
                holder = taken.get(name)
                if holder is not None:
                    if not locks.owner_gone(holder):
                        continue
                    locks.release(self.store, name, holder)  # a dead process of this machine
                owner = self._owner(name)
                if locks.acquire(self.store, name, owner, self.ttl):
                    self.held[name] = owner
                    break
            return len(self.held)

    def wait_for(self, wanted: int, stop: threading.Event) -> int:
        """``take``, waiting while every slot is someone else's; 0 only if ``stop`` is set."""
        while not stop.is_set():
            held = self.take(wanted)
            if held:
                return held
            stop.wait(POLL_SECONDS)
        return 0

    def renew(self) -> None:
        """Extend the lease on the slots held (called with the claims' renewal)."""
        with self.lock:
            if self.joined:
                locks.renew(self.store, self.member, self.owner, self.ttl)
            for name, owner in list(self.held.items()):
                if not locks.renew(self.store, name, owner, self.ttl):
                    # Our lease ran out and someone took the slot: this process
                    # stalled for longer than the lease. Count it as theirs.
                    log.warning("connection slot %s lost (lease ran out)", name)
                    del self.held[name]

    def release(self) -> None:
        """Let go of every slot (their sessions are closed)."""
        with self.lock:
            for name, owner in self.held.items():
                locks.release(self.store, name, owner)
            self.held.clear()
            if self.joined:
                locks.release(self.store, self.member, self.owner)
                self.joined = False
