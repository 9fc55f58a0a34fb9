"""Summaries and lessons: the ``Summarizer`` protocol, the backend registry, the checks.

Backends are plugins found through the ``digest.summarizers`` entry-point group,
the built-in ones registered exactly as a third-party package would register its
own (``pyproject.toml``)::

    [project.entry-points."digest.summarizers"]
    extractive = "digest.summarize.extractive:ExtractiveSummarizer"
    openai = "digest.summarize.llm:OpenAISummarizer"

An entry point names a class (or any callable) taking the ``SummarizeSettings``
and returning an object with a ``name`` and a ``summarize(article) -> Summary``.

``summarize_article`` is what the pipeline calls: cache lookup, backend, grounding
checks, fallback to the offline default when a backend fails, cache store. It
raises ``SummarizerError`` for a configuration mistake (unknown backend, LLM
settings missing) and its subclass ``NothingToSummarize`` for an article with no
prose; any other failure of a backend gives that article the offline default, so
an issue never loses an article because a remote model misbehaved.

Some names are still reached through a small built-in table when no installed
entry point provides them (a checkout run without ``pip install``); an installed
entry point always wins.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..config import SummarizeSettings
from ..errors import SummarizerError
from ..models import NO_TAKEAWAY, Article, Lesson, Summary
from .grounding import Evidence
from .text import MAX_CHARS, split_sentences, stop_words, words

if TYPE_CHECKING:
    from ..db import Store

__all__ = [
    "ENTRY_POINT_GROUP",
    "NothingToSummarize",
    "Summarizer",
    "available_backends",
    "cache_key",
    "check_grounding",
    "get_summarizer",
    "summarize_article",
    "summarize_many",
    "summary_from_dict",
    "summary_to_dict",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "digest.summarizers"

CACHE_VERSION = "3"
"""Bump when a backend's output changes for the same input, to ignore old cache rows."""

MAX_SUMMARY_WORDS = 80
"""A summary is asked for in one or two sentences; longer than this, the offline one is used."""

MIN_SUMMARY_WORDS = 6
"""A shorter « summary » (« Un jeu sort. ») says too little; the offline one is used."""

MAX_LESSON_WORDS = 35
"""Lessons are asked for in at most 25 words; longer than this, one is dropped."""

# Used only for names that no installed entry point provides (an editable install
# made before an entry point was added); entry points always win.
_BUILTIN = {
    "extractive": "digest.summarize.extractive:ExtractiveSummarizer",
    "openai": "digest.summarize.llm:OpenAISummarizer",
}


class NothingToSummarize(SummarizerError):
    """The article has no text or no sentence of prose: skip it (not a failure of ours)."""


@runtime_checkable
class Summarizer(Protocol):
    """A backend: an article in, a summary with lessons and their evidence out."""

    name: str

    def summarize(self, article: Article) -> Summary:
        """Raise ``SummarizerError`` when there is nothing to summarize."""
        ...


@functools.cache
def _factories() -> dict[str, Callable[[], Any]]:
    """Backend loaders by name; scanning installed packages costs ~10 ms, so once a process."""
    found: dict[str, Callable[[], Any]] = {
        name: functools.partial(_load, target) for name, target in _BUILTIN.items()
    }
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load
    return found


def _load(target: str) -> Any:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def available_backends() -> list[str]:
    """Names of the backends that can be used, sorted."""
    return sorted(_factories())


def get_summarizer(settings: SummarizeSettings) -> Summarizer:
    """The backend named by ``settings.backend``, built with ``settings``."""
    factories = _factories()
    factory = factories.get(settings.backend)
    if factory is None:
        raise SummarizerError(
            f"unknown summarizer backend {settings.backend!r}",
            hint=f"set [summarize] backend to one of: {', '.join(sorted(factories))}",
        )
    try:
        backend: Summarizer = factory()(settings)
    except SummarizerError:
        raise
    except Exception as exc:  # a broken plugin is the user's install to fix
        raise SummarizerError(
            f"summarizer backend {settings.backend!r} cannot be loaded: {exc}",
            hint="reinstall the package that provides it, or choose another backend",
        ) from exc
    return backend


