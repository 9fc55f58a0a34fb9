"""Keeping each story once, across runs and across sources, and storing a source's batch.

An entry is the same story as a stored article when, in this order:

1. it has the same GUID from the same source (an updated entry: the row is updated);
2. it has the same canonical URL, or the same content fingerprint (any source);
3. it is a near-duplicate from *another* source: a near-identical title, or a
   nearly identical text, published within a few days of each other.

When the match belongs to another source, the story stays with the source of
higher ``weight``: a heavier source takes the row over (its title, text and
link), a lighter one is dropped. Near-duplicates are found with a small
in-memory index of recent stories (titles by their longest words, texts by a
bottom-k MinHash sketch of word shingles), built on first need in a run.

``Deduper.save`` writes one source's articles *and* its fetch state (ETag,
health) in one transaction: a source either gets all of this run's articles
and its new validators, or nothing (so a failed write can never leave an ETag
that would hide unstored entries behind a 304 next time).
"""

from __future__ import annotations

import datetime as dt
import difflib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..db import Connection, Store, articles
from ..models import Article
from .normalize import words

__all__ = ["Candidate", "Deduper", "StoryIndex"]

WINDOW = dt.timedelta(days=30)
"""Stored stories compared for near-duplicates: those published this recently."""
NEAR_IN_TIME = dt.timedelta(days=7)
TITLE_RATIO = 0.9
TEXT_SIMILARITY = 0.75
SKETCH_SIZE = 64
SHINGLE = 4
MIN_TITLE_WORDS = 4
MIN_TEXT_WORDS = 30
MAX_BUCKET = 50

_COMPARED = (
    "guid", "url", "title", "text", "html", "author", "language", "image_url", "image_alt",
    "fingerprint", "published_at",
)  # fmt: skip


# What a fetched article page may have replaced; a later teaser must not undo it.
_FROM_PAGE = ("url", "text", "html", "fingerprint", "author", "language", "image_url", "image_alt")


@dataclass(frozen=True)
class Candidate:
    article: Article
    dated: bool
    """Whether the feed gave a date; an undated entry keeps the stored article's date."""
    partial: bool = False
    """A teaser whose page was not fetched this run: the stored (full) text is kept."""


@dataclass(frozen=True)
class _Story:
    """What near-duplicate checks need of a story, computed once."""

    source: str
    published: dt.datetime
    title: str
    title_words: frozenset[str]
    numbers: frozenset[str]
    sketch: frozenset[int]

    @classmethod
    def of(cls, source: str, title: str, text: str, published: dt.datetime) -> _Story:
        tokens = words(title)
        return cls(
            source=source,
            published=published,
            title=" ".join(tokens),
            title_words=frozenset(tokens) if len(tokens) >= MIN_TITLE_WORDS else frozenset(),
            numbers=frozenset(t for t in tokens if t.isdigit()),
            sketch=_sketch(text),
        )

    def blocking_keys(self) -> list[str]:
        """Pairs of the title's three longest words: near-identical titles share one.

        Pairs, not single words: one long word ("exposition") is shared by too
        many unrelated titles, and each shared key costs a comparison.
        """
        longest = sorted(self.title_words, key=lambda w: (-len(w), w))[:3]
        return [f"{a} {b}" for i, a in enumerate(longest) for b in longest[i + 1 :]]

    def same_title(self, other: _Story) -> float:
        """Similarity of two near-identical titles (0 when they are not)."""
        if not self.title_words or not other.title_words or self.numbers != other.numbers:
            return 0.0  # "Week 12" and "Week 13" are two stories
        shared = len(self.title_words & other.title_words)
        if shared < 0.7 * max(len(self.title_words), len(other.title_words)):
            return 0.0
        ratio = difflib.SequenceMatcher(None, self.title, other.title).ratio()
        return ratio if ratio >= TITLE_RATIO else 0.0

    def same_text(self, other: _Story) -> float:
        """Estimated Jaccard similarity of the two texts' shingles (0 below the threshold)."""
        if not self.sketch or not other.sketch:
            return 0.0
        both = self.sketch & other.sketch
        if len(both) < TEXT_SIMILARITY * min(SKETCH_SIZE, len(self.sketch), len(other.sketch)):
            return 0.0  # cannot reach the threshold: skip the sort
        union = sorted(self.sketch | other.sketch)[:SKETCH_SIZE]
        similarity = sum(1 for h in union if h in both) / len(union)
        return similarity if similarity >= TEXT_SIMILARITY else 0.0


