"""The local preview: the draft as a subscriber will see it, kept up to date as editors edit.

``digest preview`` serves one French page on 127.0.0.1: the email in a frame
(desktop or mobile width), its plain-text part and headers, the pre-send checks,
the health of every source, and a form for a test send to one address.

Nothing is cached across edits. The page's state is a ``Snapshot`` built from
the files themselves (the config, re-read with ``load_settings``; the draft file,
through ``pipeline.load_issue``; the templates, through the renderer), and a
snapshot is rebuilt whenever the *version* changes: a hash of those files' sizes
and modification times plus the sources' fetch state. The page asks
``/_version`` once a second and reloads itself when it differs from the one it
was built with. Polling rather than server-sent events: one tiny request a
second is nothing for a local tool, and no long-lived connection has to be
drained when the editor presses Ctrl-C. A draft or template that does not load
is shown as an error on the page, which keeps polling: fixing the file brings
the email back, no restart.

The page is only for the machine it runs on: it binds loopback by default,
refuses requests whose ``Host`` is not the bound one (DNS rebinding), and the
test-send form carries a per-process token so another site cannot make the
browser send the draft somewhere. The email is shown in a sandboxed frame
where no script runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.parser as email_parser
import email.policy as email_policy
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from .config import Settings, load_settings
from .db import Store, articles
from .draft import draft_path
from .errors import DigestError
from .i18n import format_date, translate_check, translate_source_error
from .models import Issue, RenderedEmail, RenderedIssue
from .pipeline import SAMPLE_READER
from .web.forms import RateLimit

if TYPE_CHECKING:
    from .checks import Check

__all__ = ["Snapshot", "SourceHealth", "check_host", "create_preview_app", "serve_preview"]

log = logging.getLogger(__name__)

WEB_TEMPLATES = Path(__file__).resolve().parent / "templates" / "web"
# A made-up reader: the preview shows the email as it would reach them, not a real subscriber.
SAMPLE_NAME = SAMPLE_READER.name
SAMPLE_EMAIL = SAMPLE_READER.email

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
TEST_SENDS_PER_MINUTE = 5
TEST_SENDS_PER_SESSION = 30


@dataclass(frozen=True)
class SourceHealth:
    """One row of the « Sources » table."""

    name: str
    state: str
    """``ok``, ``warning`` (failed lately), ``failing`` (many runs in a row) or ``never``."""
    label: str
    last_success: str
    last_error: str
    failures: int


@dataclass(frozen=True)
class Problem:
    title: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything the page shows, built from the files as they are now."""

    version: str
    settings: Settings
    draft_file: Path
    issue: Issue | None = None
    rendered: RenderedIssue | None = None
    email: RenderedEmail | None = None
    checks: tuple[Check, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    sources: tuple[SourceHealth, ...] = ()
    problems: tuple[Problem, ...] = ()
    built_at: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))
    edition: str = ""
    """The edition shown (``editions.Edition.key``); "" for the issue's default one."""
    edition_label: str = ""
    own_intro: bool = True
    """False when the edition shown has no introduction of its own (it shows the default)."""
    planned: tuple[tuple[str, str, int], ...] = ()
    """The editions a send would make now: key, what it is, how many subscribers."""
    tags: tuple[str, ...] = ()
    """The issue's sections, for the switch."""


