"""Render an issue once: Jinja2 → MJML → mjml-python → premailer, plus a plain-text part.

    render_issue(issue, settings) -> RenderedIssue     HTML and text, recipient markers left in

The pre-send checks are in ``checks.py``, the colours in ``theme.py``.

Rendering happens once per issue; what changes per recipient (the name, the
unsubscribe URL) is left as the markers of ``models.py`` and replaced by
``RenderedIssue.personalize``, so sending to 10,000 people costs one render.

Templates are looked up file by file: the editor's folder (``[render] templates``,
either its ``email/`` subfolder or the folder itself) first, then the bundled
``digest/templates/email``. HTML templates are autoescaped and every template
runs with ``StrictUndefined``: a misspelt variable is an error, not a blank.

Text from feeds and editors goes through ``richtext`` before any template sees
it: control characters are dropped (lxml refuses them), template-looking
sequences (``{{``, ``{%``, ``%%``) get an invisible word joiner so that neither
the pre-send checks nor ``personalize`` can mistake them for ours, URLs that are
not http(s) are dropped (a ``javascript:`` link never reaches a reader), and the
editor's Markdown becomes safe HTML for the HTML part and plain text (links as
``text (url)``) for the text part.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
import mjml
import premailer

from .config import Settings
from .errors import DigestError, TemplateError
from .i18n import base_language, format_date, strings_for
from .models import NAME_MARKER, UNSUBSCRIBE_MARKER, Issue, IssueItem, RenderedIssue, new_markers
from .period import period_bounds
from .richtext import (
    clean,
    display_title,
    markdown_html,
    markdown_inline_html,
    markdown_inline_text,
    markdown_text,
    safe_url,
    shorten,
)
from .theme import Theme
from .typography import typography

__all__ = [
    "BUNDLED_TEMPLATES",
    "HTML_TEMPLATE",
    "MAX_HTML_BYTES",
    "TEXT_TEMPLATE",
    "compile_mjml",
    "inline_css",
    "render_issue",
    "render_mjml",
    "render_text",
    "template_context",
]

BUNDLED_TEMPLATES = Path(__file__).resolve().parent / "templates" / "email"
HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"

MAX_HTML_BYTES = 100_000
"""Gmail clips a message body at about 102 KB and may hide the unsubscribe link with it."""
WARN_HTML_BYTES = 90_000
MAX_SUBJECT_CHARS = 80
MAX_LINE_OCTETS = 998
"""RFC 5322 §2.1.1: no line of a message may be longer, CRLF excluded."""
PREHEADER_CHARS = 140
TEXT_WIDTH = 72

Part = Literal["html", "text"]

# ---------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _Item:
    """An item as templates see it. ``summary`` is a list of blocks and ``lessons`` a
    list of lines: HTML (``Markup``) for the HTML template, plain text for the text one."""

    number: int
    source: str
    title: str
    url: str
    summary: tuple[str, ...]
    lessons: tuple[str, ...]
    published: dt.date | None
    image_url: str
    image_alt: str
    section: str
    is_note: bool
    lang: str = ""
    """The article's language when it is not the issue's (``lang`` attribute, typography)."""


@dataclass(frozen=True)
class _Section:
    title: str
    items: tuple[_Item, ...]


def _item_view(
    item: IssueItem,
    number: int,
    timezone: str,
    part: Part,
    link_style: str,
    section: str,
    lang: str = "",
) -> _Item:
    published = None
    if item.published is not None:
        moment = item.published
        if moment.tzinfo is not None:
            moment = moment.astimezone(_zone(timezone))
        published = moment.date()
    summary: tuple[str, ...]
    lessons: tuple[str, ...]
    if part == "html":
        summary = tuple(markdown_html(item.summary, link_style))
        lessons = tuple(markdown_inline_html(lesson.text, link_style) for lesson in item.lessons)
    else:
        summary = tuple(markdown_text(item.summary))
        lessons = tuple(markdown_inline_text(lesson.text) for lesson in item.lessons)
    return _Item(
        number=number,
        source=clean(item.source),
        title=display_title(item.title),
        url=safe_url(item.url),
        summary=summary,
        lessons=tuple(lesson for lesson in lessons if lesson),
        published=published,
        image_url=safe_url(item.image_url),
        image_alt=clean(item.image_alt),
        section=section,
        is_note=item.is_note,
        lang=lang,
    )


def _item_views(
    issue: Issue, timezone: str, part: Part, link_style: str, other_languages: dict[str, str]
) -> tuple[_Item, ...]:
    """Items in order; an editor's note belongs to the section of the item before it,
    so that grouping by section never moves it away from where the editor put it."""
    views: list[_Item] = []
    section = ""
    ordered = sorted(issue.items, key=lambda i: i.position)
    for number, item in enumerate(ordered, start=1):
        if not item.is_note:
            section = clean(item.section)
        lang = other_languages.get(item.source, "")
        views.append(_item_view(item, number, timezone, part, link_style, section, lang))
    return tuple(views)


def _has_links(intro: list[str], items: tuple[_Item, ...]) -> bool:
    texts = [*intro, *(t for item in items for t in (*item.summary, *item.lessons))]
    return any("dg-inline-link" in text for text in texts)


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return dt.UTC


def _sections(items: Iterable[_Item]) -> tuple[_Section, ...]:
    """Group items by section, sections in order of first appearance, items kept in order."""
    groups: dict[str, list[_Item]] = {}
    for item in items:
        groups.setdefault(item.section, []).append(item)
    return tuple(_Section(title, tuple(members)) for title, members in groups.items())


def _issue_date(issue: Issue, timezone: str) -> dt.date | None:
    """The Monday of the issue's week, or None when the period is not an ISO week."""
    try:
        start, _ = period_bounds(issue.period, timezone)
    except (DigestError, KeyError, ValueError):  # not a period, or an unknown time zone
        return None
    return start.astimezone(_zone(timezone)).date()