def _sketch(text: str) -> frozenset[int]:
    """A bottom-k MinHash sketch of the text's word shingles (empty for short texts)."""
    tokens = words(text)
    if len(tokens) < MIN_TEXT_WORDS:
        return frozenset()
    hashes = {
        zlib.crc32(" ".join(tokens[i : i + SHINGLE]).encode("utf-8"))
        for i in range(len(tokens) - SHINGLE + 1)
    }
    return frozenset(sorted(hashes)[:SKETCH_SIZE])


@dataclass
class StoryIndex:
    """Recent stories, indexed to find near-duplicates without comparing every pair."""

    stories: dict[int, _Story] = field(default_factory=dict)
    by_title: dict[str, set[int]] = field(default_factory=dict)
    by_hash: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, since: dt.datetime) -> StoryIndex:
        index = cls()
        for article_id, source, title, text, published in articles.recent_stories(conn, since):
            index.add(article_id, source, title, text, published)
        return index

    def add(
        self, article_id: int, source: str, title: str, text: str, published: dt.datetime
    ) -> None:
        self.add_story(article_id, _Story.of(source, title, text, published))

    def add_story(self, article_id: int, story: _Story) -> None:
        self.stories[article_id] = story
        for key in story.blocking_keys():
            self.by_title.setdefault(key, set()).add(article_id)
        for value in sorted(story.sketch)[:8]:
            self.by_hash.setdefault(value, set()).add(article_id)

    def find(self, story: _Story) -> int | None:
        """A stored story from another source that this one near-duplicates, if any."""
        source, published = story.source, story.published
        candidates: set[int] = set()
        buckets = [self.by_title.get(key, set()) for key in story.blocking_keys()]
        buckets += [self.by_hash.get(value, set()) for value in sorted(story.sketch)[:8]]
        for bucket in buckets:
            # A key shared by very many stories is boilerplate ("read more on our
            # site"), not a sign of the same story; comparing them all would be slow.
            if len(bucket) <= MAX_BUCKET:
                candidates |= bucket
        best: tuple[float, int] | None = None
        for article_id in candidates:
            other = self.stories[article_id]
            if other.source == source or abs(other.published - published) > NEAR_IN_TIME:
                continue
            score = max(story.same_title(other), story.same_text(other))
            if score and (best is None or score > best[0]):
                best = (score, article_id)
        return None if best is None else best[1]


_CHUNK = 500
"""Values bound in one IN (...) list: well under every database's limit on parameters."""


