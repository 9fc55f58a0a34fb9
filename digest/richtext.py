"""Text on its way to a reader: cleaned, defused, and the editor's Markdown made safe.

Three kinds of text reach the email:

- one-line values (titles, source names) go through ``clean``;
- URLs go through ``safe_url``, which keeps absolute http(s) URLs only;
- the editor's Markdown (introduction, summaries, lessons, notes) goes through
  ``markdown_html`` / ``markdown_inline_html`` for the HTML part and
  ``markdown_text`` / ``markdown_inline_text`` for the plain-text part.

Markdown is parsed by markdown-it-py (CommonMark, raw HTML off) and the HTML is
written here, tag by tag, from its syntax tree, rather than by markdown-it's own
renderer and a sanitizer afterwards: only paragraphs, lists, emphasis, inline
code, line breaks and links exist, every text is escaped by MarkupSafe as the
templates would escape it, and links keep only http, https and mailto targets.
Nothing an editor or a feed types can add a tag, an attribute or a script, and
text without Markdown comes out exactly as it did before Markdown existed.

``markdown_escape`` goes the other way: it turns plain text (what a summarizer
writes) into Markdown that shows it as written, so that a stray ``*`` or a line
starting with ``1.`` in a feed never turns into emphasis or a list.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup, escape

__all__ = [
    "Block",
    "ListBlock",
    "clean",
    "defuse",
    "display_title",
    "literal_markdown",
    "markdown_escape",
    "markdown_html",
    "markdown_inline_html",
    "markdown_inline_text",
    "markdown_text",
    "safe_url",
    "shorten",
]

MAX_TITLE_CHARS = 200
"""Longer titles (a broken feed) are cut at a word boundary; the reader gets the link."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_WORD_JOINER = "\u2060"
_SPACES = re.compile(r"\s+")

# ---------------------------------------------------------------------------- plain text


def clean(text: str) -> str:
    """One line of reader-facing text: no control characters, whitespace collapsed."""
    return defuse(" ".join(_CONTROL.sub(" ", text).split()))


def defuse(text: str) -> str:
    """Make template-looking sequences inert, invisibly: ``{{`` → ``{⁠{``.

    A title quoting Jinja or a feed smuggling ``%%DIGEST_UNSUBSCRIBE_URL%%`` then
    shows as written but is never taken for a template leftover or a marker.
    """
    if "{" in text or "%%" in text:
        text = text.replace("{{", "{" + _WORD_JOINER + "{").replace("{%", "{" + _WORD_JOINER + "%")
        text = text.replace("%%", "%" + _WORD_JOINER + "%")
    return text