def _subject(issue: Issue, settings: Settings) -> str:
    newsletter_title = clean(settings.newsletter.title)
    issue_title = clean(issue.title)
    subject = f"{newsletter_title} — {issue_title}" if issue_title else newsletter_title
    return str(typography(subject, _language(issue, settings)))


def _same_language(one: str, other: str) -> bool:
    return base_language(one) == base_language(other or "fr")


def _language(issue: Issue, settings: Settings) -> str:
    return issue.language or settings.newsletter.language or "fr"


def _preheader(issue: Issue, language: str) -> str:
    """What inbox lists show after the subject: the introduction, else the first summary."""
    intro = markdown_text(issue.intro, urls=False)
    if intro:
        source = intro[0]
    else:
        summaries = (markdown_text(i.summary, urls=False) for i in issue.items if not i.is_note)
        source = next((" ".join(s) for s in summaries if s), "")
    return str(typography(shorten(" ".join(source.split()), PREHEADER_CHARS), language))


def template_context(issue: Issue, settings: Settings, part: Part = "html") -> dict[str, Any]:
    """Everything the templates see; documented here because custom templates rely on it.

    ``newsletter`` (title, from_name, postal_address, why, language), ``issue``
    (title, period, date, intro: list of blocks, url: this issue in the web
    archive or ""), ``items`` and ``sections``
    (each section has ``title`` and ``items``; one untitled section when no item
    has one; an item with ``is_note`` is the editor's own block), ``theme``
    (colours, font, logo, archive_url), ``t`` (the strings of the issue's
    language), ``lang``, ``subject``, ``preheader``, ``name_marker`` and
    ``unsubscribe_marker`` (where each recipient's values go).

    The editor's Markdown (the introduction, each item's ``summary`` and
    ``lessons``) is rendered for ``part``: for ``"html"``, blocks of ``Markup``
    (a list block has ``is_list``); for ``"text"``, plain lines, a list's items
    one per line.
    """
    return _for_part(_shared_context(issue, settings), issue, part)


def _for_part(shared: dict[str, Any], issue: Issue, part: Part) -> dict[str, Any]:
    """``shared`` (what both parts say alike) with the editor's Markdown rendered for ``part``."""
    link_style = f"color:{shared['theme'].primary_color};text-decoration:underline;"
    timezone = shared["timezone"]
    items = _item_views(issue, timezone, part, link_style, shared["other_languages"])
    intro: list[str]
    intro = list(
        markdown_html(issue.intro, link_style) if part == "html" else markdown_text(issue.intro)
    )
    return {
        **shared,
        "issue": {**shared["issue"], "intro": intro},
        "items": items,
        "sections": _sections(items),
        "has_sections": any(item.section for item in items),
        # Links in the editor's Markdown: their dark-mode colour is only sent when needed.
        "has_inline_links": part == "html" and _has_links(intro, items),
    }


