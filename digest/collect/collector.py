"""One collect run: every source concurrently, each one to a report line.

Per source: skip it if a ``Retry-After`` is still running; load the document
(HTTP with conditional GET, or a local file); parse it, or discover the feed an
HTML page announces; keep entries that pass the source's keyword filters;
fetch full text for new teasers; store articles and fetch state in one
transaction; report. Network work runs concurrently on one event loop; parsing
runs beside it, in a thread and, in a large run, in worker processes too
(``parsing``, ``prepare``), and page extraction in threads; every database write goes
through one writer thread (``writer``), so writes never contend and
deduplication sees every earlier source's articles; sources saved at the same
moment share a commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from rich.markup import escape
from rich.table import Table

from ..config import Settings, SourceSettings
from ..db import Store, articles
from ..db.schema import utcnow
from ..models import Article
from .dedupe import Candidate, Deduper
from .fetch import HTML_ACCEPT, Fetcher, FetchError
from .fulltext import enrich, extract, require_extractor, wants_full_text
from .images import lead_image
from .normalize import fold, is_web_url
from .parse import Entry, Feed, NotAFeed
from .parsing import Parsing
from .prepare import Parsed, Prepared, prepare_entry
from .writer import Writer

__all__ = ["CollectReport", "SourceReport", "collect", "health_table"]

log = logging.getLogger(__name__)

MAX_ENTRIES = 500
"""Entries read from one feed per run (the newest first, as feeds list them)."""
MAX_PAGES = 30
"""Article pages fetched for full text per source per run."""
PAGES_PER_HOST = 4
"""Article pages fetched from one host at the same time: stricter, for pages, than
``[collect] per_host``, which bounds every request to a host, feeds and pages together."""
BACKLOG = 32
"""Sources in progress beyond ``concurrency``: fetched documents waiting to be parsed and
stored. Each holds its body (up to ``max_bytes``) until stored: with the defaults, memory
is bounded by (200 + 32) × 5 MB in the worst case, a few MB in practice."""

Status = Literal["ok", "not_modified", "error", "skipped"]


@dataclass(frozen=True)
class SourceReport:
    name: str
    url: str
    status: Status
    new: int
    updated: int
    error: str
    """One line: for a failed source the reason ("HTTP 404", "timed out after 20s"…); for a
    healthy one what it could not keep or merged away ("2 entries skipped: no web link"),
    so that a feed that yields nothing never looks fine in silence. Empty otherwise."""
    consecutive_failures: int
    flagged: bool
    """Failing for ``[collect] failing_after`` runs in a row or more."""


@dataclass(frozen=True)
class CollectReport:
    sources: tuple[SourceReport, ...]

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if s.status == "error"]

    @property
    def new(self) -> int:
        return sum(s.new for s in self.sources)

    @property
    def updated(self) -> int:
        return sum(s.updated for s in self.sources)


def collect(
    settings: Settings,
    store: Store,
    *,
    progress: Callable[[SourceReport], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CollectReport:
    """Fetch every configured source once and store what is new; never raises for one source.

    Raises ``ConfigError`` before fetching anything when a source wants full text
    and the extractor cannot be imported (an incomplete install).
    """
    if any(s.full_text != "never" for s in settings.sources):
        require_extractor()
    run = _Run(settings, store, progress, transport)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run.main())
    # Called from code already running an event loop: give the run a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run.main()).result()


@dataclass(frozen=True)
class _Document:
    url: str
    """The URL (or path) actually read: the feed, after discovery."""
    body: bytes
    content_type: str
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False
    base: str = ""
    """Where the document finally came from (after redirects): relative links start there."""


class _Run:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        progress: Callable[[SourceReport], None] | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.settings = settings
        self.limits = settings.collect
        self.store = store
        self.progress = progress
        self.transport = transport
        self.now = utcnow()
        self.deduper = Deduper(store, {s.name: s.weight for s in settings.sources}, self.now)

    async def main(self) -> CollectReport:
        states = {row["name"]: row for row in articles.source_states(self.store)}
        self.writer = Writer(self.store, self.deduper.forget)
        self.sources_in_progress = asyncio.Semaphore(max(1, self.limits.concurrency) + BACKLOG)
        self.pages_per_host: dict[str, asyncio.Semaphore] = {}
        self.parsing = Parsing(len(self.settings.sources))
        try:
            async with Fetcher(self.limits, transport=self.transport) as fetcher:
                self.fetcher = fetcher
                tasks: dict[int, asyncio.Task[SourceReport]] = {}
                first: dict[str, int] = {}  # a name's first source; later ones are duplicates
                for index, source in enumerate(self.settings.sources):
                    first.setdefault(source.name, index)
                # Sources start in turns of one per host: a site listed two hundred
                # times first, waiting for its turns (``per_host``), must not hold
                # every place in progress while the other sites wait behind it.
                for index in _one_per_host_in_turn(self.settings.sources):
                    source = self.settings.sources[index]
                    state = states.get(source.name, {})
                    job = self._bounded(source, state, first[source.name] != index)
                    tasks[index] = asyncio.create_task(job)
                for finished in asyncio.as_completed(tasks.values()):
                    report = await finished
                    if self.progress is not None:
                        self.progress(report)
                reports = [tasks[index].result() for index in sorted(tasks)]
        finally:
            self.writer.close()
            await self.parsing.close()
        return CollectReport(tuple(reports))

    # -- one source --------------------------------------------------------------

    async def _bounded(
        self, source: SourceSettings, state: dict[str, Any], duplicate: bool
    ) -> SourceReport:
        # Requests in flight are bounded by the fetcher; this bounds the sources in
        # progress, so that fetched documents waiting to be parsed and stored (each
        # up to max_bytes) cannot pile up in memory when parsing is the slower part.
        async with self.sources_in_progress:
            return await self._source(source, state, duplicate)

    async def _source(
        self, source: SourceSettings, state: dict[str, Any], duplicate: bool
    ) -> SourceReport:
        failures = int(state.get("consecutive_failures") or 0)
        if duplicate:
            return self._report(source, "error", error="duplicate source name in the config")
        retry_after = state.get("retry_after")
        if retry_after is not None and retry_after > self.now:
            return self._report(
                source,
                "skipped",
                error=f"rate-limited: next try after {retry_after:%Y-%m-%d %H:%M} UTC",
                failures=failures,
            )
        try:
            document = await self._load(source, state)
            parsed = None
            if not document.not_modified:
                document, parsed = await self._parse(source, document, state)
            status: Status = "ok" if parsed is not None else "not_modified"
            batch: list[Candidate] = []
            notes: list[str] | None = None
            feed = None if parsed is None else parsed[0]
            if parsed is not None and feed is not None:
                batch = await self._batch(source, feed, parsed[1])
                notes = [
                    f"{count} {'entry' if count == 1 else 'entries'} skipped: {reason}"
                    for reason, count in sorted(feed.skipped.items())
                ]
            fetch_state: dict[str, Any] = {
                "last_fetch_at": self.now,
                "last_success_at": self.now,
                "last_status": status,
                "consecutive_failures": 0,
                "retry_after": None,
            }
            if feed is not None:
                fetch_state["etag"] = document.etag or None
                fetch_state["last_modified"] = document.last_modified or None
            previous = str(state.get("last_error") or "")
            if notes is None and state.get("last_status") == "error":
                notes, previous = [], ""  # recovered: the old error goes
            saved = await self.writer.in_group(
                self.deduper.save_in, source.name, document.url, batch, fetch_state, notes
            )
            note = saved.note if notes is not None else previous
            return self._report(source, status, new=saved.new, updated=saved.updated, error=note)
        except (FetchError, NotAFeed, OSError) as exc:
            error = _one_line(exc)
            retry = exc.retry_after if isinstance(exc, FetchError) else None
        except Exception as exc:  # a bug must not cost the other sources their run
            log.exception("collecting %s failed", source.name)
            error = f"internal error: {type(exc).__name__}: {_one_line(exc)}"
            retry = None
        failures += 1
        if retry is not None:
            error += f" (next try after {retry:%Y-%m-%d %H:%M} UTC)"
        try:
            await self.writer.in_group(
                articles.save_fetch_state,
                source.name,
                str(state.get("url") or source.url),
                {
                    "last_fetch_at": self.now,
                    "last_status": "error",
                    "last_error": error,
                    "consecutive_failures": failures,
                    "retry_after": retry,
                    "new_articles": 0,
                },
            )
        except Exception:
            log.exception("recording the failure of %s failed", source.name)
        return self._report(source, "error", error=error, failures=failures)

    def _report(
        self,
        source: SourceSettings,
        status: Status,
        *,
        new: int = 0,
        updated: int = 0,
        error: str = "",
        failures: int = 0,
    ) -> SourceReport:
        return SourceReport(
            name=source.name,
            url=source.url,
            status=status,
            new=new,
            updated=updated,
            error=error,
            consecutive_failures=failures,
            flagged=failures >= max(1, self.limits.failing_after),
        )

    # -- loading -------------------------------------------------------------------

    async def _load(self, source: SourceSettings, state: dict[str, Any]) -> _Document:
        scheme = urlsplit(source.url).scheme.lower()
        if scheme == "file" or (not scheme or len(scheme) == 1):  # a path (C: on Windows)
            return await asyncio.to_thread(self._read_file, source.url, state)
        if scheme not in ("http", "https"):
            raise FetchError(f"unsupported URL scheme {scheme!r} (http, https or a file path)")
        return await self._get(source.url, state)

    async def _parse(
        self, source: SourceSettings, document: _Document, state: dict[str, Any]
    ) -> tuple[_Document, Parsed | None]:
        """The feed in ``document``, or in the feed an HTML page announces (one level)."""
        try:
            return document, await self._parse_document(source, document)
        except NotAFeed as exc:
            if not exc.feeds or document.url != source.url or not is_web_url(source.url):
                raise
            feed_url = exc.feeds[0]
        # A web page announcing its feed: read the feed, conditionally if we know it.
        document = await self._get(feed_url, state)
        if document.not_modified:
            return document, None
        return document, await self._parse_document(source, document)

    async def _parse_document(self, source: SourceSettings, document: _Document) -> Parsed:
        base = document.base or document.url
        args = (document.body, base, document.content_type, self.now)
        more = (source.name, source.language, MAX_ENTRIES)
        return await self.parsing.parse(*args, *more)

    async def _get(self, url: str, state: dict[str, Any]) -> _Document:
        # Validators belong to the URL they came from.
        same = state.get("url") == url
        response = await self.fetcher.get(
            url,
            etag=str(state.get("etag") or "") if same else "",
            last_modified=str(state.get("last_modified") or "") if same else "",
        )
        return _Document(
            url=url,
            body=response.body,
            content_type=response.content_type,
            etag=response.headers.get("etag", ""),
            last_modified=response.headers.get("last-modified", ""),
            not_modified=response.not_modified,
            base=response.url,
        )

    def _read_file(self, location: str, state: dict[str, Any]) -> _Document:
        path = (
            Path(url2pathname(urlsplit(location).path))
            if location.startswith("file:")
            else Path(location)
        )
        stat = path.stat()
        if stat.st_size > self.limits.max_bytes:
            raise FetchError(
                f"file larger than {self.limits.max_bytes} bytes ([collect] max_bytes)"
            )
        # A file's size and modification time play the part of an ETag.
        tag = f'"file-{stat.st_size}-{stat.st_mtime_ns}"'
        if state.get("url") == str(path) and state.get("etag") == tag:
            return _Document(str(path), b"", "", etag=tag, not_modified=True)
        return _Document(str(path), path.read_bytes(), "", etag=tag)

    # -- entries -----------------------------------------------------------------------

    async def _batch(
        self, source: SourceSettings, feed: Feed, prepared: tuple[Prepared, ...]
    ) -> list[Candidate]:
        wanted = [
            (entry, ready)
            for entry, ready in zip(feed.entries, prepared, strict=True)
            if _wanted(source, entry)
        ]
        if not wanted:
            return []
        entries = [entry for entry, _ in wanted]
        ready: list[Prepared | None] = [ready for _, ready in wanted]
        teaser = self.limits.teaser_chars
        teasers = [
            i
            for i, e in enumerate(entries)
            if e.own_link and wants_full_text(source.full_text, e, teaser)
        ]
        known: set[str] = set()
        if teasers:  # only pages of entries not stored yet are fetched
            known = await self.writer.call(
                self.deduper.known_urls,
                source.name,
                [entries[i].url for i in teasers],
                [entries[i].guid for i in teasers],
            )
        fetch = [
            i
            for i in teasers
            if entries[i].url not in known and not (entries[i].guid and entries[i].guid in known)
        ][:MAX_PAGES]
        pages = await asyncio.gather(*(self._full_text(entries[i]) for i in fetch))
        fetched, teasers_set = set(fetch), set(teasers)
        for i, entry in zip(fetch, pages, strict=True):
            if entry is not entries[i]:
                entries[i], ready[i] = entry, None  # new text: prepared again
        return [
            self._candidate(
                source,
                entry,
                ready[i] or prepare_entry(source.name, source.language, entry, self.now),
                partial=i in teasers_set and i not in fetched,
            )
            for i, entry in enumerate(entries)
        ]

    async def _full_text(self, entry: Entry) -> Entry:
        # Politeness: a feed's teasers mostly point to one site; ask it a few at a time.
        host = urlsplit(entry.url).hostname or ""
        slots = self.pages_per_host.setdefault(host, asyncio.Semaphore(PAGES_PER_HOST))
        try:
            async with slots:
                response = await self.fetcher.get(entry.url, accept=HTML_ACCEPT)
        except FetchError as exc:
            log.info("full text of %s not fetched: %s", entry.url, exc)
            return entry
        kind = response.content_type.lower()
        if response.not_modified or (kind and "html" not in kind):
            return entry
        extracted = await asyncio.to_thread(extract, response.body, response.url)
        return entry if extracted is None else enrich(entry, response.url, extracted)

    def _candidate(
        self, source: SourceSettings, entry: Entry, ready: Prepared, *, partial: bool
    ) -> Candidate:
        image_url, image_alt = lead_image(entry.image_url, entry.image_alt, entry.html)
        article = Article(
            source=source.name,
            url=entry.url,
            title=entry.title,
            text=entry.text,
            published=entry.published or self.now,
            guid=entry.guid,
            html=entry.html,
            author=entry.author,
            language=ready.language,
            image_url=image_url,
            image_alt=image_alt,
            fingerprint=ready.fingerprint,
        )
        return Candidate(
            article,
            dated=entry.published is not None,
            partial=partial,
            own_link=entry.own_link,
            story=ready.story,
        )


def _one_per_host_in_turn(sources: tuple[SourceSettings, ...]) -> list[int]:
    """Indexes of ``sources``: each host's first, then each host's second, and so on."""
    by_host: dict[str, list[int]] = {}
    for index, source in enumerate(sources):
        by_host.setdefault((urlsplit(source.url).hostname or ""), []).append(index)
    queues = list(by_host.values())
    order: list[int] = []
    for turn in range(max((len(queue) for queue in queues), default=0)):
        order.extend(queue[turn] for queue in queues if turn < len(queue))
    return order


def _wanted(source: SourceSettings, entry: Entry) -> bool:
    """The source's keyword filters, on title or text, case- and accent-insensitive."""
    if not source.include and not source.exclude:
        return True
    haystack = fold(f"{entry.title}\n{entry.text}")

    def has(keyword: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(fold(keyword.strip()))}(?!\w)", haystack) is not None

    if source.include and not any(has(k) for k in source.include):
        return False
    return not any(has(k) for k in source.exclude)


def _one_line(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())[:300]


def health_table(report: CollectReport) -> Table:
    """A rich ``Table`` of the run, one row per source (for ``digest collect``)."""
    table = Table(title="Sources", show_lines=False)
    for column in ("source", "status", "new", "updated", "failures", "error"):
        table.add_column(
            column, justify="right" if column in ("new", "updated", "failures") else "left"
        )
    style = {"ok": "green", "not_modified": "green", "skipped": "yellow", "error": "red"}
    for line in report.sources:
        status = f"[{style[line.status]}]{line.status.replace('_', ' ')}[/]"
        if line.flagged:
            status += " [bold red]⚑[/]"
        table.add_row(
            escape(line.name),
            status,
            str(line.new),
            str(line.updated),
            str(line.consecutive_failures),
            escape(line.error),
        )
    return table
