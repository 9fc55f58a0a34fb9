"""The public web endpoints of ``digest serve``: one-click unsubscribe and the archive.

``POST /u/{token}`` is the RFC 8058 one-click endpoint that Gmail and Yahoo call
when a reader presses their "Unsubscribe" button: no login, no confirmation,
no redirect, a 2xx answer, and the address gets nothing more. ``GET /u/{token}``
is the link in the email's footer: a small page with a button that posts to
the same URL (a GET must not unsubscribe: link scanners and previews fetch
URLs in emails).

A token is 128 random bits stored with the subscriber. Anything that is not a
current token (malformed, altered, from another installation, erased) gets the
same answer and changes nothing. Tokens are never logged: uvicorn's access log
is replaced by one that masks them.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings
from .db import Store, issues
from .db import subscribers as subscriber_rows
from .models import RenderedIssue, Subscriber

__all__ = ["create_app", "serve"]

log = logging.getLogger("digest.web")

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_PERIOD = re.compile(r"^\d{4}-W\d{2}$")
MAX_BODY = 16_384

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

_PAGE = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto;
  padding: 0 1rem; line-height: 1.5; }}
button {{ font: inherit; padding: .6rem 1.2rem; cursor: pointer; }}
a {{ color: inherit; }}
li {{ margin: .3rem 0; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small French page; ``body`` is trusted HTML, everything inserted in it is escaped."""
    content = _PAGE.format(title=html.escape(title), body=body)
    return HTMLResponse(content, status_code=status, headers=_SECURITY_HEADERS)


def _mask(address: str) -> str:
    """``c•••@example.org``: enough for the reader to recognise their address."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


class _App:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        news = settings.newsletter
        self.title = news.title
        mailto = news.unsubscribe_mailto.removeprefix("mailto:") or news.from_address
        self.mailto = f"mailto:{mailto}?subject=unsubscribe"
        self._archive: dict[str, str] = {}
        self._archive_lock = threading.Lock()

    # -- unsubscribe ----------------------------------------------------------------

    def _find(self, token: str) -> Subscriber | None:
        """The subscriber of ``token``, or None; constant-time on the token itself."""
        if not _TOKEN.match(token):
            return None
        return subscriber_rows.by_token(self.store, token)

    def _invalid(self) -> HTMLResponse:
        # The same answer for every token that is not a current one, whatever the reason.
        mailto = html.escape(self.mailto)
        return _page(
            "Lien non reconnu",
            "<p>Ce lien de désabonnement n’est pas (ou plus) valide.</p>"
            f'<p>Pour vous désabonner, <a href="{mailto}">écrivez-nous</a> '
            "depuis l’adresse qui reçoit la lettre.</p>",
            status=404,
        )

    async def confirm(self, request: Request) -> Response:
        row = self._find(request.path_params["token"])
        if row is None:
            return self._invalid()
        title = html.escape(self.title)
        if row.status != "active":
            return _page(
                "Désabonnement confirmé",
                f"<p>L’adresse {html.escape(_mask(row.email))} ne reçoit plus « {title} ».</p>",
            )
        return _page(
            "Se désabonner",
            f"<p>Ne plus recevoir « {title} » à l’adresse "
            f"{html.escape(_mask(row.email))} ?</p>"
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Me désabonner</button></form>',
        )

    async def unsubscribe(self, request: Request) -> Response:
        # The body (List-Unsubscribe=One-Click, form-encoded or multipart) is read
        # but not required: a POST to the token URL is the request, whatever its form.
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                break
        row = self._find(request.path_params["token"])
        if row is None:
            return self._invalid()
        if row.status == "active" and row.id is not None:
            with self.store.begin() as conn:
                subscriber_rows.unsubscribe(conn, row.id)
            log.info("one subscriber unsubscribed (id %s)", row.id)
        return _page(
            "Désabonnement confirmé",
            f"<p>C’est fait : vous ne recevrez plus « {html.escape(self.title)} ».</p>",
        )

    # -- archive ---------------------------------------------------------------------

    async def archive(self, request: Request) -> Response:
        rows = issues.sent_issues(self.store)
        if not rows:
            items = "<p>Aucun numéro envoyé pour l’instant.</p>"
        else:
            items = (
                "<ul>"
                + "".join(
                    f'<li><a href="/archive/{html.escape(period)}">{html.escape(title)}</a> '
                    f"({html.escape(period)})</li>"
                    for period, title in rows
                )
                + "</ul>"
            )
        return _page(f"Archives — {self.title}", items)

    async def archived_issue(self, request: Request) -> Response:
        period = request.path_params["period"]
        page = self._archived_html(period) if _PERIOD.match(period) else None
        if page is None:
            return _page(
                "Numéro introuvable", '<p><a href="/archive">Tous les numéros</a></p>', 404
            )
        headers = dict(_SECURITY_HEADERS)
        headers["Cache-Control"] = "public, max-age=3600"
        return HTMLResponse(page, headers=headers)

    def _archived_html(self, period: str) -> str | None:
        with self._archive_lock:
            if period in self._archive:
                return self._archive[period]
        issue = issues.get(self.store, period)
        if issue is None or issue.status not in ("sending", "sent"):
            return None
        from .render import render_issue

        rendered: RenderedIssue = render_issue(issue, self.settings)
        # No name and no token: « Bonjour, », and the footer's unsubscribe link
        # becomes the mailto address, which works for anyone reading the archive.
        page = rendered.personalise("", self.mailto).html
        with self._archive_lock:
            self._archive[period] = page  # a sent issue never changes
        return page

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/archive", status_code=303)


class _MaskedAccessLog:
    """One log line per request, with unsubscribe tokens masked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, record)
        path = re.sub(r"^/u/[^/]*", "/u/…", scope.get("path", ""))
        log.info("%s %s %s", scope.get("method", ""), path, status)


def create_app(settings: Settings, store: Store) -> Starlette:
    """The ASGI application of ``digest serve``."""
    app = _App(settings, store)
    routes = [
        Route("/", app.index, methods=["GET"]),
        # {token:path}: anything under /u/, even with slashes, gets the same answer.
        Route("/u/{token:path}", app.confirm, methods=["GET"]),
        Route("/u/{token:path}", app.unsubscribe, methods=["POST"]),
        Route("/archive", app.archive, methods=["GET"]),
        Route("/archive/{period}", app.archived_issue, methods=["GET"]),
    ]
    starlette = Starlette(routes=routes)
    starlette.add_middleware(_MaskedAccessLog)
    return starlette


def serve(settings: Settings, store: Store, host: str, port: int) -> None:
    """Run the endpoints with uvicorn until interrupted."""
    import uvicorn

    logging.getLogger("digest.web").setLevel(logging.INFO)
    uvicorn.run(
        create_app(settings, store),
        host=host,
        port=port,
        access_log=False,  # it would log tokens; _MaskedAccessLog logs instead
        proxy_headers=True,
        server_header=False,
        log_level="info",
    )
