"""Fetching one URL under limits: deadlines, a byte cap, redirects checked hop by hop.

Every request the collector makes (feeds, discovered feeds, article pages) goes
through ``Fetcher.get``, so the limits hold everywhere:

- a connect deadline, and a total deadline for the whole exchange, body and
  redirects included (a server trickling one byte a second is cut off);
- a cap on the *decompressed* body, enforced while decompressing (a gzip bomb
  stops at the cap instead of filling memory first);
- at most ``max_redirects`` redirects, followed here so that each hop's URL is
  checked (http/https only) and connected to through the guard;
- a bound on requests in flight (``concurrency``), and on those to one host
  (``per_host``, by the URL's host name: a redirect elsewhere keeps its turn),
  over one keep-alive client whose connections are spread over small pools
  (see ``pools``).

Failures become ``FetchError`` whose message is the one-line reason shown to users.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import importlib.util
import sys
import zlib
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import httpx

from .. import __version__
from ..config import CollectSettings
from .guard import GuardedTransport, Refused, check_address, literal_address, parse_allow_list
from .pools import ShardedTransport

__all__ = ["FEED_ACCEPT", "HTML_ACCEPT", "FetchError", "Fetcher", "Response", "default_user_agent"]


FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, text/html;q=0.5, */*;q=0.1"
)
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"

_REDIRECTS = {301, 302, 303, 307, 308}

_MAX_RETRY_AFTER = dt.timedelta(days=7)

# httpcore asks "which async library?" by trying ``import sniffio`` each time it sets
# up a lock or an event, several times per request. Without sniffio installed, each
# try was a failed import (a search of sys.path under the import lock): with the
# same for feedparser (see parse.py), about 0.5 s of CPU in the 200-feed benchmark.
# A None entry makes the failure immediate and means the same (not installed:
# httpcore assumes asyncio, as before). Only ever set when sniffio is absent.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


def default_user_agent() -> str:
    # No invented project URL: deployments name themselves with [collect] user_agent
    # (a contact URL or address there is what feed owners look for).
    return f"digest/{__version__} (newsletter digest; feed reader)"


class FetchError(Exception):
    """A failed fetch; ``str()`` is the reason, e.g. ``HTTP 404``, ``timed out after 20s``."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: dt.datetime | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Response:
    url: str
    """The final URL, after redirects."""
    status: int
    body: bytes
    headers: httpx.Headers

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Fetcher:
    """One HTTP client for a whole collect run; use as ``async with``."""

    def __init__(
        self,
        settings: CollectSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.allowed = parse_allow_list(settings.allow_private)
        self._client = httpx.AsyncClient(
            transport=transport or ShardedTransport(settings.concurrency, self._pool),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": settings.user_agent or default_user_agent(),
                # Only encodings we decompress ourselves, under the byte cap.
                "Accept-Encoding": "gzip, deflate",
            },
        )
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def _pool(self, size: int) -> httpx.AsyncBaseTransport:
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=30.0
        )
        return GuardedTransport(self.allowed, limits)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def get(
        self, url: str, *, etag: str = "", last_modified: str = "", accept: str = FEED_ACCEPT
    ) -> Response:
        """GET ``url``; a 304 is a ``Response`` too, every failure a ``FetchError``."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        timeout = self.settings.timeout
        # A host's turn first, then a slot: a request waiting for its host holds no
        # slot that a request to another host could use.
        host = urlsplit(url).hostname or ""
        turns = self._hosts.get(host)
        if turns is None:
            turns = self._hosts[host] = asyncio.Semaphore(max(1, self.settings.per_host))
        async with turns, self._slots:
            try:
                async with asyncio.timeout(timeout):
                    return await self._follow(url, headers)
            except TimeoutError:
                raise FetchError(f"timed out after {timeout:g}s") from None
            except httpx.ConnectTimeout:
                raise FetchError(
                    f"connection timed out after {self.settings.connect_timeout:g}s"
                ) from None
            except httpx.TimeoutException:
                raise FetchError(f"timed out after {timeout:g}s") from None
            except httpx.ConnectError as exc:
                raise FetchError(f"cannot connect: {_reason(exc)}") from None
            except httpx.TransportError as exc:
                raise FetchError(f"connection failed: {_reason(exc)}") from None
            except Refused as exc:
                raise FetchError(str(exc)) from None

    async def _follow(self, url: str, headers: dict[str, str]) -> Response:
        seen = {url}
        for _hop in range(self.settings.max_redirects + 1):
            self._check_url(url)
            request = self._client.build_request("GET", url, headers=headers)
            response = await self._client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = urljoin(url, location.strip())
                    if url in seen:
                        raise FetchError(f"redirect loop at {url}")
                    seen.add(url)
                    continue
                if response.status_code == 304:
                    return Response(url, 304, b"", response.headers)
                if response.status_code >= 300:
                    raise FetchError(
                        f"HTTP {response.status_code}",
                        status=response.status_code,
                        retry_after=_retry_after(response),
                    )
                body = await self._read(response)
                return Response(url, response.status_code, body, response.headers)
            finally:
                await response.aclose()
        raise FetchError(f"too many redirects (more than {self.settings.max_redirects})")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Refused(
                f"refused: {parts.scheme or 'schemeless'} URL {url[:80]!r} (http/https only)"
            )
        if not parts.hostname:
            raise Refused(f"refused: no host in URL {url[:80]!r}")
        # The backend checks every connection; checking literal addresses here too
        # gives the same answer when a test or plugin supplies its own transport.
        literal = literal_address(parts.hostname)
        if literal is not None:
            check_address(literal, self.allowed)

    async def _read(self, response: httpx.Response) -> bytes:
        cap = self.settings.max_bytes
        too_big = FetchError(f"response larger than {cap} bytes ([collect] max_bytes)")
        decoder = _decoder(response.headers.get("content-encoding", ""))
        declared = response.headers.get("content-length", "")
        if decoder is None and declared.isdigit() and int(declared) > cap:
            raise too_big
        if response.is_stream_consumed:
            # Already read (an in-memory transport in tests): only the size is left to check.
            if len(response.content) > cap:
                raise too_big
            return response.content
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            try:
                data = decoder.decompress(raw, cap - size + 1) if decoder else raw
            except zlib.error:
                raise FetchError("corrupt compressed response") from None
            size += len(data)
            if size > cap:
                raise too_big
            chunks.append(data)
            # A decompressor stops at the cap with input left over: that is overflow too.
            if decoder is not None and decoder.unconsumed_tail:
                raise too_big
        return b"".join(chunks)


def _decoder(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # 32 + MAX_WBITS accepts zlib and gzip headers alike.
        return zlib.decompressobj(32 + zlib.MAX_WBITS)
    raise FetchError(f"unsupported content encoding {encoding!r}")


def _retry_after(response: httpx.Response) -> dt.datetime | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    now = dt.datetime.now(dt.UTC)
    if value.isdigit():
        when = now + dt.timedelta(seconds=int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    return min(max(when, now), now + _MAX_RETRY_AFTER)


def _reason(exc: BaseException) -> str:
    """The most telling line for a connection failure (the root cause, not the wrapper)."""
    pending: list[BaseException] = [exc]
    while pending:
        seen = pending.pop()
        if isinstance(seen, ConnectionRefusedError) or str(seen) == "connection refused":
            return "connection refused"
        if isinstance(seen, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(seen, BaseExceptionGroup):
            pending.extend(seen.exceptions)
        for linked in (seen.__cause__, seen.__context__):
            if linked is not None:
                pending.append(linked)
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]
