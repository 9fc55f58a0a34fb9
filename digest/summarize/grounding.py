"""Grounding checks: is what a backend wrote supported by the article?

Two checks, applied to every backend's output (the extractive one passes by
construction, and the checks prove it):

- a lesson's ``quote`` must occur in the article, compared after normalizing case,
  whitespace, quote marks, apostrophes, dashes and ellipses (accents are kept: « a »
  and « à » are different words);
- every number, date and capitalised name in a summary or a lesson must occur in
  the article (``5,3 %`` matches ``5.3``, ``2 600`` matches ``2.600``; a name
  matches whole words, in any case).

They are cheap filters, not proof of faithfulness: a paraphrase can still twist
the article's meaning, which is why each lesson carries its quote for editors.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cached_property

from .text import stop_words

__all__ = ["Evidence", "locate_quote", "unsupported_facts"]

_QUOTES = "«»\"“”„‟'’‘‛ʼ`´‹›"
_DASHES = "-‐‑‒–—―"
_QUOTE_CLASS = "[" + re.escape(_QUOTES) + "]"
_DASH_CLASS = "[" + re.escape(_DASHES) + "]"
_SPACE = r"[\s\u00a0\u202f\u2009]*"
_ELLIPSIS = re.compile(r"\s*(?:\[\s*(?:\.\.\.|…)\s*\]|\(\s*(?:\.\.\.|…)\s*\)|\.\.\.|…)\s*")

_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f ]\d+)*")
# A word that starts a word: « 18H00 » is a number, not the name « H00 ».
_NAME = re.compile(r"(?<![^\W_])[^\W\d_][^\W_]*(?:[-'’][^\W_]+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?…:]\s+|[«\"“(]\s*)$")

_SMALL_NUMBERS = {
    "0": ("zéro", "zero"),
    "1": ("un", "une", "one", "premier", "première", "first"),
    "2": ("deux", "two", "second", "deuxième", "seconde"),
    "3": ("trois", "three", "troisième", "third"),
    "4": ("quatre", "four"),
    "5": ("cinq", "five"),
    "6": ("six",),
    "7": ("sept", "seven"),
    "8": ("huit", "eight"),
    "9": ("neuf", "nine"),
    "10": ("dix", "ten"),
    "12": ("douze", "twelve"),
    "100": ("cent", "hundred"),
}


@dataclass
class Evidence:
    """An article prepared for repeated checks (numbers and words are indexed once)."""

    text: str

    @cached_property
    def _plain(self) -> str:
        """The text as a reader sees it: entities decoded (« 1&nbsp;000 » is « 1 000 »)."""
        return html.unescape(self.text) if "&" in self.text else self.text

    @cached_property
    def numbers(self) -> frozenset[str]:
        return frozenset(_digits(m.group()) for m in _NUMBER.finditer(self._plain))

    def has_word(self, word: str) -> bool:
        """Whether ``word`` occurs as a whole word, in any case (one C-level regex scan)."""
        key = word.casefold()
        found = self._words.get(key)
        if found is None:
            pattern = r"(?<![^\W_])" + re.escape(word) + r"(?![^\W_])"
            found = self._words[key] = bool(re.search(pattern, self._plain, re.IGNORECASE))
        return found

    @cached_property
    def _words(self) -> dict[str, bool]:
        return {}

    def locate(self, quote: str) -> tuple[int, int] | None:
        return locate_quote(quote, self.text)

    def unsupported(self, claim: str) -> list[str]:
        return unsupported_facts(claim, self)


def locate_quote(quote: str, article: str) -> tuple[int, int] | None:
    """Offsets of ``quote`` in ``article``, or None when it is not there.

    An exact match is tried first (the extractive backend's quotes are spans, so
    this is the usual case and costs one ``str.find``); then a pattern that
    tolerates differences of case, spacing, quote marks and dashes. A quote with
    an elision (« … », « [...] ») matches when its parts occur in order, close together.
    """
    quote = quote.strip().strip(_QUOTES + " ")
    if len(quote) < 3:
        return None
    found = article.find(quote)
    if found >= 0:
        return found, found + len(quote)
    quote = quote.rstrip(".,;: ").strip(_QUOTES + " ")
    parts = [p for p in _ELLIPSIS.split(quote) if p.strip()]
    if not parts or sum(len(p) for p in parts) < 3:
        return None
    pattern = r".{0,400}?".join(_pattern(p) for p in parts)
    match = re.search(pattern, article, re.IGNORECASE | re.DOTALL)
    return (match.start(), match.end()) if match else None


def _pattern(text: str) -> str:
    out: list[str] = []
    for char in text.strip():
        if char.isspace():
            if not out or out[-1] != _SPACE:
                out.append(_SPACE)
        elif char in _QUOTES:
            out.append(_SPACE + _QUOTE_CLASS + _SPACE)
        elif char in _DASHES:
            out.append(_DASH_CLASS)
        else:
            out.append(re.escape(char))
    return "".join(out)


def _digits(number: str) -> str:
    """``2.600``, ``2 600`` and ``2600`` alike; ``5,3`` and ``5.3`` alike."""
    return re.sub(r"\D", "", number)


def unsupported_facts(claim: str, evidence: Evidence | str) -> list[str]:
    """Numbers and capitalised names in ``claim`` that the article does not contain."""
    if isinstance(evidence, str):
        evidence = Evidence(evidence)
    missing: list[str] = []
    for match in _NUMBER.finditer(claim):
        digits = _digits(match.group())
        if digits in evidence.numbers:
            continue
        if any(evidence.has_word(w) for w in _SMALL_NUMBERS.get(digits, ())):
            continue
        missing.append(match.group())
    common = stop_words("fr") | stop_words("en")
    for match in _NAME.finditer(claim):
        word = match.group()
        if not any(c.isupper() for c in word):
            continue
        inner_capital = any(c.isupper() for c in word[1:])
        at_start = bool(_SENTENCE_START.search(claim[: match.start()]))
        if at_start and not inner_capital:
            continue  # « Les », « Comprendre »: a capital because a sentence starts
        if word.casefold() in common or evidence.has_word(word):
            continue
        if all(evidence.has_word(part) for part in re.split(r"[-'’]", word) if part):
            continue
        missing.append(word)
    return missing
