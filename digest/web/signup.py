"""Signup with double opt-in: ``/subscribe``, ``/confirm/{token}`` and the embeddable form.

Nothing is stored when someone fills in the form: the request travels inside
the confirmation link, signed with ``DIGEST_SECRET_KEY`` (itsdangerous, HMAC
SHA-1 keyed derivation, with a timestamp), so a link cannot be forged or
altered, and it expires after ``LINK_HOURS``. Opening the link shows a button;
only pressing it (a POST) subscribes, since mail scanners open links but do not
submit forms. Each link carries a random nonce stored with the consent when it
is used: a link works once.

Enumeration: the form gives the same answer whether the address is new,
already subscribed, unsubscribed or rate-limited, and every accepted request
sends the same confirmation email. Floods: a honeypot field bots fill in, a
limit per address (a mailbox cannot be bombed with confirmations) and one per
client (a 429 page).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..config import Settings
from ..db import Store
from ..db.subscribers import Consent
from ..errors import DigestError, SubscriberError
from ..i18n import web_language
from ..subscribers import clean_name, confirm_signup, normalize_email, signup_link_used
from .forms import RateLimit, client_of, field, read_form
from .mail import confirmation_message, send_one
from .pages import Pages

__all__ = ["LINK_HOURS", "MIN_KEY_LENGTH", "Signup", "check_secret_key"]

log = logging.getLogger("digest.web")

LINK_HOURS = 48
MIN_KEY_LENGTH = 16
FORMS = ("page", "embed", "preferences")
PER_ADDRESS = (3, 3600.0)  # confirmations one address can be sent per hour
PER_CLIENT = (10, 600.0)  # signups one client can ask for in ten minutes


def check_secret_key(settings: Settings) -> None:
    """Refuse to serve signup without a real key: links would be forgeable or unverifiable."""
    if len(settings.secret_key) < MIN_KEY_LENGTH:
        state = "is not set" if not settings.secret_key else "is too short"
        raise DigestError(
            f"DIGEST_SECRET_KEY {state}: signup confirmation links are signed with it",
            hint="set it to a long random value, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
            "or turn signup off with [web] signup = false",
        )


class Signup:
    """The signup routes for one configuration and store."""

    def __init__(self, settings: Settings, store: Store, pages: Pages) -> None:
        check_secret_key(settings)
        self.settings = settings
        self.store = store
        self.pages = pages
        self.base_url = settings.web.base_url.rstrip("/")
        self.signer = URLSafeTimedSerializer(settings.secret_key, salt="digest-signup")
        self.per_address = RateLimit(*PER_ADDRESS)
        self.per_client = RateLimit(*PER_CLIENT)

    # -- the form ------------------------------------------------------------------------

    def _language(self, request: Request, requested: str = "") -> str:
        requested = requested or request.query_params.get("lang", "")
        return web_language(requested, request.headers.get("accept-language", ""))

    def _form(
        self, language: str, *, error: str = "", email: str = "", name: str = "", status: int = 200
    ) -> Response:
        return self.pages.page(
            "subscribe.html.j2",
            language,
            status=status,
            indexable=not error,
            heading=self.pages.text(language, "subscribe_title"),
            action="/subscribe",
            form_name="page",
            error=error,
            email=email,
            name=name,
        )

    async def form(self, request: Request) -> Response:
        return self._form(self._language(request))

    async def embed(self, request: Request) -> Response:
        """The form to paste into the institution's site, as text to copy."""
        language = self._language(request)
        snippet = self.pages.render(
            "embed.html.j2", language, action=f"{self.base_url}/subscribe", robots=""
        )
        return PlainTextResponse(snippet, headers={"Cache-Control": "no-store"})

    async def subscribe(self, request: Request) -> Response:
        form = await read_form(request)
        language = self._language(request, field(form, "language"))
        raw_email = field(form, "email")[:320]
        name = clean_name(field(form, "name"))
        try:
            email = normalize_email(raw_email)
        except SubscriberError:
            error = self.pages.text(language, "invalid_email", email=raw_email)
            return self._form(language, error=error, email=raw_email, name=name, status=400)
        if not self.per_client.allow(client_of(request)):
            return self._message(language, "too_many_title", "too_many", status=429)
        answer = self._message(
            language,
            "check_inbox_title",
            "check_inbox",
            email=email,
            hours=LINK_HOURS,
        )
        if field(form, "website"):
            log.info("signup ignored: the honeypot field was filled in")
            return answer
        if not self.per_address.allow(email.casefold()):
            log.info("signup ignored: too many confirmations asked for one address")
            return answer
        origin = field(form, "form")
        sent = await run_in_threadpool(
            self.send_confirmation, email, name, language, origin if origin in FORMS else "page"
        )
        if not sent:
            return self._message(language, "unavailable_title", "unavailable", status=503)
        return answer

    def send_confirmation(self, email: str, name: str, language: str, origin: str) -> bool:
        """Email a signed confirmation link to ``email``; False if the server refused it."""
        token = self.signer.dumps(
            {
                "e": email,
                "n": name,
                "l": language,
                "f": origin,
                "w": self.pages.text(language, "consent"),
                "r": secrets.token_urlsafe(16),
            }
        )
        url = f"{self.base_url}/confirm/{token}"
        message = confirmation_message(
            self.settings,
            email,
            self.pages.text(language, "mail_subject"),
            self.pages.text(language, "mail_text", url=url, hours=LINK_HOURS),
            language,
        )
        try:
            send_one(self.settings, message)
        except DigestError as exc:
            log.error("confirmation email not sent: %s", exc)
            return False
        return True

    # -- the link ------------------------------------------------------------------------

    def _request_of(self, token: str) -> tuple[dict[str, Any], dt.datetime] | None:
        """The signed request in ``token`` and when it was made; None if forged or expired."""
        try:
            data, signed_at = self.signer.loads(
                token, max_age=LINK_HOURS * 3600, return_timestamp=True
            )
        except (SignatureExpired, BadSignature):
            return None
        keys = {"e", "n", "l", "f", "w", "r"}
        if not isinstance(data, dict) or set(data) != keys:
            return None
        if not all(isinstance(v, str) for v in data.values()):
            return None
        return data, signed_at

    def _invalid(self, language: str) -> Response:
        return self._message(
            language,
            "link_invalid_title",
            "link_invalid",
            status=404,
            link=("/subscribe", "subscribe_again"),
        )

    async def confirm_page(self, request: Request) -> Response:
        found = self._request_of(request.path_params["token"])
        if found is None or signup_link_used(self.store, found[0]["r"]):
            return self._invalid(self._language(request))
        data, _ = found
        language = web_language(data["l"])
        return self.pages.page(
            "confirm.html.j2",
            language,
            heading=self.pages.text(language, "confirm_title"),
            email=data["e"],
        )

    async def confirm(self, request: Request) -> Response:
        await read_form(request)
        found = self._request_of(request.path_params["token"])
        if found is None:
            return self._invalid(self._language(request))
        data, signed_at = found
        language = web_language(data["l"])
        consent = Consent(
            nonce=data["r"],
            form=data["f"] if data["f"] in FORMS else "page",
            wording=data["w"],
            language=language,
            requested_at=signed_at.astimezone(dt.UTC),
            confirmed_at=dt.datetime.now(dt.UTC),
        )
        confirmed = await run_in_threadpool(
            confirm_signup, self.store, data["e"], data["n"], language, consent
        )
        if confirmed is None:  # replayed: the first use already decided
            return self._invalid(language)
        subscriber, token = confirmed
        log.info("one subscriber confirmed (id %s)", subscriber.id)
        return self._message(
            language,
            "confirmed_title",
            "confirmed",
            email=subscriber.email,
            link=(f"/p/{token}", "preferences_link"),
        )

    def _message(
        self,
        language: str,
        title_key: str,
        text_key: str,
        *,
        status: int = 200,
        link: tuple[str, str] | None = None,
        **values: Any,
    ) -> Response:
        return self.pages.page(
            "message.html.j2",
            language,
            status=status,
            heading=self.pages.text(language, title_key),
            paragraphs=[self.pages.text(language, text_key, **values)],
            link=None
            if link is None
            else {"href": link[0], "label": self.pages.text(language, link[1])},
        )
