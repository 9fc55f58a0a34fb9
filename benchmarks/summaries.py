"""How good and how fast is the offline summarizer? ROUGE against reference abstracts.

    python benchmarks/summaries.py --data PATH/TO/orangesum-valid/pairs.jsonl

Reads JSON lines with ``title``, ``article`` and ``abstract`` (the OrangeSum
validation sample), summarizes every article with the extractive backend and
prints ROUGE-1/2/L F1 beside the LEAD-1 and LEAD-2 baselines (the first one or two
sentences, cut by the same sentence splitter), on all pairs and on each half:
the weights were set on the first half (``--tune`` repeats that search) and the
second half is held out.

Two tokenisations: rouge-score's default (lower-case ASCII letters and digits,
so accented letters split words; comparable with published tables) and a
Unicode-aware one with French Snowball stems. Needs ``pip install rouge-score``
(a benchmark-only dependency). Times are wall-clock per article and per 1,000
words, on whatever machine runs this: compare figures from the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer

from digest.config import SummarizeSettings
from digest.models import Article
from digest.summarize import summarize_article
from digest.summarize.extractive import ExtractiveSummarizer, Params
from digest.summarize.text import _STEM_CACHE, split_sentences, stem_words, words

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


class FrenchTokenizer:
    """Unicode words (accents kept), lower-cased, French Snowball stems."""

    def tokenize(self, text: str) -> list[str]:
        return stem_words(words(text), "fr")


SCORERS = {
    "rouge-score default": rouge_scorer.RougeScorer(ROUGE_TYPES),
    "unicode + fr stems": rouge_scorer.RougeScorer(ROUGE_TYPES, tokenizer=FrenchTokenizer()),
}


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def article_of(row: dict[str, Any]) -> Article:
    return Article(
        source="orangesum",
        url="",
        title=row.get("title", ""),
        text=row["article"],
        published=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        language="fr",
    )


def lead(row: dict[str, Any], n: int) -> str:
    sentences = [s for s in split_sentences(row["article"]) if s.complete]
    return " ".join(s.text for s in sentences[:n])


def scores(outputs: list[str], rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Mean F1 × 100 per tokenisation: ``{tokenisation: [R1, R2, RL]}``."""
    table: dict[str, list[float]] = {}
    for label, scorer in SCORERS.items():
        sums = [0.0, 0.0, 0.0]
        for output, row in zip(outputs, rows, strict=True):
            result = scorer.score(row["abstract"], output)
            for k, kind in enumerate(ROUGE_TYPES):
                sums[k] += result[kind].fmeasure
        table[label] = [100 * s / len(rows) for s in sums]
    return table


def run_extractive(rows: list[dict[str, Any]], params: Params) -> list[str]:
    summarizer = ExtractiveSummarizer(SummarizeSettings(), params)
    return [summarizer.summarize(article_of(row)).summary for row in rows]


def thousand_word_articles(rows: list[dict[str, Any]]) -> list[Article]:
    """Articles of exactly 1,000 words, made of consecutive articles of the sample."""
    made: list[Article] = []
    taken: list[str] = []
    for row in rows:
        taken.append(row["article"])
        joined = " ".join(taken).split()
        if len(joined) >= 1000:
            made.append(replace(article_of(row), text=" ".join(joined[:1000])))
            taken = []
    return made


def _times(articles: list[Article], settings: SummarizeSettings) -> list[float]:
    out = []
    for article in articles:
        start = time.perf_counter()
        summarize_article(article, settings)
        out.append(time.perf_counter() - start)
    return out