def _shared_context(issue: Issue, settings: Settings) -> dict[str, Any]:
    language = _language(issue, settings)
    strings = strings_for(language)
    newsletter = settings.newsletter
    timezone = newsletter.timezone
    title = clean(newsletter.title)
    theme = Theme.from_settings(settings, strings["logo_alt"].format(title=title))
    date = _issue_date(issue, timezone)
    archive = safe_url(settings.render.archive_url).rstrip("/")
    return {
        "lang": language,
        "t": strings,
        "subject": _subject(issue, settings),
        "preheader": _preheader(issue, language),
        "newsletter": {
            "title": title,
            "from_name": clean(newsletter.from_name),
            "postal_address": clean(newsletter.postal_address),
            # The configured wording is in the newsletter's language: another
            # language's edition says it with its own interface strings.
            "why": (clean(newsletter.why) if _same_language(language, newsletter.language) else "")
            or strings["why_default"].format(title=title),
            "language": language,
        },
        "issue": {
            "title": clean(issue.title),
            "period": issue.period,
            "date": date,
            # This issue on the web archive (``digest serve`` serves ARCHIVE/PERIOD), in
            # this email's language when it is not the newsletter's own.
            "url": (
                f"{archive}/{issue.period}"
                + ("" if _same_language(language, newsletter.language) else f"?language={language}")
                if archive and date
                else ""
            ),
        },
        "theme": theme,
        "timezone": timezone,
        "other_languages": _other_languages(settings, language),
        "name_marker": NAME_MARKER,
        "unsubscribe_marker": UNSUBSCRIBE_MARKER,
    }


# ---------------------------------------------------------------------------- Jinja


def _autoescape(name: str | None) -> bool:
    """Escape everything but the plain-text templates: MJML content is HTML."""
    return name is None or not name.endswith(".txt.j2")


def _other_languages(settings: Settings, language: str) -> dict[str, str]:
    """Sources written in another language than the issue's, with that language.

    A source that declares none is in the newsletter's language: in another
    language's edition, its articles keep their own ``lang`` (and typography).
    """
    base = language.split("-")[0].lower()
    default = settings.newsletter.language or "fr"
    return {
        source.name: own
        for source in settings.sources
        if (own := source.language or default).split("-")[0].lower() != base
    }


@jinja2.pass_context
def _typo_filter(context: jinja2.runtime.Context, value: object, language: str = "") -> object:
    """``|typo``, or ``|typo(item.lang)`` for an article in another language than the issue."""
    return typography(value, language or str(context.get("lang", "fr")))


@jinja2.pass_context
def _date_filter(context: jinja2.runtime.Context, value: dt.date | None) -> str:
    return "" if value is None else format_date(value, str(context.get("lang", "fr")))


_TEXT_BULLET = re.compile(r"^( *)(- |\d+\. )")


def _wrap_filter(value: str, width: int = TEXT_WIDTH, indent: str = "", first: str = "") -> str:
    """Wrap plain text for the text part; never breaks a word or a URL.

    Each line is wrapped on its own; a list item's line (``- `` or ``1. ``, as
    ``richtext`` writes lists) continues under its text, not under its bullet.
    """
    out: list[str] = []
    for line in str(value).split("\n"):
        lead, follow = first or indent, indent
        bullet = _TEXT_BULLET.match(line)
        if bullet:
            lead += bullet.group(0)
            follow += " " * len(bullet.group(0))
            line = line[bullet.end() :]
        wrapped = textwrap.wrap(
            line,
            width=width,
            initial_indent=lead,
            subsequent_indent=follow,
            break_long_words=False,
            break_on_hyphens=False,
        )
        out.append("\n".join(wrapped))
    return "\n".join(out)


def _environment(user_folder: Path | None) -> jinja2.Environment:
    if user_folder is not None and not user_folder.is_dir():
        raise TemplateError(
            f"template folder {user_folder} does not exist",
            hint="create it (digest init writes one) or remove [render] templates from the config",
        )
    return _cached_environment(user_folder)


