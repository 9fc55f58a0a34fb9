"""The subscriber rows and the suppression list: every write to them is here, once.

The audience rules (what an address is, who may be resubscribed, how a CSV maps
to rows) live in ``digest.subscribers``; this module stores their outcome.
Leaving is written in one place each: ``unsubscribe`` (the CLI, the one-click
link, complaints and mailto requests), ``erase`` (deletion on request),
``mark_bounced`` (bounce processing).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

import sqlalchemy as sa

from ..models import Subscriber
from .engine import Connection, Store
from .schema import consents, deliveries, meta, subscribers, suppressions, utcnow

__all__ = [
    "Consent",
    "Known",
    "add_many",
    "by_token",
    "confirm_signup",
    "consent_used",
    "consents_of",
    "set_preferences",
    "tags_in_use",
    "erase",
    "find",
    "first_active",
    "known",
    "listed",
    "mark_bounced",
    "suppressed",
    "suppression_key",
    "unsubscribe",
    "update_many",
    "with_token",
]

_SUPPRESSION_KEY = "suppression_key"


class Known(NamedTuple):
    """What an import compares a CSV row against."""

    id: int
    email: str
    name: str
    language: str
    tags: str
    status: str


def listed(store: Store, status: str | None = None) -> list[Subscriber]:
    """Every subscriber (or those of ``status``), in the order they joined."""
    query = sa.select(subscribers).order_by(subscribers.c.id)
    if status:
        query = query.where(subscribers.c.status == status)
    with store.connect() as conn:
        return [_subscriber(r) for r in conn.execute(query).mappings()]


def first_active(store: Store) -> tuple[Subscriber, str] | None:
    """The first active subscriber and their unsubscribe token, or None."""
    with store.connect() as conn:
        row = (
            conn.execute(
                sa.select(subscribers)
                .where(subscribers.c.status == "active")
                .order_by(subscribers.c.id)
                .limit(1)
            )
            .mappings()
            .first()
        )
    return None if row is None else (_subscriber(row), str(row["token"]))


def by_token(store: Store, token: str) -> Subscriber | None:
    """The subscriber whose unsubscribe token is ``token``, or None.

    The final comparison is constant-time, so that how much of a guessed token
    matched cannot be timed.
    """
    with store.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.token == token)).mappings()
        found = row.first()
    if found is None or not hmac.compare_digest(str(found["token"]).encode(), token.encode()):
        return None
    return _subscriber(found)


def find(conn: Connection, folded: str, fold: Callable[[str], str]) -> Subscriber | None:
    """The subscriber whose address, folded with ``fold``, is ``folded``."""
    row = (
        conn.execute(sa.select(subscribers).where(sa.func.lower(subscribers.c.email) == folded))
        .mappings()
        .first()
    )
    if row is not None:
        return _subscriber(row)
    # SQL lower() only folds ASCII on SQLite; non-ASCII local parts need Python's folding.
    if folded.isascii():
        return None
    for candidate in conn.execute(sa.select(subscribers)).mappings():
        if fold(candidate["email"]) == folded:
            return _subscriber(candidate)
    return None


def known(conn: Connection) -> list[Known]:
    """Every subscriber, as an import compares them."""
    rows = conn.execute(
        sa.select(
            subscribers.c.id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.language,
            subscribers.c.tags,
            subscribers.c.status,
        )
    )
    return [Known(*r) for r in rows]


def add_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new subscribers: ``email``, ``name``, ``language``, ``status``, ``tags``.

    Each gets a fresh unsubscribe token (128 random bits) and its dates.
    """
    if not rows:
        return
    now = utcnow()
    conn.execute(
        sa.insert(subscribers),
        [
            {
                **row,
                "token": secrets.token_urlsafe(16),
                "created_at": now,
                "updated_at": now,
                "unsubscribed_at": now if row["status"] == "unsubscribed" else None,
            }
            for row in rows
        ],
    )


