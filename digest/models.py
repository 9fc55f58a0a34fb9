"""The values passed between pipeline stages.

All frozen: a stage never changes what it was given, it returns something new.
Times are timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Article",
    "DeliveryStatus",
    "Issue",
    "IssueItem",
    "IssueStatus",
    "Lesson",
    "NAME_MARKER",
    "RenderedEmail",
    "RenderedIssue",
    "UNSUBSCRIBE_MARKER",
    "Subscriber",
    "SubscriberStatus",
    "Summary",
]

IssueStatus = Literal["draft", "approved", "sending", "sent", "skipped"]
SubscriberStatus = Literal["active", "unsubscribed", "bounced"]
DeliveryStatus = Literal["queued", "sending", "sent", "failed_temp", "failed_perm", "uncertain"]


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
    when the backend gave a quote that could not be located.
    """

    text: str
    quote: str = ""
    start: int = -1
    end: int = -1


@dataclass(frozen=True)
class Summary:
    summary: str
    lessons: tuple[Lesson, ...]
    backend: str
    grounded: bool
    checks: dict[str, bool] = field(default_factory=dict)


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
        from html import escape

        html = self.html.replace(NAME_MARKER, escape(name)).replace(
            UNSUBSCRIBE_MARKER, escape(unsubscribe_url)
        )
        text = self.text.replace(NAME_MARKER, name).replace(UNSUBSCRIBE_MARKER, unsubscribe_url)
        return RenderedEmail(self.subject, self.preheader, html, text)
