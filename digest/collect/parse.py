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

import copy
import datetime as dt
import functools
import hashlib
import html
import importlib.util
import io
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

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

    def __reduce__(self) -> tuple[type[NotAFeed], tuple[str, tuple[str, ...]]]:
        # Raised in a worker process, it is pickled back: keep the discovered feeds.
        return (NotAFeed, (str(self), self.feeds))


@dataclass(frozen=True)
class Entry:
    """One feed entry, cleaned: safe HTML, plain text, canonical web URL, UTC date."""

    guid: str
    url: str
    """The entry's own web link, or (``own_link`` false) its feed's site."""
    title: str
    html: str
    text: str
    author: str = ""
    published: dt.datetime | None = None
    """None when the feed gave no usable date."""
    image_url: str = ""
    image_alt: str = ""
    own_link: bool = True
    """False when the entry had no web link: ``url`` is then shared, not an identity."""


@dataclass(frozen=True)
class Feed:
    title: str
    entries: tuple[Entry, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    """Entries that could not be kept, counted by reason (shown in the source's health)."""


# What may come before the root element: a byte order mark, white space, the XML
# declaration, processing instructions and comments. A DOCTYPE is only one when it
# follows these; "<!DOCTYPE" further on is text (in CDATA, in escaped HTML).
_PROLOG = re.compile(r"\A\ufeff?(?:[ \t\r\n]+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE\b", re.IGNORECASE)
_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\xfe\xff", "utf-16"),
    (b"\xff\xfe", "utf-16"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)

# feedparser asks xml.sax for the old libxml2 driver before expat on every parse;
# where that driver is not installed (nearly everywhere) each parse paid for a
# failed import, a search of sys.path. Without it, expat is what xml.sax picks
# anyway, so asking for it directly changes nothing but the cost.
if importlib.util.find_spec("drv_libxml2") is None:
    feedparser.api.PREFERRED_XML_PARSERS = []

# feedparser works out the base URL of every element it opens (for xml:base),
# joining the parent's base with the element's own: one ``urljoin`` per element,
# a quarter of its parsing time, on the same few pairs of strings over and over.
# Both functions are pure (strings in, a string out, a constant list of schemes),
# so remembering their answers changes nothing but the cost.
_remembered = functools.lru_cache(maxsize=4096)
feedparser.mixin.make_safe_absolute_uri = _remembered(feedparser.urls.make_safe_absolute_uri)
feedparser.mixin._urljoin = _remembered(feedparser.urls._urljoin)
feedparser.namespaces._base.make_safe_absolute_uri = feedparser.mixin.make_safe_absolute_uri


def _copy_params(params: Any) -> Any:
    """``copy.deepcopy(params)``, without its generic machinery when the values are plain.

    feedparser deep-copies an element's content parameters (type, language,
    base: three strings) for every title, summary and content it stores, and the
    generic deep copy cost a tenth of its parsing time. A copy of a dict of
    immutable values is the same whichever way it is made.
    """
    if type(params) is feedparser.util.FeedParserDict and all(
        value is None or type(value) in (str, int, bool) for value in params.values()
    ):
        return feedparser.util.FeedParserDict(params)
    return copy.deepcopy(params)


feedparser.mixin.copy = types.SimpleNamespace(deepcopy=_copy_params)

# feedparser's dictionary reads, writes and membership tests each go through its
# table of old key names and a handful of computed keys, a Python function per
# access: 73,000 reads for 2,000 entries, a fifth of its parsing time. For every
# other key they are exactly the plain dictionary's, which the versions below use.
_Dict = feedparser.util.FeedParserDict
_ALIASED = frozenset(_Dict.keymap) | {
    "category", "enclosures", "license", "updated", "updated_parsed",
}  # fmt: skip
_dict_getitem, _dict_get = _Dict.__getitem__, _Dict.get
_dict_contains, _dict_setitem = _Dict.__contains__, _Dict.__setitem__


def _getitem(self: Any, key: Any) -> Any:
    return _dict_getitem(self, key) if key in _ALIASED else dict.__getitem__(self, key)


def _get_or(self: Any, key: Any, default: Any = None) -> Any:
    return _dict_get(self, key, default) if key in _ALIASED else dict.get(self, key, default)


def _contains(self: Any, key: Any) -> bool:
    return _dict_contains(self, key) if key in _ALIASED else dict.__contains__(self, key)


def _setitem(self: Any, key: Any, value: Any) -> None:
    if key in _ALIASED:
        _dict_setitem(self, key, value)
    else:
        dict.__setitem__(self, key, value)


_Dict.__getitem__ = _getitem
_Dict.get = _get_or
_Dict.__contains__ = _contains
_Dict.__setitem__ = _setitem


def strip_doctype(body: bytes) -> bytes:
    """``body`` without its document type declaration (where entities are declared).

    Only a real declaration is removed: one in the prolog, before the root
    element. UTF-16 and UTF-32 documents are read in their own encoding, so
    their declaration cannot slip past a byte-level check.
    """
    codec = next((name for mark, name in _WIDE if body.startswith(mark)), "latin-1")
    # latin-1 maps each byte to one character: offsets in the text are offsets in the bytes.
    text = body.decode(codec, "replace")
    span = _doctype_span(text)
    if span is None:
        return body
    start, end = span
    if codec == "latin-1":
        return body[:start] + body[end:]
    return (text[:start] + text[end:]).encode(codec)


def _doctype_span(text: str) -> tuple[int, int] | None:
    prolog = _PROLOG.match(text)
    start = prolog.end() if prolog else 0
    if not _DOCTYPE.match(text, start):
        return None
    quote = ""
    subset = False
    for index in range(start + len("<!DOCTYPE"), len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "[":
            subset = True
        elif char == "]":
            subset = False
        elif char == ">" and not subset:
            return start, index + 1
    return start, len(text)  # an unterminated DOCTYPE: nothing after it is trustworthy


def parse_feed(body: bytes, url: str, content_type: str, now: dt.datetime) -> Feed:
    """Parse a feed; raise ``NotAFeed`` (with discovered feed links) for anything else."""
    result = feedparser.parse(
        io.BytesIO(strip_doctype(body)),
        response_headers={
            "content-type": content_type or "application/xml",
            "content-location": url,
        },
        # Both done by ``sanitize_html`` below (nh3, with the content's own base):
        # feedparser's pure-Python passes cost about a third of its parsing time.
        resolve_relative_uris=False,
        sanitize_html=False,
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
    site = _site_link(result.feed, url)
    entries = []
    skipped: dict[str, int] = {}
    for raw in result.entries:
        entry = _entry(raw, url, site, now)
        if isinstance(entry, str):
            skipped[entry] = skipped.get(entry, 0) + 1
        else:
            entries.append(entry)
    title = _text_of(result.feed, "title")
    return Feed(title, tuple(entries), skipped)


def _site_link(feed: Any, feed_url: str) -> str:
    """Where the feed's site is: its own link, else the root of the feed's address."""
    link = str(feed.get("link", "") or "").strip()
    if link and is_web_url(feed_url):
        link = urljoin(feed_url, link)
    if is_web_url(link):
        return canonical_url(link)
    if is_web_url(feed_url):
        parts = urlsplit(feed_url)
        return canonical_url(f"{parts.scheme}://{parts.netloc}/")
    return ""


# feedparser's dictionaries look every key up in a table of old names (and compute a
# few keys, such as ``enclosures``) on each read: a tenth of the time spent reading
# entries. The keys read with ``_get`` are stored under their own names, so a plain
# dictionary read finds the same value.
_get: Callable[..., Any] = dict.get


def _text_of(raw: Any, key: str) -> str:
    """A title as text: HTML only when the feed says (or feedparser found) it is HTML.

    A plain-text title such as ``Vec<T> in Rust`` keeps its angle brackets.
    """
    detail = _get(raw, f"{key}_detail") or {}
    is_html = "html" in str(_get(detail, "type", "") or "")
    return clean_title(str(_get(raw, key, "") or ""), is_html=is_html)


NO_CONTENT = "no link and no content"
NO_WEB_LINK = "no web link"


def _entry(raw: Any, feed_url: str, site: str, now: dt.datetime) -> Entry | str:
    """The clean entry, or why it cannot be kept."""
    link = _web_link(raw, feed_url)
    body, is_html, base = _content(raw)
    # Relative links in content are relative to the feed (or its xml:base), not the entry.
    safe_html = sanitize_html(body if is_html else text_to_html(body), base or feed_url)
    text = html_to_text(safe_html)
    title = _text_of(raw, "title")
    guid = str(_get(raw, "id", "") or "").strip()[:1000]
    own_link = bool(link)
    if not own_link:
        # A status update or a note: no page of its own, but worth keeping. It links
        # to the feed's site; its GUID (or, without one, its content) identifies it.
        if not title and not text:
            return NO_CONTENT
        if not site:
            return NO_WEB_LINK
        link = site
        if not guid:
            guid = "content:" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:32]
    if not title:
        title = clean_title(text[:120]) or link
    image_url, image_alt = _image(raw, safe_html, link)
    # dict.get: feedparser's own get() warns when it falls back from one date to the other.
    published = to_utc(dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed"), now)
    return Entry(
        guid=guid,
        url=link,
        title=title,
        html=safe_html,
        text=text,
        author=clean_title(str(_get(raw, "author", "") or ""), limit=200),
        published=published,
        image_url=image_url,
        image_alt=image_alt,
        own_link=own_link,
    )


# Whether a feed's own address (or its content's base) is a web URL: asked for every
# entry of the feed, about the same one or two strings.
_is_web_base = functools.lru_cache(maxsize=256)(is_web_url)


def _web_link(raw: Any, feed_url: str) -> str:
    """The entry's first http(s) link; ``javascript:``, ``file:`` and friends never qualify."""
    candidates = [_get(raw, "link", "")]
    candidates += [
        _get(link, "href", "")
        for link in _get(raw, "links", [])
        if _get(link, "rel") == "alternate"
    ]
    guid = str(_get(raw, "id", "") or "")
    if _get(raw, "guidislink") or guid.startswith(("http://", "https://")):
        candidates.append(guid)
    for candidate in candidates:
        if not candidate:
            continue
        absolute = (
            urljoin(feed_url, str(candidate).strip()) if _is_web_base(feed_url) else candidate
        )
        if is_web_url(absolute):
            return canonical_url(absolute)
    return ""


def _content(raw: Any) -> tuple[str, bool, str]:
    """The fullest body the entry has, whether it is HTML, and its base URL."""
    options = list(_get(raw, "content", []))
    if _get(raw, "summary_detail"):
        options.append(_get(raw, "summary_detail"))
    elif _get(raw, "summary"):
        options.append({"value": _get(raw, "summary"), "type": "text/html"})
    if not options:
        return "", True, ""
    best = max(options, key=lambda c: len(_get(c, "value", "") or ""))
    kind = str(_get(best, "type", "text/html") or "text/html")
    base = str(_get(best, "base", "") or "")
    return str(_get(best, "value", "") or ""), "html" in kind, base if _is_web_base(base) else ""


_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'src="([^"]+)"')
_ALT = re.compile(r'alt="([^"]*)"')


def _image(raw: Any, safe_html: str, base: str) -> tuple[str, str]:
    for key in ("media_content", "media_thumbnail"):
        for media in _get(raw, key, []) or []:
            url = media.get("url", "")
            if url and media.get("medium", "image") == "image" and is_web_url(urljoin(base, url)):
                return urljoin(base, url), ""
    for enclosure in raw.get("enclosures", []) or []:
        url = enclosure.get("href", "")
        if str(enclosure.get("type", "")).startswith("image/") and is_web_url(urljoin(base, url)):
            return urljoin(base, url), ""
    match = _IMG.search(safe_html)
    if match:
        src = _SRC.search(match.group(0))
        alt = _ALT.search(match.group(0))
        if src and is_web_url(src.group(1)):
            return html.unescape(src.group(1)), html.unescape(alt.group(1)) if alt else ""
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
