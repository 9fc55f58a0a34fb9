"""Many small connection pools in place of one large one.

httpcore's connection pool, each time it hands out or takes back a connection,
asks every idle connection whether there are too many idle connections, which
it counts by asking every connection again: its cost grows with the square of
the connections it holds. Measured with cProfile on the 200-feed benchmark (one
host), a first run made 1.2 million idle checks at 32 connections and 6.8
million at 100, seconds of CPU that grew faster than the requests did.

``ShardedTransport`` spreads the connections over pools of at most ``SHARD``
each, so that cost stays flat however many requests are in flight. The total
is unchanged (the shards together hold no more connections than one pool of
``concurrency`` would), and keep-alive still works: a host's next request goes
to the shard that served it last, as long as that shard has room.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import httpx

__all__ = ["SHARD", "ShardedTransport"]

SHARD = 8
"""Connections held by one pool at most."""


class ShardedTransport(httpx.AsyncBaseTransport):
    """Up to ``connections`` requests in flight over pools of ``SHARD`` connections.

    ``make(size)`` builds one pool (a transport) of ``size`` connections. Each
    request goes to the shard its host used last if that one has room, else to
    the least busy shard; with requests in flight bounded by ``connections``
    (the caller's semaphore), a shard with room always exists.
    """

    def __init__(self, connections: int, make: Callable[[int], httpx.AsyncBaseTransport]) -> None:
        count = max(1, math.ceil(connections / SHARD))
        self._size = math.ceil(max(1, connections) / count)
        self._shards = [make(self._size) for _ in range(count)]
        self._busy = [0] * count
        self._last: dict[tuple[str, str, int | None], int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = (request.url.scheme, request.url.host, request.url.port)
        shard = self._last.get(origin)
        if shard is None or self._busy[shard] >= self._size:
            shard = min(range(len(self._shards)), key=self._busy.__getitem__)
        self._last[origin] = shard
        self._busy[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            self._busy[shard] -= 1
            raise
        if response.is_closed:  # read already (an in-memory response): nothing held
            self._release(shard)
        else:  # the connection is busy until the response is closed
            response.stream = _Released(response.stream, lambda: self._release(shard))
        return response

    def _release(self, shard: int) -> None:
        self._busy[shard] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Released(httpx.AsyncByteStream):
    """A response body that calls ``done`` once, when it is closed."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, done: Callable[[], None]
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._done is not None:
                done, self._done = self._done, None
                done()
