"""French typography for text shown to readers.

French sets a non-breaking space before the high punctuation ``: ; ! ?`` and
inside guillemets « », so that a line never starts with a lone « ? », and a narrow
one between the digit groups of a number (« 4 000 »), so that a phone never shows
« 4 » at the end of a line and « 000 » on the next. Feed
titles and summaries rarely follow the rule (or follow it with ordinary spaces,
which break badly on a phone), so the renderer applies it to every text it shows.

What it must never touch: URLs (``https://…?a=b``), times (``14:30``), HTML tags
and entities (``&#39;`` ends with a semicolon). URLs are cut out before the rules
run; markup is cut out when the input is already ``Markup``.
"""

from __future__ import annotations

import re

from markupsafe import Markup

__all__ = ["NBSP", "NNBSP", "french_spacing", "typography"]

NBSP = "\u00a0"
"""No-break space: before the colon and inside guillemets."""
NNBSP = "\u202f"
"""Narrow no-break space: before ; ! ? (the « fine insécable »)."""

_SPACES = "[ \u00a0\u202f]*"
# A character after which a space may go: not a space, not an opening bracket or quote.
_WORD_END = r"([^\s(\[«{])"
# What may follow the punctuation for the rule to apply: the end, a space or closing marks.
_FOLLOW = r"(?=$|[\s)\]»\"'’.,…\ue000])"

_HIGH = re.compile(_WORD_END + _SPACES + r"([;!?]+)" + _FOLLOW)
_COLON = re.compile(_WORD_END + _SPACES + r":" + r"(?=$|\s)")
# Groups of three digits after a first group of one to three: "4 000", "1 250 000" (also
# with no-break spaces already). Not a year next to a number ("2026 200" has four digits
# first), nor decimals' tails ("3,141 592" starts after a comma).
_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\d])")
_OPEN_QUOTE = re.compile("«" + _SPACES)
_CLOSE_QUOTE = re.compile(_SPACES + "»")

# Things that look like punctuation but are not prose: URLs, bare domains, e-mail addresses.
_UNTOUCHABLE = re.compile(r"((?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.|mailto:)\S+|\S+@\S+\.\w+)")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
# Markup pieces inside an already escaped string, and URLs.
_MARKUP_OR_URL = re.compile(r"<[^>]*>|&#?\w+;|" + _UNTOUCHABLE.pattern)


def french_spacing(text: str, keep: re.Pattern[str] = _UNTOUCHABLE) -> str:
    """Plain text in, plain text out, with French non-breaking spaces where they belong.

    Whatever ``keep`` matches is left exactly as it is.
    """
    kept: list[str] = []

    def hide(match: re.Match[str]) -> str:
        # A private-use placeholder: the rules see a word, never the URL's own ? and :.
        kept.append(match.group(0))
        return f"\ue000{len(kept) - 1}\ue001"

    text = _prose(keep.sub(hide, text))
    if kept:
        text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return text


def _prose(text: str) -> str:
    if not text:
        return text
    text = _HIGH.sub(lambda m: f"{m.group(1)}{NNBSP}{m.group(2)}", text)
    text = _COLON.sub(lambda m: f"{m.group(1)}{NBSP}:", text)
    text = _NUMBER.sub(lambda m: re.sub("[ \u00a0]", NNBSP, m.group(0)), text)
    text = _OPEN_QUOTE.sub("«" + NBSP, text)
    return _CLOSE_QUOTE.sub(NBSP + "»", text)


def typography(value: object, language: str) -> object:
    """The Jinja filter: apply the rules of ``language`` to text or to escaped markup.

    The rules are French ones, so only French text gets them: an English title in
    a French issue keeps "Notes: faster" as its own language writes it.

    Plain strings come back as plain strings (autoescape still escapes them);
    ``Markup`` comes back as ``Markup`` with tags and entities untouched.
    Anything else (numbers, None) passes through.
    """
    if not language.lower().startswith("fr"):
        return value
    if isinstance(value, Markup):
        return Markup(french_spacing(str(value), _MARKUP_OR_URL))
    if isinstance(value, str):
        return french_spacing(value)
    return value