class Preview:
    """The preview's state: the last good settings and the current snapshot."""

    def __init__(self, settings: Settings, store: Store, period: str) -> None:
        self.settings = settings
        self.store = store
        self.period = period
        self.token = secrets.token_urlsafe(24)
        self.flash: tuple[str, str] | None = None
        # Test sends go through the real relay: a page left open (or reached by
        # someone else) must not turn into a mass mailer.
        self.sends_per_minute = RateLimit(TEST_SENDS_PER_MINUTE, 60.0)
        self.sends_per_session = RateLimit(TEST_SENDS_PER_SESSION, float("inf"))
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        """One per edition looked at, all dropped when the files change."""

    # -- what changed --------------------------------------------------------------

    def current_settings(self) -> tuple[Settings, Problem | None]:
        """The config as it is on disk now; the last good one while it does not load."""
        try:
            self.settings = load_settings(self.settings.path)
        except DigestError as exc:
            return self.settings, Problem(
                "La configuration ne peut pas être lue", exc.message, exc.hint or ""
            )
        return self.settings, None

    def watched_files(self, settings: Settings) -> list[Path]:
        from .render import BUNDLED_TEMPLATES

        files = [settings.path, draft_path(settings, self.period)]
        for folder in (settings.render.templates, BUNDLED_TEMPLATES):
            if folder is not None and folder.is_dir():
                files += sorted(p for p in folder.rglob("*") if p.is_file())
        return files

    def version(self, settings: Settings) -> str:
        digest = hashlib.sha256()
        for path in self.watched_files(settings):
            try:
                stat = path.stat()
                digest.update(f"{path}|{stat.st_mtime_ns}|{stat.st_size}\n".encode())
            except OSError:
                digest.update(f"{path}|absent\n".encode())
        for row in self._source_rows():
            digest.update(
                f"{row.get('name')}|{row.get('last_fetch_at')}|{row.get('last_error')}\n".encode()
            )
        return digest.hexdigest()[:20]

    def _source_rows(self) -> list[dict[str, Any]]:
        try:
            return articles.source_states(self.store)
        except Exception:  # a busy or missing database must not break the page
            log.exception("cannot read source health")
            return []

    # -- building ------------------------------------------------------------------

    def snapshot(self, edition: str = "") -> Snapshot:
        """The page's state for ``edition`` (a key; "" or unknown: the default edition)."""
        settings, config_problem = self.current_settings()
        version = self.version(settings)
        with self._lock:  # one build at a time: the page and its frame ask together
            if any(s.version != version for s in self._snapshots.values()):
                self._snapshots.clear()
            if edition not in self._snapshots:
                self._snapshots[edition] = self._build(settings, version, config_problem, edition)
            return self._snapshots[edition]

    def _build(
        self,
        settings: Settings,
        version: str,
        config_problem: Problem | None,
        edition: str = "",
    ) -> Snapshot:
        from . import pipeline
        from .editions import Edition, has_own_intro, issue_tags

        problems = [config_problem] if config_problem else []
        snapshot = Snapshot(version, settings, draft_path(settings, self.period))
        issue = rendered = None
        try:
            issue = pipeline.load_issue(settings, self.store, self.period)
            result = pipeline.render(settings, self.store, self.period, edition=edition)
            issue, rendered = result.issue, result.rendered
            email, headers = sample_message(settings, rendered)
            shown = Edition.parse(edition or issue.language)
            planned = pipeline.planned_editions(self.store, issue)
            snapshot = dataclasses.replace(
                snapshot,
                edition=edition,
                edition_label=_edition_label(shown),
                own_intro=has_own_intro(issue, shown.language),
                planned=tuple(
                    (key, _edition_label(Edition.parse(key)) if key else "", len(emails))
                    for key, emails in sorted(planned.items(), key=lambda kv: (not kv[0], kv[0]))
                ),
                tags=issue_tags(issue),
                issue=issue,
                rendered=rendered,
                email=email,
                checks=tuple(
                    # once each, in the page's French
                    dataclasses.replace(check, message=translate_check(check.message, "fr"))
                    for check in result.checks
                ),
                headers=tuple(headers),
            )
        except DigestError as exc:
            what = (
                "Le brouillon ne peut pas être lu"
                if issue is None
                else "L’e-mail ne peut pas être composé"
            )
            problems.append(Problem(what, exc.message, exc.hint or ""))
            snapshot = dataclasses.replace(snapshot, issue=issue, rendered=rendered)
        except Exception as exc:  # a bug: show it on the page rather than a bare 500
            log.exception("preview failed")
            problems.append(
                Problem(
                    "Erreur inattendue",
                    f"{type(exc).__name__}: {exc}",
                    "voir le terminal où tourne `digest preview`",
                )
            )
        return dataclasses.replace(
            snapshot,
            sources=tuple(source_health(settings, self._source_rows())),
            problems=tuple(problems),
        )


_LANGUAGE_NAMES = {"fr": "français", "en": "anglais"}


def _edition_label(edition: Any) -> str:
    """An edition as the (French) page says it: « anglais · rubriques : alumni »."""
    language = _LANGUAGE_NAMES.get(edition.language.split("-")[0], edition.language)
    if edition.tags is None:
        return f"{language} · toutes les rubriques"
    if not edition.tags:
        return f"{language} · articles sans rubrique seulement"
    return f"{language} · rubriques : {', '.join(edition.tags)}"


def _edition_of(request: Request) -> str:
    """The edition a request asks for: ``?edition=KEY``, or ``?language=…&tags=…`` (the
    switch's form); "" (the default) when it asks for nothing we can render."""
    key = request.query_params.get("edition", "")
    language = request.query_params.get("language", "")
    tags = request.query_params.get("tags", "")
    if not key and (language or tags):
        key = f"{language}+{tags}" if tags else language
    return _known_edition(key)


