"""The editable draft: one Markdown file per issue that editors change by hand.

Why Markdown with a small TOML front matter, rather than a YAML or TOML file:
the texts editors rewrite (title, introduction, summaries, lessons) are plain
Markdown, so no quoting rule applies to them: a lesson with quotes, colons,
« guillemets » or ``{{ }}`` cannot break the file, links and emphasis are
written as anywhere else, and the file is what an editor would have typed
anyway. The few machine values are TOML (read by ``tomllib``, written with
``tomli-w``): the settings block between ``+++`` lines at the top (period,
language, ``approved``) and one ``<!-- digest: … -->`` comment per article
linking its block to the stored article. A Markdown viewer hides those
comments, so the file also reads well there.

Layout::

    +++
    # instructions for the editor (TOML comments)
    period = "2026-W48"
    language = "fr"
    approved = false
    offered = [12, 15]
    +++

    # The issue's title

    The introduction, in Markdown: one or more paragraphs, [links](https://…), lists.

    ## An article's title
    <!-- digest: article = 12, source = "…", url = "…", fingerprint = "…" -->

    The summary, in Markdown.

    ### Ce que cela nous apprend

    - A lesson.
    - Another lesson.

    ## A block of the editor's own (a note, an event)

    Its text. A ``##`` block without a ``<!-- digest: … -->`` line is the
    editor's: it renders as its own card, or as a section heading when it
    has no text.

The file's structure is read by markdown-it-py (CommonMark); the texts are kept
as the editor wrote them (Markdown source), and rendered by ``richtext``.

Edits are detected, not declared: each block records a fingerprint of the text
digest generated, and a block whose text no longer matches it is ``edited``;
``digest draft --refresh`` rebuilds only blocks that are not. Once a block is
edited it says so (``edited = true``), so rewriting the file never forgets it.
Deleting a block drops the article; ``offered`` remembers every article the
file has proposed, so a refresh does not bring a deleted one back. Moving
blocks reorders the issue. A lesson keeps its supporting quote (which the file
does not show) as long as its text is the one digest generated.

The file is written atomically (a temporary file renamed over it) and never
over a file that cannot be read, so the editor's text is not lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from .config import Settings
from .errors import IssueError
from .i18n import CATALOGUE, strings_for
from .models import Issue, IssueItem, Lesson

__all__ = [
    "DraftIssue",
    "draft_path",
    "format_draft",
    "item_fingerprint",
    "merge_draft",
    "parse_draft",
    "read_draft",
    "with_evidence",
    "write_draft",
]

FENCE = "+++"
_FRONT_KEYS = ("period", "language", "approved", "offered")

_INSTRUCTIONS = {
    "fr": """\
Brouillon de la lettre {period}. Ce fichier se modifie dans n'importe quel éditeur de texte.

