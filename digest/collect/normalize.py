"""Turning what a feed says into clean, comparable values.

Feeds are written by strangers: titles carry line breaks and control
characters (which would end up in email headers), HTML carries scripts and
``onerror`` handlers, links carry tracking parameters, dates lie about the
future. Each function here makes one kind of value safe and canonical, so the
rest of digest can trust an ``Article``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import html
import re
import time
import unicodedata
from html.parser import HTMLParser
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import nh3

from ..language import word_tokens

__all__ = [
    "canonical_url",
    "clean_title",
    "fingerprint",
    "fold",
    "html_to_text",
    "is_web_url",
    "sanitize_html",
    "text_to_html",
    "tidy_text",
    "to_utc",
    "words",
]

# Query parameters that identify a campaign or a click, never the page.
_TRACKING_PREFIXES = ("utm_", "mtm_", "pk_", "oly_", "vero_", "__hs", "_hs")
_TRACKING_NAMES = {
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
    "mc_cid", "mc_eid", "mkt_tok", "ref_src", "ref_url", "_ga", "_gl", "s_cid", "xtor", "at_medium",
    "at_campaign", "spm", "ocid", "cmpid",
}  # fmt: skip

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_web_url(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def canonical_url(url: str, base: str = "") -> str:
    """``url`` made absolute and comparable: no tracking parameters or default port.

    The fragment stays (``#comment-2`` and ``#comment-3`` are two entries of one
    feed) unless it only carries tracking parameters (``#xtor=RSS-3``).
    """
    url = urljoin(base, url.strip()) if base else url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    # Filter the raw pieces rather than re-encode them: "?page" must not become "?page=".
    query = "&".join(
        piece
        for piece in parts.query.split("&")
        if piece and not _is_tracking(unquote_plus(piece.split("=", 1)[0]))
    )
    return urlunsplit((scheme, netloc, parts.path or "/", query, _fragment(parts.fragment)))


def _fragment(fragment: str) -> str:
    pieces = [piece for piece in fragment.split("&") if piece]
    if all("=" in piece for piece in pieces) and any(
        _is_tracking(unquote_plus(piece.split("=", 1)[0])) for piece in pieces
    ):
        return ""
    return fragment


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)


# -- HTML ------------------------------------------------------------------------

_TAGS = set(nh3.ALLOWED_TAGS) - {"map", "area"}
_URL_SCHEMES = {"http", "https", "mailto"}
_URL_ATTRIBUTES = {"href", "src", "cite"}


def sanitize_html(fragment: str, base_url: str = "") -> str:
    """Feed HTML with no script, no ``on*`` handler and no non-web link; links made absolute."""
    if not fragment.strip():
        return ""

    def absolute(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in _URL_ATTRIBUTES:
            return value
        if not value.strip():  # an emptied link would otherwise resolve to the page itself
            return None
        target = urljoin(base_url, value.strip()) if base_url else value.strip()
        scheme = urlsplit(target).scheme.lower()
        return target if scheme in _URL_SCHEMES else None

    return nh3.clean(
        fragment,
        tags=_TAGS,
        clean_content_tags={"script", "style", "noscript", "template"},
        url_schemes=_URL_SCHEMES,
        attribute_filter=absolute,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()


_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "tr", "figure", "figcaption", "section", "article", "header", "footer", "hr", "dl",
    "dt", "dd", "details", "summary",
}  # fmt: skip
_SKIPPED = {"script", "style", "noscript", "template", "head", "title"}


# HTML's own whitespace and line separators, within a run of text. (``_tidy`` then turns
# every other Unicode space, U+00A0 and U+202F included, into a plain one: stored text
# has one kind of space, and the renderer puts French non-breaking spaces back by rule.)
_HTML_SPACE = re.compile("[ \t\r\n\f\v\u2028\u2029\x85]+")
# What ``_HTML_SPACE`` would change: a run of two or more, or one that is not a space.
# Most text has neither; looking for them with ``in`` is far cheaper than running the
# regular expression over every character.
_ODD_SPACES = ("  ", "\t", "\r", "\n", "\f", "\v", "\u2028", "\u2029", "\x85")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            # Line breaks inside HTML text are spaces: only block tags start a paragraph,
            # or a feed's hard-wrapped source would cut sentences in two.
            if any(odd in data for odd in _ODD_SPACES):
                data = _HTML_SPACE.sub(" ", data)
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: paragraphs on their own lines, spaces collapsed.

    For HTML only: given plain text, it would read ``a < b`` as a tag and ``&amp;``
    as an entity. Plain text goes through ``tidy_text``.
    """
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    return _tidy("".join(collector.parts))


def tidy_text(text: str) -> str:
    """Plain text made tidy: one paragraph a line, spaces collapsed, no control characters.

    Nothing is read as markup: ``<``, ``>`` and ``&`` stay as they are.
    """
    return _tidy(text)


def _tidy(text: str) -> str:
    if any(mark in text for mark in _OTHER_BREAKS):
        text = _OTHER_BREAKS_RE.sub("\n", text)
    # A printable line has no control character: only the others need the search.
    lines = (
        " ".join((line if line.isprintable() else _CONTROLS.sub(" ", line)).split())
        for line in text.split("\n")
    )
    paragraphs = "\n".join(line for line in lines if line)
    return paragraphs.strip()


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (escaped)."""
    return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p.strip())


_LINE_BREAKS = re.compile("[\r\n\u2028\u2029\x85]")
_OTHER_BREAKS = ("\r", "\u2028", "\u2029", "\x85")
"""Line breaks other than ``\\n``: ``_tidy`` makes them ``\\n``."""
_OTHER_BREAKS_RE = re.compile("[\r\u2028\u2029\x85]")
# C0 and C1 control characters (tab aside) and lone surrogates.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")


def _strip_controls(text: str, *, keep_newlines: bool) -> str:
    text = _LINE_BREAKS.sub("\n" if keep_newlines else " ", text)
    return _CONTROLS.sub(" ", text)


def clean_title(raw: str, limit: int = 300, *, is_html: bool = False) -> str:
    """A one-line title, CR/LF and control characters removed; tags resolved if ``is_html``.

    Plain text stays as written: ``Vec<T> in Rust`` keeps its ``<T>``.
    """
    text = html_to_text(raw) if is_html else raw
    text = " ".join(_strip_controls(text, keep_newlines=False).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


# -- comparing texts -------------------------------------------------------------------

_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


def fold(text: str) -> str:
    """Lower case without accents: what two spellings of the same word share."""
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).casefold()


def words(text: str) -> list[str]:
    return word_tokens(fold(text))


MIN_FINGERPRINT_WORDS = 12
"""Fewer words of text than this identify nothing: twelve posts titled "Photo" with
no text, or "🎉" on one site and "★" on another, are not the same story."""


def fingerprint(title: str, text: str, *, text_words: list[str] | None = None) -> str:
    """A hash of the normalized content, or "" when the text is too short to identify a story.

    The same text, however it is marked up, hashes alike. ``text_words`` is
    ``words(text)`` when the caller has it already (it is the costly part).
    """
    body = words(text) if text_words is None else text_words
    if len(body) < MIN_FINGERPRINT_WORDS:
        return ""
    if len(body) < 30:  # short: the title helps tell two short texts apart
        body = words(title) + body
    return hashlib.sha256(" ".join(body).encode("utf-8")).hexdigest()


# -- dates ----------------------------------------------------------------------------


def to_utc(value: time.struct_time | None, now: dt.datetime) -> dt.datetime | None:
    """A feed date (feedparser gives UTC ``struct_time``) as aware UTC, never after ``now``."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromtimestamp(calendar.timegm(value), dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return min(when, now)
