"""Issues and their items: the drafts editors work on and the numbers that went out.

An issue that has started sending is history: ``save`` refuses to change it.
Moving an issue between statuses is a conditional update (``set_status`` with
``expect``), which is what makes "send this period once" safe between processes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..errors import StoreError
from ..models import EditionText, Issue, IssueItem, decode_lessons, encode_lessons
from .engine import Store
from .schema import as_utc, deliveries, issue_items, issues, utcnow

__all__ = [
    "delivery_counts",
    "delivery_editions",
    "get",
    "latest",
    "live_senders",
    "next_retry_at",
    "save",
    "send_stopped",
    "sendable",
    "sent_dates",
    "sent_issues",
    "set_status",
    "stop_sending",
]

_SENT = ("sending", "sent")


def get(store: Store, period: str) -> Issue | None:
    """The issue of ``period`` with its items in order, or None."""
    with store.connect() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.period == period)).mappings().first()
        if row is None:
            return None
        items = conn.execute(
            sa.select(issue_items)
            .where(issue_items.c.issue_id == row["id"])
            .order_by(issue_items.c.position)
        ).mappings()
        return Issue(
            id=row["id"],
            period=row["period"],
            title=row["title"],
            intro=row["intro"],
            language=row["language"],
            status=row["status"],
            items=tuple(_issue_item(i) for i in items),
            editions=_decode_editions(row["editions"]),
        )


def latest(store: Store) -> Issue | None:
    """The issue of the latest period, whatever its status."""
    with store.connect() as conn:
        period = conn.execute(
            sa.select(issues.c.period).order_by(issues.c.period.desc()).limit(1)
        ).scalar()
    return None if period is None else get(store, period)


def sent_issues(store: Store) -> list[tuple[str, str]]:
    """``(period, title)`` of every issue that went out (or is going out), newest first."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(issues.c.period, issues.c.title)
            .where(issues.c.status.in_(_SENT))
            .order_by(issues.c.period.desc())
        ).all()
    return [(str(r.period), str(r.title)) for r in rows]


def sent_dates(store: Store) -> dict[str, dt.datetime]:
    """When each issue that went out started sending (the archive's dates), by period."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(issues.c.period, issues.c.sending_at, issues.c.sent_at).where(
                issues.c.status.in_(_SENT)
            )
        ).all()
    return {str(r.period): r.sending_at or r.sent_at for r in rows if r.sending_at or r.sent_at}


def save(store: Store, issue: Issue) -> Issue:
    """Create or replace the issue for ``issue.period`` with its items.

    Refuses to touch an issue that has started sending: what went out is history.
    """
    now = utcnow()
    with store.begin() as conn:
        row = conn.execute(
            sa.select(issues.c.id, issues.c.status).where(issues.c.period == issue.period)
        ).first()
        fields = {
            "title": issue.title,
            "intro": issue.intro,
            "language": issue.language,
            "status": issue.status,
            "editions": _encode_editions(issue.editions),
        }
        if row is None:
            result = conn.execute(
                sa.insert(issues).values(period=issue.period, created_at=now, **fields)
            )
            key = result.inserted_primary_key
            assert key is not None
            issue_id = int(key[0])
        else:
            issue_id = int(row.id)
            if row.status in _SENT:
                raise StoreError(f"issue {issue.period} is {row.status}; it cannot be changed")
            conn.execute(sa.update(issues).where(issues.c.id == issue_id).values(**fields))
            conn.execute(sa.delete(issue_items).where(issue_items.c.issue_id == issue_id))
        if issue.items:
            conn.execute(
                sa.insert(issue_items),
                [_issue_item_values(issue_id, item) for item in issue.items],
            )
    saved = get(store, issue.period)
    assert saved is not None
    return saved


def set_status(store: Store, period: str, status: str, *, expect: Sequence[str] = ()) -> bool:
    """Move an issue to ``status``; with ``expect``, only from one of those statuses.

    The conditional update is what makes "send this period once" safe between
    processes: only one of them sees its update succeed.
    """
    stamp = {"approved": "approved_at", "sending": "sending_at", "sent": "sent_at"}
    values: dict[str, Any] = {"status": status}
    if status in stamp:
        values[stamp[status]] = utcnow()
    query = sa.update(issues).where(issues.c.period == period)
    if expect:
        query = query.where(issues.c.status.in_(list(expect)))
    with store.begin() as conn:
        return bool(conn.execute(query.values(**values)).rowcount)


def sendable(store: Store) -> list[str]:
    """Periods a sender could work on now, oldest first.

    Approved issues, and issues being sent whose ledger has rows due: queued,
    a retry whose time has come, or a claim whose lease ran out (its sender died);
    not those whose senders were told to stop (``stop_sending``).
    """
    now = utcnow()
    due = sa.or_(
        deliveries.c.status == "queued",
        sa.and_(
            deliveries.c.status == "failed_temp",
            deliveries.c.next_attempt_at.is_not(None),
            deliveries.c.next_attempt_at <= now,
        ),
        sa.and_(
            deliveries.c.status.in_(("sending", "awaiting_reply")),
            deliveries.c.claim_expires < now,
        ),
    )
    has_due = sa.exists().where(deliveries.c.issue_id == issues.c.id, due)
    with store.connect() as conn:
        return list(
            conn.execute(
                sa.select(issues.c.period)
                .where(
                    issues.c.send_stopped.is_(None),
                    sa.or_(
                        issues.c.status == "approved",
                        sa.and_(issues.c.status == "sending", has_due),
                    ),
                )
                .order_by(issues.c.period)
            ).scalars()
        )


# -- how an issue's send stands (read-only summaries of its delivery rows) ----------------


def delivery_counts(store: Store, period: str | None = None) -> dict[str, int]:
    """Delivery rows per status, for one period or all."""
    query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
    if period:
        query = query.join(issues, issues.c.id == deliveries.c.issue_id).where(
            issues.c.period == period
        )
    with store.connect() as conn:
        return {str(status): int(n) for status, n in conn.execute(query)}


def delivery_editions(store: Store, period: str) -> dict[str, int]:
    """``period``'s recipients by edition key, skipped ones left out ("": the default)."""
    query = (
        sa.select(deliveries.c.edition, sa.func.count())
        .join(issues, issues.c.id == deliveries.c.issue_id)
        .where(issues.c.period == period, deliveries.c.status != "skipped")
        .group_by(deliveries.c.edition)
    )
    counts: dict[str, int] = {}
    with store.connect() as conn:
        for edition, n in conn.execute(query):
            counts[edition or ""] = counts.get(edition or "", 0) + int(n)
    return counts


