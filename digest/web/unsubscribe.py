"""One-click unsubscribe (RFC 8058) and the preference page, both reached by the subscriber's token.

``POST /u/{token}`` is what Gmail and Yahoo call when a reader presses their
"Unsubscribe" button: no login, no confirmation, no redirect, a 2xx answer, and
the address gets nothing more. ``GET /u/{token}`` (the footer's link) shows a
button that posts to the same URL: a GET must never unsubscribe, since link
scanners and previews fetch URLs in emails. ``/p/{token}`` lets the reader
choose their language and sections, leave, or come back; coming back sends a
new confirmation link, like any signup.

A token is 128 random bits stored with the subscriber. Anything that is not a
current token (malformed, altered, erased) gets the same answer and changes nothing.
"""

from __future__ import annotations

import logging
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..db import Store
from ..db import subscribers as subscriber_rows
from ..i18n import WEB_CATALOGUE, web_language
from ..models import Subscriber
from .forms import field, read_form
from .pages import Pages
from .signup import Signup

__all__ = ["Tokens", "mask"]

log = logging.getLogger("digest.web")

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def mask(address: str) -> str:
    """``c•••@example.org``: enough for the reader to recognize their address."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


class Tokens:
    """The routes reached with a subscriber's token: ``/u/…`` and ``/p/…``."""

    def __init__(
        self, settings: Settings, store: Store, pages: Pages, signup: Signup | None
    ) -> None:
        self.settings = settings
        self.store = store
        self.pages = pages
        self.signup = signup
        news = settings.newsletter
        mailto = news.unsubscribe_mailto.removeprefix("mailto:") or news.from_address
        self.mailto = f"mailto:{mailto}?subject=unsubscribe"

    def _find(self, token: str) -> Subscriber | None:
        if not _TOKEN.match(token):
            return None
        return subscriber_rows.by_token(self.store, token)

    def _invalid(self, request: Request) -> Response:
        # The same answer for every token that is not a current one, whatever the reason.
        language = web_language("", request.headers.get("accept-language", ""))
        return self.pages.page(
            "message.html.j2",
            language,
            status=404,
            heading=self.pages.text(language, "link_invalid_title"),
            paragraphs=[self.pages.text(language, "unsubscribe_invalid")],
            link={"href": self.mailto, "label": self.pages.text(language, "write_us")},
        )

    # -- /u/{token} ----------------------------------------------------------------------

    def _unsubscribe_page(self, row: Subscriber, token: str, active: bool) -> Response:
        language = web_language(row.language)
        key = "unsubscribe_title" if active else "unsubscribed_title"
        return self.pages.page(
            "unsubscribe.html.j2",
            language,
            heading=self.pages.text(language, key),
            active=active,
            email=mask(row.email),
            preferences=f"/p/{token}",
        )

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        row = self._find(token)
        if row is None:
            return self._invalid(request)
        return self._unsubscribe_page(row, token, row.status == "active")

    async def unsubscribe(self, request: Request) -> Response:
        # The body (List-Unsubscribe=One-Click, form-encoded or multipart) is read
        # but not required: a POST to the token URL is the request, whatever its form.
        await read_form(request)
        token = request.path_params["token"]
        row = self._find(token)
        if row is None:
            return self._invalid(request)
        self._leave(row)
        return self._unsubscribe_page(row, token, active=False)

    def _leave(self, row: Subscriber) -> None:
        if row.status == "active" and row.id is not None:
            with self.store.begin() as conn:
                subscriber_rows.unsubscribe(conn, row.id)
            log.info("one subscriber unsubscribed (id %s)", row.id)

    # -- /p/{token} ----------------------------------------------------------------------

    def _sections(self, row: Subscriber) -> set[str]:
        """The sections a subscriber may choose: the sources' tags (what editions select
        by), those other subscribers have, and their own."""
        configured = {tag for source in self.settings.sources for tag in source.tags}
        return configured | set(subscriber_rows.tags_in_use(self.store)) | set(row.tags)

    def _preferences(self, row: Subscriber, notice: str = "") -> Response:
        language = web_language(row.language)
        sections = sorted(self._sections(row))
        return self.pages.page(
            "preferences.html.j2",
            language,
            heading=self.pages.text(language, "preferences_title"),
            notice=notice,
            email=mask(row.email),
            active=row.status == "active",
            language=language,
            sections=sections,
            chosen=set(row.tags),
        )

    async def preferences(self, request: Request) -> Response:
        row = self._find(request.path_params["token"])
        if row is None:
            return self._invalid(request)
        return self._preferences(row)

    async def change_preferences(self, request: Request) -> Response:
        form = await read_form(request)
        token = request.path_params["token"]
        row = self._find(token)
        if row is None or row.id is None:
            return self._invalid(request)
        action = field(form, "action")
        if action == "unsubscribe":
            self._leave(row)
        elif action == "resubscribe" and row.status != "active":
            return await self._resubscribe(row)
        elif action == "save" and row.status == "active":
            self._save(row, row.id, form)
        else:
            return self._preferences(row)
        changed = self._find(token)
        assert changed is not None
        language = web_language(changed.language)
        notice = self.pages.text(language, "saved" if action == "save" else "unsubscribed")
        return self._preferences(changed, notice)

    def _save(self, row: Subscriber, subscriber_id: int, form: dict[str, list[str]]) -> None:
        language = field(form, "language")
        if language not in WEB_CATALOGUE:
            language = row.language
        offered = self._sections(row)
        tags = tuple(sorted({t for t in form.get("tags", []) if t in offered}))
        with self.store.begin() as conn:
            subscriber_rows.set_preferences(conn, subscriber_id, language, tags)

    async def _resubscribe(self, row: Subscriber) -> Response:
        language = web_language(row.language)
        if self.signup is None or not await self.signup.per_address.allow(row.email.casefold()):
            notice = self.pages.text(language, "unavailable")
        else:
            sent = await run_in_threadpool(
                self.signup.send_confirmation, row.email, row.name, language, "preferences"
            )
            key = "resubscribe_sent" if sent else "unavailable"
            notice = self.pages.text(language, key, email=mask(row.email))
        return self._preferences(row, notice)
