"""The draft's values: the issue read from a file, where files live, and fingerprints.

A fingerprint hashes an item's editable text in the form the file shows it, so
that rewrapping a line is not an edit but changing a word is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..i18n import strings_for
from ..models import Issue, IssueItem, Lesson

__all__ = [
    "FENCE",
    "SPACE",
    "DraftIssue",
    "draft_path",
    "item_fingerprint",
    "lessons_label",
    "normal_lessons",
    "one_line",
]

FENCE = "+++"


@dataclass(frozen=True)
class DraftIssue(Issue):
    """An issue read from a draft file, with the articles the editor deleted from it.

    ``removed`` lets ``merge_draft`` keep a deleted article out on ``--refresh``.
    """

    removed: tuple[int, ...] = ()


def draft_path(settings: Settings, period: str) -> Path:
    """Where the editable draft of ``period`` lives."""
    return settings.draft.dir / f"{period}.md"


def lessons_label(language: str) -> str:
    """The heading above an article's lessons: the email's own words, defined in i18n."""
    return strings_for(language)["lessons_title"]


# Only ASCII whitespace is layout: the no-break spaces of French typography
# (before « : ; ! ? » and inside « ») are text and must survive a round trip.
SPACE = " \t\r\n\f\v"
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def one_line(text: str) -> str:
    """Text as one line: line breaks and runs of layout spaces become one space."""
    return _SPACES.sub(" ", text).strip(SPACE)


def _paragraphs(text: str) -> list[str]:
    """Paragraphs as the file shows them: blank lines separate, line breaks are spaces."""
    return [p for p in (one_line(block) for block in re.split(r"\n[ \t\r\f\v]*\n", text)) if p]


def _normal_text(text: str) -> str:
    return "\n\n".join(_paragraphs(text))


def normal_lessons(lessons: Iterable[Lesson]) -> tuple[str, ...]:
    return tuple(line for line in (one_line(lesson.text) for lesson in lessons) if line)


def item_fingerprint(item: IssueItem) -> str:
    """A hash of the item's editable text, in the form the file shows it."""
    payload = json.dumps(
        [one_line(item.title), _normal_text(item.summary), list(normal_lessons(item.lessons))],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
