"""Feed bytes in, clean entries out (feedparser underneath).

feedparser reads RSS 0.9x/1.0/2.0 and Atom, copes with wrong encoding
declarations and falls back to a lenient parser on malformed XML, which keeps
whatever entries are usable. Two things are done before it sees the bytes:

- the DOCTYPE's internal subset is removed, so no entity declared there (an
  external ``SYSTEM`` entity, a billion-laughs chain) can ever be expanded,
  whatever parser feedparser ends up using;
- the bytes are wrapped in a stream: given a plain string, feedparser treats it
  as a URL or a file name and would open it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser

from .normalize import (
    canonical_url,
    clean_title,
    html_to_text,
    is_web_url,
    sanitize_html,
    text_to_html,
    to_utc,
)

__all__ = ["Entry", "Feed", "NotAFeed", "discover_feeds", "parse_feed", "strip_doctype"]

_FEED_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/xml",
    "text/xml",
}


class NotAFeed(Exception):
    """The document is not a feed; ``feeds`` lists the feed links an HTML page announces."""

    def __init__(self, reason: str, feeds: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.feeds = feeds


@dataclass(frozen=True)
class Entry:
    """One feed entry, cleaned: safe HTML, plain text, canonical web URL, UTC date."""

    guid: str
    url: str
    title: str
    html: str
    text: str
    author: str = ""
    published: dt.datetime | None = None
    """None when the feed gave no usable date."""
    image_url: str = ""
    image_alt: str = ""


@dataclass(frozen=True)
class Feed:
    title: str
    entries: tuple[Entry, ...]
    skipped: int = 0
    """Entries dropped because they had no http(s) link."""


_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)

# feedparser asks xml.sax for the old libxml2 driver before expat on every parse;
# where that driver is not installed (nearly everywhere) each parse paid for a
# failed import, a search of sys.path. Without it, expat is what xml.sax picks
# anyway, so asking for it directly changes nothing but the cost.
if importlib.util.find_spec("drv_libxml2") is None:
    feedparser.api.PREFERRED_XML_PARSERS = []


def strip_doctype(body: bytes) -> bytes:
    """``body`` without its DOCTYPE's internal subset (where entities are declared)."""
    match = _DOCTYPE.search(body, 0, 4096)
    if match is None:
        return body
    start = match.start()
    quote = 0
    subset = False
    for index in range(match.end(), len(body)):
        char = body[index]
        if quote:
            if char == quote:
                quote = 0
        elif char in b"\"'":
            quote = char
        elif char == ord("["):
            subset = True
        elif char == ord("]"):
            subset = False
        elif char == ord(">") and not subset:
            return body[:start] + body[index + 1 :]
    return body[:start]  # an unterminated DOCTYPE: nothing after it is trustworthy


def parse_feed(body: bytes, url: str, content_type: str, now: dt.datetime) -> Feed:
    """Parse a feed; raise ``NotAFeed`` (with discovered feed links) for anything else."""
    result = feedparser.parse(
        io.BytesIO(strip_doctype(body)),
        response_headers={
            "content-type": content_type or "application/xml",
            "content-location": url,
        },
        resolve_relative_uris=True,
        sanitize_html=True,
    )
    if not result.get("version") and not result.entries:
        head = body[:2048].lower()
        if b"<html" in head or b"<!doctype html" in head or "html" in content_type.lower():
            feeds = tuple(discover_feeds(body, url))
            raise NotAFeed("not a feed: got HTML", feeds)
        problem = result.get("bozo_exception")
        if problem is not None:
            raise NotAFeed(f"parse error: {_one_line(problem)}")
        raise NotAFeed("not a feed: no RSS or Atom content")
    entries = []
    skipped = 0
    for raw in result.entries:
        entry = _entry(raw, url, now)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return Feed(clean_title(str(result.feed.get("title", ""))), tuple(entries), skipped)


