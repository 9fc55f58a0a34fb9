"""Render an issue once: Jinja2 → MJML → mjml-python → premailer, plus a plain-text part.

    render_issue(issue, settings) -> RenderedIssue     HTML and text, recipient markers left in
    check_email(rendered, issue)  -> list[Check]       what to fix before sending

Rendering happens once per issue; what changes per recipient (the name, the
unsubscribe URL) is left as the markers of ``models.py`` and replaced by
``RenderedIssue.personalise``, so sending to 10,000 people costs one render.

Templates are looked up file by file: the editor's folder (``[render] templates``,
either its ``email/`` subfolder or the folder itself) first, then the bundled
``digest/templates/email``. HTML templates are autoescaped and every template
runs with ``StrictUndefined``: a misspelt variable is an error, not a blank.

Text from feeds and editors goes through three steps before any template sees it:
control characters are dropped (lxml refuses them), template-looking sequences
(``{{``, ``{%``, ``%%``) get an invisible word joiner so that neither the pre-send
checks nor ``personalise`` can mistake them for ours, and URLs that are not
http(s) are dropped (a ``javascript:`` link never reaches a reader).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
import mjml
import premailer

from .config import Settings
from .errors import DigestError, TemplateError
from .i18n import format_date, strings_for
from .models import NAME_MARKER, UNSUBSCRIBE_MARKER, Issue, IssueItem, RenderedIssue
from .period import period_bounds
from .typography import typography

__all__ = [
    "BUNDLED_TEMPLATES",
    "Check",
    "HTML_TEMPLATE",
    "MAX_HTML_BYTES",
    "TEXT_TEMPLATE",
    "Theme",
    "check_email",
    "compile_mjml",
    "display_title",
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
MAX_TITLE_CHARS = 200
"""Longer titles (a broken feed) are cut at a word boundary; the reader gets the link."""
PREHEADER_CHARS = 140
TEXT_WIDTH = 72

# ---------------------------------------------------------------------------- theme


@dataclass(frozen=True)
class Theme:
    """Colours and type the templates use, derived from ``[render]``.

    The derived colours (tints, the dark palette) are computed here rather than
    written in the templates, so an editor who changes ``primary_color`` gets a
    matching lessons block and dark mode without touching a template.
    """

    primary_color: str
    text_color: str
    background_color: str
    card_color: str
    font_family: str
    muted_color: str
    on_primary_color: str
    tint_color: str
    dark_background: str
    dark_card: str
    dark_text: str
    dark_muted: str
    dark_primary: str
    dark_tint: str
    logo_url: str
    logo_alt: str
    archive_url: str

    @classmethod
    def from_settings(cls, settings: Settings, logo_alt_default: str) -> Theme:
        render = settings.render
        primary = render.primary_color
        dark_card = "#1f1d1b"
        return cls(
            primary_color=primary,
            text_color=render.text_color,
            background_color=render.background_color,
            card_color=render.card_color,
            font_family=render.font_family,
            muted_color=_mix(render.text_color, render.card_color, 0.75, "#5c5650"),
            on_primary_color=_readable_on(primary),
            tint_color=_mix(primary, render.card_color, 0.07, "#f8efed"),
            dark_background="#121110",
            dark_card=dark_card,
            dark_text="#eeeae5",
            dark_muted="#bdb6ad",
            dark_primary=_mix(primary, "#ffffff", 0.45, "#f2a49e"),
            dark_tint=_mix(primary, dark_card, 0.22, "#3a2523"),
            logo_url=_safe_url(render.logo_url),
            logo_alt=render.logo_alt or logo_alt_default,
            archive_url=_safe_url(render.archive_url),
        )


def _rgb(colour: str) -> tuple[int, int, int] | None:
    value = colour.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    if len(value) != 6 or not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        return None
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _mix(colour: str, other: str, weight: float, fallback: str) -> str:
    """``weight`` of ``colour`` over ``other``; ``fallback`` when either is not #rgb/#rrggbb."""
    a, b = _rgb(colour), _rgb(other)
    if a is None or b is None:
        return fallback
    mixed = (round(x * weight + y * (1 - weight)) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{c:02x}" for c in mixed)


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour."""
    rgb = _rgb(colour)
    if rgb is None:
        raise ValueError(f"not a hex colour: {colour!r}")

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio; 4.5 is the floor for body text."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def _readable_on(background: str) -> str:
    """White or near-black, whichever reads better on ``background``."""
    if _rgb(background) is None:
        return "#ffffff"
    return max(("#ffffff", "#1a1a1a"), key=lambda c: contrast_ratio(c, background))


# ---------------------------------------------------------------------------- text hygiene

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_WORD_JOINER = "\u2060"


def _clean(text: str) -> str:
    """One line of reader-facing text: no control characters, whitespace collapsed."""
    return _defuse(" ".join(_CONTROL.sub(" ", text).split()))


def _clean_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines, each cleaned as one line."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [p for p in (_clean(block) for block in re.split(r"\n\s*\n", text)) if p]


def _defuse(text: str) -> str:
    """Make template-looking sequences inert, invisibly: ``{{`` → ``{⁠{``.

    A title quoting Jinja or a feed smuggling ``%%DIGEST_UNSUBSCRIBE_URL%%`` then
    shows as written but is never taken for a template leftover or a marker.
    """
    if "{" in text or "%%" in text:
        text = text.replace("{{", "{" + _WORD_JOINER + "{").replace("{%", "{" + _WORD_JOINER + "%")
        text = text.replace("%%", "%" + _WORD_JOINER + "%")
    return text


def _safe_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL a reader may follow, else ``""``."""
    url = url.strip()
    if not url or _CONTROL.search(url) or any(c.isspace() for c in url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return url


def display_title(title: str) -> str:
    """The title as the email shows it: cleaned, and cut at a word if absurdly long."""
    title = _clean(title)
    if len(title) <= MAX_TITLE_CHARS:
        return title
    return _shorten(title, MAX_TITLE_CHARS)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-—") + "…"


# ---------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _Item:
    number: int
    source: str
    title: str
    url: str
    summary: str
    lessons: tuple[str, ...]
    published: dt.date | None
    image_url: str
    image_alt: str
    section: str
    lang: str = ""
    """The article's language when it is not the issue's (``lang`` attribute, typography)."""


@dataclass(frozen=True)
class _Section:
    title: str
    items: tuple[_Item, ...]


def _item_view(item: IssueItem, number: int, timezone: str) -> _Item:
    published = None
    if item.published is not None:
        moment = item.published
        if moment.tzinfo is not None:
            moment = moment.astimezone(_zone(timezone))
        published = moment.date()
    return _Item(
        number=number,
        source=_clean(item.source),
        title=display_title(item.title),
        url=_safe_url(item.url),
        summary=_clean(item.summary),
        lessons=tuple(c for c in (_clean(lesson) for lesson in item.lessons) if c),
        published=published,
        image_url=_safe_url(item.image_url),
        image_alt=_clean(item.image_alt),
        section=_clean(item.section),
    )


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
    newsletter_title = _clean(settings.newsletter.title)
    issue_title = _clean(issue.title)
    subject = f"{newsletter_title} — {issue_title}" if issue_title else newsletter_title
    return str(typography(subject, _language(issue, settings)))


def _language(issue: Issue, settings: Settings) -> str:
    return issue.language or settings.newsletter.language or "fr"


def _preheader(intro: list[str], items: tuple[_Item, ...], language: str) -> str:
    """What inbox lists show after the subject: the introduction, else the first summary."""
    source = intro[0] if intro else next((i.summary for i in items if i.summary), "")
    return str(typography(_shorten(source, PREHEADER_CHARS), language))


def template_context(issue: Issue, settings: Settings) -> dict[str, Any]:
    """Everything the templates see; documented here because custom templates rely on it.

    ``newsletter`` (title, from_name, postal_address, why, language), ``issue``
    (title, period, date, intro: list of paragraphs, url: this issue in the web
    archive or ""), ``items`` and ``sections``
    (each section has ``title`` and ``items``; one untitled section when no item
    has one), ``theme`` (colours, font, logo, archive_url), ``t`` (the strings of
    the issue's language), ``lang``, ``subject``, ``preheader``, ``name_marker``
    and ``unsubscribe_marker`` (where each recipient's values go).
    """
    language = _language(issue, settings)
    strings = strings_for(language)
    newsletter = settings.newsletter
    timezone = newsletter.timezone
    ordered = sorted(issue.items, key=lambda i: i.position)
    items = tuple(
        replace(_item_view(item, n, timezone), lang=_other_language(item, settings, language))
        for n, item in enumerate(ordered, start=1)
    )
    intro = _clean_paragraphs(issue.intro)
    title = _clean(newsletter.title)
    date = _issue_date(issue, timezone)
    archive = _safe_url(settings.render.archive_url).rstrip("/")
    return {
        "lang": language,
        "t": strings,
        "subject": _subject(issue, settings),
        "preheader": _preheader(intro, items, language),
        "newsletter": {
            "title": title,
            "from_name": _clean(newsletter.from_name),
            "postal_address": _clean(newsletter.postal_address),
            "why": _clean(newsletter.why) or strings["why_default"].format(title=title),
            "language": language,
        },
        "issue": {
            "title": _clean(issue.title),
            "period": issue.period,
            "date": date,
            # This issue on the web archive (``digest serve`` serves ARCHIVE/PERIOD).
            "url": f"{archive}/{issue.period}" if archive and date else "",
            "intro": intro,
        },
        "items": items,
        "sections": _sections(items),
        "has_sections": any(item.section for item in items),
        "theme": Theme.from_settings(settings, strings["logo_alt"].format(title=title)),
        "name_marker": NAME_MARKER,
        "unsubscribe_marker": UNSUBSCRIBE_MARKER,
    }


# ---------------------------------------------------------------------------- Jinja


def _autoescape(name: str | None) -> bool:
    """Escape everything but the plain-text templates: MJML content is HTML."""
    return name is None or not name.endswith(".txt.j2")


def _other_language(item: IssueItem, settings: Settings, language: str) -> str:
    """The language its source declares for ``item``, when it differs from the issue's."""
    declared = next((s.language for s in settings.sources if s.name == item.source), "")
    same = declared.split("-")[0].lower() == language.split("-")[0].lower()
    return "" if not declared or same else declared


@jinja2.pass_context
def _typo_filter(context: jinja2.runtime.Context, value: object, language: str = "") -> object:
    """``|typo``, or ``|typo(item.lang)`` for an article in another language than the issue."""
    return typography(value, language or str(context.get("lang", "fr")))


@jinja2.pass_context
def _date_filter(context: jinja2.runtime.Context, value: dt.date | None) -> str:
    return "" if value is None else format_date(value, str(context.get("lang", "fr")))


def _wrap_filter(value: str, width: int = TEXT_WIDTH, indent: str = "", first: str = "") -> str:
    """Wrap plain text for the text part; never breaks a word or a URL."""
    lines = textwrap.wrap(
        str(value),
        width=width,
        initial_indent=first or indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines)


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
    text = _render_template(env, TEXT_TEMPLATE, template_context(issue, settings))
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
    context = template_context(issue, settings)
    env = _environment(settings.render.templates)
    source = _render_template(env, HTML_TEMPLATE, context)
    html = inline_css(compile_mjml(source))
    text = _tidy_text(_render_template(env, TEXT_TEMPLATE, context))
    return RenderedIssue(
        subject=context["subject"],
        preheader=context["preheader"],
        html=html,
        text=text,
        language=context["lang"],
    )


# ---------------------------------------------------------------------------- checks

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Check:
    """One finding of the pre-send checks; any ``error`` should stop a send."""

    name: str
    level: Level
    message: str


class _Links(HTMLParser):
    """Collects images, links (with their text) and the visible text of the rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.link_texts: list[str] = []
        self.text: list[str] = []
        self.lang: str | None = None
        self._skip = 0
        self._in_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "img":
            self.images.append(values)
            if self._in_link:  # a linked image is described by its alt text
                self.link_texts[-1] += values.get("alt") or ""
        elif tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
            self.link_texts.append("")
            self._in_link = True
        elif tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._skip:
            self._skip -= 1
        elif tag == "a":
            self._in_link = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)
            if self._in_link:
                self.link_texts[-1] += data


# Link texts that say nothing out of context (screen readers list links on their own).
_VAGUE_LINK_TEXTS = {
    "",
    "ici",
    "cliquez ici",
    "cliquer ici",
    "lien",
    "en savoir plus",
    "lire la suite",
    "plus",
    "here",
    "click here",
    "link",
    "read more",
    "more",
}


_LEFTOVER = re.compile(r"\{\{|\{%|%%[A-Z0-9_]+%%")
_SPACE_LIKE = re.compile(r"[\s\u2060\u200b]+")


def _squash(text: str) -> str:
    """Text with every kind of space removed, for comparing what two parts say."""
    return _SPACE_LIKE.sub("", text)


def check_email(rendered: RenderedIssue, issue: Issue | None = None) -> list[Check]:
    """Pre-send checks of a rendered issue; ``issue`` adds the per-article ones."""
    checks: list[Check] = []

    def add(name: str, level: Level, message: str) -> None:
        checks.append(Check(name, level, message))

    parsed = _Links()
    parsed.feed(rendered.html)
    parsed.close()

    _check_size(rendered, issue, add)

    for image in parsed.images:
        if image.get("alt") is None:
            add("image-alt", "error", f"image {image.get('src') or '(no src)'} has no alt text")
        _check_url(str(image.get("src") or ""), "image", add)
    for href in parsed.links:
        if href != UNSUBSCRIBE_MARKER and not href.startswith("mailto:"):
            _check_url(href, "link", add)

    for part, body in (("HTML", rendered.html), ("text", rendered.text)):
        found_here = set(_LEFTOVER.findall(body)) - {NAME_MARKER, UNSUBSCRIBE_MARKER}
        leftovers = found_here
        if leftovers:
            found = ", ".join(sorted(leftovers))
            add("template-leftover", "error", f"the {part} part contains {found}")
    for href, label in zip(parsed.links, parsed.link_texts, strict=True):
        if " ".join(label.split()).lower().strip(" .:…→»›") in _VAGUE_LINK_TEXTS:
            add("link-text", "warning", f"link to {href} says {label.strip()!r}: say where it goes")
    if not parsed.lang:
        add("lang", "warning", "the <html> element has no lang: screen readers may mispronounce it")
    if UNSUBSCRIBE_MARKER not in parsed.links:
        add("unsubscribe", "error", "the HTML part has no unsubscribe link")
    if UNSUBSCRIBE_MARKER not in rendered.text:
        add("unsubscribe", "error", "the text part has no unsubscribe link")

    _check_text_part(rendered, parsed, issue, add)
    _check_subject(rendered.subject, add)
    if not rendered.preheader.strip():
        add("preheader", "warning", "no preheader: inbox lists will show the first body text")
    for number, line in enumerate(rendered.text.splitlines(), start=1):
        if len(line.encode("utf-8")) > MAX_LINE_OCTETS:
            add("line-length", "error", f"text part line {number} is over {MAX_LINE_OCTETS} octets")
    return checks


def _check_size(rendered: RenderedIssue, issue: Issue | None, add: Any) -> None:
    size = len(rendered.html.encode("utf-8"))
    if size <= WARN_HTML_BYTES:
        return
    if size <= MAX_HTML_BYTES:
        add("size", "warning", f"the HTML is {size:,} bytes, close to the {MAX_HTML_BYTES:,} limit")
        return
    # Bytes per article, measured between the first and last card when we can.
    starts = [m.start() for m in re.finditer(r'class="(?:[^"]*\s)?dg-article[\s"]', rendered.html)]
    count = len(issue.items) if issue is not None else len(starts)
    advice = "shorten the summaries or drop articles"
    if len(starts) >= 2:
        per_article = (starts[-1] - starts[0]) / (len(starts) - 1)
    elif count:
        per_article = size / count
    else:
        per_article = 0
    if per_article:
        # Bytes per article are counted in characters; close enough for advice.
        drop = math.ceil((size - MAX_HTML_BYTES) / per_article)
        if count:
            drop = min(drop, count)
            advice = f"drop {drop} of the {count} articles (about {per_article / 1000:.1f} KB each)"
        else:
            advice = f"drop about {drop} articles (about {per_article / 1000:.1f} KB each)"
    add(
        "size",
        "error",
        f"the HTML is {size:,} bytes, over {MAX_HTML_BYTES:,}: Gmail clips it and may hide the "
        f"unsubscribe link; {advice}",
    )


def _check_url(url: str, what: str, add: Any) -> None:
    if url.startswith("https://") and urlsplit(url).hostname:
        return
    if url.startswith("http://") and urlsplit(url).hostname:
        add("links", "warning", f"{what} {url} is not https")
        return
    add("links", "error", f"{what} {url or '(empty)'} is not an absolute https URL")


def _check_text_part(
    rendered: RenderedIssue, parsed: _Links, issue: Issue | None, add: Any
) -> None:
    if not rendered.text.strip():
        add("text-part", "error", "the text part is empty: spam filters penalise HTML-only mail")
        return
    html_text = _squash("".join(parsed.text))
    text = _squash(rendered.text)
    for href in parsed.links:
        if href.startswith("http") and href not in rendered.text:
            add("text-part", "error", f"link {href} is in the HTML but not in the text part")
    if issue is None:
        return
    if not issue.items:
        add("empty-issue", "error", f"issue {issue.period} has no articles")
    for position, item in enumerate(sorted(issue.items, key=lambda i: i.position), start=1):
        label = f"article {position}"
        if not item.title.strip():
            add("empty-article", "error", f"{label} ({item.url or 'no URL'}) has no title")
        if not item.summary.strip():
            add("empty-article", "error", f"{label} ({item.title or item.url}) has no summary")
        if len(_clean(item.title)) > MAX_TITLE_CHARS:
            add("title-length", "warning", f"{label}: title cut to {MAX_TITLE_CHARS} characters")
        if not _safe_url(item.url):
            add("links", "error", f"{label} has no usable link: {item.url or '(empty)'}")
        if item.image_url and not _safe_url(item.image_url):
            add("image", "warning", f"{label}: image {item.image_url!r} is not a URL, left out")
        title = _squash(display_title(item.title))
        if title:
            for part, body in (("HTML", html_text), ("text", text)):
                # Typography only adds spaces, which _squash removes from both sides.
                if title not in body:
                    add("text-part", "error", f"{label}'s title is missing from the {part} part")
        url = _safe_url(item.url)
        if url and url not in rendered.text:
            add("text-part", "error", f"{label}'s URL is missing from the text part")
        if url and url not in parsed.links:
            add("text-part", "error", f"{label}'s URL is missing from the HTML part")


def _check_subject(subject: str, add: Any) -> None:
    if not subject.strip():
        add("subject", "error", "the subject is empty")
    elif "\n" in subject or "\r" in subject:
        add("subject", "error", "the subject contains a line break")
    elif len(subject) > MAX_SUBJECT_CHARS:
        add(
            "subject",
            "warning",
            f"the subject is {len(subject)} characters; inboxes cut it near {MAX_SUBJECT_CHARS}",
        )
    if len(subject.encode("utf-8")) > MAX_LINE_OCTETS:
        add("line-length", "error", f"the subject is over {MAX_LINE_OCTETS} octets")
