"""Small helpers the routes share: reading a form body, a client's address, rate limits.

Forms are plain urlencoded bodies parsed with the standard library, capped in
size: python-multipart would be one more dependency for a handful of fields.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import deque

from starlette.requests import Request

__all__ = ["MAX_BODY", "RateLimit", "client_of", "field", "read_form"]

MAX_BODY = 16_384


async def read_form(request: Request) -> dict[str, list[str]]:
    """The urlencoded fields of a POST, at most ``MAX_BODY`` bytes read."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            break
    return urllib.parse.parse_qs(body[:MAX_BODY].decode("utf-8", "replace"))


def field(form: dict[str, list[str]], name: str) -> str:
    """The first value of ``name``, stripped; empty when absent."""
    return (form.get(name) or [""])[0].strip()


def client_of(request: Request) -> str:
    """The client's address (uvicorn takes it from the trusted proxy's header)."""
    return request.client.host if request.client else "unknown"


class RateLimit:
    """At most ``limit`` events per ``seconds`` for each key, in this process's memory.

    A sliding window kept per key; keys whose events are all old are dropped, and
    the table is bounded so that a flood of distinct keys cannot grow it forever
    (when full, the oldest keys go first).
    """

    def __init__(self, limit: int, seconds: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.seconds = seconds
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Record an event for ``key``; False (and nothing recorded) when over the limit."""
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.seconds:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            if len(self._events) > self.max_keys:
                self._prune(now)
            return True

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.seconds]:
            del self._events[key]
        while len(self._events) > self.max_keys:
            del self._events[next(iter(self._events))]
