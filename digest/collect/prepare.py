"""Parsing feeds and preparing their entries, in worker processes when a run is large.

Parsing a feed and computing what deduplication needs of each entry (its
language, content fingerprint and near-duplicate sketch) is pure CPU work in
Python: about 6 ms for a feed of ten articles, two thirds of a 200-feed run's
CPU. Threads cannot run it beside the event loop and the database writer (one
interpreter lock), so a run with many sources, on a machine with cores to
spare (three or more), hands it to a small pool of worker processes, and the
main process is left with HTTP and storing. A small run (the demo, a handful
of feeds) does it in a thread: a pool costs more to start than it saves.

The pool's processes are forked from a server process started once per program
(``forkserver``) that has this module imported already, so each costs a fork,
not an interpreter start; where there is no fork (Windows), they are spawned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from ..language import detect_language
from .dedupe import Story
from .normalize import fingerprint, words
from .parse import Entry, Feed, parse_feed

__all__ = ["PARALLEL_SOURCES", "Prepared", "parse_and_prepare", "parser_pool", "prepare_entry"]

PARALLEL_SOURCES = 8
"""Runs with at least this many sources parse in worker processes."""
MAX_WORKERS = 4


@dataclass(frozen=True)
class Prepared:
    """What storing an entry needs beyond the entry itself."""

    language: str
    fingerprint: str
    story: Story


def prepare_entry(source: str, hint: str, entry: Entry, now: dt.datetime) -> Prepared:
    """``entry``'s language (``hint`` when too short to tell), fingerprint and story."""
    published = entry.published or now
    text_words = words(entry.text)  # the fingerprint and the story share them
    return Prepared(
        language=detect_language(f"{entry.title}\n{entry.text}", hint),
        fingerprint=fingerprint(entry.title, entry.text, text_words=text_words),
        story=Story.of(source, entry.title, entry.text, published, text_words=text_words),
    )


def parse_and_prepare(
    body: bytes,
    url: str,
    content_type: str,
    now: dt.datetime,
    source: str,
    hint: str,
    limit: int,
) -> tuple[Feed, tuple[Prepared, ...]]:
    """The feed (its first ``limit`` entries) and each entry's ``Prepared``, in order.

    Raises ``NotAFeed`` like ``parse_feed``; it crosses the process boundary intact.
    """
    feed = parse_feed(body, url, content_type, now)
    feed = dataclasses.replace(feed, entries=feed.entries[:limit])
    return feed, tuple(prepare_entry(source, hint, entry, now) for entry in feed.entries)


def parser_pool(sources: int, workers: int | None = None) -> Executor | None:
    """A pool of worker processes for a run of ``sources`` sources, or None (use a thread).

    ``workers`` overrides the number chosen from the machine's cores (benchmarks).
    """
    # One core stays with the event loop and the database writer. On two cores a
    # single worker does not pay for itself: measured on a shared 2-core machine,
    # the 200-feed benchmark was no faster, and the fork server and the copies of
    # every parsed feed cost CPU the main process could not spare.
    if workers is None:
        workers = min(MAX_WORKERS, (os.cpu_count() or 1) - 1)
        if workers < 2:
            return None
    if sources < PARALLEL_SOURCES or workers < 1:
        return None
    context: BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        server = multiprocessing.get_context("forkserver")
        # Only takes effect before the server starts (the first pool of the program).
        server.set_forkserver_preload([__name__])
        context = server
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context)