def cache_key(article: Article, settings: SummarizeSettings) -> str:
    """A hash of the article's content and every setting that changes the result."""
    payload = {
        "v": CACHE_VERSION,
        "title": article.title,
        "text": article.text,
        "language": article.language,
        "backend": settings.backend,
        "sentences": settings.summary_sentences,
        "lessons": settings.max_lessons,
    }
    if settings.backend != "extractive":  # the API key is not part of the result
        payload["llm"] = [settings.llm.base_url, settings.llm.model]
    raw = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()


def summary_to_dict(summary: Summary) -> dict[str, Any]:
    return {
        "summary": summary.summary,
        "lessons": [
            {"text": x.text, "quote": x.quote, "start": x.start, "end": x.end, "backend": x.backend}
            for x in summary.lessons
        ],
        "backend": summary.backend,
        "grounded": summary.grounded,
        "checks": dict(summary.checks),
        "no_lessons": summary.no_lessons,
    }


def summary_from_dict(value: dict[str, Any]) -> Summary:
    return Summary(
        summary=str(value["summary"]),
        lessons=tuple(
            Lesson(
                str(x["text"]),
                str(x["quote"]),
                int(x["start"]),
                int(x["end"]),
                str(x.get("backend", value["backend"])),
            )
            for x in value["lessons"]
        ),
        backend=str(value["backend"]),
        grounded=bool(value["grounded"]),
        checks={str(k): bool(v) for k, v in value.get("checks", {}).items()},
        no_lessons=str(value.get("no_lessons", "")),
    )


def summarize_article(
    article: Article, settings: SummarizeSettings, store: Store | None = None
) -> Summary:
    """Summary and lessons of one article, checked against it; cached when ``store`` is given.

    Raises ``SummarizerError`` for an unknown backend or when the article has nothing
    to summarize (no text, no sentence of prose): the caller skips that article.
    """
    from .extractive import ExtractiveSummarizer

    cached = _cached(article, settings, store)
    if cached is not None:
        return cached
    backend = get_summarizer(settings)
    offline = ExtractiveSummarizer(settings)
    try:
        result = backend.summarize(article)
        if not isinstance(result, Summary):
            raise SummarizerError(
                f"{backend.name!r} returned {type(result).__name__}, not a Summary"
            )
    except NothingToSummarize:
        raise
    except Exception as exc:
        if backend.name == offline.name:
            raise  # the offline default failing is a bug to see, not to hide
        # Any failure of another backend (a remote model timing out, a broken
        # plugin): this article gets the offline default, the issue goes on.
        log.warning(
            "summarizer %r failed on %r (%s); using the offline default",
            backend.name,
            article.title,
            exc,
        )
        result = offline.summarize(article)
    result = check_grounding(result, article, offline, settings)
    if store is not None and result.backend == settings.backend:
        _cache(article, settings, store, result)
    return result


def _key(text: str) -> str:
    return " ".join(words(text))


def _shares_words(lesson: str, quote: str) -> bool:
    """Whether a lesson and its quote share at least one word that carries meaning.

    A paraphrase keeps a stem or two of its source; a lesson with none was
    justified by a quote about something else."""
    common = stop_words("fr") | stop_words("en")
    a = {w[:5] for w in words(lesson) if w not in common and len(w) > 2}
    b = {w[:5] for w in words(quote) if w not in common and len(w) > 2}
    return bool(a & b) or not b


Progress = Callable[[int, int, Article], None]
"""Called as ``progress(done, total, article)`` each time an article is summarized."""


