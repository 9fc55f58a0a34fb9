"""The ASGI application of ``digest serve``: routes, hosts, headers, access log.

Layers, from the outside in:

* ``SecurityHeaders`` adds the security headers to every answer, including
  Starlette's own 404/405 and the 500 page, and uvicorn never sees an answer
  without them;
* ``MaskedAccessLog`` logs one line per request, tokens masked;
* ``TrustedHostMiddleware`` refuses a ``Host`` that is not ``[web] base_url``'s
  (or one of ``[web] allowed_hosts``): nothing is built from a forged Host;
* the routes, with no redirect built from the request's URL (slash redirects
  are off, the only redirect is a relative one).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..db import Store
from ..errors import ConfigError
from ..i18n import web_language
from .archive import Archive
from .pages import SECURITY_HEADERS, Pages
from .signup import Signup, check_secret_key
from .unsubscribe import Tokens

__all__ = ["allowed_hosts", "create_app", "serve"]

log = logging.getLogger("digest.web")

_SECRET_PATHS = re.compile(r"^/(u|p|confirm)/[^/]*")


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class MaskedAccessLog:
    """One log line per request, with the tokens of ``/u/``, ``/p/`` and ``/confirm/`` masked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            path = _SECRET_PATHS.sub(lambda m: f"/{m.group(1)}/…", scope.get("path", ""))
            log.info("%s %s %s", scope.get("method", ""), path, status or 500)


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host names ``digest serve`` answers to: ``base_url``'s, then ``[web] allowed_hosts``."""
    host = urlsplit(settings.web.base_url).hostname
    if not host:
        raise ConfigError(
            f"[web] base_url {settings.web.base_url!r} has no host name",
            hint="set it to the public URL of `digest serve`, e.g. https://lettre.example.org",
        )
    return [host, *settings.web.allowed_hosts]


def create_app(settings: Settings, store: Store) -> ASGIApp:
    """The ASGI application of ``digest serve``.

    Signup (``/subscribe``, ``/confirm/…``) is served when ``[web] signup`` is on
    and ``DIGEST_SECRET_KEY`` is set; ``serve`` refuses to start when the key is
    missing, so an application without it is one made on purpose (tests, or a
    host that only needs unsubscribe and the archive).
    """
    pages = Pages(settings)
    signup = None
    if settings.web.signup and settings.secret_key:
        signup = Signup(settings, store, pages)
    tokens = Tokens(settings, store, pages, signup)
    archive = Archive(settings, store, pages, tokens.mailto)

    async def index(request: Request) -> Response:
        return RedirectResponse("/archive", status_code=303)  # relative: no Host in it

    routes = [
        Route("/", index, methods=["GET"]),
        # {token:path}: anything under /u/ or /p/, even with slashes, gets the same answer.
        Route("/u/{token:path}", tokens.unsubscribe_page, methods=["GET"]),
        Route("/u/{token:path}", tokens.unsubscribe, methods=["POST"]),
        Route("/p/{token:path}", tokens.preferences, methods=["GET"]),
        Route("/p/{token:path}", tokens.change_preferences, methods=["POST"]),
        Route("/archive", archive.index, methods=["GET"]),
        Route("/archive/feed.xml", archive.feed, methods=["GET"]),
        Route("/archive/{period}", archive.issue, methods=["GET"]),
    ]
    if signup is not None:
        routes += [
            Route("/subscribe", signup.form, methods=["GET"]),
            Route("/subscribe", signup.subscribe, methods=["POST"]),
            Route("/subscribe/embed", signup.embed, methods=["GET"]),
            Route("/confirm/{token:path}", signup.confirm_page, methods=["GET"]),
            Route("/confirm/{token:path}", signup.confirm, methods=["POST"]),
        ]

    def error_page(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        language = web_language("", request.headers.get("accept-language", ""))
        key = "not_found" if status in (404, 405) else "error"
        if status == 500:
            log.error("error answering %s: %r", request.url.path, exc)
        return pages.page(
            "message.html.j2",
            language,
            status=status,
            heading=pages.text(language, f"{key}_title"),
            paragraphs=[pages.text(language, key)],
            link=None,
        )

    handlers: dict[Any, Any] = {HTTPException: error_page, Exception: error_page}
    starlette = Starlette(routes=routes, exception_handlers=handlers)
    starlette.router.redirect_slashes = False  # it would build a URL from the Host header
    hosts = TrustedHostMiddleware(
        starlette, allowed_hosts=allowed_hosts(settings), www_redirect=False
    )
    return SecurityHeaders(MaskedAccessLog(hosts))


def serve(settings: Settings, store: Store, host: str, port: int) -> None:
    """Run the endpoints with uvicorn until interrupted."""
    import uvicorn

    if settings.web.signup:
        check_secret_key(settings)
    logging.getLogger("digest.web").setLevel(logging.INFO)
    uvicorn.run(
        create_app(settings, store),
        host=host,
        port=port,
        access_log=False,  # it would log tokens; MaskedAccessLog logs instead
        proxy_headers=True,
        server_header=False,
        log_level="info",
    )
