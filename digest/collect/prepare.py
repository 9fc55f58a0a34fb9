"""Parsing feeds and preparing their entries, in worker processes when a run is large.

Parsing a feed and computing what deduplication needs of each entry (its
language, content fingerprint and near-duplicate sketch) is pure CPU work in
Python: about 8 ms for a feed of ten articles, half of a 200-feed run's CPU.
Threads cannot run it beside the event loop and the database writer (one
interpreter lock), so a run with many sources, on a machine with two cores or
more, hands most of it to a small pool of worker processes (``parsing`` shares
the feeds out), and the main process is left with HTTP, storing and what
parsing it has time for. A small run (the demo, a handful of feeds) parses in
a thread: a pool costs more to start than it saves.

The pool's processes are forked from a server process started once per program
(``forkserver``) that has this module imported already, so each costs a fork,
not an interpreter start; where there is no fork (Windows), they are spawned.
This module and what it imports stay free of the HTTP client and the database
layer: the server imports them at its start, on the run's clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from ..language import detect_language
from .normalize import fingerprint, words
from .parse import Entry, Feed, parse_feed
from .story import Story

__all__ = [
    "PARALLEL_SOURCES",
    "Parsed",
    "Prepared",
    "parse_and_prepare",
    "parse_each",
    "parser_pool",
    "prepare_entry",
    "worker_count",
]

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


Parsed = tuple[Feed, tuple[Prepared, ...]]


def parse_and_prepare(
    body: bytes,
    url: str,
    content_type: str,
    now: dt.datetime,
    source: str,
    hint: str,
    limit: int,
) -> Parsed:
    """The feed (its first ``limit`` entries) and each entry's ``Prepared``, in order.

    Raises ``NotAFeed`` like ``parse_feed``.
    """
    feed = parse_feed(body, url, content_type, now)
    feed = dataclasses.replace(feed, entries=feed.entries[:limit])
    return feed, tuple(prepare_entry(source, hint, entry, now) for entry in feed.entries)


def parse_each(batch: list[tuple[Any, ...]]) -> list[tuple[bool, Any]]:
    """``parse_and_prepare(*args)`` for each ``args`` of ``batch``: ``(True, parsed)`` or
    ``(False, exception)`` each, so that one feed's failure is that feed's alone."""
    outcomes: list[tuple[bool, Any]] = []
    for args in batch:
        try:
            outcomes.append((True, parse_and_prepare(*args)))
        except Exception as exc:
            outcomes.append((False, _picklable(exc)))
    return outcomes


def _picklable(exc: Exception) -> Exception:
    """``exc``, or its type and message in an error that survives being pickled back.

    ``NotAFeed`` (with its discovered feed links) and the usual errors do; one that
    did not would fail the whole batch it came back with.
    """
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def worker_count(sources: int, workers: int | None = None) -> int:
    """How many parsing worker processes a run of ``sources`` sources gets (0: a thread).

    ``workers`` overrides the number chosen from the machine's cores (benchmarks).
    """
    if workers is None:
        # One core stays with the event loop and the database writer. On two cores
        # one worker halves a large first run's wall time, so long as it starts
        # before the first feed arrives (see ``parser_pool``) and imports only what
        # parsing needs; a second worker there only takes turns with the first.
        workers = min(MAX_WORKERS, (os.cpu_count() or 1) - 1)
    return workers if sources >= PARALLEL_SOURCES and workers >= 1 else 0


def parser_pool(sources: int, workers: int | None = None) -> Executor | None:
    """A pool of worker processes for a run of ``sources`` sources, or None (use a thread).

    ``workers`` overrides the number chosen from the machine's cores (benchmarks).
    """
    workers = worker_count(sources, workers)
    if not workers:
        return None
    context: BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        server = multiprocessing.get_context("forkserver")
        # Only takes effect before the server starts (the first pool of the program).
        server.set_forkserver_preload([__name__])
        context = server
    else:
        context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context)
    # Start the workers now, while the run waits for its first responses, rather
    # than when the first feed arrives: a worker's start (the fork server's own
    # start, the first time) would otherwise delay every feed behind it. The pool
    # starts a worker for each task submitted while none is idle: tasks that keep
    # each busy a moment have it start them all here, with the main script hidden.
    try:
        with _main_script_hidden():
            for _ in range(workers):
                pool.submit(time.sleep, 0.05)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Worker processes started inside this block do not run the program's main script.

    ``multiprocessing`` has every new worker import the parent's main script again
    (as ``__mp_main__``), in case the work sent to it was defined there. Ours never
    is (it lives in this module), and for ``digest`` that script is the whole
    command line: about 0.5 s of CPU per worker before its first feed. Python
    3.11's fork server is meant to import it once for all its forks, but never
    does (it looks up the script's path under a key the parent does not set). The
    workers learn of the script from ``sys.modules["__main__"]`` as each starts;
    an empty stand-in there for the moment leaves them nothing to import. The
    moment lasts as long as the workers take to start (the first time, the fork
    server's start too: a few tenths of a second); code of this program running
    meanwhile in other threads (HTTP, the database writer) does not look there.
    """
    with _MAIN_SWAP:  # two runs starting at once must not save each other's stand-in
        script = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = script


_MAIN_SWAP = threading.Lock()
