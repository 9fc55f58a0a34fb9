"""Keeping each story once, across runs and across sources, and storing a source's batch.

An entry is the same story as a stored article when, in this order:

1. it has the same GUID from the same source (an updated entry: the row is updated);
2. an earlier run merged this very entry (same source, same GUID or link) into it;
3. it has the same link (fragment included), or the same content fingerprint;
4. it is a near-duplicate from *another* source: a near-identical title, or a
   nearly identical text, published within a few days of each other.

Within one feed, entries the feed itself tells apart stay apart: two GUIDs the
feed lists side by side, two links (``#comment-1``, ``#comment-2``), two entries
listed with the same text are distinct stories. An entry that is no longer
listed may come back under a new GUID or link (a CMS migration): its link or
its text still finds it. Texts too short to identify a story
make no fingerprint (see ``normalize.fingerprint``).

When the match belongs to another source, the story stays with the source of
higher ``weight``: a heavier source takes the row over (its title, text and
link), a lighter one is dropped. Either way the absorbed entry is recorded in
``article_merges`` with the reason, so a merge can be explained (the source's
health note counts them) and the next run finds the same answer whatever has
changed around it. Near-duplicates are found with a small in-memory index of
stories (titles by their longest words, texts by a bottom-k MinHash sketch of
word shingles), loaded day by day around the dates of the entries compared:
an entry is compared with the stories published within ``NEAR_IN_TIME`` of it,
on the first run as on every later one, however old it is.

``Deduper.save_in`` writes one source's articles *and* its fetch state (ETag,
health) in the same transaction, which the collector's writer shares between
sources and rolls back whole when one fails: a source either gets all of this
run's articles and its new validators, or nothing (so a failed write can never
leave an ETag that would hide unstored entries behind a 304 next time).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..db import Connection, Store, articles
from ..models import Article
from .story import NEAR_IN_TIME, Story

__all__ = ["Candidate", "Deduper", "Saved", "Story", "StoryIndex"]

MAX_BUCKET = 50
"""Stories sharing one index key beyond which the key is boilerplate, not a sign of one story."""

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
    own_link: bool = True
    """False when the entry had no link of its own (its URL is the feed's site)."""
    story: Story | None = None
    """The article's ``Story``, if computed already (by the worker that parsed it)."""


@dataclass(frozen=True)
class Saved:
    """What ``Deduper.save_in`` did with a batch."""

    new: int
    updated: int
    note: str
    """The source's health note as stored (skipped entries, merges), "" when none."""


SAME_LINK = "same link"
SAME_TEXT = "same text"
NEAR_TITLE = "near-identical title"
NEAR_TEXT = "near-identical text"


@dataclass
class StoryIndex:
    """Stories, indexed to find near-duplicates without comparing every pair."""

    stories: dict[int, Story] = field(default_factory=dict)
    by_title: dict[str, set[int]] = field(default_factory=dict)
    by_hash: dict[int, set[int]] = field(default_factory=dict)
    days: set[dt.date] = field(default_factory=set)
    """Days whose stored stories are loaded (``cover``)."""
    covered: set[dt.date] = field(default_factory=set)
    """Publication days ``cover`` has already loaded everything for."""

    def cover(self, conn: Connection, published: dt.datetime) -> None:
        """Load the stored stories that could near-duplicate one published then.

        Day by day, each day once: what an entry is compared with depends on its
        own date only, never on when the run happens.
        """
        if published.date() in self.covered:  # most entries of a run share a few days
            return
        first = (published - NEAR_IN_TIME).date() - dt.timedelta(days=1)
        wanted = [first + dt.timedelta(days=n) for n in range(2 * NEAR_IN_TIME.days + 3)]
        missing = [day for day in wanted if day not in self.days]
        runs: list[list[dt.date]] = []
        for day in missing:
            if runs and runs[-1][-1] + dt.timedelta(days=1) == day:
                runs[-1].append(day)
            else:
                runs.append([day])
        for days in runs:
            start = dt.datetime.combine(days[0], dt.time(), dt.UTC)
            end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), dt.UTC)
            for article_id, source, title, text, when in articles.stories_between(conn, start, end):
                if article_id not in self.stories:
                    self.add(article_id, source, title, text, when)
            self.days.update(days)
        self.covered.add(published.date())

    def add(
        self, article_id: int, source: str, title: str, text: str, published: dt.datetime
    ) -> None:
        self.add_story(article_id, Story.of(source, title, text, published))

    def add_story(self, article_id: int, story: Story) -> None:
        self.stories[article_id] = story
        for key in story.title_keys:
            self.by_title.setdefault(key, set()).add(article_id)
        for value in story.text_keys:
            self.by_hash.setdefault(value, set()).add(article_id)

    @staticmethod
    def _bucketed(index: Mapping[Any, set[int]], keys: Iterable[Any]) -> set[int]:
        found: set[int] = set()
        for key in keys:
            bucket = index.get(key)
            # A key shared by very many stories is boilerplate ("read more on our
            # site"), not a sign of the same story; comparing them all would be slow.
            if bucket and len(bucket) <= MAX_BUCKET:
                found |= bucket
        return found

    def find(self, story: Story) -> int | None:
        """A stored story from another source that this one near-duplicates, if any."""
        found = self.match(story)
        return None if found is None else found[0]

    def match(self, story: Story) -> tuple[int, str] | None:
        """Like ``find``, with the reason: ``NEAR_TITLE`` or ``NEAR_TEXT``."""
        source, published = story.source, story.published
        # Titles are compared with stories sharing a title key, texts with stories
        # sharing a text hash: comparing every candidate both ways would double the
        # work for nothing (a text that shares none of its smallest hashes with
        # another is not nearly identical to it).
        by_title = self._bucketed(self.by_title, story.title_keys)
        by_text = self._bucketed(self.by_hash, story.text_keys)
        best: tuple[float, int, str] | None = None
        for article_id in sorted(by_title | by_text):  # ties go to the oldest row, every run
            other = self.stories[article_id]
            if other.source == source or abs(other.published - published) > NEAR_IN_TIME:
                continue
            title = story.same_title(other) if article_id in by_title else 0.0
            text = story.same_text(other) if article_id in by_text else 0.0
            score = max(title, text)
            if score and (best is None or score > best[0]):
                best = (score, article_id, NEAR_TITLE if title >= text else NEAR_TEXT)
        return None if best is None else (best[1], best[2])


