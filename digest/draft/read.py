"""Reading a draft file: markdown-it-py finds its structure, the texts stay as written.

Every error names the file and the line, and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from ..errors import IssueError
from ..i18n import CATALOGUE, base_language
from ..models import EditionText, Issue, IssueItem, Lesson
from .values import FENCE, SPACE, DraftIssue, item_fingerprint, one_line

__all__ = ["parse_draft", "read_draft"]

_FRONT_KEYS = ("period", "language", "approved", "offered", "edition")
_META = re.compile(r"^<!--\s*digest:(.*)-->$")
_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]*")
# The file's structure: CommonMark, with the HTML comments that carry machine
# values. No indented code, fences or underlined headings: an editor's indent,
# backticks or "---" must never hide an article's "##" line.
_STRUCTURE = MarkdownIt("commonmark").disable(["code", "fence", "lheading"])


@dataclass
class _Block:
    """One ``##`` block as read: its title, machine values and Markdown texts."""

    line: int
    title: str
    meta: dict[str, Any] | None = None
    meta_line: int = 0
    summary: list[str] = dataclasses.field(default_factory=list)
    lessons: list[str] = dataclasses.field(default_factory=list)
    labelled: bool = False
    """Past the « Ce que cela nous apprend » label: lists are lessons."""
    lists: list[str] = dataclasses.field(default_factory=list)
    """Items of the lists met before any label: the lessons if the block has no label."""
    list_blocks: set[int] = dataclasses.field(default_factory=set)
    """Where those lists are in ``summary``: they leave it when they are the lessons."""


