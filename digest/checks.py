"""The pre-send checks: what to fix before an issue goes to anyone.

    check_email(rendered, issue) -> list[Check]
    check_settings(settings) -> list[Check]     what a real send refuses in the config

Each finding is an ``error`` (a send should stop: no unsubscribe link, a missing
text part, an article without a link, an HTML part Gmail would clip) or a
``warning`` (worth a look: an http link, a vague link text, Markdown that would
show as typed). The checks read the rendered HTML with lxml, as a mail client
would, rather than trusting the templates to have done what they meant.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import lxml.etree
import lxml.html

from .config import Settings
from .models import Issue, RenderedIssue
from .render import MAX_HTML_BYTES, MAX_LINE_OCTETS, MAX_SUBJECT_CHARS, WARN_HTML_BYTES
from .richtext import MAX_TITLE_CHARS, clean, display_title, literal_markdown, safe_url

__all__ = ["Check", "check_email", "check_settings"]

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Check:
    """One finding of the pre-send checks; any ``error`` should stop a send."""

    name: str
    level: Level
    message: str


@dataclass(frozen=True)
class _Html:
    """What the checks need from the rendered HTML: images, links and their texts, words."""

    lang: str | None
    images: list[dict[str, str]]
    links: list[str]
    link_texts: list[str]
    text: str
    marked: list[tuple[str, str, str]]
    """(tag, attribute, value) of every attribute (or stylesheet) that holds ``%%``."""


def _read_html(html: str) -> _Html:
    if not html.strip():
        return _Html(None, [], [], [], "", [])
    doc = lxml.html.document_fromstring(html.encode("utf-8"), parser=_HTML_PARSER)
    # CSS can fetch addresses too (``url(…)``): a marker in a stylesheet counts.
    marked = [("style", "CSS", node.text or "") for node in doc.iter("style")]
    for node in doc.xpath("//style|//script|//title"):
        node.drop_tree()
    links = doc.xpath("//a[@href]")
    return _Html(
        lang=doc.get("lang"),
        images=[dict(img.attrib) for img in doc.iter("img")],
        links=[a.get("href", "") for a in links],
        # A linked image is described by its alt text.
        link_texts=[
            a.text_content() + "".join(i.get("alt", "") for i in a.iter("img")) for a in links
        ],
        text=doc.text_content(),
        marked=[
            entry
            for entry in marked
            + [
                (str(node.tag), attr, value)
                for node in doc.iter(lxml.etree.Element)
                for attr, value in node.attrib.items()
            ]
            if "%%" in entry[2]
        ],
    )


_HTML_PARSER = lxml.html.HTMLParser(encoding="utf-8")


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


def check_email(
    rendered: RenderedIssue, issue: Issue | None = None, local_base_url: str = ""
) -> list[Check]:
    """Pre-send checks of a rendered issue; ``issue`` adds the per-article ones.

    ``local_base_url``: our own pages on a local address the config opted into
    (``[web] allow_local_links``, the demo): their ``http://`` links are what was asked
    for, not a warning. ``check_settings`` still refuses them for a real send elsewhere.
    """
    checks: list[Check] = []

    def add(name: str, level: Level, message: str) -> None:
        checks.append(Check(name, level, message))

    parsed = _read_html(rendered.html)

    _check_size(rendered, issue, add)

    for image in parsed.images:
        if image.get("alt") is None:
            add("image-alt", "error", f"image {image.get('src') or '(no src)'} has no alt text")
        _check_url(str(image.get("src") or ""), "image", add)
    unsubscribe = rendered.unsubscribe_marker
    own = local_base_url.rstrip("/") + "/" if local_base_url else ""
    for href in parsed.links:
        if href != unsubscribe and not href.startswith("mailto:"):
            if own and href.startswith(own):
                continue
            _check_url(href, "link", add)
    _check_recipient_values(rendered, parsed, add)

    for part, body in (("HTML", rendered.html), ("text", rendered.text)):
        found_here = set(_LEFTOVER.findall(body)) - set(rendered.markers)
        leftovers = found_here
        if leftovers:
            found = ", ".join(sorted(leftovers))
            add("template-leftover", "error", f"the {part} part contains {found}")
    for href, label in zip(parsed.links, parsed.link_texts, strict=True):
        if " ".join(label.split()).lower().strip(" .:…→»›") in _VAGUE_LINK_TEXTS:
            add("link-text", "warning", f"link to {href} says {label.strip()!r}: say where it goes")
    if not parsed.lang:
        add("lang", "warning", "the <html> element has no lang: screen readers may mispronounce it")
    if unsubscribe not in parsed.links:
        add("unsubscribe", "error", "the HTML part has no unsubscribe link")
    if unsubscribe not in rendered.text:
        add("unsubscribe", "error", "the text part has no unsubscribe link")

    _check_text_part(rendered, parsed, issue, add)
    if issue is not None:
        _check_markdown(issue, add)
        _check_lessons(issue, add)
    _check_subject(rendered.subject, add)
    if not rendered.preheader.strip():
        add("preheader", "warning", "no preheader: inbox lists will show the first body text")
    for number, line in enumerate(rendered.text.splitlines(), start=1):
        if len(line.encode("utf-8")) > MAX_LINE_OCTETS:
            add("line-length", "error", f"text part line {number} is over {MAX_LINE_OCTETS} octets")
    return checks


def _check_lessons(issue: Issue, add: Any) -> None:
    """An article without lessons goes out without its « Ce que cela nous apprend »:
    say so, since the offline summarizer leaves the box empty rather than filling it
    with facts when the article draws no lesson itself."""
    for item in issue.items:
        if not item.is_note and not item.lessons:
            add("lessons", "warning", f"« {item.title} » has no lesson: write one in the draft")


def _check_recipient_values(rendered: RenderedIssue, parsed: _Html, add: Any) -> None:
    """A reader's name or unsubscribe token may only go where it stays ours.

    The one place a per-recipient value may sit in a URL is the unsubscribe link,
    whose whole ``href`` is the marker (it becomes ``base_url/u/TOKEN``). Anywhere
    else in an attribute (a link, an image, a style), or inside a web address
    written in the text (mail clients make those links), it would be sent to
    whoever owns that address as soon as the reader clicks or images load.
    """
    name, unsubscribe = rendered.markers
    what = {name: "the reader's name", unsubscribe: "the reader's unsubscribe URL"}
    for tag, attr, value in parsed.marked:
        if attr == "href" and value == unsubscribe:
            continue
        for marker in (name, unsubscribe):
            if marker in value:
                add(
                    "recipient-values",
                    "error",
                    f"{what[marker]} would be written into the {attr} of a <{tag}> "
                    f"({value.replace(marker, '…')}): only the unsubscribe link may carry it; "
                    "fix the custom template",
                )
    for part, body in (("HTML", parsed.text), ("text", rendered.text)):
        for word in body.split():
            if word == unsubscribe or not ("://" in word or word.lower().startswith("www.")):
                continue
            for marker in (name, unsubscribe):
                if marker in word:
                    add(
                        "recipient-values",
                        "error",
                        f"the {part} part writes {what[marker]} inside the address "
                        f"{word.replace(marker, '…')}: only the unsubscribe link may carry it",
                    )


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


def _check_text_part(rendered: RenderedIssue, parsed: _Html, issue: Issue | None, add: Any) -> None:
    if not rendered.text.strip():
        add("text-part", "error", "the text part is empty: spam filters penalise HTML-only mail")
        return
    html_text = _squash(parsed.text)
    text = _squash(rendered.text)
    for href in parsed.links:
        if href.startswith("http") and href not in rendered.text:
            add("text-part", "error", f"link {href} is in the HTML but not in the text part")
    if issue is None:
        return
    if not any(not item.is_note for item in issue.items):
        add("empty-issue", "error", f"issue {issue.period} has no articles")
    for position, item in enumerate(sorted(issue.items, key=lambda i: i.position), start=1):
        label = f"article {position}"
        title = _squash(display_title(item.title))
        if item.is_note:
            for part, body in (("HTML", html_text), ("text", text)):
                if title and title not in body:
                    add("text-part", "error", f"note « {item.title} » is missing from the {part}")
            continue
        if not item.title.strip():
            add("empty-article", "error", f"{label} ({item.url or 'no URL'}) has no title")
        if not item.summary.strip():
            add("empty-article", "error", f"{label} ({item.title or item.url}) has no summary")
        if len(clean(item.title)) > MAX_TITLE_CHARS:
            add("title-length", "warning", f"{label}: title cut to {MAX_TITLE_CHARS} characters")
        if not safe_url(item.url):
            add("links", "error", f"{label} has no usable link: {item.url or '(empty)'}")
        if item.image_url and not safe_url(item.image_url):
            add("image", "warning", f"{label}: image {item.image_url!r} is not a URL, left out")
        if title:
            for part, body in (("HTML", html_text), ("text", text)):
                # Typography only adds spaces, which _squash removes from both sides.
                if title not in body:
                    add("text-part", "error", f"{label}'s title is missing from the {part} part")
        url = safe_url(item.url)
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


def _check_markdown(issue: Issue, add: Any) -> None:
    """Markdown that would reach readers as typed: ``**`` never closed, a link whose
    ``[text]`` and ``(url)`` do not meet, raw HTML, a link that is not http(s) or mailto."""
    texts: list[tuple[str, str]] = [("the introduction", issue.intro)]
    for position, item in enumerate(sorted(issue.items, key=lambda i: i.position), start=1):
        label = f"note « {clean(item.title)} »" if item.is_note else f"article {position}"
        texts.append((f"{label}'s text", item.summary))
        texts += [
            (f"{label}'s lesson {n}", lesson.text) for n, lesson in enumerate(item.lessons, 1)
        ]
    for where, source in texts:
        found = literal_markdown(source)
        if found:
            shown = ", ".join(repr(piece) for piece in found)
            add(
                "markdown",
                "warning",
                f"{where} will show {shown} as typed: close the **emphasis**, write links "
                "as [text](https://…), and leave out HTML",
            )


# ---------------------------------------------------------------------------- the config

# Domains that can never be anyone's real address (RFC 2606, RFC 6761): the
# starter and the docs use them as placeholders.
_RESERVED_DOMAINS = ("example.org", "example.com", "example.net")
_RESERVED_SUFFIXES = ("example", "test", "invalid", "localhost", "local")


def _reserved(host: str) -> bool:
    host = host.lower().rstrip(".")
    labels = host.split(".")
    return (
        any(host == d or host.endswith("." + d) for d in _RESERVED_DOMAINS)
        or labels[-1] in _RESERVED_SUFFIXES
    )


def _not_public(host: str) -> str:
    """Why ``host`` is not a public host name, or ``""`` when it is one."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if "." not in host.rstrip(".") or host.rstrip(".").endswith((".localhost", ".local")):
            return "a local name, not a public one"
        if _reserved(host):
            return "a reserved example name that nobody can reach"
        return ""
    return "" if address.is_global else "a private or loopback address"