_CHUNK = 500
"""Values bound in one IN (...) list: well under every database's limit on parameters."""


@dataclass
class _Known:
    """What the database already knows about a batch, read in a few queries."""

    rows: dict[str, dict[str, dict[str, Any]]]
    """Stored rows by "guid" (keyed with the source), "url", "fingerprint" and "id"."""
    merged: dict[tuple[str, str], tuple[int, str]]
    """This source's entries merged by earlier runs: ("guid" | "url", value) to (article, why)."""


class Deduper:
    """Saves sources' batches; used from one thread at a time (the collector's writer)."""

    def __init__(self, store: Store, weights: Mapping[str, float], now: dt.datetime) -> None:
        self.store = store
        self.weights = weights
        self.now = now
        self._index: StoryIndex | None = None
        self._stories: dict[int, Story] = {}
        self._merged_sources: set[str] | None = None
        """Sources with merged entries on record, read once per run and kept up to date by
        this run's saves: the others need no look-up. (Merges that a collect in another
        process records meanwhile are not seen: their entries are then matched by link,
        GUID or text, as on the run that merged them.)"""

    def known_urls(self, source: str, urls: list[str], guids: list[str]) -> set[str]:
        """Which of these entries are already stored or merged (their pages need no fetching)."""
        return articles.known_keys(self.store, source, urls, guids)

    def save_in(
        self,
        conn: Connection,
        source: str,
        url: str,
        batch: list[Candidate],
        state: dict[str, Any],
        notes: list[str] | None = None,
    ) -> Saved:
        """Store ``batch`` and the source's fetch ``state`` in the caller's transaction.

        ``notes`` (what the source could not keep) become its health note, stored
        with the state, followed by how many entries were merged into other
        sources' stories and why; None keeps the stored note (an unchanged feed).
        Several sources' saves may share the transaction (and its commit). The
        stories written are added to the near-duplicate index at once, so the next
        save of the same transaction is compared with them; if the caller
        rolls the transaction back, it must call ``forget``.
        """
        updated = 0
        inserts: list[dict[str, Any]] = []  # new rows, written at the end in one statement
        indexed: list[tuple[dict[str, Any], Article]] = []
        merges: list[dict[str, Any]] = []
        merged: Counter[str] = Counter()
        listed = _Listed(
            guids={c.article.guid for c in batch if c.article.guid},
            urls={c.article.url for c in batch if c.own_link},
        )
        known = self._existing(conn, source, batch)
        rows = known.rows
        for candidate in batch:
            article = candidate.article
            match, reason = self._match(conn, known, candidate, listed)
            values = articles.row_values(article, self.now)
            if match is not None and match.get("id") is None:
                match.update(values)  # listed twice in this feed: the later one wins
                continue
            if match is None:
                row = dict(values, collected_at=self.now)
                inserts.append(row)
            elif match["source"] != source and not self._outweighs(source, match["source"]):
                # The same story is stored for a heavier (or equal, earlier) source.
                merged[reason] += 1
                if not self._recorded(known, candidate, int(match["id"])):
                    merges.append(_merge(article, int(match["id"]), reason, self.now))
                continue
            else:
                if match["source"] == source:
                    if not candidate.dated:
                        values["published_at"] = match["published_at"]
                    if candidate.partial:
                        for name in _FROM_PAGE:
                            values[name] = match[name]
                else:  # a heavier source takes the story over: the lighter one's is absorbed
                    merges.append(_merge_row(match, reason, self.now))
                changed = match["source"] != source or any(
                    values[name] != match[name] for name in _COMPARED
                )
                if not changed:
                    continue
                articles.update(conn, match["id"], values)
                updated += 1
                row = dict(values, id=match["id"])
            for key in ("guid", "url", "fingerprint"):
                if row[key] and (key != "url" or candidate.own_link):
                    rows[key][self._key(key, source, row[key])] = row
            indexed.append((row, article))
        ids = articles.insert(conn, inserts)
        for row, article_id in zip(inserts, ids, strict=True):
            row["id"] = article_id
        articles.record_merges(conn, merges)
        if self._merged_sources is not None:
            self._merged_sources.update(merge["source"] for merge in merges)
        if merged and notes is not None:
            notes = [*notes, _merged_note(merged)]
        note = "; ".join(notes or [])
        state = dict(state, new_articles=len(inserts))
        if notes is not None:
            state["last_error"] = note or None
        articles.save_fetch_state(conn, source, url, state)
        if self._index is not None:
            for row, article in indexed:
                story = self._stories.pop(id(article), None) or Story.of(
                    article.source, row["title"], row["text"], article.published
                )
                self._index.add_story(int(row["id"]), story)
        self._stories.clear()
        return Saved(len(inserts), updated, note)

    def forget(self) -> None:
        """Drop what was learnt from saves that were rolled back: the index is read again."""
        self._index = None
        self._stories.clear()
        self._merged_sources = None

    def _outweighs(self, source: str, other: str) -> bool:
        return self.weights.get(source, 0.0) > self.weights.get(other, 0.0)

    @staticmethod
    def _key(kind: str, source: str, value: str) -> str:
        # A GUID identifies an entry only within its own feed.
        return f"{source}\n{value}" if kind == "guid" else str(value)

    @staticmethod
    def _recorded(known: _Known, candidate: Candidate, article_id: int) -> bool:
        article = candidate.article
        for kind, value in (("guid", article.guid), ("url", article.url)):
            if value and known.merged.get((kind, value), (None, ""))[0] == article_id:
                return True
        return False

    def _existing(self, conn: Connection, source: str, batch: list[Candidate]) -> _Known:
        """Stored rows sharing a GUID, URL or fingerprint with the batch, and earlier merges.

        One statement, built once, for the three kinds: building and running a query
        costs far more in SQLAlchemy than in the database. A value is looked for in
        exactly one query (its chunk's), which lists rows in id order, so each key
        keeps its oldest row.
        """
        rows: dict[str, dict[str, dict[str, Any]]] = {
            "guid": {},
            "url": {},
            "fingerprint": {},
            "id": {},
        }
        guids = sorted({c.article.guid for c in batch if c.article.guid})
        urls = sorted({c.article.url for c in batch if c.own_link})
        merged: dict[tuple[str, str], tuple[int, str]] = {}
        if self._merged_sources is None:
            self._merged_sources = articles.sources_with_merges(conn)
        # A source nothing was ever merged from (most, and all on a first run) skips the query.
        looked_up = source in self._merged_sources
        for start in range(0, max(len(guids), len(urls)) if looked_up else 0, _CHUNK):
            chunk = {"guid": guids[start : start + _CHUNK], "url": urls[start : start + _CHUNK]}
            for merge in articles.merged_entries(conn, source, chunk["url"], chunk["guid"]):
                for kind in ("guid", "url"):
                    value = merge[kind]
                    if value in chunk[kind]:
                        merged.setdefault(
                            (kind, value), (int(merge["article_id"]), merge["reason"])
                        )
        wanted: dict[str, list[Any]] = {
            "guid": guids,
            "url": urls,
            "fingerprint": sorted({c.article.fingerprint for c in batch if c.article.fingerprint}),
            "id": sorted({article_id for article_id, _ in merged.values()}),
        }
        for start in range(0, max(len(values) for values in wanted.values()), _CHUNK):
            chunk = {kind: values[start : start + _CHUNK] for kind, values in wanted.items()}
            looked_for = {kind: set(values) for kind, values in chunk.items()}
            for row in articles.matching(conn, source, chunk):
                for kind, values in looked_for.items():
                    value = row[kind]
                    if value in values and (kind != "guid" or row["source"] == source):
                        rows[kind].setdefault(self._key(kind, row["source"], value), row)
        return _Known(rows, merged)

    def _match(
        self, conn: Connection, known: _Known, candidate: Candidate, listed: _Listed
    ) -> tuple[dict[str, Any] | None, str]:
        """The row this entry is the story of, if any, and why (see the module docstring)."""
        article = candidate.article
        rows = known.rows
        if article.guid:
            found = rows["guid"].get(self._key("guid", article.source, article.guid))
            if found is not None and not (
                # One GUID on two links the feed lists side by side: two entries.
                candidate.own_link and found["url"] != article.url and found["url"] in listed.urls
            ):
                return found, "same entry"
        for kind, value in (("guid", article.guid), ("url", article.url)):
            if value and (kind, value) in known.merged:
                article_id, reason = known.merged[(kind, value)]
                found = rows["id"].get(str(article_id))
                if found is not None:
                    return found, reason
        found = rows["url"].get(article.url) if candidate.own_link else None
        if found is not None and not _told_apart(found, article, listed):
            return found, SAME_LINK
        found = rows["fingerprint"].get(article.fingerprint) if article.fingerprint else None
        if found is not None and not _listed_apart(found, article, listed):
            return found, SAME_TEXT
        if self._index is None:
            self._index = StoryIndex()
        self._index.cover(conn, article.published)
        story = candidate.story or Story.of(
            article.source, article.title, article.text, article.published
        )
        self._stories[id(article)] = story  # indexed as is once stored
        near = self._index.match(story)
        if near is None:
            return None, ""
        row = articles.row(conn, near[0])
        return (None, "") if row is None else (row, near[1])


