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
from typing import Literal, NamedTuple

__all__ = [
    "Article",
    "DeliveryStatus",
    "EditionText",
    "Failure",
    "Issue",
    "IssueItem",
    "IssueStatus",
    "Lesson",
    "NAME_MARKER",
    "NO_TAKEAWAY",
    "RenderedEmail",
    "RenderedIssue",
    "RunOutcome",
    "RunReport",
    "SendProgress",
    "SendReport",
    "SourceError",
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
    "queued",
    "sending",
    "awaiting_reply",
    "sent",
    "failed_temp",
    "failed_perm",
    "uncertain",
    "skipped",
]
RunOutcome = Literal["sent", "already_sent", "skipped", "draft_ready", "failed", "partial"]


@dataclass(frozen=True)
class Article:
    """One collected article, as stored.

    ``text`` is plain text (what the summarizer reads); ``html`` is the sanitized
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
    tags: tuple[str, ...] = ()
    """The sections this item belongs to (its source's tags, or the editor's): subscribers
    whose tags include one of them get it; an item without tags goes to everyone."""

    @property
    def is_note(self) -> bool:
        """Written by the editor in the draft, not drawn from a collected article."""
        return self.article_id is None and not self.url


@dataclass(frozen=True)
class EditionText:
    """The title and introduction of one language's edition, when the editor wrote them.

    An empty field falls back to the issue's own (see ``editions.edition_issue``).
    """

    language: str
    title: str = ""
    intro: str = ""


@dataclass(frozen=True)
class Issue:
    """One issue; ``intro`` is Markdown written by the editor (or the config).

    ``title`` and ``intro`` are those of the issue's own language; ``editions``
    holds the other languages' own title and introduction, when written.
    """

    period: str
    title: str
    intro: str
    items: tuple[IssueItem, ...]
    status: IssueStatus = "draft"
    language: str = "fr"
    id: int | None = None
    editions: tuple[EditionText, ...] = ()


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
# them into a link, and personalization would then fill in the reader's name and
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
    ``personalize`` is the per-recipient step; it must stay cheap (string
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

    def personalize(self, name: str, unsubscribe_url: str) -> RenderedEmail:
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


# -- what a send and a run report ------------------------------------------------------------


class Failure(NamedTuple):
    address: str
    reason: str


@dataclass
class SendProgress:
    """Passed to a send's ``progress`` callback after each message."""

    done: int
    total: int
    status: str
    address: str
    counts: dict[str, int]


@dataclass
class SendReport:
    """What one ``digest send`` did, and what the ledger says after it."""

    period: str
    counts: dict[str, int] = field(default_factory=dict)
    """Every ledger row of the issue by status, after this run."""
    attempted: int = 0
    """Messages handed to the server by this run."""
    sent: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    """Addresses that failed for good in this run (5xx, or 4xx past the retry window)."""
    uncertain: list[str] = field(default_factory=list)
    """Addresses whose message may or may not have been accepted."""
    retry_pending: int = 0
    retry_at: dt.datetime | None = None
    complete: bool = False
    """Every recipient is settled (sent, failed for good or skipped): the issue is sent."""
    stopped: str = ""
    """Why the run ended before everyone was attempted, when it did."""
    dry_run: bool = False
    test_to: str = ""

    def summary(self) -> str:
        """How many of each, and what to run next."""
        if self.test_to:
            return f"test message for {self.period} sent to {self.test_to}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "no deliveries"
        if self.dry_run:
            return f"{self.period}: dry run: {counts}; nothing sent"
        text = f"{self.period}: {counts}"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        steps = []
        waiting = sum(self.counts.get(s, 0) for s in ("queued", "sending", "awaiting_reply"))
        if waiting:
            steps.append(f"{waiting} not sent yet: run `digest send` again to resume")
        if self.retry_pending:
            when = f" after {self.retry_at:%Y-%m-%d %H:%M} UTC" if self.retry_at else ""
            steps.append(
                f"{self.retry_pending} awaiting retry: run `digest send` again{when} "
                "(the scheduler does it by itself)"
            )
        if self.uncertain:
            steps.append(
                f"{len(self.uncertain)} uncertain (the server may have accepted the message "
                "without our hearing it): `digest send --resend-uncertain` sends them again, "
                "only if they did not get it"
            )
        if steps:
            text += "; " + "; ".join(steps)
        return text


class SourceError(NamedTuple):
    """A source that failed during a run, and why (the collector's English reason)."""

    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.name}: {self.error}"


@dataclass(frozen=True)
class RunReport:
    """What one ``digest run`` (collect → draft → send) came to; the editors' notification.

    ``detail`` is the English line for the CLI and the logs; ``reason`` and
    ``values`` say the same as data, so that the editors' email can say it in
    their language (``notify.describe_run``).
    """

    period: str
    outcome: RunOutcome
    detail: str
    run_id: str = ""
    sent: int = 0
    failed: int = 0
    source_errors: list[SourceError] = field(default_factory=list)
    recipient_failures: list[str] = field(default_factory=list)
    reason: str = ""
    values: dict[str, str | int] = field(default_factory=dict)