def timing(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Wall time of the full ``summarize_article`` (ranking, lessons, grounding checks)."""
    settings = SummarizeSettings()
    articles = thousand_word_articles(rows)
    _STEM_CACHE.clear()  # the first pass pays for every stem, as a fresh process would
    cold = _times(articles, settings)
    warm = min((_times(articles, settings) for _ in range(3)), key=statistics.median)
    sample = _times([article_of(r) for r in rows], settings)
    start = time.perf_counter()
    for article in articles:
        split_sentences(article.text)
    splitting = (time.perf_counter() - start) / len(articles)
    huge = " ".join(r["article"] for r in rows)
    while len(huge.split()) < 200_000:
        huge += " " + huge
    start = time.perf_counter()
    summarize_article(replace(article_of(rows[0]), text=huge), settings)
    huge_time = time.perf_counter() - start
    ms = 1000.0
    return {
        f"ms per 1,000-word article, first pass, cold stem cache (median of {len(cold)})": ms
        * statistics.median(cold),
        "ms per 1,000-word article, warm (median, best of 3 passes)": ms * statistics.median(warm),
        "ms per 1,000-word article, warm (95th percentile)": ms
        * sorted(warm)[int(0.95 * len(warm))],
        "reference: sentence splitting alone, ms per 1,000-word article": ms * splitting,
        f"ms per sample article (mean of {len(sample)})": ms * statistics.mean(sample),
        "ms for one 200,000-word article (work capped)": ms * huge_time,
    }


def shape(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Lengths, counts and grounding of what ``summarize_article`` returns."""
    results = [summarize_article(article_of(r), SummarizeSettings()) for r in rows]
    lessons = [x for result in results for x in result.lessons]
    lengths = [len(x.text.split()) for x in lessons] or [0]  # news may teach nothing
    return {
        "summary words (mean)": statistics.mean(len(r.summary.split()) for r in results),
        "lessons per article (mean)": len(lessons) / len(results),
        "lesson words (mean)": statistics.mean(lengths),
        "lesson words (max)": max(lengths),
        "share of lessons cut with « … » (%)": 100
        * sum(x.text.endswith("…") for x in lessons)
        / max(1, len(lessons)),
        "share of articles grounded (%)": 100 * sum(r.grounded for r in results) / len(results),
        # Each check on its own: ``lessons_count`` fails for every article that teaches
        # fewer than two lessons (news often does), which says nothing about grounding.
        **{
            f"check {name} passed (%)": 100
            * sum(r.checks.get(name, False) for r in results)
            / len(results)
            for name in sorted({name for r in results for name in r.checks})
        },
    }


def print_table(title: str, rows: list[dict[str, Any]], systems: dict[str, list[str]]) -> None:
    print(f"\n## {title} ({len(rows)} pairs): ROUGE F1 × 100 (R1 / R2 / RL)\n")
    print("| system | " + " | ".join(SCORERS) + " | words (mean) |")
    print("|" + "---|" * (len(SCORERS) + 2))
    for name, outputs in systems.items():
        table = scores(outputs, rows)
        cells = [" / ".join(f"{v:.2f}" for v in table[label]) for label in SCORERS]
        length = statistics.mean(len(o.split()) for o in outputs)
        print(f"| {name} | " + " | ".join(cells) + f" | {length:.1f} |")
    reference = statistics.mean(len(r["abstract"].split()) for r in rows)
    print(f"\nReference abstracts: {reference:.1f} words on average.")


def tune(rows: list[dict[str, Any]]) -> None:
    """Grid search on the given rows (the first half); prints the best settings."""
    grid: dict[str, list[Any]] = {
        "lead_window": [4, 6, 8],
        "w_title": [1.0, 2.0, 3.0],
        "w_position": [0.5, 1.0, 2.0],
        "summary_words": [45, 55, 70],
        "min_summary_words": [8, 12],
        "hook_penalty": [0.3, 0.6],
        "speech_penalty": [0.5, 1.0, 1.5],
    }
    best: list[tuple[float, dict[str, Any]]] = []
    for values in itertools.product(*grid.values()):
        changes = dict(zip(grid, values, strict=True))
        outputs = run_extractive(rows, replace(Params(), **changes))
        table = scores(outputs, rows)
        objective = sum(table["rouge-score default"]) + sum(table["unicode + fr stems"])
        best.append((objective, changes))
        best.sort(key=lambda x: -x[0])
        del best[5:]
    for objective, changes in best:
        print(f"{objective:.2f} {changes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="JSON lines: article, abstract")
    parser.add_argument("--tune", action="store_true", help="grid-search on the first half")
    args = parser.parse_args(argv)
    rows = load(args.data)
    half = len(rows) // 2
    if args.tune:
        tune(rows[:half])
        return 0
    outputs = {
        "LEAD-1": [lead(r, 1) for r in rows],
        "LEAD-2": [lead(r, 2) for r in rows],
        "extractive (digest)": run_extractive(rows, Params()),
    }
    for title, part in (
        ("all", slice(None)),
        ("tuning half", slice(0, half)),
        ("held-out half", slice(half, None)),
    ):
        print_table(title, rows[part], {name: out[part] for name, out in outputs.items()})
    print("\n## Summaries and lessons, as the newsletter shows them\n")
    for label, value in shape(rows).items():
        print(f"- {label}: {value:.2f}")
    mean_words = statistics.mean(len(r["article"].split()) for r in rows)
    print(f"\n## Time: summarize_article, extractive (sample articles: {mean_words:.0f} words)\n")
    for label, value in timing(rows).items():
        print(f"- {label}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
