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
from . import NothingToSummarize, Progress, summarize_many

if TYPE_CHECKING:
    from ..db import Store

__all__ = ["summarize_stream"]


def summarize_stream(
    infile: TextIO,
    outfile: TextIO,
    settings: SummarizeSettings,
    store: Store | None = None,
    progress: Progress | None = None,
) -> int:
    """Summarize each article of ``infile`` into ``outfile``; returns the lines written.

    A remote backend gets ``[summarize.llm] concurrency`` lines at a time (see
    ``summarize_many``); the offline one, a line at a time, so a pipe flows.
    """
    batch = max(1, settings.llm.concurrency) if settings.backend != "extractive" else 1
    written = 0
    numbered: list[tuple[int, Article]] = []
    for number, line in enumerate(infile, 1):
        if not line.strip():
            continue
        numbered.append((number, _article(line, number)))
        if len(numbered) >= batch:
            written += _write(numbered, outfile, settings, store, progress)
            numbered = []
    if numbered:
        written += _write(numbered, outfile, settings, store, progress)
    return written


def _write(
    numbered: list[tuple[int, Article]],
    outfile: TextIO,
    settings: SummarizeSettings,
    store: Store | None,
    progress: Progress | None,
) -> int:
    articles = [article for _, article in numbered]
    results = summarize_many(articles, settings, store, progress)
    for (number, _), summary in zip(numbered, results, strict=True):
        if isinstance(summary, NothingToSummarize):
            out: dict[str, Any] = {"error": summary.message, "line": number}
        else:
            out = {
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
        outfile.write(json.dumps(out, ensure_ascii=False) + "\n")
        outfile.flush()
    return len(numbered)


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
