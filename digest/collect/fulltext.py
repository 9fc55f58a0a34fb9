"""Full text for entries whose feed gives only a teaser (trafilatura underneath).

Many feeds carry a first paragraph and a "read more" link; summaries and lessons
drawn from that would be thin. For such entries (``full_text = "auto"`` and
fewer than ``teaser_chars`` characters, or ``"always"``) the collector fetches
the article page, under the same guard and limits as feeds, and this module
extracts its main text, author, date, lead image and canonical URL. Whatever
fails here, the entry keeps its teaser.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .normalize import canonical_url, clean_title, is_web_url, text_to_html, tidy_text
from .parse import Entry

__all__ = ["Extracted", "enrich", "extract", "require_extractor", "wants_full_text"]

log = logging.getLogger(__name__)

_extractor: ModuleType | None = None


def require_extractor() -> ModuleType:
    """trafilatura, imported on first need; a clear error when it cannot be.

    trafilatura needs ``lxml_html_clean`` (through jusText), which some pip
    versions leave out when only ``lxml[html_clean]`` asks for it: the install is
    then incomplete, which is the user's to fix, not a crash.
    """
    global _extractor
    if _extractor is None:
        try:
            _extractor = importlib.import_module("trafilatura")
        except ImportError as exc:
            raise ConfigError(
                f"full-text extraction is unavailable: {' '.join(str(exc).split())}",
                hint="reinstall digest with its dependencies (pip install lxml_html_clean "
                'trafilatura), or set full_text = "never" on every source',
            ) from None
    return _extractor


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str = ""
    author: str = ""
    published: dt.datetime | None = None
    image_url: str = ""
    canonical: str = ""


def wants_full_text(mode: str, entry: Entry, teaser_chars: int) -> bool:
    if mode == "never":
        return False
    return mode == "always" or len(entry.text) < teaser_chars


def extract(page: bytes, url: str) -> Extracted | None:
    """The main content of an article page, or None when nothing usable is found."""
    trafilatura: Any = require_extractor()
    try:
        document = trafilatura.bare_extraction(
            page, url=url, with_metadata=True, include_comments=False, include_tables=False
        )
    except Exception:  # trafilatura fails in many ways on odd pages; the teaser stays
        log.debug("extraction failed for %s", url, exc_info=True)
        return None
    if document is None or isinstance(document, dict):
        return None
    # trafilatura gives plain text, one paragraph a line: read as HTML it would lose
    # its line breaks at the first "&" and every "<word>" in it.
    text = tidy_text(str(getattr(document, "text", "") or ""))
    if not text:
        return None
    image = str(getattr(document, "image", "") or "")
    canonical = str(getattr(document, "url", "") or "")
    return Extracted(
        text=text,
        title=clean_title(str(getattr(document, "title", "") or "")),
        author=clean_title(str(getattr(document, "author", "") or ""), limit=200),
        published=_date(getattr(document, "date", None)),
        image_url=image if is_web_url(image) else "",
        canonical=canonical if is_web_url(canonical) else "",
    )


def enrich(entry: Entry, page_url: str, extracted: Extracted) -> Entry:
    """``entry`` with the page's text if longer than the feed's; other feed values win."""
    if len(extracted.text) <= len(entry.text):
        return entry
    return dataclasses.replace(
        entry,
        url=_canonical(entry.url, page_url, extracted.canonical),
        title=entry.title if entry.title != entry.url else (extracted.title or entry.title),
        text=extracted.text,
        html=text_to_html(extracted.text),
        author=entry.author or extracted.author,
        published=entry.published or extracted.published,
        image_url=entry.image_url or extracted.image_url,
    )


def _canonical(entry_url: str, page_url: str, declared: str) -> str:
    """The page's ``rel=canonical`` when it stays on the page's own site, else where we landed.

    A canonical link pointing to another site is ignored: a page could otherwise
    claim someone else's article and take its place in deduplication.
    """
    landed = canonical_url(page_url)
    if declared and _site(declared) == _site(landed):
        return canonical_url(declared)
    return landed if is_web_url(landed) else entry_url


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def _date(value: object) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
    when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return min(when, dt.datetime.now(dt.UTC))