def update_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Update subscribers by ``id``: ``name``, ``language``, ``tags``, ``status``.

    Someone moved to ``unsubscribed`` keeps the date they first left.
    """
    if not rows:
        return
    now = utcnow()
    conn.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == sa.bindparam("b_id"))
        .values(
            name=sa.bindparam("name"),
            language=sa.bindparam("language"),
            tags=sa.bindparam("tags"),
            status=sa.bindparam("status"),
            updated_at=sa.bindparam("updated_at"),
        ),
        [
            {
                "b_id": r["id"],
                "name": r["name"],
                "language": r["language"],
                "tags": r["tags"],
                "status": r["status"],
                "updated_at": now,
            }
            for r in rows
        ],
    )
    newly_out = [r["id"] for r in rows if r["status"] == "unsubscribed"]
    if newly_out:
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id.in_(newly_out), subscribers.c.unsubscribed_at.is_(None))
            .values(unsubscribed_at=now)
        )


def unsubscribe(conn: Connection, subscriber_id: int) -> bool:
    """Mark an active subscriber unsubscribed; False if they were not active."""
    now = utcnow()
    return bool(
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.status == "active")
            .values(status="unsubscribed", unsubscribed_at=now, updated_at=now)
        ).rowcount
    )


def erase(conn: Connection, subscriber_id: int | None, email_hash: str) -> None:
    """Delete a subscriber and their delivery rows; remember only ``email_hash``.

    With ``subscriber_id`` None only the hash is recorded: an address named in
    a deletion request stays out of future imports even if it was never here.
    """
    if subscriber_id is not None:
        # deliveries cascade on PostgreSQL and on SQLite with foreign_keys on;
        # deleting them explicitly does not depend on either.
        conn.execute(sa.delete(deliveries).where(deliveries.c.subscriber_id == subscriber_id))
        conn.execute(sa.delete(consents).where(consents.c.subscriber_id == subscriber_id))
        conn.execute(sa.delete(subscribers).where(subscribers.c.id == subscriber_id))
    exists = conn.execute(
        sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash == email_hash)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(suppressions).values(
                email_hash=email_hash, reason="deleted", created_at=utcnow()
            )
        )


def suppressed(conn: Connection) -> set[str]:
    """The keyed hashes of every erased address."""
    return {str(h) for h in conn.execute(sa.select(suppressions.c.email_hash)).scalars()}


def suppression_key(store: Store) -> bytes:
    """The HMAC key of the suppression list, created on first use.

    Random and kept in the database rather than taken from the environment: a
    rotated or missing secret must not reopen the door to erased addresses.
    """
    with store.begin() as conn:
        value = conn.execute(sa.select(meta.c.value).where(meta.c.key == _SUPPRESSION_KEY)).scalar()
        if value is None:
            value = secrets.token_hex(32)
            conn.execute(sa.insert(meta).values(key=_SUPPRESSION_KEY, value=value))
    return bytes.fromhex(value)


# -- signup and preferences (digest serve) ------------------------------------------------
#
# Kept together, apart from the import and erasure functions above: the web pages
# are the only callers.


class Consent(NamedTuple):
    """What a confirmed signup agreed to: the proof kept for each (re)subscription."""

    nonce: str
    form: str
    wording: str
    language: str
    requested_at: dt.datetime
    confirmed_at: dt.datetime


def consent_used(conn: Connection, nonce: str) -> bool:
    """Whether the confirmation link carrying ``nonce`` was already used."""
    found = conn.execute(sa.select(consents.c.id).where(consents.c.nonce == nonce)).first()
    return found is not None


def confirm_signup(
    conn: Connection,
    email: str,
    name: str,
    language: str,
    consent: Consent,
    fold: Callable[[str], str],
) -> tuple[Subscriber, str]:
    """Make ``email`` an active subscriber after a confirmed link, and record the consent.

    Whoever they were (new, unsubscribed, bounced, already active), a confirmed
    link is a fresh, explicit consent: the row becomes ``active`` with the
    language chosen on the form, and the name when one was given. Returns the
    subscriber and their (unchanged, or new) token.
    """
    now = utcnow()
    existing = find(conn, fold(email), fold)
    if existing is None or existing.id is None:
        conn.execute(
            sa.insert(subscribers).values(
                email=email,
                name=name,
                language=language,
                status="active",
                tags="",
                token=secrets.token_urlsafe(16),
                created_at=now,
                updated_at=now,
            )
        )
        found = find(conn, fold(email), fold)
        assert found is not None and found.id is not None
        subscriber_id = found.id
    else:
        subscriber_id = existing.id
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(
                name=name or existing.name,
                language=language,
                status="active",
                unsubscribed_at=None,
                updated_at=now,
            )
        )
    conn.execute(sa.insert(consents).values(subscriber_id=subscriber_id, **consent._asdict()))
    row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id))
    found_row = row.mappings().one()
    return _subscriber(found_row), str(found_row["token"])


def set_preferences(
    conn: Connection, subscriber_id: int, language: str, tags: tuple[str, ...]
) -> None:
    """Change the edition language and the sections a subscriber chose on their page."""
    conn.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(language=language, tags=",".join(tags), updated_at=utcnow())
    )


def tags_in_use(store: Store) -> list[str]:
    """Every section tag some subscriber has, sorted: the choices of the preference page."""
    with store.connect() as conn:
        values = conn.execute(sa.select(subscribers.c.tags).distinct()).scalars()
        return sorted({t for value in values for t in value.split(",") if t})


def consents_of(store: Store, subscriber_id: int) -> list[Consent]:
    """The consents recorded for a subscriber, oldest first."""
    columns = [getattr(consents.c, name) for name in Consent._fields]
    query = sa.select(*columns).where(consents.c.subscriber_id == subscriber_id)
    with store.connect() as conn:
        return [Consent(*row) for row in conn.execute(query.order_by(consents.c.id))]


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        language=row["language"],
        status=row["status"],
        tags=tuple(t for t in row["tags"].split(",") if t),
    )


# -- bounces and complaints (digest bounces) ----------------------------------------------


def with_token(conn: Connection, token: str) -> Subscriber | None:
    """``by_token`` inside a transaction the caller holds (bounce processing)."""
    found = conn.execute(sa.select(subscribers).where(subscribers.c.token == token)).mappings()
    row = found.first()
    if row is None or not hmac.compare_digest(str(row["token"]).encode(), token.encode()):
        return None
    return _subscriber(row)


def mark_bounced(conn: Connection, subscriber_id: int) -> bool:
    """Stop sending to an address that bounced; False if it was not active."""
    now = utcnow()
    return bool(
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.status == "active")
            .values(status="bounced", updated_at=now)
        ).rowcount
    )