def summarize_many(
    articles: Sequence[Article],
    settings: SummarizeSettings,
    store: Store | None = None,
    progress: Progress | None = None,
) -> Iterator[Summary | NothingToSummarize]:
    """``summarize_article`` over many articles, yielded in their order.

    A remote backend is asked ``[summarize.llm] concurrency`` articles at a time
    (a model on a CPU takes minutes an article), within one deadline for them all
    (``issue_timeout``): an article whose turn comes after it, or whose own deadline
    would run past it, gets less time, then the offline default; never an empty
    issue. The offline backend runs in this thread (it is CPU-bound). The cache is
    read and written here, in the caller's thread, not in the workers'. An article
    with nothing to summarize is yielded as its ``NothingToSummarize`` error.
    """
    total = len(articles)
    done = 0
    results: list[Summary | NothingToSummarize | None] = [None] * total
    pending: dict[int, Future[Summary]] = {}
    remote = settings.backend != "extractive"
    deadline = time.monotonic() + settings.llm.issue_timeout
    workers = max(1, settings.llm.concurrency) if remote else 1

    def one(article: Article) -> Summary:
        left = deadline - time.monotonic()
        if left <= 0:  # the issue's time is up: the offline default, at once
            offline = dataclasses.replace(settings, backend="extractive")
            return summarize_article(article, offline)
        llm = dataclasses.replace(settings.llm, timeout=min(settings.llm.timeout, left))
        return summarize_article(article, dataclasses.replace(settings, llm=llm))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="summarize") as pool:
        for index, article in enumerate(articles):
            cached = _cached(article, settings, store)
            if cached is not None:
                results[index] = cached
            elif remote:
                pending[index] = pool.submit(one, article)
        for index, article in enumerate(articles):
            if results[index] is None:
                try:
                    result = pending[index].result() if index in pending else one(article)
                except NothingToSummarize as exc:
                    results[index] = exc
                else:
                    results[index] = result
                    if store is not None and result.backend == settings.backend:
                        _cache(article, settings, store, result)
            done += 1
            if progress is not None:
                progress(done, total, article)
            value = results[index]
            assert value is not None
            yield value


def _cache(article: Article, settings: SummarizeSettings, store: Store, result: Summary) -> None:
    from ..db import articles

    articles.cache_summary(store, cache_key(article, settings), summary_to_dict(result))


def _cached(article: Article, settings: SummarizeSettings, store: Store | None) -> Summary | None:
    if store is None:
        return None
    key = cache_key(article, settings)
    from ..db import articles

    cached = articles.cached_summary(store, key)
    if cached is None:
        return None
    try:
        return summary_from_dict(cached)
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring an unreadable cached summary %s", key[:12])
        return None


