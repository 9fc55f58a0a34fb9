"""Writing a draft file: the issue as Markdown, its machine values as TOML (tomli-w)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from ..models import Issue, IssueItem
from .read import read_draft
from .values import FENCE, SPACE, item_fingerprint, lessons_label, normal_lessons, one_line

__all__ = ["format_draft", "write_draft"]

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

# Lines of an editor's text that the file would otherwise read as its own
# structure (a title, an article, a comment): written with a backslash first.
_STRUCTURAL = re.compile(r"^[ ]{0,3}(#{1,6}(?:[ \t]|$)|<!--|(?:=+|-{2,})[ \t]*$)")


def _toml_value(value: Any) -> str:
    """One TOML value, written by tomli-w; ``-->`` would end the comment holding it."""
    return tomli_w.dumps({"v": value})[len("v = ") :].rstrip("\n").replace("-->", "--\\u003e")


def _markdown_lines(text: str) -> list[str]:
    """An editor's Markdown as file lines: blank-line runs squeezed, structure protected."""
    lines = [
        line.rstrip(SPACE) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append("\\" + line.lstrip(" ") if _STRUCTURAL.match(line) else line)
    while out and not out[-1]:
        out.pop()
    return out


def _tags_value(tags: tuple[str, ...]) -> str:
    """A TOML list on one line (tomli-w breaks long arrays, the comment is one line)."""
    return "[" + ", ".join(_toml_value(tag) for tag in tags) + "]"


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
    if item.tags:
        fields.append(f"tags = {_tags_value(item.tags)}")
    if not item.grounded:
        fields.append("grounded = false")
    if item.edited:
        fields.append("edited = true")
    fields.append(f"fingerprint = {_toml_value(item_fingerprint(item))}")
    return "<!-- digest: " + ", ".join(fields) + " -->"


_EDITIONS_NOTE = {
    "fr": "Éditions dans d'autres langues (facultatif) : [edition.en] puis title = « … » et "
    'intro = """…""" ; sans elles, le titre par défaut est traduit et l\'introduction reprise.',
    "en": 'Editions in other languages (optional): [edition.fr] then title = "…" and '
    'intro = """…"""; without them, the default title is translated and the intro reused.',
}


def _edition_lines(issue: Issue, language: str) -> list[str]:
    """The ``[edition.xx]`` tables of the front matter (or a note saying how to add them)."""
    if not issue.editions:
        return ["# " + _EDITIONS_NOTE[language]]
    tables = {
        e.language: {k: v for k, v in (("title", e.title), ("intro", e.intro)) if v}
        for e in issue.editions
    }
    return ["# " + _EDITIONS_NOTE[language], *tomli_w.dumps({"edition": tables}).splitlines()]


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
        *_edition_lines(issue, language),
        FENCE,
        "",
        f"# {one_line(issue.title)}",
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
    label = lessons_label(language)
    for item in issue.items:
        out += [f"## {one_line(item.title)}"]
        if not item.is_note:
            out += [_meta_line(item)]
        elif item.tags:
            out += [f"<!-- digest: tags = {_tags_value(item.tags)} -->"]
        out += [""]
        summary = _markdown_lines(item.summary)
        if summary:
            out += [*summary, ""]
        if not item.is_note:
            out += [f"### {label}", ""]
            out += [f"- {lesson}" for lesson in normal_lessons(item.lessons)]
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