def safe_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``url`` if it is an absolute URL of ``schemes`` a reader may follow, else ``""``."""
    url = url.strip()
    if not url or _CONTROL.search(url) or any(c.isspace() for c in url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in schemes:
        return ""
    if parts.scheme.lower() == "mailto":
        return _stray_percents(url) if "@" in parts.path else ""
    return _stray_percents(url) if parts.hostname else ""


_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _stray_percents(url: str) -> str:
    """``url`` with every ``%`` that starts no ``%XX`` escape written ``%25``.

    Browsers do the same when they follow the link, so the URL still goes where
    it went; and a feed's link can no longer carry ``%%…%%``, which looks like a
    recipient marker to the pre-send checks and to anyone reading the source.
    """
    return _STRAY_PERCENT.sub("%25", url) if "%" in url else url


def display_title(title: str) -> str:
    """The title as the email shows it: cleaned, and cut at a word if absurdly long."""
    title = clean(title)
    if len(title) <= MAX_TITLE_CHARS:
        return title
    return shorten(title, MAX_TITLE_CHARS)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-—") + "…"


# ---------------------------------------------------------------------------- Markdown

_LINK_SCHEMES = ("http", "https", "mailto")

# CommonMark without raw HTML (``<b>`` shows as typed), indented code or fences
# (an editor's indentation is not code), tables or images' own markup.
_PARSER = MarkdownIt("commonmark", {"html": False}).disable(["code", "fence", "html_block"])


class Block(Markup):
    """One block of rendered Markdown: a paragraph's inline HTML, for the template to wrap.

    Templates put a paragraph in their own ``<p>`` (or ``mj-text``) and a list
    (``ListBlock``) as it is; both are ``Markup``, so autoescape leaves them alone.
    """

    __slots__ = ()
    is_list = False


class ListBlock(Block):
    """A whole ``<ul>`` or ``<ol>``."""

    __slots__ = ()
    is_list = True


def _tree(source: str, inline: bool) -> SyntaxTreeNode:
    source = _CONTROL.sub(" ", source.replace("\r\n", "\n").replace("\r", "\n"))
    tokens = _PARSER.parseInline(source) if inline else _PARSER.parse(source)
    return SyntaxTreeNode(tokens)


def _link_target(node: SyntaxTreeNode) -> str:
    return safe_url(str(node.attrs.get("href", "")), _LINK_SCHEMES)


def _inline_html(node: SyntaxTreeNode, link_style: str) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            out.append(str(escape(defuse(_SPACES.sub(" ", child.content)))))
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("<br>")
        elif kind == "code_inline":
            out.append(f"<code>{escape(defuse(child.content))}</code>")
        elif kind in ("em", "strong"):
            out.append(f"<{kind}>{_inline_html(child, link_style)}</{kind}>")
        elif kind == "link":
            inner = _inline_html(child, link_style)
            target = _link_target(child)
            if target:
                style = f' style="{escape(link_style)}"' if link_style else ""
                out.append(f'<a class="dg-inline-link" href="{escape(target)}"{style}>{inner}</a>')
            else:
                out.append(inner)
        elif kind == "image":  # an editor's image shows as its description
            out.append(str(escape(defuse(child.content))))
        else:
            out.append(_inline_html(child, link_style))
    return "".join(out)


def _inline_of(node: SyntaxTreeNode) -> SyntaxTreeNode | None:
    return next((c for c in node.children if c.type == "inline"), None)


def _list_html(node: SyntaxTreeNode, link_style: str) -> str:
    tag = "ol" if node.type == "ordered_list" else "ul"
    start = node.attrs.get("start")
    attrs = f' start="{int(start)}"' if tag == "ol" and start not in (None, 1) else ""
    items = []
    for item in node.children:
        parts = []
        for child in item.children:
            if child.type in ("bullet_list", "ordered_list"):
                parts.append(_list_html(child, link_style))
            else:
                parts.append(_blocks_html(child, link_style, nested=True))
        items.append(f'<li style="margin:0 0 6px;">{" ".join(p for p in parts if p)}</li>')
    return f'<{tag}{attrs} style="margin:0;padding:0 0 0 22px;">{"".join(items)}</{tag}>'


def _blocks_html(node: SyntaxTreeNode, link_style: str, nested: bool = False) -> str:
    """The HTML of a block inside a list item: paragraphs joined by line breaks."""
    inline = _inline_of(node)
    if inline is not None:
        return _inline_html(inline, link_style).strip()
    if node.type in ("bullet_list", "ordered_list"):
        return _list_html(node, link_style)
    return "<br>".join(p for p in (_blocks_html(c, link_style, nested) for c in node.children) if p)


def _top_blocks(node: SyntaxTreeNode, link_style: str) -> list[Block]:
    blocks: list[Block] = []
    for child in node.children:
        if child.type in ("bullet_list", "ordered_list"):
            blocks.append(ListBlock(_list_html(child, link_style)))
        elif child.type == "blockquote":
            blocks += _top_blocks(child, link_style)
        else:
            inline = _inline_of(child)
            if inline is not None:
                html = _inline_html(inline, link_style).strip()
                if html:
                    blocks.append(Block(html))
    return blocks


@functools.lru_cache(maxsize=2048)
def markdown_html(source: str, link_style: str = "") -> tuple[Block, ...]:
    """The editor's Markdown as HTML blocks (paragraphs and lists), safe to insert.

    Cached, like the other renderings here: an issue is rendered again on every
    preview rebuild and check, and its texts rarely change between two.
    """
    return tuple(_top_blocks(_tree(source, False), link_style))


@functools.lru_cache(maxsize=2048)
def markdown_inline_html(source: str, link_style: str = "") -> Markup:
    """One line of Markdown (a lesson): emphasis, code and links only, as HTML."""
    return Markup(_inline_html(_tree(source, True).children[0], link_style).strip())


def _inline_text(node: SyntaxTreeNode, urls: bool = True) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "image"):
            out.append(defuse(_SPACES.sub(" ", child.content)))
        elif kind in ("softbreak", "hardbreak"):
            out.append(" ")
        elif kind == "link":
            inner = _inline_text(child, urls)
            target = _link_target(child)
            shown = target.removeprefix("mailto:")
            if not urls or not target or inner.strip() in (target, shown):
                out.append(inner)
            else:
                out.append(f"{inner} ({shown})")
        else:
            out.append(_inline_text(child, urls))
    return "".join(out)


def _list_text(node: SyntaxTreeNode, depth: int, urls: bool) -> list[str]:
    lines: list[str] = []
    number = int(node.attrs.get("start") or 1)
    for item in node.children:
        marker = f"{number}." if node.type == "ordered_list" else "-"
        number += 1
        texts: list[str] = []
        nested: list[str] = []
        for child in item.children:
            if child.type in ("bullet_list", "ordered_list"):
                nested += _list_text(child, depth + 1, urls)
            else:
                inline = _inline_of(child)
                if inline is not None:
                    texts.append(_inline_text(inline, urls).strip())
        lines.append("  " * depth + f"{marker} {' '.join(t for t in texts if t)}")
        lines += nested
    return lines


@functools.lru_cache(maxsize=2048)
def markdown_text(source: str, urls: bool = True) -> tuple[str, ...]:
    """The editor's Markdown as plain-text blocks: a paragraph is one line, a list
    one line per item (``- `` or ``1. ``); links read ``text (url)``, or ``text``
    without ``urls`` (for the preheader, where a URL is noise)."""
    blocks: list[str] = []

    def walk(node: SyntaxTreeNode) -> None:
        for child in node.children:
            if child.type in ("bullet_list", "ordered_list"):
                blocks.append("\n".join(_list_text(child, 0, urls)))
            elif child.type == "blockquote":
                walk(child)
            else:
                inline = _inline_of(child)
                if inline is not None:
                    text = _inline_text(inline, urls).strip()
                    if text:
                        blocks.append(text)

    walk(_tree(source, False))
    return tuple(blocks)


@functools.lru_cache(maxsize=2048)
def markdown_inline_text(source: str) -> str:
    """One line of Markdown (a lesson) as plain text; links read ``text (url)``."""
    return _inline_text(_tree(source, True).children[0]).strip()


# What shows literally when Markdown goes wrong: unclosed emphasis, a link whose
# parts did not meet, raw HTML (which the parser leaves as text).
_LITERAL = re.compile(r"\*\*|__|\]\(|\[[^\]\n]*\]\s+\(|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")


def literal_markdown(source: str) -> list[str]:
    """Pieces of ``source`` a reader would see as typed: the pre-send checks warn about them."""
    found: list[str] = []
    text = " ".join(markdown_text(source))
    for match in _LITERAL.finditer(text):
        found.append(match.group(0))
    for node in _tree(source, False).walk():
        if node.type == "link" and not _link_target(node):
            found.append(f"link to {node.attrs.get('href', '')!s}")
    return list(dict.fromkeys(found))


# Characters that may start Markdown inside a line, and line starts that make blocks.
_INLINE_SPECIAL = re.compile(r"([\\`*\[\]<])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_BLOCK_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|>|[-+](?=\s|$)|-{2,}|={2,}|\d{1,9}[.)](?=\s|$))")


def markdown_escape(text: str) -> str:
    """Plain text as Markdown that renders it as written (``*`` → ``\\*``)."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _INLINE_SPECIAL.sub(r"\\\1", line)
        line = _ENTITY.sub(r"\\&", line)
        line = _UNDERSCORE.sub(r"\\_", line)
        match = _BLOCK_START.match(line)
        if match:
            marker = match.group(2)
            escaped = marker[:-1] + "\\" + marker[-1] if marker[0].isdigit() else "\\" + marker
            line = match.group(1) + escaped + line[match.end() :]
        lines.append(line)
    return "\n".join(lines)
