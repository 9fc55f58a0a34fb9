"""The values passed between pipeline stages.

All frozen: a stage never changes what it was given, it returns something new.
Times are timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
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
    "RenderedEmail",
    "RenderedIssue",
    "UNSUBSCRIBE_MARKER",
    "decode_lessons",
    "encode_lessons",
    "new_markers",
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
    when the backend gave a quote that could not be located.
    """

    text: str
    quote: str = ""
    start: int = -1
    end: int = -1


def encode_lessons(lessons: tuple[Lesson, ...]) -> str:
    """Lessons as the store keeps them: a JSON list of objects, evidence included."""
    return json.dumps(
        [dataclasses.asdict(lesson) for lesson in lessons],
        ensure_ascii=False,
    )


def decode_lessons(value: str) -> tuple[Lesson, ...]:
    """The inverse of ``encode_lessons``; also reads the older form, a list of strings."""
    lessons = []
    for entry in json.loads(value):
        if isinstance(entry, str):
            lessons.append(Lesson(entry))
        else:
            lessons.append(
                Lesson(
                    text=str(entry.get("text", "")),
                    quote=str(entry.get("quote", "")),
                    start=int(entry.get("start", -1)),
                    end=int(entry.get("end", -1)),
                )
            )
    return tuple(lessons)


@dataclass(frozen=True)
class Summary:
    summary: str
    lessons: tuple[Lesson, ...]
    backend: str
    grounded: bool
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class IssueItem:
    """An article as it appears in an issue; editors may rewrite every text field.

    ``summary`` and each lesson's ``text`` are Markdown (the editor's links and
    emphasis render in the email); the pipeline escapes machine-written text so
    that it shows as written. An item with neither ``article_id`` nor ``url`` is
    the editor's own block (a note, an event, a section title): see ``is_note``.
    """

    article_id: int | None
    position: int
    source: str
    title: str
    url: str
    summary: str
    lessons: tuple[Lesson, ...]
    published: dt.datetime | None = None
    image_url: str = ""
    image_alt: str = ""
    section: str = ""
    backend: str = ""
    grounded: bool = True
    edited: bool = False

    @property
    def is_note(self) -> bool:
        """Written by the editor in the draft, not drawn from a collected article."""
        return self.article_id is None and not self.url


@dataclass(frozen=True)
class Issue:
    """One issue; ``intro`` is Markdown written by the editor (or the config)."""

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


# The fixed markers of the first versions, kept for hand-built ``RenderedIssue``
# values (tests, benchmarks). ``render_issue`` never uses them: a feed could write
# them into a link, and personalisation would then fill in the reader's name and
# unsubscribe token inside a third party's URL. It draws fresh ones per render.
NAME_MARKER = "%%DIGEST_NAME%%"
UNSUBSCRIBE_MARKER = "%%DIGEST_UNSUBSCRIBE_URL%%"


def new_markers() -> tuple[str, str]:
    """A name marker and an unsubscribe marker no feed can have guessed.

    64 random bits per render, drawn after the content was written: a feed item
    cannot contain them except by chance. Upper-case hex, so they stay plain ASCII
    that neither Jinja2, MJML, premailer nor quoted-printable change, and they
    still look like ``%%NAME%%`` to the leftover check.
    """
    tag = secrets.token_hex(8).upper()
    return f"%%DIGEST_NAME_{tag}%%", f"%%DIGEST_UNSUBSCRIBE_{tag}%%"


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once: HTML and text with the recipient markers still in them.

    ``name_marker`` and ``unsubscribe_marker`` are where the templates asked for
    each recipient's values; ``render_issue`` draws them at random per render.
    ``personalise`` is the per-recipient step; it must stay cheap (string
    joins, no template work), since it runs once per subscriber.
    """

    subject: str
    preheader: str
    html: str
    text: str
    language: str = "fr"
    name_marker: str = NAME_MARKER
    unsubscribe_marker: str = UNSUBSCRIBE_MARKER

    @property
    def markers(self) -> tuple[str, str]:
        return self.name_marker, self.unsubscribe_marker

    def personalise(self, name: str, unsubscribe_url: str) -> RenderedEmail:
        """Fill in one recipient's name and unsubscribe URL (escaped in the HTML).

        With no name, the space before the name marker goes too: « Bonjour, ».
        The parts between markers are split once per issue and cached, so each
        recipient costs one join per part rather than a scan of 50 KB of HTML.
        """
        named = bool(name)
        marker = self.name_marker
        html = _fill(self._parts("html", named), marker, escape(name), escape(unsubscribe_url))
        text = _fill(self._parts("text", named), marker, name, unsubscribe_url)
        return RenderedEmail(self.subject, self.preheader, html, text)

    def split(self, field_name: str, named: bool) -> list[str]:
        """The HTML or text cut at this issue's markers: odd indexes are markers (cached)."""
        return self._parts(field_name, named)

    def _parts(self, field_name: str, named: bool) -> list[str]:
        # Cached in the instance dict: frozen dataclasses forbid attribute assignment,
        # not a cache the instance's fields never see.
        cache: dict[tuple[str, bool], list[str]] = self.__dict__.setdefault("_split_cache", {})
        parts = cache.get((field_name, named))
        if parts is None:
            parts = cache[(field_name, named)] = split_at_markers(
                getattr(self, field_name), named, self.markers
            )
        return parts


def split_at_markers(
    body: str, named: bool, markers: tuple[str, str] = (NAME_MARKER, UNSUBSCRIBE_MARKER)
) -> list[str]:
    """``body`` cut around the recipient markers ``(name, unsubscribe)``: odd indexes
    are the markers.

    Without a name, the space before the name marker goes too, so the greeting
    reads « Bonjour, » rather than « Bonjour , ».
    """
    name_marker = markers[0]
    if not named:
        body = body.replace(" " + name_marker, name_marker)
    return re.split("(" + "|".join(re.escape(m) for m in markers) + ")", body)


def _fill(parts: list[str], name_marker: str, name: str, unsubscribe_url: str) -> str:
    """Join parts split on the markers: odd indexes are markers, replaced by values."""
    out = parts.copy()
    for index in range(1, len(out), 2):
        out[index] = name if out[index] == name_marker else unsubscribe_url
    return "".join(out)
