"""Settings: a TOML file plus environment variables, validated into typed dataclasses.

The file is read with ``tomllib``; each table maps onto one dataclass below, and
every key is checked against it, so a typo is an error that names the file and
the key instead of a setting silently ignored. Environment variables
(``DIGEST_*``) override the file; secrets (SMTP password, LLM API key, secret
key) come only from the environment. Relative paths in the file are relative to
the file's folder, so a config works from any current directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "BouncesSettings",
    "CollectSettings",
    "DEFAULT_CONFIG_NAME",
    "DatabaseSettings",
    "DraftSettings",
    "EditionSettings",
    "LLMSettings",
    "NewsletterSettings",
    "RenderSettings",
    "RunSettings",
    "ScheduleSettings",
    "SelectSettings",
    "SendSettings",
    "Settings",
    "SmtpSettings",
    "SourceSettings",
    "SummarizeSettings",
    "WebSettings",
    "find_config_path",
    "load_settings",
]

DEFAULT_CONFIG_NAME = "digest.toml"


@dataclass(frozen=True)
class NewsletterSettings:
    title: str = "La veille hebdomadaire"
    language: str = "fr"
    from_name: str = "La veille"
    from_address: str = "veille@example.org"
    reply_to: str = ""
    list_id: str = ""
    """RFC 2919 list identifier, e.g. ``veille.example.org``; derived from the sender if empty."""
    unsubscribe_mailto: str = ""
    postal_address: str = ""
    why: str = ""
    """Why the reader gets this email, shown in the footer."""
    timezone: str = "Europe/Paris"
    audience: str = ""
    """Who reads, for the LLM's lessons: « acteurs de la formation et des métiers créatifs »."""
    angle: str = ""
    """What the lessons should draw out for them: « ce que cela change pour nos métiers »."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///data/digest.db"

    def __repr__(self) -> str:
        from .db import mask_url  # the URL may carry a password: never show it

        return f"DatabaseSettings(url={mask_url(self.url)!r})"


@dataclass(frozen=True)
class SourceSettings:
    name: str
    url: str
    weight: float = 1.0
    max_items: int = 0
    """At most this many articles of this source in one issue; 0 means no cap of its own."""
    language: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full_text: Literal["auto", "always", "never"] = "auto"
    tags: tuple[str, ...] = ()
    """The sections its articles belong to: subscribers with one of these tags get them
    (subscribers without tags get everything); no tags: every subscriber gets them."""


@dataclass(frozen=True)
class CollectSettings:
    concurrency: int = 200
    """Requests in flight at most, over all hosts."""
    per_host: int = 8
    """Requests in flight to one host name at most: many feeds of one site never flood it."""
    connect_timeout: float = 5.0
    timeout: float = 20.0
    """Total deadline for one response, body included."""
    max_bytes: int = 5_000_000
    """Cap on a decompressed response body."""
    max_redirects: int = 5
    allow_private: tuple[str, ...] = ()
    """Addresses or networks that feed URLs may resolve to although private or loopback."""
    teaser_chars: int = 600
    """Entries shorter than this are treated as teasers and their page is fetched."""
    failing_after: int = 3
    """A source failing this many runs in a row is flagged."""
    user_agent: str = ""


@dataclass(frozen=True)
class SelectSettings:
    lookback_days: int = 7
    """Articles published within this many days before the end of the period qualify."""
    max_articles: int = 10
    max_per_source: int = 4


@dataclass(frozen=True)
class LLMSettings:
    base_url: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)  # a secret: never in a repr or an error
    timeout: float = 300.0
    """Seconds for one article, retries included: a small model on a CPU needs minutes."""
    max_tokens: int = 700
    """Cap on the answer's length, always sent: a looping model stops here."""
    concurrency: int = 2
    """Articles asked at once (a local server with one slot queues the rest)."""
    issue_timeout: float = 1800.0
    """Seconds for a whole issue: articles not asked by then get the offline default."""


@dataclass(frozen=True)
class SummarizeSettings:
    backend: str = "extractive"
    summary_sentences: int = 2
    max_lessons: int = 3
    llm: LLMSettings = field(default_factory=LLMSettings)
    audience: str = ""
    """Copied from ``[newsletter] audience`` when loading (the LLM's prompt uses it)."""
    angle: str = ""
    """Copied from ``[newsletter] angle`` when loading."""


@dataclass(frozen=True)
class EditionSettings:
    """``[[draft.editions]]``: what a new draft gives another language's edition."""

    language: str
    title: str = ""
    """Empty: the default title (« Week of … ») in that language."""
    intro: str = ""
    """Empty: the edition shows the issue's own introduction."""


