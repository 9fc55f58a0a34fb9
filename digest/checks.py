"""The pre-send checks: what to fix before an issue goes to anyone.

    check_email(rendered, issue) -> list[Check]

Each finding is an ``error`` (a send should stop: no unsubscribe link, a missing
text part, an article without a link, an HTML part Gmail would clip) or a
``warning`` (worth a look: an http link, a vague link text, Markdown that would
show as typed). The checks read the rendered HTML with lxml, as a mail client
would, rather than trusting the templates to have done what they meant.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import lxml.html

from .models import NAME_MARKER, UNSUBSCRIBE_MARKER, Issue, RenderedIssue
from .render import MAX_HTML_BYTES, MAX_LINE_OCTETS, MAX_SUBJECT_CHARS, WARN_HTML_BYTES
from .richtext import MAX_TITLE_CHARS, clean, display_title, literal_markdown, safe_url

__all__ = ["Check", "check_email"]

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


def _read_html(html: str) -> _Html:
    if not html.strip():
        return _Html(None, [], [], [], "")
    doc = lxml.html.document_fromstring(html.encode("utf-8"), parser=_HTML_PARSER)
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


def check_email(rendered: RenderedIssue, issue: Issue | None = None) -> list[Check]:
    """Pre-send checks of a rendered issue; ``issue`` adds the per-article ones."""
    checks: list[Check] = []

    def add(name: str, level: Level, message: str) -> None:
        checks.append(Check(name, level, message))

    parsed = _read_html(rendered.html)

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
    if issue is not None:
        _check_markdown(issue, add)
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
