"""The values passed between pipeline stages.

All frozen: a stage never changes what it was given, it returns something new.
Times are timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from html import escape
from typing import Literal

__all__ = [
    "Article",
    "DeliveryStatus",
    "Issue",
    "IssueItem",
    "IssueStatus",
    "Lesson",
    "NAME_MARKER",
    "NO_TAKEAWAY",
    "RenderedEmail",
    "RenderedIssue",
    "UNSUBSCRIBE_MARKER",
    "split_at_markers",
    "Subscriber",
    "SubscriberStatus",
    "Summary",
]

IssueStatus = Literal["draft", "approved", "sending", "sent", "skipped"]
SubscriberStatus = Literal["active", "unsubscribed", "bounced"]
DeliveryStatus = Literal[
    "queued", "sending", "sent", "failed_temp", "failed_perm", "uncertain", "skipped"
]


@dataclass(frozen=True)
class Article:
    """One collected article, as stored.

    ``text`` is plain text (what the summarizer reads); ``html`` is the sanitised
    HTML of the entry, kept for the archive and for editors.
    """

    source: str
    url: str
    title: str
    text: str
    published: dt.datetime
    guid: str = ""
    html: str = ""
    author: str = ""
    language: str = ""
    image_url: str = ""
    image_alt: str = ""
    fingerprint: str = ""
    id: int | None = None


@dataclass(frozen=True)
class Lesson:
    """One « Ce que cela nous apprend » lesson and the article text that supports it.

    ``start``/``end`` are character offsets of ``quote`` in the article text, or -1
    when the backend gave a quote that could not be located. ``backend`` names who
    wrote the lesson (``"extractive"``, ``"openai"``…): one article's lessons may come
    from two backends when the offline one topped up a model's answer.
    """

    text: str
    quote: str = ""
    start: int = -1
    end: int = -1
    backend: str = ""


NO_TAKEAWAY = "no_takeaway"
"""``Summary.no_lessons``: the article states no lesson and has no takeaway sentence."""


@dataclass(frozen=True)
class Summary:
    """A backend's summary and lessons.

    ``lessons`` may be empty: an article that teaches nothing by itself gets no
    lesson rather than facts dressed up as one. ``no_lessons`` then says why (e.g.
    ``NO_TAKEAWAY``), so a draft can leave an empty lesson for the editor to write and
    the checks can warn; it is empty whenever there are lessons.
    """

    summary: str
    lessons: tuple[Lesson, ...]
    backend: str
    grounded: bool
    checks: dict[str, bool] = field(default_factory=dict)
    no_lessons: str = ""


@dataclass(frozen=True)
class IssueItem:
    """An article as it appears in an issue; editors may rewrite every text field."""

    article_id: int | None
    position: int
    source: str
    title: str
    url: str
    summary: str
    lessons: tuple[str, ...]
    published: dt.datetime | None = None
    image_url: str = ""
    image_alt: str = ""
    section: str = ""
    backend: str = ""
    grounded: bool = True
    edited: bool = False


@dataclass(frozen=True)
class Issue:
    period: str
    title: str
    intro: str
    items: tuple[IssueItem, ...]
    status: IssueStatus = "draft"
    language: str = "fr"
    id: int | None = None


@dataclass(frozen=True)
class Subscriber:
    email: str
    name: str = ""
    language: str = "fr"
    status: SubscriberStatus = "active"
    tags: tuple[str, ...] = ()
    id: int | None = None


@dataclass(frozen=True)
class RenderedEmail:
    """One recipient's email: what ``compose`` wraps into a MIME message."""

    subject: str
    preheader: str
    html: str
    text: str


# Markers left in a rendered issue where each recipient's own values go; they are
# plain ASCII that neither Jinja2, MJML nor premailer touch, replaced at send time.
NAME_MARKER = "%%DIGEST_NAME%%"
UNSUBSCRIBE_MARKER = "%%DIGEST_UNSUBSCRIBE_URL%%"


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once: HTML and text with the recipient markers still in them.

    ``personalise`` is the per-recipient step; it must stay cheap (string
    replacement, no template work), since it runs once per subscriber.
    """

    subject: str
    preheader: str
    html: str
    text: str
    language: str = "fr"

    def personalise(self, name: str, unsubscribe_url: str) -> RenderedEmail:
        """Fill in one recipient's name and unsubscribe URL (escaped in the HTML).

        With no name, the space before the name marker goes too: « Bonjour, ».
        The parts between markers are split once per issue and cached, so each
        recipient costs one join per part rather than a scan of 50 KB of HTML.
        """
        named = bool(name)
        html = _fill(self._parts("html", named), escape(name), escape(unsubscribe_url))
        text = _fill(self._parts("text", named), name, unsubscribe_url)
        return RenderedEmail(self.subject, self.preheader, html, text)

    def _parts(self, field_name: str, named: bool) -> list[str]:
        # Cached in the instance dict: frozen dataclasses forbid attribute assignment,
        # not a cache the instance's fields never see.
        cache: dict[tuple[str, bool], list[str]] = self.__dict__.setdefault("_split_cache", {})
        parts = cache.get((field_name, named))
        if parts is None:
            parts = cache[(field_name, named)] = split_at_markers(getattr(self, field_name), named)
        return parts


_MARKERS = re.compile(f"({re.escape(NAME_MARKER)}|{re.escape(UNSUBSCRIBE_MARKER)})")


def split_at_markers(body: str, named: bool) -> list[str]:
    """``body`` cut around the recipient markers: odd indexes are the markers.

    Without a name, the space before the name marker goes too, so the greeting
    reads « Bonjour, » rather than « Bonjour , ».
    """
    if not named:
        body = body.replace(" " + NAME_MARKER, NAME_MARKER)
    return _MARKERS.split(body)


def _fill(parts: list[str], name: str, unsubscribe_url: str) -> str:
    """Join parts split on the markers: odd indexes are markers, replaced by values."""
    out = parts.copy()
    for index in range(1, len(out), 2):
        out[index] = name if out[index] == NAME_MARKER else unsubscribe_url
    return "".join(out)