def _known_edition(key: str) -> str:
    """``key`` as an edition we can render, or "" (the default) when it is not one."""
    from .editions import Edition
    from .i18n import CATALOGUE, base_language

    if not key:
        return ""
    edition = Edition.parse(key[:200])
    if edition.language and base_language(edition.language) not in CATALOGUE:
        return ""
    return edition.key


def sample_message(
    settings: Settings, rendered: RenderedIssue
) -> tuple[RenderedEmail, list[tuple[str, str]]]:
    """The email as the sample reader gets it, and the headers of its message as sent."""
    from . import pipeline

    email, message = pipeline.sample_email(settings, rendered)
    parsed = email_parser.BytesParser(policy=email_policy.default).parsebytes(
        message, headersonly=True
    )
    return email, [(str(name), str(value)) for name, value in parsed.items()]


def source_health(settings: Settings, rows: list[dict[str, Any]]) -> list[SourceHealth]:
    """The « Sources » table: every configured source, and any other the store knows."""
    zone = _zone(settings.newsletter.timezone)
    language = settings.newsletter.language
    known = {row["name"]: row for row in rows}
    names = [s.name for s in settings.sources] + sorted(
        set(known) - {s.name for s in settings.sources}
    )
    health: list[SourceHealth] = []
    for name in names:
        row = known.get(name)
        if row is None:
            health.append(SourceHealth(name, "never", "jamais collectée", "—", "", 0))
            continue
        failures = int(row.get("consecutive_failures") or 0)
        success = row.get("last_success_at")
        if failures >= settings.collect.failing_after:
            state, label = "failing", f"en panne ({failures} échecs de suite)"
        elif failures:
            state, label = "warning", f"erreur récente ({failures})"
        elif success is None:
            state, label = "never", "jamais réussie"
        else:
            state, label = "ok", "en forme"
        when = "—"
        if isinstance(success, dt.datetime):
            local = success.astimezone(zone)
            when = f"{format_date(local, language)} à {local:%H:%M}"
        error = str(row.get("last_error") or "") if failures else ""
        error = translate_source_error(error, language)
        health.append(SourceHealth(name, state, label, when, error, failures))
    return health


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except Exception:
        return dt.UTC


# -- the web app ---------------------------------------------------------------------------

_jinja = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB_TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_CSP_PAGE = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src * data:; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# The email itself: no script may run; images and fonts come from wherever it says.
_CSP_EMAIL = "script-src 'none'; object-src 'none'; form-action 'none'; frame-ancestors 'self'"

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