class Deduper:
    """Saves sources' batches; used from one thread at a time (the collector's writer)."""

    def __init__(self, store: Store, weights: Mapping[str, float], now: dt.datetime) -> None:
        self.store = store
        self.weights = weights
        self.now = now
        self._index: StoryIndex | None = None
        self._stories: dict[int, _Story] = {}

    def known_urls(self, source: str, urls: list[str], guids: list[str]) -> set[str]:
        """Which of these entries are already stored (so their pages need no fetching)."""
        return articles.known_keys(self.store, source, urls, guids)

    def save(
        self, source: str, url: str, batch: list[Candidate], state: dict[str, Any]
    ) -> tuple[int, int]:
        """Store ``batch`` and the source's fetch ``state`` together; return (new, updated)."""
        updated = 0
        inserts: list[dict[str, Any]] = []  # new rows, written at the end in one statement
        indexed: list[tuple[dict[str, Any], Article]] = []
        with self.store.begin() as conn:
            rows = self._existing(conn, source, batch)
            for candidate in batch:
                article = candidate.article
                match = self._match(conn, rows, article)
                values = articles.row_values(article, self.now)
                if match is not None and match.get("id") is None:
                    match.update(values)  # listed twice in this feed: the later one wins
                    continue
                if match is None:
                    row = dict(values, collected_at=self.now)
                    inserts.append(row)
                elif match["source"] == source or self._outweighs(source, match["source"]):
                    if match["source"] == source:
                        if not candidate.dated:
                            values["published_at"] = match["published_at"]
                        if candidate.partial:
                            for name in _FROM_PAGE:
                                values[name] = match[name]
                    changed = match["source"] != source or any(
                        values[name] != match[name] for name in _COMPARED
                    )
                    if not changed:
                        continue
                    articles.update(conn, match["id"], values)
                    updated += 1
                    row = dict(values, id=match["id"])
                else:
                    continue  # the same story is stored for a heavier source
                for key in ("guid", "url", "fingerprint"):
                    if row[key]:
                        rows[key][self._key(key, source, row[key])] = row
                indexed.append((row, article))
            ids = articles.insert(conn, inserts)
            for row, article_id in zip(inserts, ids, strict=True):
                row["id"] = article_id
            articles.save_fetch_state(conn, source, url, dict(state, new_articles=len(inserts)))
        if self._index is not None:
            for row, article in indexed:
                story = self._stories.pop(id(article), None) or _Story.of(
                    article.source, row["title"], row["text"], article.published
                )
                self._index.add_story(int(row["id"]), story)
        self._stories.clear()
        return len(inserts), updated

    def _outweighs(self, source: str, other: str) -> bool:
        return self.weights.get(source, 0.0) > self.weights.get(other, 0.0)

    @staticmethod
    def _key(kind: str, source: str, value: str) -> str:
        # A GUID identifies an entry only within its own feed.
        return f"{source}\n{value}" if kind == "guid" else value

    def _existing(
        self, conn: Connection, source: str, batch: list[Candidate]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Stored rows sharing a GUID, URL or fingerprint with the batch, in one query.

        One statement, built once, for the three kinds: building and running a query
        costs far more in SQLAlchemy than in the database. A value is looked for in
        exactly one query (its chunk's), which lists rows in id order, so each key
        keeps its oldest row.
        """
        rows: dict[str, dict[str, dict[str, Any]]] = {"guid": {}, "url": {}, "fingerprint": {}}
        wanted = {
            "guid": sorted({c.article.guid for c in batch if c.article.guid}),
            "url": sorted({c.article.url for c in batch}),
            "fingerprint": sorted({c.article.fingerprint for c in batch if c.article.fingerprint}),
        }
        for start in range(0, max(len(values) for values in wanted.values()), _CHUNK):
            chunk = {kind: values[start : start + _CHUNK] for kind, values in wanted.items()}
            looked_for = {kind: set(values) for kind, values in chunk.items()}
            for row in articles.matching(conn, source, chunk):
                for kind, values in looked_for.items():
                    value = row[kind]
                    if value in values and (kind != "guid" or row["source"] == source):
                        rows[kind].setdefault(self._key(kind, row["source"], value), row)
        return rows

    def _match(
        self, conn: Connection, rows: dict[str, dict[str, dict[str, Any]]], article: Article
    ) -> dict[str, Any] | None:
        if article.guid:
            found = rows["guid"].get(self._key("guid", article.source, article.guid))
            if found is not None:
                return found
        found = rows["url"].get(article.url)
        if found is None and article.fingerprint:
            found = rows["fingerprint"].get(article.fingerprint)
        if found is not None:
            return found
        if self._index is None:
            self._index = StoryIndex.load(conn, self.now - WINDOW)
        story = _Story.of(article.source, article.title, article.text, article.published)
        self._stories[id(article)] = story  # indexed as is once stored
        article_id = self._index.find(story)
        if article_id is None:
            return None
        return articles.row(conn, article_id)
