"""``digest summarize``: JSON lines of articles in, JSON lines of summaries out.

Input, one object a line: ``{"title": …, "text": …, "language"?: …}`` (``url`` and
``source`` are accepted and ignored). Output, one object per input line, in order
and flushed as it is written, so the command works in a pipe::

    {"summary": …, "lessons": ["…", …], "backend": "extractive", "grounded": true,
     "evidence": [{"quote": "…", "start": 12, "end": 80, "backend": "extractive"}, …],
     "checks": {…}, "no_lessons": ""}

``no_lessons`` is ``"no_takeaway"`` when the article states no lesson and has no
takeaway sentence: ``lessons`` is then empty, for an editor to write one.

A line that is not a JSON object with a ``text`` string is the caller's mistake:
``SummarizerError`` naming the line, nothing more read. An article with nothing to
summarize (no text, no prose) is data, not a mistake: its output line is
``{"error": "…", "line": N}`` and the stream goes on. Blank lines are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, TextIO

from ..config import SummarizeSettings
from ..errors import SummarizerError
from ..models import Article
from . import NothingToSummarize, summarize_article

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["summarize_stream"]


def summarize_stream(
    infile: TextIO, outfile: TextIO, settings: SummarizeSettings, store: Store | None = None
) -> int:
    """Summarize each article of ``infile`` into ``outfile``; returns the lines written."""
    written = 0
    for number, line in enumerate(infile, 1):
        if not line.strip():
            continue
        article = _article(line, number)
        try:
            summary = summarize_article(article, settings, store)
            out: dict[str, Any] = {
                "summary": summary.summary,
                "lessons": [x.text for x in summary.lessons],
                "backend": summary.backend,
                "grounded": summary.grounded,
                "evidence": [
                    {"quote": x.quote, "start": x.start, "end": x.end, "backend": x.backend}
                    for x in summary.lessons
                ],
                "checks": summary.checks,
                "no_lessons": summary.no_lessons,
            }
        except NothingToSummarize as exc:
            out = {"error": exc.message, "line": number}
        outfile.write(json.dumps(out, ensure_ascii=False) + "\n")
        outfile.flush()
        written += 1
    return written


def _article(line: str, number: int) -> Article:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SummarizerError(
            f"line {number}: not JSON ({exc.msg} at column {exc.colno})",
            hint='give one JSON object a line: {"title": "…", "text": "…"}',
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise SummarizerError(
            f'line {number}: expected a JSON object with a "text" string',
            hint='give one JSON object a line: {"title": "…", "text": "…"}',
        )
    title = data.get("title", "")
    language = data.get("language", "")
    if not isinstance(title, str) or not isinstance(language, str):
        raise SummarizerError(f'line {number}: "title" and "language" must be strings')
    return Article(
        source=str(data.get("source", "")),
        url=str(data.get("url", "")),
        title=title,
        text=data["text"],
        published=dt.datetime.now(dt.UTC),
        language=language,
    )