def create_preview_app(
    settings: Settings, store: Store, period: str, *, host: str = "127.0.0.1"
) -> Starlette:
    """The preview as an ASGI app (``serve_preview`` runs it; tests drive it directly).

    ``host`` is the address it will be bound to: requests must name it (or
    loopback) in their ``Host`` header, unless it is bound to every interface.
    """
    preview = Preview(settings, store, period)

    def page(request: Request) -> Response:
        snapshot = preview.snapshot(_edition_of(request))
        flash, preview.flash = preview.flash, None
        body = _jinja.get_template("preview.html.j2").render(
            s=snapshot,
            period=period,
            flash=flash,
            token=preview.token,
            sample_name=SAMPLE_NAME,
            errors=[c for c in snapshot.checks if c.level == "error"],
            warnings=[c for c in snapshot.checks if c.level != "error"],
            status_label=_status_label(snapshot.issue),
            built_at=snapshot.built_at.astimezone(_zone(snapshot.settings.newsletter.timezone)),
            edition_query=urllib.parse.urlencode({"edition": snapshot.edition}),
            languages=sorted(_LANGUAGE_NAMES.items()),
        )
        return HTMLResponse(body, headers=_no_store({"Content-Security-Policy": _CSP_PAGE}))

    def email_html(request: Request) -> Response:
        snapshot = preview.snapshot(_edition_of(request))
        if snapshot.email is None:
            body = (
                '<!doctype html><html lang="fr"><meta charset="utf-8">'
                '<body style="font-family:sans-serif;color:#555;padding:2rem">'
                "L’e-mail n’a pas pu être composé : voir le message d’erreur au-dessus."
                "</body></html>"
            )
        else:
            # Links open in a new tab rather than inside the frame.
            body = re.sub(
                r"(<head[^>]*>)", r'\1<base target="_blank">', snapshot.email.html, count=1
            )
        return HTMLResponse(body, headers=_no_store({"Content-Security-Policy": _CSP_EMAIL}))

    def email_text(request: Request) -> Response:
        snapshot = preview.snapshot(_edition_of(request))
        text = snapshot.email.text if snapshot.email else ""
        return PlainTextResponse(text, headers=_no_store({}))

    def version(request: Request) -> Response:
        settings_now, _ = preview.current_settings()
        return JSONResponse({"version": preview.version(settings_now)}, headers=_no_store({}))

    def script(request: Request) -> Response:
        return Response(
            (WEB_TEMPLATES / "preview.js").read_text(encoding="utf-8"),
            media_type="text/javascript",
            headers=_no_store({}),
        )

    async def send_test(request: Request) -> Response:
        # A plain urlencoded form, parsed here: python-multipart would be a dependency
        # for two fields.
        body = (await request.body())[:10_000].decode("utf-8", "replace")
        form = urllib.parse.parse_qs(body)
        address = (form.get("address") or [""])[0].strip()
        token = (form.get("token") or [""])[0]
        edition = (form.get("edition") or [""])[0][:200]  # the edition on the page
        if not hmac.compare_digest(token.encode(), preview.token.encode()):
            return PlainTextResponse(
                "Formulaire expiré : rechargez la page et recommencez.", status_code=403
            )
        if not _ADDRESS.match(address):
            preview.flash = ("error", f"« {address} » n’est pas une adresse e-mail valable.")
        elif not (
            preview.sends_per_minute.allow("sends") and preview.sends_per_session.allow("sends")
        ):
            preview.flash = (
                "error",
                f"Trop d’envois de test : {TEST_SENDS_PER_MINUTE} par minute et "
                f"{TEST_SENDS_PER_SESSION} par session au plus. Attendez, ou relancez "
                "`digest preview`.",
            )
        else:
            from starlette.concurrency import run_in_threadpool

            preview.flash = await run_in_threadpool(_send_test, preview, address, edition)
        back = f"/?edition={urllib.parse.quote(edition)}" if edition else "/"
        return RedirectResponse(f"{back}#envoi-test", status_code=303)

    hosts = ["*"] if host in ("0.0.0.0", "::", "") else [*_LOOPBACK, host]
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/email.html", email_html),
            Route("/email.txt", email_text),
            Route("/_version", version),
            Route("/preview.js", script),
            Route("/envoi-test", send_test, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
    )
    app.state.preview = preview
    return app


def _send_test(preview: Preview, address: str, edition: str) -> tuple[str, str]:
    """A test send of the edition on the page (``edition``, a key; "" the default)."""
    from . import pipeline

    settings, _ = preview.current_settings()
    try:
        pipeline.send_test(
            settings, preview.store, preview.period, address, edition=_known_edition(edition)
        )
    except DigestError as exc:
        return ("error", f"L’envoi de test a échoué : {exc}")
    except Exception as exc:  # a bug: say so on the page, details in the terminal
        log.exception("test send failed")
        return (
            "error",
            f"L’envoi de test a échoué (erreur inattendue) : {type(exc).__name__}: {exc}",
        )
    return ("ok", f"E-mail de test envoyé à {address}.")


def _status_label(issue: Issue | None) -> str:
    labels = {
        "draft": "Brouillon",
        "approved": "Approuvé",
        "sending": "Envoi en cours",
        "sent": "Envoyé",
        "skipped": "Semaine sautée",
    }
    return labels.get(issue.status, issue.status) if issue else "Indisponible"


def _no_store(headers: dict[str, str]) -> dict[str, str]:
    return {"Cache-Control": "no-store", **headers}


def serve_preview(
    settings: Settings,
    store: Store,
    period: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_remote: bool = False,
) -> None:
    """Run the preview until Ctrl-C; loopback only unless ``allow_remote`` is given."""
    import uvicorn

    check_host(host, allow_remote)
    _check_port(host, port)
    app = create_preview_app(settings, store, period, host=host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="off",
    )
    uvicorn.Server(config).run()


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse an address other machines can reach unless the editor asked for it.

    The page shows the unsent draft and can send test emails through the relay:
    on a shared network, anyone could read one and do the other.
    """
    if allow_remote or _is_loopback(host):
        return
    raise DigestError(
        f"refusing to serve the preview on {host}: anyone who can reach it could read the "
        "draft and send test emails through your SMTP relay",
        hint="use the default --host 127.0.0.1 (with an SSH tunnel to view it from elsewhere), "
        "or add --allow-remote if this network is trusted",
    )


def _is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message, not uvicorn's log line, when the port is taken."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DigestError(f"cannot bind the preview to {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise DigestError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="another program uses that port; pass --port with another number",
            ) from None