class _Reader:
    """Reads a draft file; every error names the file and the line."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def fail(self, line: int, message: str, hint: str) -> IssueError:
        return IssueError(f"{self.path}, line {line}: {message}", hint=hint)

    def read(self) -> DraftIssue:
        start, end, front = self._front_matter()
        title, intro, blocks = self._body(end + 1)
        if title is None:
            raise IssueError(
                f"{self.path}: the issue has no title",
                hint="add a line starting with '# ' (the title) after the closing '+++' line",
            )
        items = [self._item(block, position) for position, block in enumerate(blocks, 1)]
        seen: dict[int, int] = {}
        for block, item in zip(blocks, items, strict=True):
            if item.article_id is None:
                continue
            if item.article_id in seen:
                raise self.fail(
                    block.meta_line,
                    f"article {item.article_id} appears twice "
                    f"(first at line {seen[item.article_id]})",
                    hint="keep one block per article; delete the copy",
                )
            seen[item.article_id] = block.meta_line
        offered = front.get("offered", [])
        return DraftIssue(
            period=front["period"],
            title=title,
            intro=intro,
            items=tuple(items),
            status="approved" if front.get("approved", False) else "draft",
            language=front.get("language", "fr"),
            removed=tuple(sorted(set(offered) - set(seen))),
            editions=tuple(
                EditionText(language, texts.get("title", ""), texts.get("intro", ""))
                for language, texts in front.get("edition", {}).items()
            ),
        )

    def _front_matter(self) -> tuple[int, int, dict[str, Any]]:
        start = next((n for n, line in enumerate(self.lines) if line.strip()), 0)
        if self.lines[start].strip() != FENCE:
            raise self.fail(
                start + 1,
                "the file must start with the settings block, a line '+++'",
                hint="restore the '+++' block at the top (period, approved…), "
                "or delete the file and run `digest draft` again",
            )
        end = next(
            (n for n in range(start + 1, len(self.lines)) if self.lines[n].strip() == FENCE), None
        )
        if end is None:
            raise self.fail(
                start + 1,
                "the settings block opened here is never closed",
                hint="add a line '+++' after the line `offered = […]`",
            )
        try:
            front = tomllib.loads("\n".join(self.lines[start + 1 : end]))
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"at line (\d+)", str(exc))
            line = start + 1 + int(found.group(1)) if found else start + 1
            reason = str(exc).split(" (at line")[0]
            raise self.fail(
                line,
                f"cannot read the settings block: {reason}",
                hint='write values as approved = true (or false), period = "2026-W48"',
            ) from None

        def key_line(key: str) -> int:
            for n in range(start + 1, end):
                if self.lines[n].strip().startswith(key):
                    return n + 1
            return start + 1

        for key in front:
            if key not in _FRONT_KEYS:
                raise self.fail(
                    key_line(key),
                    f"unknown setting {key!r}",
                    hint=f"the settings are {', '.join(_FRONT_KEYS)}; check the spelling",
                )
        if not isinstance(front.get("period"), str) or not front["period"]:
            raise self.fail(
                key_line("period"),
                "the settings block has no period",
                hint='add a line like period = "2026-W48"',
            )
        if not isinstance(front.get("language", ""), str):
            raise self.fail(
                key_line("language"), "language must be text", hint='write language = "fr"'
            )
        if not isinstance(front.get("approved", False), bool):
            raise self.fail(
                key_line("approved"),
                "approved must be true or false",
                hint="write approved = true (to send) or approved = false, in lower case",
            )
        offered = front.get("offered", [])
        if not isinstance(offered, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in offered
        ):
            raise self.fail(
                key_line("offered"),
                "offered must be a list of article numbers",
                hint="write offered = [12, 15], or offered = [] to forget deleted articles",
            )
        self._editions(front.get("edition", {}), key_line("[edition"))
        return start, end, front

    def _editions(self, editions: Any, line: int) -> None:
        """``[edition.en]`` tables: another language's own title and introduction."""
        example = '[edition.en] then title = "…" and intro = """…""" on the lines below'
        if not isinstance(editions, dict):
            raise self.fail(line, "edition must be tables like [edition.en]", hint=example)
        for language, texts in editions.items():
            if base_language(language) not in CATALOGUE:
                raise self.fail(
                    line,
                    f"[edition.{language}]: the email templates have no texts in this language",
                    hint=f"use one of {', '.join(sorted(CATALOGUE))}",
                )
            if not isinstance(texts, dict):
                raise self.fail(line, f"edition.{language} must be a table", hint=example)
            for key, value in texts.items():
                if key not in ("title", "intro") or not isinstance(value, str):
                    raise self.fail(
                        line,
                        f"[edition.{language}] {key}: only title and intro, as text, are known",
                        hint=example,
                    )

    def _body(self, first: int) -> tuple[str | None, str, list[_Block]]:
        title: str | None = None
        intro: list[str] = []
        blocks: list[_Block] = []
        labels = {strings["lessons_title"].casefold() for strings in CATALOGUE.values()}
        tree = SyntaxTreeNode(_STRUCTURE.parse("\n".join(self.lines[first:])))
        for node in tree.children:
            begin, stop = node.map or (0, 0)
            number = first + begin + 1
            raw = [line.rstrip(SPACE) for line in self.lines[first + begin : first + stop]]
            block = blocks[-1] if blocks else None
            if node.type == "html_block" and raw[0].lstrip().startswith("<!--"):
                self._comment(raw, number, block)
                continue
            if node.type == "heading" and node.tag in ("h1", "h2"):
                text = one_line(re.sub(r"^[ ]{0,3}#{1,2}", "", raw[0]))
                if node.tag == "h2":
                    blocks.append(_Block(number, text))
                elif title is not None or block:
                    raise self.fail(
                        number,
                        "a second title line starting with '# '",
                        hint="the issue has one title; article titles start with '## '",
                    )
                else:
                    title = text
                continue
            if block is None:
                intro.append(_source(node, raw))
                continue
            if block.meta is not None and _is_label(node, raw, labels):
                block.labelled = True
            elif block.meta is not None and node.type in ("bullet_list", "ordered_list"):
                target = block.lessons if block.labelled else block.lists
                target += [
                    _lesson(self.lines[first + i.map[0] : first + i.map[1]])
                    for i in node.children
                    if i.map
                ]
                if not block.labelled:
                    block.list_blocks.add(len(block.summary))
                    block.summary.append(_source(node, raw))
            else:
                block.summary.append(_source(node, raw))
        return title, "\n\n".join(p for p in intro if p), blocks

    def _comment(self, raw: list[str], number: int, block: _Block | None) -> None:
        """An HTML comment: a block's machine values, or the editor's own note (ignored)."""
        for offset, line in enumerate(raw[1:], start=1):
            # A forgotten "-->" would silently swallow the next articles: refuse instead.
            if _META.match(line.strip()) or re.match(r"[ ]{0,3}#{1,2}[ \t]", line):
                raise self.fail(
                    number,
                    f"a comment '<!--' opened here is never closed before line {number + offset}",
                    hint="end the comment with '-->', or delete the '<!--'",
                )
        if "-->" not in raw[-1]:
            raise self.fail(
                number,
                "a comment '<!--' opened here is never closed",
                hint="end it with '-->' or delete the line",
            )
        meta = _META.match(raw[0].strip()) if len(raw) == 1 else None
        if meta is None:
            return
        if block is None:
            raise self.fail(
                number,
                "a '<!-- digest: … -->' line outside any article",
                hint="it belongs right under an article's '## ' title line",
            )
        if block.meta is not None:
            raise self.fail(
                number,
                f"a second '<!-- digest: … -->' line in the article at line {block.line}",
                hint="an article block has one; a '## ' line is probably missing above",
            )
        block.meta = self._meta(meta.group(1), number)
        block.meta_line = number

    def _meta(self, inner: str, number: int) -> dict[str, Any]:
        hint = "undo the change to this line: it links the block to its article"
        try:
            meta = tomllib.loads("m = {" + inner.strip() + "}")["m"]
        except tomllib.TOMLDecodeError:
            raise self.fail(number, "the '<!-- digest: … -->' line is damaged", hint) from None
        types: dict[str, type | tuple[type, ...]] = {
            "article": int,
            "source": str,
            "url": str,
            "published": dt.datetime,
            "image_url": str,
            "image_alt": str,
            "section": str,
            "backend": str,
            "grounded": bool,
            "edited": bool,
            "fingerprint": str,
            "tags": list,
        }
        for key, value in meta.items():
            expected = types.get(key)
            if expected is None or not isinstance(value, expected):
                raise self.fail(number, f"the '<!-- digest: … -->' line has a bad {key!r}", hint)
        tags = meta.get("tags", [])
        if not all(isinstance(t, str) and t.strip() and "," not in t for t in tags):
            raise self.fail(
                number,
                "tags must be a list of words",
                hint='write tags = ["alumni", "etudiants"], or tags = [] for every subscriber',
            )
        return dict(meta)

    def _item(self, block: _Block, position: int) -> IssueItem:
        meta = block.meta or {}
        if "article" not in meta and "url" not in meta:
            # the editor's own block (a note, an event, a heading), maybe with its tags
            return IssueItem(
                article_id=None,
                position=position,
                source="",
                title=block.title,
                url="",
                summary="\n\n".join(p for p in block.summary if p),
                lessons=(),
                backend="editor",
                edited=True,
                tags=tuple(meta.get("tags", ())),
            )
        published = meta.get("published")
        if isinstance(published, dt.datetime) and published.tzinfo is None:
            published = published.replace(tzinfo=dt.UTC)
        summary = block.summary
        lessons = block.lessons
        if not block.labelled and block.lists:
            # No label at all (an editor deleted it): the lists are the lessons.
            summary = [p for n, p in enumerate(summary) if n not in block.list_blocks]
            lessons = block.lists
        item = IssueItem(
            article_id=meta.get("article"),
            position=position,
            source=meta.get("source", ""),
            title=block.title,
            url=meta.get("url", ""),
            summary="\n\n".join(p for p in summary if p),
            lessons=tuple(Lesson(text) for text in lessons if text),
            published=published,
            image_url=meta.get("image_url", ""),
            image_alt=meta.get("image_alt", ""),
            section=meta.get("section", ""),
            backend=meta.get("backend", ""),
            grounded=meta.get("grounded", True),
            tags=tuple(meta.get("tags", ())),
        )
        edited = meta.get("edited", False) or meta.get("fingerprint") != item_fingerprint(item)
        return dataclasses.replace(item, edited=edited)


