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

from .merge import merge_draft, with_evidence
from .read import parse_draft, read_draft
from .values import DraftIssue, draft_path, item_fingerprint
from .write import format_draft, write_draft

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