def _listed_apart(row: dict[str, Any], article: Article, listed: _Listed) -> bool:
    """Whether the feed lists ``row``'s entry beside ``article``: then the same text is twice.

    An entry of the same feed that is no longer listed, under another GUID or
    link, is this one moved (a CMS migration): the same story.
    """
    if row["source"] != article.source:
        return False
    return (bool(row["guid"]) and row["guid"] != article.guid and row["guid"] in listed.guids) or (
        row["url"] != article.url and row["url"] in listed.urls
    )


@dataclass(frozen=True)
class _Listed:
    """The GUIDs and own links a feed lists in this batch."""

    guids: set[str]
    urls: set[str]


def _told_apart(row: dict[str, Any], article: Article, listed: _Listed) -> bool:
    """Whether the feed itself lists ``row``'s entry beside ``article`` under another GUID."""
    return (
        row["source"] == article.source
        and bool(row["guid"])
        and bool(article.guid)
        and row["guid"] != article.guid
        and row["guid"] in listed.guids
    )


def _merge(article: Article, article_id: int, reason: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "article_id": article_id,
        "source": article.source,
        "guid": article.guid,
        "url": article.url,
        "title": article.title,
        "reason": reason,
        "merged_at": now,
    }


def _merge_row(row: dict[str, Any], reason: str, now: dt.datetime) -> dict[str, Any]:
    """The record of a stored row's entry absorbed when a heavier source takes the row."""
    return {
        "article_id": row["id"],
        "source": row["source"],
        "guid": row["guid"],
        "url": row["url"],
        "title": row["title"],
        "reason": reason,
        "merged_at": now,
    }


def _merged_note(merged: Counter[str]) -> str:
    count = sum(merged.values())
    reasons = ", ".join(f"{why}: {n}" for why, n in sorted(merged.items()))
    entries = "entry" if count == 1 else "entries"
    return f"{count} {entries} merged into stories kept for other sources ({reasons})"
