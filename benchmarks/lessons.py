"""Are the offline lessons honest, and how good are the summaries? Measured on real news.

    .venv/bin/python benchmarks/lessons.py PATH/TO/orangesum-valid/pairs.jsonl

PATH is the OrangeSum validation sample (JSON lines with ``title``, ``article`` and
``abstract``; ``$DIGEST_BENCH_PAIRS`` also works). Its texts are read where they
are, never copied into the project. Every article goes through ``summarize_article``
with the default settings, as ``digest draft`` would, and the script prints:

- the lessons: how many per article, how many articles get none (an empty lesson
  for the editor), and among the lessons shown the share that is complete (ends as
  a sentence), cut (« … » or no final punctuation), glued across a lost line break,
  a repeat of the summary, takeaway-like, grounded; their length in words;
- the summaries: ROUGE-1/2/L F1 against the authors' abstracts (rouge-score's
  default tokenisation, as published tables use) beside LEAD-2, the share that
  ends as a sentence and the share that opens on a pronoun.

News rarely states a lesson: most articles are expected to get none. Needs
``pip install -e '.[bench]'`` (rouge-score).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer
from summaries import article_of, load  # the OrangeSum pairs, read the same way

from digest.config import SummarizeSettings
from digest.models import Lesson, Summary
from digest.summarize import summarize_article
from digest.summarize.extractive import _ANAPHORIC, TAKEAWAY_CUE, lesson_cue, stated_lessons
from digest.summarize.grounding import locate_quote, unsupported_facts
from digest.summarize.text import split_sentences, words

# Looser than the splitter's own rule: a word that starts in lower case and runs into a
# capitalised word (« cuireTout », « deBuzz »). Names that start with a capital
# (« EasyJet », « YouTube ») are not counted.
GLUED = re.compile(r"(?<![^\W_])[a-zß-öø-ÿ]{2,}[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]{2,}")
ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])


def ends_as_sentence(text: str) -> bool:
    return text.rstrip("»”\"' )")[-1:] in (".", "!", "?") and not text.endswith("…")


def repeats(lesson: Lesson, summary: str) -> bool:
    """The lesson's words are mostly the summary's (or one contains the other)."""
    a, b = set(words(lesson.text)), set(words(summary))
    if not a:
        return False
    quote = " ".join(lesson.quote.split())
    return quote in " ".join(summary.split()) or len(a & b) / len(a) > 0.8


def rouge(outputs: list[str], rows: list[dict[str, Any]]) -> list[float]:
    sums = [0.0, 0.0, 0.0]
    for output, row in zip(outputs, rows, strict=True):
        result = ROUGE.score(row["abstract"], output)
        for k, kind in enumerate(("rouge1", "rouge2", "rougeL")):
            sums[k] += result[kind].fmeasure
    return [100 * s / len(rows) for s in sums]


def lead(row: dict[str, Any], n: int) -> str:
    sentences = [s for s in split_sentences(row["article"]) if s.complete]
    return " ".join(s.text for s in sentences[:n])


def lesson_figures(results: list[Summary], rows: list[dict[str, Any]]) -> dict[str, float]:
    pairs = [(x, r, row) for r, row in zip(results, rows, strict=True) for x in r.lessons]
    count = max(1, len(pairs))

    def share(predicate: Any) -> float:
        return 100 * sum(1 for x, r, row in pairs if predicate(x, r, row)) / count

    def takeaway(x: Lesson, r: Summary, row: dict[str, Any]) -> bool:
        stated = {s.start for s in stated_lessons(row["article"], 4)}
        return x.start in stated or lesson_cue(x.quote) >= TAKEAWAY_CUE

    def grounded(x: Lesson, r: Summary, row: dict[str, Any]) -> bool:
        text = row["article"]
        return locate_quote(x.quote, text) is not None and not unsupported_facts(x.text, text)

    lengths = [len(x.text.split()) for x, _, _ in pairs] or [0]
    return {
        "articles": len(results),
        "lessons shown": len(pairs),
        "lessons per article (mean)": len(pairs) / len(results),
        "articles with no lesson, left to the editor (%)": 100
        * sum(not r.lessons for r in results)
        / len(results),
        "lessons complete, ending as a sentence (%)": share(
            lambda x, r, row: ends_as_sentence(x.text)
        ),
        "lessons cut (« … » or no final punctuation) (%)": share(
            lambda x, r, row: not ends_as_sentence(x.text)
        ),
        "lessons with a glued word (%)": share(lambda x, r, row: bool(GLUED.search(x.text))),
        "lessons repeating the summary (%)": share(lambda x, r, row: repeats(x, r.summary)),
        "lessons opening on a pronoun (%)": share(lambda x, r, row: bool(_ANAPHORIC.match(x.text))),
        "lessons takeaway-like (stated, or a takeaway cue) (%)": share(takeaway),
        "lessons grounded (quote found, facts in the article) (%)": share(grounded),
        "lesson words (mean)": statistics.mean(lengths),
        "lesson words (max)": max(lengths),
    }


def summary_figures(results: list[Summary], rows: list[dict[str, Any]]) -> dict[str, float]:
    outputs = [r.summary for r in results]
    r1, r2, rl = rouge(outputs, rows)
    l1, l2, ll = rouge([lead(row, 2) for row in rows], rows)
    return {
        "ROUGE-1 / offline summary": r1,
        "ROUGE-2 / offline summary": r2,
        "ROUGE-L / offline summary": rl,
        "ROUGE-1 / LEAD-2": l1,
        "ROUGE-2 / LEAD-2": l2,
        "ROUGE-L / LEAD-2": ll,
        "summaries ending as a sentence (%)": 100
        * sum(ends_as_sentence(x) for x in outputs)
        / len(outputs),
        "summaries opening on a pronoun (%)": 100
        * sum(bool(_ANAPHORIC.match(x)) for x in outputs)
        / len(outputs),
        "summaries with a glued word (%)": 100
        * sum(bool(GLUED.search(x)) for x in outputs)
        / len(outputs),
        "summary words (mean)": statistics.mean(len(x.split()) for x in outputs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "pairs",
        type=Path,
        nargs="?",
        default=os.environ.get("DIGEST_BENCH_PAIRS"),
        help="JSON lines with article and abstract (or set DIGEST_BENCH_PAIRS)",
    )
    args = parser.parse_args(argv)
    if args.pairs is None:
        parser.error("give the path of the pairs file (JSON lines), or set DIGEST_BENCH_PAIRS")
    rows = load(Path(args.pairs))
    results = [summarize_article(article_of(row), SummarizeSettings()) for row in rows]
    print(f"## Lessons ({len(rows)} articles, offline default)\n")
    for label, value in lesson_figures(results, rows).items():
        print(f"- {label}: {value:.2f}")
    print("\n## Summaries (ROUGE F1 × 100, rouge-score default tokenisation)\n")
    for label, value in summary_figures(results, rows).items():
        print(f"- {label}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