def check_grounding(
    summary: Summary, article: Article, offline: Any, settings: SummarizeSettings
) -> Summary:
    """Apply the grounding checks; drop what fails and top up from ``offline``.

    ``checks`` records what the backend's own output passed: ``summary_facts``,
    ``summary_length``, ``lessonN_quote``, ``lessonN_facts``, ``lessonN_length`` and
    ``lessons_count`` (at least two lessons survived). ``grounded`` is true when
    everything returned passes the checks, after the repairs.
    """
    from .extractive import is_lesson_heading

    text = article.text
    head = Evidence(text[:MAX_CHARS])
    whole = Evidence(text) if len(text) > MAX_CHARS else head

    def unsupported(claim: str, local: Evidence | None = None) -> list[str]:
        # Nearest evidence first (a lesson's own quote), then the article's head, then
        # all of it: a 200,000-word article is only scanned for what is not found sooner.
        missing = local.unsupported(claim) if local is not None else ["?"]
        if missing:
            missing = head.unsupported(claim)
        if missing and whole is not head:
            missing = whole.unsupported(claim)
        return missing

    checks: dict[str, bool] = {}
    summary_text = summary.summary.strip()
    checks["summary_facts"] = bool(summary_text) and not unsupported(summary_text)
    # One or two whole sentences (or as many as configured): not a fragment, not cut
    # mid-sentence, not an essay, not the article copied out (a small model's habit).
    sentences = len(split_sentences(summary_text))
    checks["summary_length"] = (
        MIN_SUMMARY_WORDS <= len(summary_text.split()) <= MAX_SUMMARY_WORDS
        and summary_text.rstrip("»”\"')] ")[-1:] in tuple(".!?。！？")
        and sentences <= max(2, settings.summary_sentences)
    )
    if not (checks["summary_facts"] and checks["summary_length"]):
        log.info("%r: %s's summary dropped: %r", article.title, summary.backend, summary_text)
        summary_text = offline.summarize(article).summary

    lessons: list[Lesson] = []
    seen: set[str] = set()
    for k, lesson in enumerate(summary.lessons, 1):
        span = None
        if 0 <= lesson.start < lesson.end <= len(text) and text[lesson.start : lesson.end] == (
            lesson.quote
        ):
            span = (lesson.start, lesson.end)
        elif lesson.quote.strip():
            span = whole.locate(lesson.quote)
        quote_ok = span is not None
        facts_ok = bool(lesson.text.strip()) and not unsupported(
            lesson.text, Evidence(text[span[0] : span[1]]) if span else None
        )
        length_ok = len(lesson.text.split()) <= MAX_LESSON_WORDS
        # A lesson is not the heading, not a repeat, and its quote says something of it.
        key = _key(lesson.text)
        fresh = (
            bool(key)
            and not is_lesson_heading(lesson.text)
            and key not in seen
            and key != _key(summary_text)
            and (span is None or _shares_words(lesson.text, text[span[0] : span[1]]))
        )
        seen.add(key)
        checks[f"lesson{k}_quote"] = quote_ok
        checks[f"lesson{k}_facts"] = facts_ok
        checks[f"lesson{k}_length"] = length_ok
        checks[f"lesson{k}_fresh"] = fresh
        if span is not None and facts_ok and length_ok and fresh:
            written_by = lesson.backend or summary.backend
            lessons.append(Lesson(lesson.text.strip(), text[span[0] : span[1]], *span, written_by))
        else:  # what a model wrote and why it is not shown: `digest -v` tells the editor
            failed = _failures(quote_ok, facts_ok, length_ok, fresh)
            log.info(
                "%r: lesson %d of %s dropped (%s): %r quoting %r",
                article.title,
                k,
                lesson.backend or summary.backend,
                ", ".join(failed),
                lesson.text,
                lesson.quote,
            )

    wanted = max(2, min(4, settings.max_lessons))
    checks["lessons_count"] = len(lessons) >= 2
    no_lessons = summary.no_lessons
    if len(lessons) < 2 and summary.backend != offline.name:
        # Lessons the model lost are topped up from the article's own takeaways, each
        # labelled as the offline backend's; an article with none gets none.
        avoid = [x.quote for x in lessons] + [summary_text]
        extra = offline.lessons(article, wanted - len(lessons), avoid)
        lessons = sorted(lessons + extra, key=lambda x: x.start)[:wanted]
        no_lessons = "" if lessons else NO_TAKEAWAY
    backend = summary.backend
    if summary_text != summary.summary.strip() and not any(x.backend == backend for x in lessons):
        backend = offline.name  # nothing of the model's survived: say who wrote what is shown
    grounded = all(x.start >= 0 for x in lessons) and not unsupported(summary_text)
    return Summary(
        summary_text,
        tuple(lessons[:wanted]),
        backend,
        grounded,
        checks,
        no_lessons if not lessons else "",
    )


def _failures(quote: bool, facts: bool, length: bool, fresh: bool) -> list[str]:
    """Why a lesson was dropped, in words an editor reads in the log."""
    reasons = [
        (quote, "quote not in the article"),
        (facts, "a number or name not in the article"),
        (length, "too long"),
        (fresh, "a heading, a repeat, or not what its quote says"),
    ]
    return [reason for ok, reason in reasons if not ok]