@functools.lru_cache(maxsize=8)
def _cached_environment(user_folder: Path | None) -> jinja2.Environment:
    # Cached so templates compile once per process; FileSystemLoader still notices
    # edited files (auto_reload), which the preview relies on.
    loaders: list[jinja2.BaseLoader] = []
    if user_folder is not None:
        loaders.append(jinja2.FileSystemLoader([user_folder / "email", user_folder]))
    loaders.append(jinja2.FileSystemLoader(BUNDLED_TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["typo"] = _typo_filter
    env.filters["date"] = _date_filter
    env.filters["wrap"] = _wrap_filter
    return env


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name or name}, line {exc.lineno}"
        raise TemplateError(
            f"template syntax error in {where}: {exc.message}",
            hint="fix the template, or delete it to use the bundled one",
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template not found: {exc.name}",
            hint=f"the bundled templates are in {BUNDLED_TEMPLATES}",
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(
            f"template error in {_template_frame(exc) or name}: {exc}",
            hint=f"variables available: {', '.join(sorted(context))}",
        ) from None


def _template_frame(exc: BaseException) -> str:
    """``file, line N`` of the innermost template frame of ``exc``'s traceback.

    Jinja rewrites tracebacks so that template code shows with the template's
    file name and line, which is what an editor needs to find the mistake.
    """
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.endswith(".py") and not filename.startswith("<"):
            where = f"{filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return where


# ---------------------------------------------------------------------------- stages


def render_mjml(issue: Issue, settings: Settings) -> str:
    """Stage 1: the MJML source of the issue (Jinja2)."""
    env = _environment(settings.render.templates)
    return _render_template(env, HTML_TEMPLATE, template_context(issue, settings))


def render_text(issue: Issue, settings: Settings) -> str:
    """The plain-text part: same titles, summaries, lessons and links as the HTML."""
    env = _environment(settings.render.templates)
    text = _render_template(env, TEXT_TEMPLATE, template_context(issue, settings, "text"))
    return _tidy_text(text)


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


def compile_mjml(source: str) -> str:
    """Stage 2: MJML → HTML with mjml-python (no web fonts: ``fonts={}``)."""
    try:
        return mjml.mjml2html(source, fonts={})
    except Exception as exc:  # mjml-python raises plain exceptions with the parser's message
        raise TemplateError(
            f"{HTML_TEMPLATE} produced MJML that does not compile: {exc}",
            hint="check the MJML tags of your custom templates",
        ) from None


# One instance for the life of the process: premailer adds the handler it is given
# to cssutils' logger on every call, and logging ignores an instance already there.
_CSSUTILS_SILENCER = logging.NullHandler()


_MJML_RESET = '<style type="text/css">\n#outlook a'
_MJML_RESET_KEPT = '<style type="text/css" data-premailer="ignore">\n#outlook a'


def inline_css(html: str) -> str:
    """Stage 3: copy CSS rules onto the elements (premailer), keeping ``@media`` rules.

    ``allow_network=False``: premailer would otherwise fetch linked stylesheets.
    cssutils complains about every ``mso-*`` property MJML emits for Outlook; its
    log goes to a handler that drops it. premailer drops the doctype, so it is put back.
    """
    # MJML's reset block is meant to stay in <head> (MJML never inlines it); inlining
    # it would add ~60 bytes to every table cell, 8 KB per issue, for nothing.
    html = html.replace(_MJML_RESET, _MJML_RESET_KEPT, 1)
    inliner = premailer.Premailer(
        html,
        allow_network=False,
        keep_style_tags=True,
        strip_important=False,
        disable_validation=True,
        remove_classes=False,
        cssutils_logging_handler=_CSSUTILS_SILENCER,
        cssutils_logging_level=logging.CRITICAL,
    )
    out = inliner.transform()
    if not out.lstrip().lower().startswith("<!doctype"):
        out = "<!doctype html>\n" + out
    return out


def render_issue(issue: Issue, settings: Settings) -> RenderedIssue:
    """Render ``issue`` once; raise ``TemplateError`` naming the template file and line."""
    shared = _shared_context(issue, settings)
    # Fresh markers for this render only: content written before cannot contain them.
    name_marker, unsubscribe_marker = new_markers()
    shared.update(name_marker=name_marker, unsubscribe_marker=unsubscribe_marker)
    context = _for_part(shared, issue, "html")
    env = _environment(settings.render.templates)
    source = _render_template(env, HTML_TEMPLATE, context)
    html = inline_css(compile_mjml(source))
    text = _tidy_text(_render_template(env, TEXT_TEMPLATE, _for_part(shared, issue, "text")))
    return RenderedIssue(
        subject=context["subject"],
        preheader=context["preheader"],
        html=html,
        text=text,
        language=context["lang"],
        name_marker=name_marker,
        unsubscribe_marker=unsubscribe_marker,
    )


# ---------------------------------------------------------------------------- checks