def _source(node: SyntaxTreeNode, raw: list[str]) -> str:
    """A block's Markdown as the editor wrote it; a paragraph's lines become one line."""
    if node.type == "paragraph":
        return one_line(" ".join(raw))
    while raw and not raw[-1]:
        raw = raw[:-1]
    return "\n".join(raw)


def _lesson(lines: list[str]) -> str:
    """A list item's text: its bullet dropped, its lines joined."""
    return one_line(" ".join([_BULLET.sub("", lines[0], count=1), *lines[1:]]))


def _is_label(node: SyntaxTreeNode, raw: list[str], labels: set[str]) -> bool:
    """A « Ce que cela nous apprend » line: any heading under an article, or the words."""
    if node.type == "heading":
        return True
    return node.type == "paragraph" and (
        " ".join(raw).strip(" :*_#\u00a0\u202f").casefold() in labels
    )


def parse_draft(text: str, path: Path) -> DraftIssue:
    """Read a draft file's text; ``path`` is only used in error messages."""
    return _Reader(text, path).read()


def read_draft(path: Path) -> Issue:
    """The issue as the editor left it in ``path``.

    Items whose text differs from what digest generated are ``edited``; the
    status is ``"approved"`` when the file says ``approved = true``, else ``"draft"``.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Windows editors add a BOM
    except FileNotFoundError:
        raise IssueError(f"no draft file at {path}", hint="create it with `digest draft`") from None
    except UnicodeDecodeError:
        raise IssueError(
            f"{path}: not UTF-8 text", hint="save the file as UTF-8 in your text editor"
        ) from None
    return parse_draft(text, path)
