"""Re-drafting: the editor's file wins over what digest generates again.

Lessons keep their evidence (the quote from the article) only while their text
is the one digest generated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import IssueError
from ..models import Issue, IssueItem, Lesson
from .values import DraftIssue, one_line

__all__ = ["merge_draft", "with_evidence"]


def _key(item: IssueItem) -> tuple[str, Any]:
    if item.article_id is not None:
        return ("article", item.article_id)
    return ("url", item.url) if item.url else ("note", item.position)


def _evidence(lessons: tuple[Lesson, ...], known: tuple[Lesson, ...]) -> tuple[Lesson, ...]:
    """``lessons`` with the quote of the ``known`` lesson of the same text, if any.

    A lesson the editor rewrote has no quote any more: the quote supported the
    generated text, not theirs.
    """
    quotes = {one_line(lesson.text): lesson for lesson in known if lesson.quote}
    return tuple(quotes.get(one_line(lesson.text), lesson) for lesson in lessons)


def with_evidence(issue: Issue, stored: Issue) -> Issue:
    """``issue`` (read from its file) with the quotes ``stored`` has for unedited lessons."""
    known = {_key(item): item for item in stored.items if not item.is_note}
    items = tuple(
        dataclasses.replace(item, lessons=_evidence(item.lessons, known[_key(item)].lessons))
        if not item.is_note and _key(item) in known
        else item
        for item in issue.items
    )
    return dataclasses.replace(issue, items=items)


def merge_draft(generated: Issue, existing: Issue | None, *, refresh: bool = False) -> Issue:
    """The issue after re-running ``draft``: the editor's file wins.

    From ``existing`` (the file): title, introduction, the other editions' texts,
    order, deleted articles, the approved flag, and every item's text and tags. From
    ``generated``: the machine fields of each item still selected (date, image,
    backend). With ``refresh``, items the editor has not touched take their
    regenerated text, and newly selected articles are added at the end (except
    ones the editor deleted).
    """
    if existing is None:
        return generated
    if existing.period != generated.period:
        raise IssueError(
            f"the draft file is for {existing.period}, not {generated.period}",
            hint=f"open the draft of {generated.period}, or pass --period {existing.period}",
        )
    fresh = {_key(item): item for item in generated.items}
    removed = set(getattr(existing, "removed", ()))
    items: list[IssueItem] = []
    for old in existing.items:
        new = fresh.pop(_key(old), None)
        if new is None:
            items.append(old)
        elif refresh and not old.edited:
            items.append(dataclasses.replace(new, tags=old.tags))
        else:
            items.append(
                dataclasses.replace(
                    new,
                    tags=old.tags,
                    title=old.title,
                    summary=old.summary,
                    lessons=_evidence(old.lessons, new.lessons),
                    edited=old.edited,
                )
            )
    if refresh:
        items += [item for item in fresh.values() if item.article_id not in removed]
    return DraftIssue(
        period=existing.period,
        title=existing.title or generated.title,
        intro=existing.intro,
        items=tuple(dataclasses.replace(item, position=n) for n, item in enumerate(items, 1)),
        status=existing.status,
        language=existing.language or generated.language,
        id=generated.id if generated.id is not None else existing.id,
        removed=tuple(sorted(removed)),
        editions=existing.editions,
    )