Modifiez les résumés et leçons ci-dessous, ainsi que le titre (ligne « # ») et
l'introduction (le texte sous le titre). L'aperçu (`digest preview`) se met à jour
à chaque enregistrement. Le texte est en Markdown : **gras**, *italique*,
[lien](https://exemple.org), listes « - ».
- Chaque article commence par une ligne « ## » (son titre) ; la ligne
  « <!-- digest: … --> » placée dessous relie le bloc à l'article : ne la modifiez pas.
- Une leçon par ligne commençant par « - », sous « Ce que cela nous apprend ».
- Pour retirer un article, supprimez son bloc entier (du « ## » au « ## » suivant).
- Pour changer l'ordre, déplacez les blocs.
- Pour ajouter un bloc à vous (note, événement), écrivez « ## Titre » puis le texte,
  sans ligne « <!-- digest: … --> » ; un « ## Titre » seul devient un intertitre.
- `digest draft` relancé garde vos modifications ; `digest draft --refresh`
  ne régénère que les articles que vous n'avez pas touchés.
Quand le brouillon est prêt, mettez approved = true pour valider l'envoi.""",
    "en": """\
Draft of issue {period}. Edit this file in any text editor.

Change the summaries and lessons below, the title (the "#" line) and the
introduction (the text under the title). The preview (`digest preview`) updates
each time you save. Texts are Markdown: **bold**, *italics*,
[link](https://example.org), "- " lists.
- Each article starts with a "##" line (its title); the "<!-- digest: … -->"
  line under it links the block to its article: do not change it.
- One lesson per line starting with "- ".
- To drop an article, delete its whole block (from its "##" to the next one).
- To reorder the issue, move the blocks.
- To add a block of your own (a note, an event), write "## Title" and its text,
  with no "<!-- digest: … -->" line; a "## Title" alone becomes a section heading.
- Re-running `digest draft` keeps your edits; `digest draft --refresh`
  regenerates only the articles you have not touched.
When the draft is ready, set approved = true to allow sending.""",
}

_OFFERED_NOTE = {
    "fr": "Articles déjà proposés : un article supprimé n'est pas reproposé.",
    "en": "Articles already proposed: a deleted article is not proposed again.",
}

_META = re.compile(r"^<!--\s*digest:(.*)-->$")
_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]*")
# Lines of an editor's text that the file would otherwise read as its own
# structure (a title, an article, a comment): written with a backslash first.
_STRUCTURAL = re.compile(r"^[ ]{0,3}(#{1,6}(?:[ \t]|$)|<!--|(?:=+|-{2,})[ \t]*$)")

# The file's structure: CommonMark, with the HTML comments that carry machine
# values. No indented code, fences or underlined headings: an editor's indent,
# backticks or "---" must never hide an article's "##" line.
_PARSER = MarkdownIt("commonmark").disable(["code", "fence", "lheading"])


@dataclass(frozen=True)
class DraftIssue(Issue):
    """An issue read from a draft file, with the articles the editor deleted from it.

    ``removed`` lets ``merge_draft`` keep a deleted article out on ``--refresh``.
    """

    removed: tuple[int, ...] = ()


def draft_path(settings: Settings, period: str) -> Path:
    """Where the editable draft of ``period`` lives."""
    return settings.draft.dir / f"{period}.md"


def _lessons_label(language: str) -> str:
    return strings_for(language)["lessons_title"]


# -- fingerprints and normal forms ---------------------------------------------------


# Only ASCII whitespace is layout: the no-break spaces of French typography
# (before « : ; ! ? » and inside « ») are text and must survive a round trip.
_SPACE = " \t\r\n\f\v"
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip(_SPACE)


def _paragraphs(text: str) -> list[str]:
    """Paragraphs as the file shows them: blank lines separate, line breaks are spaces."""
    return [p for p in (_one_line(block) for block in re.split(r"\n[ \t\r\f\v]*\n", text)) if p]


def _normal_text(text: str) -> str:
    return "\n\n".join(_paragraphs(text))


def _normal_lessons(lessons: Iterable[Lesson]) -> tuple[str, ...]:
    return tuple(line for line in (_one_line(lesson.text) for lesson in lessons) if line)


def item_fingerprint(item: IssueItem) -> str:
    """A hash of the item's editable text, in the form the file shows it."""
    payload = json.dumps(
        [_one_line(item.title), _normal_text(item.summary), list(_normal_lessons(item.lessons))],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# -- writing -------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    """One TOML value, written by tomli-w; ``-->`` would end the comment holding it."""
    return tomli_w.dumps({"v": value})[len("v = ") :].rstrip("\n").replace("-->", "--\\u003e")


def _markdown_lines(text: str) -> list[str]:
    """An editor's Markdown as file lines: blank-line runs squeezed, structure protected."""
    lines = [
        line.rstrip(_SPACE) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append("\\" + line.lstrip(" ") if _STRUCTURAL.match(line) else line)
    while out and not out[-1]:
        out.pop()
    return out


def _meta_line(item: IssueItem) -> str:
    fields: list[str] = []
    if item.article_id is not None:
        fields.append(f"article = {int(item.article_id)}")
    fields.append(f"source = {_toml_value(item.source)}")
    fields.append(f"url = {_toml_value(item.url)}")
    if item.published is not None:
        fields.append(f"published = {_toml_value(item.published)}")
    for name in ("image_url", "image_alt", "section", "backend"):
        value = getattr(item, name)
        if value:
            fields.append(f"{name} = {_toml_value(value)}")
    if not item.grounded:
        fields.append("grounded = false")
    if item.edited:
        fields.append("edited = true")
    fields.append(f"fingerprint = {_toml_value(item_fingerprint(item))}")
    return "<!-- digest: " + ", ".join(fields) + " -->"


def format_draft(issue: Issue, offered: Iterable[int] = ()) -> str:
    """The draft file's text for ``issue``; ``offered`` adds article ids proposed earlier."""
    language = "fr" if issue.language.startswith("fr") else "en"
    ids = {i.article_id for i in issue.items if i.article_id is not None}
    ids |= set(offered) | set(getattr(issue, "removed", ()))
    approved = issue.status in ("approved", "sending", "sent")
    instructions = _INSTRUCTIONS[language].format(period=issue.period)
    out: list[str] = [FENCE]
    out += [f"# {line}".rstrip() for line in instructions.splitlines()]
    out += tomli_w.dumps(
        {"period": issue.period, "language": issue.language, "approved": approved}
    ).splitlines()
    out += [
        "# " + _OFFERED_NOTE[language],
        f"offered = [{', '.join(_toml_value(i) for i in sorted(ids))}]",
        FENCE,
        "",
        f"# {_one_line(issue.title)}",
        "",
    ]
    intro = _markdown_lines(issue.intro)
    if intro:
        out += [*intro, ""]
    else:
        placeholder = {
            "fr": "Introduction : écrivez-la ici, sous le titre (facultatif).",
            "en": "Introduction: write it here, under the title (optional).",
        }[language]
        out += [f"<!-- {placeholder} -->", ""]
    label = _lessons_label(language)
    for item in issue.items:
        out += [f"## {_one_line(item.title)}"]
        if not item.is_note:
            out += [_meta_line(item)]
        out += [""]
        summary = _markdown_lines(item.summary)
        if summary:
            out += [*summary, ""]
        if not item.is_note:
            out += [f"### {label}", ""]
            out += [f"- {lesson}" for lesson in _normal_lessons(item.lessons)]
            out += [""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_draft(issue: Issue, path: Path) -> None:
    """Write ``issue`` to ``path`` atomically, keeping what the old file remembers.

    Articles the old file had proposed stay in ``offered``, so a deleted article
    stays deleted whichever ``Issue`` the caller passes. A file that cannot be
    read is never overwritten: the editor's text would be lost.
    """
    offered: tuple[int, ...] = ()
    if path.exists():
        old = read_draft(path)
        offered = tuple(i.article_id for i in old.items if i.article_id is not None)
        offered += getattr(old, "removed", ())
    text = format_draft(issue, offered)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- reading -------------------------------------------------------------------------


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
    """Lists met before any label: lessons if the block has no label at all."""


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
        return start, end, front

    def _body(self, first: int) -> tuple[str | None, str, list[_Block]]:
        title: str | None = None
        intro: list[str] = []
        blocks: list[_Block] = []
        labels = {strings["lessons_title"].casefold() for strings in CATALOGUE.values()}
        tree = SyntaxTreeNode(_PARSER.parse("\n".join(self.lines[first:])))
        for node in tree.children:
            begin, stop = node.map or (0, 0)
            number = first + begin + 1
            raw = [line.rstrip(_SPACE) for line in self.lines[first + begin : first + stop]]
            block = blocks[-1] if blocks else None
            if node.type == "html_block" and raw[0].lstrip().startswith("<!--"):
                self._comment(node, raw, number, block)
                continue
            if node.type == "heading" and node.tag in ("h1", "h2"):
                text = _one_line(re.sub(r"^[ ]{0,3}#{1,2}", "", raw[0]))
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
                    block.summary.append(_source(node, raw))
            else:
                block.summary.append(_source(node, raw))
        return title, "\n\n".join(p for p in intro if p), blocks

    def _comment(
        self, node: SyntaxTreeNode, raw: list[str], number: int, block: _Block | None
    ) -> None:
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
        }
        for key, value in meta.items():
            expected = types.get(key)
            if expected is None or not isinstance(value, expected):
                raise self.fail(number, f"the '<!-- digest: … -->' line has a bad {key!r}", hint)
        return dict(meta)

    def _item(self, block: _Block, position: int) -> IssueItem:
        if block.meta is None:  # the editor's own block: a note, an event, a heading
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
            )
        meta = block.meta
        published = meta.get("published")
        if isinstance(published, dt.datetime) and published.tzinfo is None:
            published = published.replace(tzinfo=dt.UTC)
        summary = block.summary
        lessons = block.lessons
        if not block.labelled and block.lists:
            # No label at all (an editor deleted it): the lists are the lessons.
            summary = [p for p in summary if not _BULLET.match(p)]
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
        )
        edited = meta.get("edited", False) or meta.get("fingerprint") != item_fingerprint(item)
        return dataclasses.replace(item, edited=edited)


def _source(node: SyntaxTreeNode, raw: list[str]) -> str:
    """A block's Markdown as the editor wrote it; a paragraph's lines become one line."""
    if node.type == "paragraph":
        return _one_line(" ".join(raw))
    while raw and not raw[-1]:
        raw = raw[:-1]
    return "\n".join(raw)


def _lesson(lines: list[str]) -> str:
    """A list item's text: its bullet dropped, its lines joined."""
    return _one_line(" ".join([_BULLET.sub("", lines[0], count=1), *lines[1:]]))


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


# -- merging -------------------------------------------------------------------------


def _key(item: IssueItem) -> tuple[str, Any]:
    if item.article_id is not None:
        return ("article", item.article_id)
    return ("url", item.url) if item.url else ("note", item.position)


def _evidence(lessons: tuple[Lesson, ...], known: tuple[Lesson, ...]) -> tuple[Lesson, ...]:
    """``lessons`` with the quote of the ``known`` lesson of the same text, if any.

    A lesson the editor rewrote has no quote any more: the quote supported the
    generated text, not theirs.
    """
    quotes = {_one_line(lesson.text): lesson for lesson in known if lesson.quote}
    return tuple(quotes.get(_one_line(lesson.text), lesson) for lesson in lessons)


def with_evidence(issue: Issue, stored: Issue) -> Issue:
    """``issue`` (read from its file) with the quotes ``stored`` has for unedited lessons."""
    known = {_key(item): item for item in stored.items if not item.is_note}
    items = tuple(
        dataclasses.replace(item, lessons=_evidence(item.lessons, known[_key(item)].lessons))
        if not item.is_note and _key(item) in known
        else item
        for item in issue.items
    )
    return dataclasses.replace(issue, items=items)


def merge_draft(generated: Issue, existing: Issue | None, *, refresh: bool = False) -> Issue:
    """The issue after re-running ``draft``: the editor's file wins.

    From ``existing`` (the file): title, introduction, order, deleted articles,
    the approved flag and every item's text. From ``generated``: the machine
    fields of each item still selected (date, image, backend). With ``refresh``,
    items the editor has not touched take their regenerated text, and newly
    selected articles are added at the end (except ones the editor deleted).
    """
    if existing is None:
        return generated
    if existing.period != generated.period:
        raise IssueError(
            f"the draft file is for {existing.period}, not {generated.period}",
            hint=f"open the draft of {generated.period}, or pass --period {existing.period}",
        )
    fresh = {_key(item): item for item in generated.items}
    removed = set(getattr(existing, "removed", ()))
    items: list[IssueItem] = []
    for old in existing.items:
        new = fresh.pop(_key(old), None)
        if new is None:
            items.append(old)
        elif refresh and not old.edited:
            items.append(new)
        else:
            items.append(
                dataclasses.replace(
                    new,
                    title=old.title,
                    summary=old.summary,
                    lessons=_evidence(old.lessons, new.lessons),
                    edited=old.edited,
                )
            )
    if refresh:
        items += [item for item in fresh.values() if item.article_id not in removed]
    return DraftIssue(
        period=existing.period,
        title=existing.title or generated.title,
        intro=existing.intro,
        items=tuple(dataclasses.replace(item, position=n) for n, item in enumerate(items, 1)),
        status=existing.status,
        language=existing.language or generated.language,
        id=generated.id if generated.id is not None else existing.id,
        removed=tuple(sorted(removed)),
    )
