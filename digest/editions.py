"""Editions and sections: which version of an issue each subscriber receives.

A subscriber's ``language`` picks the language of the email's interface (one the
templates speak, else the issue's own), and their ``tags`` pick sections:

- an item without tags goes to everyone;
- an item with tags goes to subscribers who have at least one of them;
- a subscriber without tags gets every item.

An *edition* is one language and one selection of items. Its key is short,
stable, and is what the delivery ledger records for each recipient when the
send starts, so that a resumed send gives everyone the edition they were queued
with::

    fr                   every item, French interface
    en+alumni,etudiants  untagged items plus those tagged alumni or etudiants, English
    fr+                  untagged items only (the subscriber's tags match none of the issue's)

Only tags the issue actually uses appear in a key, and a selection that keeps
every item is written without ``+``: two subscribers who would read the same
email share one edition, so a send renders each distinct edition once. Tags
compare without regard to case. A subscriber whose selection holds no article
gets nothing: the ledger marks them ``skipped`` with the reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .errors import DigestError
from .i18n import CATALOGUE, base_language, format_date, strings_for
from .models import Issue, IssueItem
from .period import period_bounds

__all__ = [
    "Edition",
    "edition_for",
    "edition_issue",
    "has_own_intro",
    "issue_tags",
    "normal_tag",
    "selected_items",
    "split_tags",
    "week_title",
]


def normal_tag(tag: str) -> str:
    """How tags compare: trimmed, case-folded (« Alumni » and « alumni » are one section)."""
    return " ".join(tag.split()).casefold()


def split_tags(stored: str) -> tuple[str, ...]:
    """A subscriber's tags as the store keeps them (comma-separated), normalised."""
    return tuple(dict.fromkeys(normal_tag(t) for t in stored.split(",") if normal_tag(t)))


@dataclass(frozen=True)
class Edition:
    """One language and one selection of items; ``tags`` None selects every item."""

    language: str
    tags: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        if self.tags is None:
            return self.language
        return f"{self.language}+{','.join(self.tags)}"

    @classmethod
    def parse(cls, key: str) -> Edition:
        """The edition of a ledger key (the inverse of ``key``)."""
        language, plus, tags = key.partition("+")
        if not plus:
            return cls(language)
        return cls(language, tuple(t for t in tags.split(",") if t))

    def describe(self) -> str:
        """For people: ``en, sections: alumni, etudiants`` or ``fr, every section``."""
        if self.tags is None:
            return f"{self.language}, every section"
        if not self.tags:
            return f"{self.language}, untagged items only"
        return f"{self.language}, sections: {', '.join(self.tags)}"


def issue_tags(issue: Issue) -> tuple[str, ...]:
    """Every tag the issue's items carry, normalised and sorted."""
    return tuple(sorted({normal_tag(t) for item in issue.items for t in item.tags if t.strip()}))


def edition_language(issue: Issue, language: str) -> str:
    """The interface language for a subscriber of ``language``: theirs if the templates
    speak it, else the issue's own."""
    own = issue.language or "fr"
    base = base_language(language or own)
    if base == base_language(own):
        return own
    return base if base in CATALOGUE else own


def edition_for(issue: Issue, language: str, tags: tuple[str, ...] | str) -> Edition | None:
    """The edition a subscriber with ``language`` and ``tags`` receives; None when their
    selection holds no article (they get nothing)."""
    wanted = split_tags(tags) if isinstance(tags, str) else tuple(normal_tag(t) for t in tags)
    chosen: tuple[str, ...] | None = None
    if any(wanted):
        used = issue_tags(issue)
        matched = tuple(t for t in used if t in wanted)
        chosen = None if matched == used else matched
    edition = Edition(edition_language(issue, language), chosen)
    if not any(not item.is_note for item in selected_items(issue, edition)):
        return None
    return edition


def selected_items(issue: Issue, edition: Edition) -> tuple[IssueItem, ...]:
    """The items ``edition`` keeps, in the issue's order."""
    if edition.tags is None:
        return tuple(issue.items)
    wanted = set(edition.tags)
    return tuple(
        item
        for item in issue.items
        if not item.tags or any(normal_tag(t) in wanted for t in item.tags)
    )


def week_title(period: str, language: str, timezone: str) -> str:
    """The default title, « Semaine du 23 novembre 2026 », in ``language``."""
    start, _ = period_bounds(period, timezone)
    monday = start.astimezone(ZoneInfo(timezone)).date()
    return strings_for(language)["week_of"].format(date=format_date(monday, language))


def has_own_intro(issue: Issue, language: str) -> bool:
    """Whether the editor wrote an introduction for ``language``'s edition."""
    if base_language(language) == base_language(issue.language):
        return True
    return any(
        base_language(text.language) == base_language(language) and text.intro.strip()
        for text in issue.editions
    )


def edition_issue(issue: Issue, edition: Edition | str, timezone: str = "Europe/Paris") -> Issue:
    """``issue`` as ``edition``'s subscribers read it: their language, their items, and
    the title and introduction written for their language.

    Without an own title, an edition in another language gets the default title
    translated when the issue's title is still the default one; without an own
    introduction, it gets the issue's (the preview says so).
    """
    if isinstance(edition, str):
        edition = Edition.parse(edition)
    language = edition.language or issue.language
    title, intro = issue.title, issue.intro
    own = next(
        (t for t in issue.editions if base_language(t.language) == base_language(language)),
        None,
    )
    if own is not None:
        title = own.title.strip() or title
        intro = own.intro.strip() or intro
    if (own is None or not own.title.strip()) and base_language(language) != base_language(
        issue.language
    ):
        try:
            if title == week_title(issue.period, issue.language, timezone):
                title = week_title(issue.period, language, timezone)
        except (DigestError, KeyError, ValueError):  # not a week: the title stays
            pass
    items = selected_items(issue, edition)
    return dataclasses.replace(
        issue,
        language=language,
        title=title,
        intro=intro,
        items=tuple(dataclasses.replace(item, position=n) for n, item in enumerate(items, 1)),
    )
