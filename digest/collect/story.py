"""What near-duplicate checks need of one story, computed where the entry is parsed.

A ``Story`` holds an article's title words and a bottom-k MinHash sketch of its
text's word shingles, so that two stories can be compared without their texts.
It is computed by whoever parses the entry (a worker process in a large run)
and handed to ``dedupe``, which indexes stories and decides merges. This module
imports nothing that touches the database or the network: parsing workers load
it, and every import here is paid again by each fresh worker.
"""

from __future__ import annotations

import datetime as dt
import difflib
import zlib
from dataclasses import dataclass

from .normalize import is_web_url, words

__all__ = ["NEAR_IN_TIME", "Story"]

NEAR_IN_TIME = dt.timedelta(days=7)
"""Near-duplicates are published within this time of each other."""
TITLE_RATIO = 0.9
TEXT_SIMILARITY = 0.75
SKETCH_SIZE = 64
SHINGLE = 4
MIN_TITLE_WORDS = 4
MIN_TEXT_WORDS = 30
TEXT_KEYS = 8


@dataclass(frozen=True)
class Story:
    """What near-duplicate checks need of a story, computed once (where it was parsed)."""

    source: str
    published: dt.datetime
    title: str
    title_words: frozenset[str]
    numbers: frozenset[str]
    sketch: frozenset[int]
    title_keys: tuple[str, ...]
    """Pairs of the title's three longest words: near-identical titles share one.

    Pairs, not single words: one long word ("exposition") is shared by too many
    unrelated titles, and each shared key costs a comparison."""
    text_keys: tuple[int, ...]
    """The sketch's smallest hashes: nearly identical texts share one."""

    @classmethod
    def of(
        cls,
        source: str,
        title: str,
        text: str,
        published: dt.datetime,
        *,
        text_words: list[str] | None = None,
    ) -> Story:
        """The story of an article; ``text_words`` is ``words(text)`` if already computed."""
        # An entry with no title is titled with its link: the words of two links
        # (``example org thing``) say nothing about two stories being one.
        # (A web URL has a ":" and a "/"; most titles lack one, and need no parsing.)
        link = ":" in title and "/" in title and is_web_url(title)
        tokens = [] if link else words(title)
        title_words = frozenset(tokens) if len(tokens) >= MIN_TITLE_WORDS else frozenset()
        longest = sorted(title_words, key=lambda w: (-len(w), w))[:3]
        smallest = _smallest_hashes(words(text) if text_words is None else text_words)
        # Computed here, where the entry is parsed (a worker process in a large run),
        # not each time the story is indexed or looked up.
        return cls(
            source=source,
            published=published,
            title=" ".join(tokens),
            title_words=title_words,
            numbers=frozenset(t for t in tokens if t.isdigit()),
            sketch=frozenset(smallest),
            title_keys=tuple(f"{a} {b}" for i, a in enumerate(longest) for b in longest[i + 1 :]),
            text_keys=tuple(smallest[:TEXT_KEYS]),
        )

    def same_title(self, other: Story) -> float:
        """Similarity of two near-identical titles (0 when they are not)."""
        if not self.title_words or not other.title_words or self.numbers != other.numbers:
            return 0.0  # "Week 12" and "Week 13" are two stories
        shared = len(self.title_words & other.title_words)
        if shared < 0.7 * max(len(self.title_words), len(other.title_words)):
            return 0.0
        ratio = difflib.SequenceMatcher(None, self.title, other.title).ratio()
        return ratio if ratio >= TITLE_RATIO else 0.0

    def same_text(self, other: Story) -> float:
        """Estimated Jaccard similarity of the two texts' shingles (0 below the threshold)."""
        if not self.sketch or not other.sketch:
            return 0.0
        both = self.sketch & other.sketch
        if len(both) < TEXT_SIMILARITY * min(SKETCH_SIZE, len(self.sketch), len(other.sketch)):
            return 0.0  # cannot reach the threshold: skip the sort
        union = sorted(self.sketch | other.sketch)[:SKETCH_SIZE]
        similarity = sum(1 for h in union if h in both) / len(union)
        return similarity if similarity >= TEXT_SIMILARITY else 0.0


def _smallest_hashes(tokens: list[str]) -> list[int]:
    """A bottom-k MinHash sketch of a text's word shingles, smallest first (empty if short)."""
    if len(tokens) < MIN_TEXT_WORDS:
        return []
    # The same hashes as joining and encoding each run of SHINGLE words in a loop,
    # with the loop in C: this is the costliest part of preparing an entry.
    shingles = zip(*(tokens[start:] for start in range(SHINGLE)), strict=False)
    hashes = set(map(zlib.crc32, map(str.encode, map(" ".join, shingles))))
    return sorted(hashes)[:SKETCH_SIZE]