@dataclass(frozen=True)
class DraftSettings:
    dir: Path = Path("drafts")
    intro: str = ""
    """The introduction a new draft starts with; editors rewrite it in the draft file."""
    editions: tuple[EditionSettings, ...] = ()


@dataclass(frozen=True)
class RunSettings:
    """The policy of ``digest run`` (and so of every scheduled run)."""

    send_unreviewed: bool = False
    """Send a draft nobody approved. Off by default: the run stops at "draft ready"."""
    min_articles: int = 1
    """Fewer selected articles than this: skip the week and keep them for the next."""
    on_collect_failure: Literal["continue", "abort"] = "continue"
    """When some sources fail: send with what was collected, or stop before drafting."""
    notify: tuple[str, ...] = ()
    """Editors' addresses that get the run report and alerts."""


@dataclass(frozen=True)
class RenderSettings:
    templates: Path | None = None
    """A folder whose files override the bundled templates, file by file."""
    logo_url: str = ""
    logo_alt: str = ""
    primary_color: str = "#b3261e"
    text_color: str = "#1f1f1f"
    background_color: str = "#f4f1ec"
    card_color: str = "#ffffff"
    font_family: str = "Helvetica, Arial, sans-serif"
    archive_url: str = ""


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    timeout: float = 30.0


@dataclass(frozen=True)
class SendSettings:
    rate: float = 0.0
    """Messages per second; 0 means as fast as the server accepts."""
    connections: int = 1
    max_consecutive_failures: int = 20
    retry_window_hours: float = 24.0
    lease_seconds: float = 120.0
    """How long a sender's claim on its batch lasts unless renewed (it renews it while it
    works): after a crash, that sender's recipients wait this long for another sender."""
    dkim_selector: str = ""
    """DKIM selector; with ``dkim_private_key_file``, every message is signed."""
    dkim_domain: str = ""
    """The signing domain (``d=``); the sender's domain if empty."""
    dkim_private_key_file: Path | None = None
    """PEM private key (RSA, or Ed25519 with PyNaCl); relative to the config file."""


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = "0 7 * * mon"
    timezone: str = "Europe/Paris"
    misfire_grace_hours: float = 12.0


@dataclass(frozen=True)
class WebSettings:
    base_url: str = "http://127.0.0.1:8080"
    """Public URL of ``digest serve``, used in unsubscribe links."""
    host: str = "127.0.0.1"
    port: int = 8080
    signup: bool = True
    """Serve the signup form (``/subscribe``); it needs ``DIGEST_SECRET_KEY``."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names accepted besides ``base_url``'s (a health check's, for instance)."""
    indexing: bool = False
    """Let search engines index the archive and the signup form."""
    allow_local_links: bool = False
    """A local setup (the demo, tests): accept unsubscribe and archive links on
    loopback or plain http, and a sender on a reserved example domain. A real send
    refuses them otherwise: nobody outside this machine could follow those links."""


@dataclass(frozen=True)
class BouncesSettings:
    """Where bounces come back and how ``digest bounces`` treats them."""

    return_path: str = ""
    """Envelope sender base, e.g. ``bounces@example.org``: each message goes out from
    ``bounces+TOKEN@example.org`` (VERP), so a bounce names its recipient. Empty: the
    sender address, and bounces are matched by the headers they carry back."""
    imap: str = ""
    """Default mailbox, ``imaps://user@host[:port]/FOLDER``; password in DIGEST_IMAP_PASSWORD."""
    maildir: str = ""
    mbox: str = ""
    soft_limit: int = 3
    """Soft (4.x.x) bounces after which an address is suppressed."""
    max_message_bytes: int = 10_000_000
    """Bigger messages are left untouched and reported (a bounce is a few kilobytes)."""
    on_schedule: bool = False
    """Process the configured mailbox after each scheduled run."""