@functools.cache
def _starter_values() -> dict[str, str]:
    """The placeholders of the starter config ``digest init`` writes, read from it."""
    from importlib import resources

    text = (resources.files("digest") / "templates" / "starter" / "digest.toml").read_text("utf-8")
    data = tomllib.loads(text)
    return {
        "from_address": data["newsletter"]["from_address"],
        "postal_address": data["newsletter"]["postal_address"],
        "why": data["newsletter"]["why"],
        "base_url": data["web"]["base_url"],
    }


def check_settings(settings: Settings) -> list[Check]:
    """What a real send refuses in the config: links readers cannot follow, placeholders.

    Every finding is an error: an unsubscribe link that goes nowhere breaks the
    law and the inbox providers' rules, and the starter's sample sender and
    address would go out under someone else's name. ``[web] allow_local_links``
    (the demo, tests) accepts loopback, http and example domains; the starter's
    own placeholders are refused whatever it says.
    """
    checks: list[Check] = []
    news = settings.newsletter
    local = settings.web.allow_local_links
    starter = _starter_values()
    for key, value in (
        ("[newsletter] from_address", news.from_address),
        ("[newsletter] postal_address", news.postal_address),
        ("[newsletter] why", news.why),
        ("[web] base_url", settings.web.base_url),
    ):
        name = key.rpartition(" ")[2]
        if value.strip() == starter[name]:
            checks.append(
                Check(
                    "placeholder",
                    "error",
                    f"{key} is still the starter's example ({value!r}): "
                    "write your own in the config file",
                )
            )
    for key, url in (
        ("[web] base_url (unsubscribe links)", settings.web.base_url),
        ("[render] archive_url", settings.render.archive_url),
    ):
        problem = _public_url_problem(url, local) if url or key.startswith("[web]") else ""
        if problem:
            checks.append(Check("public-links", "error", f"{key} {url!r} {problem}"))
    domain = news.from_address.rpartition("@")[2]
    if not local and domain and _reserved(domain):
        checks.append(
            Check(
                "sender",
                "error",
                f"[newsletter] from_address {news.from_address!r} is on a reserved example "
                "domain: use an address of your own domain that your SMTP relay accepts",
            )
        )
    return checks


def _public_url_problem(url: str, local: bool) -> str:
    """Why readers could not follow ``url``, or ``""``; ``local`` accepts this machine."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "is not a URL: write it as https://your.domain/…"
    if not parts.scheme or not host:
        return f"has no scheme: write it as https://{url.split('://')[-1].lstrip('/')}"
    if parts.scheme not in ("https", "http"):
        return "is not a web address: write it as https://your.domain/…"
    if local:
        return ""
    why = _not_public(host)
    if why:
        return (
            f"points at {host}, {why}: readers could not open it; set the public "
            "https address of `digest serve` (or [web] allow_local_links = true for "
            "a local test)"
        )
    if parts.scheme != "https":
        return "is not https: write it as https://…; mail providers distrust plain http links"
    return ""