def stop_sending(store: Store, period: str, reason: str | None) -> None:
    """Tell every sender of ``period`` to stop (``reason``), or lift that with None."""
    with store.begin() as conn:
        conn.execute(sa.update(issues).where(issues.c.period == period).values(send_stopped=reason))


def send_stopped(store: Store, period: str) -> str | None:
    """Why the senders of ``period`` were told to stop, or None."""
    with store.connect() as conn:
        return conn.execute(
            sa.select(issues.c.send_stopped).where(issues.c.period == period)
        ).scalar()


def live_senders(store: Store, period: str, window: float = 60.0) -> dict[str, float]:
    """The senders working ``period`` now (an unexpired claim), with their rate in msg/s.

    A sender's rate is what it recorded as sent over the last ``window`` seconds.
    """
    now = utcnow()
    mine = sa.and_(deliveries.c.issue_id == issues.c.id, issues.c.period == period)
    with store.connect() as conn:
        live = conn.execute(
            sa.select(deliveries.c.claim_owner)
            .where(
                mine,
                deliveries.c.status.in_(("sending", "awaiting_reply")),
                deliveries.c.claim_expires >= now,
            )
            .distinct()
        ).scalars()
        senders = {str(owner): 0.0 for owner in live if owner}
        recent = conn.execute(
            sa.select(deliveries.c.claim_owner, sa.func.count())
            .where(
                mine,
                deliveries.c.status == "sent",
                deliveries.c.sent_at >= now - dt.timedelta(seconds=window),
                deliveries.c.claim_owner.in_(list(senders)),
            )
            .group_by(deliveries.c.claim_owner)
        )
        for owner, count in recent:
            senders[str(owner)] = int(count) / window
    return senders


def next_retry_at(store: Store, period: str) -> dt.datetime | None:
    """The earliest retry due among ``period``'s deferred (4xx) deliveries."""
    with store.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.min(deliveries.c.next_attempt_at))
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .where(issues.c.period == period, deliveries.c.status == "failed_temp")
        ).scalar()
    return as_utc(value)


def _issue_item(row: Any) -> IssueItem:
    return IssueItem(
        article_id=row["article_id"],
        position=row["position"],
        source=row["source"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        lessons=decode_lessons(row["lessons"]),
        published=row["published_at"],
        image_url=row["image_url"],
        image_alt=row["image_alt"],
        section=row["section"],
        backend=row["backend"],
        grounded=row["grounded"],
        edited=row["edited"],
        tags=tuple(t for t in (row["tags"] or "").split(",") if t),
    )


def _issue_item_values(issue_id: int, item: IssueItem) -> dict[str, Any]:
    return {
        "issue_id": issue_id,
        "article_id": item.article_id,
        "position": item.position,
        "source": item.source,
        "title": item.title,
        "url": item.url,
        "summary": item.summary,
        "lessons": encode_lessons(item.lessons),
        "published_at": item.published,
        "image_url": item.image_url,
        "image_alt": item.image_alt,
        "section": item.section,
        "backend": item.backend,
        "grounded": item.grounded,
        "edited": item.edited,
        "tags": ",".join(item.tags),
    }


def _encode_editions(editions: tuple[EditionText, ...]) -> str | None:
    if not editions:
        return None
    return json.dumps([dataclasses.asdict(e) for e in editions], ensure_ascii=False)


def _decode_editions(value: str | None) -> tuple[EditionText, ...]:
    if not value:
        return ()
    return tuple(
        EditionText(str(e.get("language", "")), str(e.get("title", "")), str(e.get("intro", "")))
        for e in json.loads(value)
    )