def _entry(raw: Any, feed_url: str, now: dt.datetime) -> Entry | None:
    link = _web_link(raw, feed_url)
    if not link:
        return None
    body, is_html, base = _content(raw)
    # Relative links in content are relative to the feed (or its xml:base), not the entry.
    safe_html = sanitize_html(body if is_html else text_to_html(body), base or feed_url)
    text = html_to_text(safe_html)
    title = clean_title(str(raw.get("title", "")))
    if not title:
        title = clean_title(text[:120]) or link
    image_url, image_alt = _image(raw, safe_html, link)
    # dict.get: feedparser's own get() warns when it falls back from one date to the other.
    published = to_utc(dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed"), now)
    return Entry(
        guid=str(raw.get("id", "") or "").strip()[:1000],
        url=link,
        title=title,
        html=safe_html,
        text=text,
        author=clean_title(str(raw.get("author", "") or ""), limit=200),
        published=published,
        image_url=image_url,
        image_alt=image_alt,
    )


def _web_link(raw: Any, feed_url: str) -> str:
    """The entry's first http(s) link; ``javascript:``, ``file:`` and friends never qualify."""
    candidates = [raw.get("link", "")]
    candidates += [
        link.get("href", "") for link in raw.get("links", []) if link.get("rel") == "alternate"
    ]
    guid = str(raw.get("id", "") or "")
    if raw.get("guidislink") or guid.startswith(("http://", "https://")):
        candidates.append(guid)
    for candidate in candidates:
        if not candidate:
            continue
        absolute = urljoin(feed_url, str(candidate).strip()) if is_web_url(feed_url) else candidate
        if is_web_url(absolute):
            return canonical_url(absolute)
    return ""


def _content(raw: Any) -> tuple[str, bool, str]:
    """The fullest body the entry has, whether it is HTML, and its base URL."""
    options = list(raw.get("content", []))
    if raw.get("summary_detail"):
        options.append(raw["summary_detail"])
    elif raw.get("summary"):
        options.append({"value": raw["summary"], "type": "text/html"})
    if not options:
        return "", True, ""
    best = max(options, key=lambda c: len(c.get("value", "") or ""))
    kind = str(best.get("type", "text/html") or "text/html")
    base = str(best.get("base", "") or "")
    return str(best.get("value", "") or ""), "html" in kind, base if is_web_url(base) else ""


def _image(raw: Any, safe_html: str, base: str) -> tuple[str, str]:
    for key in ("media_content", "media_thumbnail"):
        for media in raw.get(key, []) or []:
            url = media.get("url", "")
            if url and media.get("medium", "image") == "image" and is_web_url(urljoin(base, url)):
                return urljoin(base, url), ""
    for enclosure in raw.get("enclosures", []) or []:
        url = enclosure.get("href", "")
        if str(enclosure.get("type", "")).startswith("image/") and is_web_url(urljoin(base, url)):
            return urljoin(base, url), ""
    match = re.search(r"<img\b[^>]*>", safe_html)
    if match:
        src = re.search(r'src="([^"]+)"', match.group(0))
        alt = re.search(r'alt="([^"]*)"', match.group(0))
        if src and is_web_url(src.group(1)):
            return html_to_text(src.group(1)), html_to_text(alt.group(1)) if alt else ""
    return "", ""


class _AlternateLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        values = {name: (value or "") for name, value in attrs}
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in _FEED_TYPES and values.get("href"):
            self.found.append((kind, values["href"]))


def discover_feeds(page: bytes, base_url: str) -> list[str]:
    """Feed URLs an HTML page announces with ``<link rel="alternate">``, in page order."""
    parser = _AlternateLinks()
    parser.feed(page[:1_000_000].decode("utf-8", "replace"))
    parser.close()
    urls = []
    for _kind, href in parser.found:
        url = urljoin(base_url, href.strip())
        if is_web_url(url) and url not in urls:
            urls.append(url)
    return urls


def _one_line(problem: object) -> str:
    return " ".join(str(problem).split())[:200]