@dataclass(frozen=True)
class Settings:
    path: Path
    """The config file these settings came from; its folder anchors relative paths."""
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    sources: tuple[SourceSettings, ...] = ()
    collect: CollectSettings = field(default_factory=CollectSettings)
    select: SelectSettings = field(default_factory=SelectSettings)
    summarize: SummarizeSettings = field(default_factory=SummarizeSettings)
    draft: DraftSettings = field(default_factory=DraftSettings)
    run: RunSettings = field(default_factory=RunSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    send: SendSettings = field(default_factory=SendSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    web: WebSettings = field(default_factory=WebSettings)
    bounces: BouncesSettings = field(default_factory=BouncesSettings)
    secret_key: str = field(default="", repr=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# Keys a config file may not set: they are secrets and come from the environment only.
_SECRET_KEYS = {("smtp", "password"), ("summarize.llm", "api_key")}

# Environment variable → (table path, key, converter).
_ENVIRONMENT: dict[str, tuple[str, str]] = {
    "DIGEST_DATABASE_URL": ("database", "url"),
    "DIGEST_SMTP_HOST": ("smtp", "host"),
    "DIGEST_SMTP_PORT": ("smtp", "port"),
    "DIGEST_SMTP_SECURITY": ("smtp", "security"),
    "DIGEST_SMTP_USERNAME": ("smtp", "username"),
    "DIGEST_SMTP_PASSWORD": ("smtp", "password"),
    "DIGEST_BASE_URL": ("web", "base_url"),
    "DIGEST_LLM_BASE_URL": ("summarize.llm", "base_url"),
    "DIGEST_LLM_API_KEY": ("summarize.llm", "api_key"),
    "DIGEST_LLM_MODEL": ("summarize.llm", "model"),
    "DIGEST_LLM_TIMEOUT": ("summarize.llm", "timeout"),
}


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``--config``, else ``$DIGEST_CONFIG``, else ``./digest.toml``."""
    chosen = explicit or os.environ.get("DIGEST_CONFIG") or DEFAULT_CONFIG_NAME
    return Path(chosen).expanduser()


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: typing.Mapping[str, str] | None = None
) -> Settings:
    """Read, validate and return the settings; raise ``ConfigError`` naming file and key."""
    config_path = find_config_path(path)
    env = os.environ if environ is None else environ
    if not config_path.is_file():
        raise ConfigError(
            f"no config file at {config_path}",
            hint="create one with `digest init`, or pass --config PATH or set DIGEST_CONFIG",
        )
    try:
        # -sig: Notepad and some other Windows editors start the file with a byte order mark
        data = tomllib.loads(config_path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{config_path}: not UTF-8 text", hint="save the file as UTF-8 in your text editor"
        ) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(
            f"{config_path}: arrays or tables nested too deeply to read",
            hint="a config needs at most two levels of nesting; remove the extra brackets",
        ) from None

    for table, key in _SECRET_KEYS:
        node: Any = data
        for part in table.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and key in node:
            env_name = next(n for n, (t, k) in _ENVIRONMENT.items() if (t, k) == (table, key))
            raise ConfigError(
                f"{config_path}: [{table}] {key}: secrets are not read from the config file",
                hint=f"set {env_name} in the environment instead",
            )

    for env_name, (table, key) in _ENVIRONMENT.items():
        value = env.get(env_name)
        if value is None or value == "":
            continue
        node = data
        for part in table.split("."):
            node = node.setdefault(part, {})
        node[key] = _from_env(value, table, key, env_name)

    secret_key = env.get("DIGEST_SECRET_KEY", "")
    settings = _build(Settings, data, config_path, "", path=config_path.resolve())
    settings = dataclasses.replace(settings, secret_key=secret_key)
    # The summarizer sees only its own settings: the newsletter's audience and angle
    # (for the LLM's prompt) travel with them unless [summarize] sets its own.
    summarize = dataclasses.replace(
        settings.summarize,
        audience=settings.summarize.audience or settings.newsletter.audience,
        angle=settings.summarize.angle or settings.newsletter.angle,
    )
    settings = dataclasses.replace(settings, summarize=summarize)
    return _resolve_paths(settings)


def _from_env(value: str, table: str, key: str, env_name: str) -> Any:
    hints = typing.get_type_hints(_TABLES[table])
    if hints[key] is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"environment: {env_name}={value!r}: {key} must be a whole number"
            ) from None
    if hints[key] is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"environment: {env_name}={value!r}: {key} must be a number"
            ) from None
    return value


def _resolve_paths(settings: Settings) -> Settings:
    base = settings.base_dir
    draft = dataclasses.replace(settings.draft, dir=base / settings.draft.dir)
    render = settings.render
    if render.templates is not None:
        render = dataclasses.replace(render, templates=base / render.templates)
    database = settings.database
    url = database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            database = dataclasses.replace(database, url=f"sqlite:///{base / relative}")
    sources = tuple(
        dataclasses.replace(s, url=str(base / s.url)) if _is_relative_file(s.url) else s
        for s in settings.sources
    )
    return dataclasses.replace(
        settings, draft=draft, render=render, database=database, sources=sources
    )


def _is_relative_file(url: str) -> bool:
    return "://" not in url and not Path(url).is_absolute()


_TABLES: dict[str, type] = {
    "newsletter": NewsletterSettings,
    "database": DatabaseSettings,
    "collect": CollectSettings,
    "select": SelectSettings,
    "summarize": SummarizeSettings,
    "summarize.llm": LLMSettings,
    "draft": DraftSettings,
    "run": RunSettings,
    "render": RenderSettings,
    "smtp": SmtpSettings,
    "send": SendSettings,
    "schedule": ScheduleSettings,
    "web": WebSettings,
    "bounces": BouncesSettings,
}


def _build(cls: type, data: Any, file: Path, where: str, **given: Any) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking every key and type."""
    label = f"[{where}]" if where else "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {label} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - (set(fields) - {"path", "secret_key"}))
    if unknown:
        key = unknown[0]
        known = ", ".join(name for name in fields if name not in ("path", "secret_key"))
        raise ConfigError(f"{file}: {label} unknown key {key!r}", hint=f"known keys: {known}")
    values: dict[str, Any] = dict(given)
    for name, value in data.items():
        values[name] = _convert(hints[name], value, file, where, name)
        rule = _RULES.get((cls, name))
        problem = rule(values[name]) if rule else None
        if problem:
            place = f"[{where}] {name}" if where else name
            reason, accepted = problem
            raise ConfigError(
                f"{file}: {place} = {_shown(value)}: {reason}", hint=f"accepted: {accepted}"
            )
    missing = [
        f.name
        for f in fields.values()
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{file}: {label} missing required key {missing[0]!r}")
    return cls(**values)


def _convert(hint: Any, value: Any, file: Path, where: str, key: str) -> Any:
    place = f"{file}: [{where}] {key}" if where else f"{file}: {key}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, file, f"{where}.{key}" if where else key)
    if origin is tuple and args and dataclasses.is_dataclass(args[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{place} must be a list of tables ([[{key}]])")
        return tuple(
            _build(typing.cast(type, args[0]), item, file, f"{key}[{i}]")
            for i, item in enumerate(value)
        )
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{place} must be a list of strings, got {value!r}")
        return tuple(value)
    if origin is Literal:
        if value not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(f"{place} must be one of {choices}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):  # Path | None
        return _convert(args[0], value, file, where, key)
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{place} must be a path (a string), got {value!r}")
        return Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{place} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{place} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{place} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{place} must be a string, got {value!r}")
        return value
    raise AssertionError(f"unhandled setting type {hint!r}")  # pragma: no cover


# -- values: what each setting accepts ---------------------------------------------------
#
# Types are checked above; these rules check the values, so that a misspelt time
# zone or a negative rate is reported when the file is read, naming the key and
# what it accepts, rather than as a traceback in whichever command uses it first.
# Each rule returns None when the value is fine, else (what is wrong, what is accepted).

Problem = tuple[str, str] | None


def _shown(value: Any) -> str:
    """A value as the file writes it: strings quoted, numbers bare."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _number(
    low: float | None = None, high: float | None = None, *, above: float | None = None
) -> typing.Callable[[Any], Problem]:
    """A range rule: ``low <= value <= high`` (either bound optional), or ``value > above``."""
    parts = []
    if above is not None:
        parts.append(f"above {above:g}")
    if low is not None:
        parts.append(f"at least {low:g}")
    if high is not None:
        parts.append(f"at most {high:g}")
    accepted = "a number " + " and ".join(parts)

    def rule(value: Any) -> Problem:
        number = float(value)
        if (
            not math.isfinite(number)
            or (above is not None and number <= above)
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            return "out of range", accepted
        return None

    return rule


def _timezone(value: str) -> Problem:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        return "unknown time zone", f"an IANA time zone name such as Europe/Paris{guess}"
    return None


def _cron(value: str) -> Problem:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        return (
            f"not a crontab expression ({exc})",
            "five fields, minute hour day-of-month month day-of-week, with English day "
            "names or numbers: '0 7 * * mon' is Mondays at 07:00",
        )
    return None


def _email_language(value: str) -> Problem:
    from .i18n import CATALOGUE, base_language

    if base_language(value) not in CATALOGUE:
        languages = ", ".join(sorted(CATALOGUE))
        return "the email templates have no texts in this language", f"one of {languages}"
    return None


_LANGUAGE_TAG = re.compile(r"[a-zA-Z]{2,3}(?:[-_][a-zA-Z0-9]{2,8})*")


_TAG = re.compile(r"[\w-]+(?: [\w-]+)*")


def _tags(value: tuple[str, ...]) -> Problem:
    accepted = 'a list of words such as ["alumni", "etudiants"] (letters, digits, "-", "_")'
    for tag in value:
        if not _TAG.fullmatch(tag) or len(tag) > 40:
            return f"{tag!r} is not a tag", accepted
    return None


def _article_language(value: str) -> Problem:
    if value and not _LANGUAGE_TAG.fullmatch(value):
        return "not a language code", "a code such as fr, en or pt-BR, or empty"
    return None


_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def _colour(value: str) -> Problem:
    # hex only: the value goes into the email's CSS and into contrast computations
    if not _HEX_COLOUR.fullmatch(value):
        return "not a colour", "a hex colour such as #b3261e or #fff"
    return None


def _return_path(value: str) -> Problem:
    # a VERP base: the token goes after "+", so the local part must not have one already
    local, at, domain = value.rpartition("@")
    if value and (not at or not local or "." not in domain or "+" in local or not value.isascii()):
        return "not a plain address", 'an ASCII address without "+", e.g. bounces@example.org'
    if any(c.isspace() or c in '<>",' for c in value):
        return "not a plain address", 'an ASCII address without "+", e.g. bounces@example.org'
    return None


def _font_family(value: str) -> Problem:
    if not value.strip() or any(c in value for c in ";{}<>\\"):
        return "not a CSS font list", 'font names separated by commas: "Georgia, serif"'
    return None


def _source_url(value: str) -> Problem:
    if "://" not in value:
        return None  # a feed file, relative to the config file
    import httpx

    accepted = "an http:// or https:// URL, or the path of a feed file"
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        return f"not a valid URL ({exc})", accepted
    if url.scheme not in ("http", "https") or not url.host:
        return "not a web address", accepted
    return None


_RULES: dict[tuple[type, str], typing.Callable[[Any], Problem]] = {
    (NewsletterSettings, "language"): _email_language,
    (NewsletterSettings, "timezone"): _timezone,
    (SourceSettings, "url"): _source_url,
    (SourceSettings, "weight"): _number(above=0),
    (SourceSettings, "max_items"): _number(0),
    (SourceSettings, "language"): _article_language,
    (SourceSettings, "tags"): _tags,
    (EditionSettings, "language"): _email_language,
    (CollectSettings, "concurrency"): _number(1, 1000),
    (CollectSettings, "per_host"): _number(1, 100),
    (CollectSettings, "connect_timeout"): _number(above=0),
    (CollectSettings, "timeout"): _number(above=0),
    (CollectSettings, "max_bytes"): _number(1),
    (CollectSettings, "max_redirects"): _number(0, 50),
    (CollectSettings, "teaser_chars"): _number(0),
    (CollectSettings, "failing_after"): _number(1),
    (SelectSettings, "lookback_days"): _number(1),
    (SelectSettings, "max_articles"): _number(1, 100),
    (SelectSettings, "max_per_source"): _number(1),
    (LLMSettings, "timeout"): _number(above=0),
    (SummarizeSettings, "summary_sentences"): _number(1, 10),
    (SummarizeSettings, "max_lessons"): _number(1, 10),
    (RunSettings, "min_articles"): _number(0),
    (RenderSettings, "primary_color"): _colour,
    (RenderSettings, "text_color"): _colour,
    (RenderSettings, "background_color"): _colour,
    (RenderSettings, "card_color"): _colour,
    (RenderSettings, "font_family"): _font_family,
    (SmtpSettings, "port"): _number(1, 65535),
    (SmtpSettings, "timeout"): _number(above=0),
    (SendSettings, "rate"): _number(0),
    (SendSettings, "connections"): _number(1, 100),
    (SendSettings, "max_consecutive_failures"): _number(1),
    (SendSettings, "retry_window_hours"): _number(0),
    (SendSettings, "lease_seconds"): _number(1),
    (ScheduleSettings, "cron"): _cron,
    (ScheduleSettings, "timezone"): _timezone,
    (ScheduleSettings, "misfire_grace_hours"): _number(above=0),
    (WebSettings, "port"): _number(1, 65535),
    (BouncesSettings, "return_path"): _return_path,
    (BouncesSettings, "soft_limit"): _number(1),
    (BouncesSettings, "max_message_bytes"): _number(1000),
}
