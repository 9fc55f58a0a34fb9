"""The offline default: an extractive summary and lessons, deterministic, no network.

How it reads an article:

1. Sentences with their offsets (``text.split_sentences``), words stemmed with
   Snowball, stop words of the article's language removed, TF-IDF weights computed
   over the article's own sentences.
2. Centrality by LexRank: sentences that share vocabulary with many others score
   high; a few power iterations over the cosine-similarity graph.
3. The summary: news puts its point first, but its first sentence is often a
   hook (« La vidéo est devenue virale. ») or a quote. So the summary is chosen
   among the leading sentences by centrality, closeness to the title and
   position, and capped in length (``summary_sentences``, about 55 words). A
   summary reports: a question, or a sentence made of someone's words (the share
   of it inside quotation marks), ranks lower. It introduces its subject: a
   sentence that leans on the one before (« Elle a ajouté… », « Mais… ») never
   opens it and joins only right after that one. One too long to show whole is
   not used. The best single sentence or pair is chosen as a whole.
4. Lessons: only what the article itself teaches. First the items it lists under a
   lessons heading (« Ce que cela nous apprend », « À retenir », "Takeaways"), whole;
   then its takeaway sentences (``lesson_cue`` at least ``TAKEAWAY_CUE``: « la leçon
   est claire : », « Pour les écoles, cela plaide pour… », « il faut », "the takeaway
   is to…"), ranked by centrality and cue, diversified by maximal marginal relevance,
   never a summary sentence. Each is a whole sentence, or what follows its
   announcement (« la leçon est claire : X » gives X), or a whole first clause: never
   a cut with « … », never a sentence leaning on a pronoun it does not show. An
   article with none gets no lesson (``Summary.no_lessons``): an editor writes one.

Every output is a span of the article, so it is grounded by construction.
The weights below were set on the first half of the OrangeSum validation sample
and checked on the other half (``benchmarks/summaries.py``); the rules above were
chosen for what a reader needs (a summary that reports and introduces its subject),
and they also raised ROUGE-1 on both halves. One choice goes
against ROUGE: a 70-word cap scores a little higher than 55, but a newsletter
summary of 70 words no longer reads as « one or two sentences ».
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import SummarizeSettings
from ..language import detect_language
from ..models import NO_TAKEAWAY, Article, Lesson, Summary
from . import NothingToSummarize
from .text import (
    MAX_CHARS,
    Sentence,
    clean_display,
    count_words,
    mask_markup,
    quoted_share,
    split_sentences,
    stem_words,
    stop_words,
    text_lines,
    words,
)

__all__ = [
    "ExtractiveSummarizer",
    "Params",
    "is_lesson_heading",
    "leans_back",
    "stated_lessons",
]

MAX_SENTENCES = 200
"""Sentences ranked at most (the first ones): bounds the quadratic similarity graph."""

LESSON_WORDS = 25
TAKEAWAY_SLACK = 2
"""A takeaway (see ``TAKEAWAY_CUE``) may run this many words over ``LESSON_WORDS`` rather than be
cut: a whole point of 27 words reads better than half a point of 12."""


@dataclass(frozen=True)
class Params:
    """Ranking weights; the defaults are the tuned ones (see the module docstring)."""

    lead_window: int = 6
    """The summary is chosen among the first this many prose sentences."""
    w_centrality: float = 1.0
    w_title: float = 2.0
    w_position: float = 1.0
    position_scale: float = 1.0
    summary_words: int = 55
    """The summary's length cap, in words (a second sentence is added only within it)."""
    second_weight: float = 0.5
    """A pair of sentences is worth its better sentence's score plus this times the other's."""
    redundancy: float = 0.5
    """Subtracted from a pair, times the similarity of its two sentences."""
    hook_penalty: float = 0.3
    question_penalty: float = 0.8
    """Subtracted from a question: a summary answers, it does not ask."""
    speech_penalty: float = 1.0
    """Subtracted times the share of a sentence's words inside quotation marks."""
    min_summary_words: int = 12
    anaphora_penalty: float = 0.3
    """Subtracted from a summary sentence that opens on a pronoun (« Elle », « Ce dernier »)."""
    lesson_position: float = 0.3
    lesson_title: float = 0.3
    mmr_lambda: float = 0.7
    lesson_cue: float = 0.8
    """Added to a lesson's relevance times its ``lesson_cue`` (0 to 1)."""


@dataclass
class _Analysis:
    text: str
    language: str
    sentences: list[Sentence]
    word_counts: list[int]
    vectors: list[dict[str, float]]
    centrality: list[float]
    title_similarity: list[float]


class ExtractiveSummarizer:
    """The default backend: see the module docstring."""

    name = "extractive"

    def __init__(self, settings: SummarizeSettings | None = None, params: Params | None = None):
        self.settings = settings or SummarizeSettings()
        self.params = params or Params()

    def summarize(self, article: Article) -> Summary:
        analysis = analyse(article)
        summary_ids = choose_summary(analysis, self.settings.summary_sentences, self.params)
        count = max(2, min(4, self.settings.max_lessons))
        lessons = choose_lessons(analysis, count, set(summary_ids), self.params)
        # Lines without final punctuation (bullets) get a period, to read as sentences.
        summary = " ".join(_punctuated(_display(analysis, i)) for i in summary_ids)
        return Summary(
            summary=summary,
            lessons=tuple(lessons),
            backend=self.name,
            grounded=True,
            no_lessons="" if lessons else NO_TAKEAWAY,
        )

    def lessons(self, article: Article, count: int, avoid: list[str]) -> list[Lesson]:
        """Up to ``count`` lessons whose sentences do not overlap the spans in ``avoid``.

        Used to top up another backend's lessons when some failed the grounding checks.
        """
        analysis = analyse(article)
        taken = {
            i
            for i, s in enumerate(analysis.sentences)
            if any(_overlaps(clean_display(s.text), quote) for quote in avoid)
        }
        found = choose_lessons(analysis, count + len(avoid), taken, self.params)
        fresh = [x for x in found if not any(_overlaps(x.text, q) for q in avoid)]
        return fresh[:count]


def _overlaps(sentence: str, shown: str) -> bool:
    """Whether a shown text (maybe cut, with « … ») and a sentence share their words."""
    shown = " ".join(shown.split()).rstrip("…").strip().lower()
    sentence = sentence.lower()
    return bool(shown) and (shown in sentence or sentence in shown)


def analyse(article: Article) -> _Analysis:
    """Sentences, TF-IDF vectors and LexRank centrality of an article."""
    text = article.text or ""
    if not text.strip():
        raise NothingToSummarize(
            f"nothing to summarize: {article.title or 'the article'!r} has no text",
            hint="the feed gave a title only; enable full-text fetching for this source",
        )
    language = (article.language or "")[:2].lower() or detect_language(text)
    sentences = _usable(split_sentences(text), article.title)
    if not sentences:
        raise NothingToSummarize(
            f"nothing to summarize: {article.title or 'the article'!r} has no sentence of prose",
            hint="check that the source gives the article's text, not only its title",
        )
    sentences = sentences[:MAX_SENTENCES]
    stops = stop_words(language)
    masked = [mask_markup(s.text) for s in sentences]
    token_lists = [_terms(m, stops, language) for m in masked]
    word_counts = [count_words(m) for m in masked]
    vectors = _tfidf(token_lists)
    idf = _idf(token_lists)
    title_vector = _normalize(
        {t: c * idf.get(t, 0.0) for t, c in Counter(_terms(article.title, stops, language)).items()}
    )
    title_similarity = [_dot(v, title_vector) for v in vectors]
    return _Analysis(
        text, language, sentences, word_counts, vectors, _lexrank(vectors), title_similarity
    )


def _usable(sentences: list[Sentence], title: str) -> list[Sentence]:
    """Prose sentences; lines without final punctuation only if there is nothing else.

    A line equal to the title is dropped: feeds often repeat it as the text's first line.
    """
    title_key = " ".join(words(title))
    kept = [s for s in sentences if " ".join(words(s.text)) != title_key or not title_key]
    prose = [s for s in kept if s.complete and count_words(s.text) >= 3]
    if prose:
        return prose
    lines = [s for s in kept if count_words(s.text) >= 4]
    return lines if sum(count_words(s.text) for s in lines) >= 8 else []


def _terms(text: str, stops: frozenset[str], language: str) -> list[str]:
    tokens = [t for t in words(text) if t not in stops and (len(t) > 1 or t.isdigit())]
    return stem_words(tokens, language)


def _idf(token_lists: list[list[str]]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for tokens in token_lists:
        df.update(set(tokens))
    n = len(token_lists)
    return {t: math.log((n + 1) / (d + 1)) + 1.0 for t, d in df.items()}


def _tfidf(token_lists: list[list[str]]) -> list[dict[str, float]]:
    idf = _idf(token_lists)
    return [
        _normalize({t: (1.0 + math.log(c)) * idf[t] for t, c in Counter(tokens).items()})
        for tokens in token_lists
    ]


def _normalize(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {t: w / norm for t, w in vector.items()} if norm else {}


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def _lexrank(vectors: list[dict[str, float]], damping: float = 0.85) -> list[float]:
    """Continuous LexRank (Erkan & Radev 2004), normalized so the top sentence is 1."""
    n = len(vectors)
    if n == 1:
        return [1.0]
    postings: dict[str, list[tuple[int, float]]] = {}
    for i, vector in enumerate(vectors):
        for term, weight in vector.items():
            postings.setdefault(term, []).append((i, weight))
    edges: list[dict[int, float]] = [{} for _ in range(n)]
    for entries in postings.values():
        for a in range(len(entries)):
            i, wi = entries[a]
            row = edges[i]
            for b in range(a + 1, len(entries)):
                j, wj = entries[b]
                row[j] = row.get(j, 0.0) + wi * wj
    out: list[list[tuple[int, float]]] = [[] for _ in range(n)]  # j -> [(i, weight)] symmetric
    for i, row in enumerate(edges):
        for j, w in row.items():
            out[i].append((j, w))
            out[j].append((i, w))
    degree = [sum(w for _, w in links) for links in out]
    rank = [1.0 / n] * n
    for _ in range(20):
        new = [(1.0 - damping) / n] * n
        dangling = sum(rank[i] for i in range(n) if degree[i] == 0) * damping / n
        for i, links in enumerate(out):
            if degree[i]:
                share = damping * rank[i] / degree[i]
                for j, w in links:
                    new[j] += share * w
        new = [r + dangling for r in new]
        delta = sum(abs(a - b) for a, b in zip(new, rank, strict=True))
        rank = new
        if delta < 1e-4:
            break
    top = max(rank)
    return [r / top for r in rank]


# -- choosing ---------------------------------------------------------------------------

_HOOK_START = re.compile(r"^\s*[«\"“—–-]")
_SPEECH = re.compile(r"[«»\"“”]")


def _summary_score(a: _Analysis, i: int, p: Params) -> float:
    score = (
        p.w_centrality * a.centrality[i]
        + p.w_title * a.title_similarity[i]
        + p.w_position / (1.0 + i / p.position_scale)
    )
    text = a.sentences[i].text.rstrip("»”\"' )")
    if text.endswith("?"):
        score -= p.question_penalty  # a summary answers; it does not ask
    if _HOOK_START.match(a.sentences[i].text):
        score -= p.hook_penalty
    # A summary reports what happened; a sentence that is mostly someone's words
    # (« "Nous continuerons…", prévient la police ») is a voice in the story, not its gist.
    score -= p.speech_penalty * quoted_share(a.sentences[i].text)
    if a.word_counts[i] < p.min_summary_words:
        score -= p.hook_penalty
    if _ANAPHORIC.match(a.sentences[i].text):
        score -= p.anaphora_penalty  # « Elle a dit… » does not introduce its subject
    if a.word_counts[i] > p.summary_words:
        score -= p.hook_penalty  # would be cut: a summary ends as a sentence
    if a.sentences[i].text.lstrip(_OPENERS)[:1].islower():
        score -= p.hook_penalty  # the middle of a quotation, not the start of a thought
    return score


_OPENERS = "«\"“‘'([ \u00a0"

# Openers that lean on the sentence before: « Mais », « Par ailleurs », « De son côté »…
# (« Alors que la loi… », "Instead of…" open a clause of their own sentence: not these.)
_CONNECTIVE = re.compile(
    r"^\W*(?:mais|et|or|donc|ainsi|alors|pourtant|cependant|toutefois|néanmoins|enfin|aussi"
    r"|car|par ailleurs|en outre|de plus|d['’]ailleurs|quant à|de (?:son|leur) côté|du coup"
    r"|en effet|en revanche|par contre|autrement dit|however|but|yet|also|meanwhile"
    r"|moreover|besides|instead)(?![\w-])(?!\s+(?:que|qu['’]|of)\b)",
    re.IGNORECASE,
)


def leans_back(text: str) -> bool:
    """Whether a sentence opens on a pronoun or a connective that refers to what came
    before it (« Elle a ajouté… », « Cette décision… », « Mais… »)."""
    return bool(_ANAPHORIC.match(text) or _CONNECTIVE.match(text))


def choose_summary(a: _Analysis, sentences: int, p: Params) -> list[int]:
    """Indexes of the summary's sentences, in document order.

    The summary must introduce its subject: it never opens on a sentence that leans
    on the one before (``leans_back``), and such a sentence joins only right after
    that one. Within these rules and the word budget, one sentence or the pair of
    sentences with the best value (see ``Params.second_weight``) is chosen, the pair
    as a whole rather than greedily: the best single sentence may not belong to the
    best pair. More sentences, if configured, are added greedily.
    """
    window: Sequence[int] = range(min(p.lead_window, len(a.sentences)))
    # A sentence too long to show whole would be cut: a summary ends as a sentence.
    whole = [i for i in window if a.word_counts[i] <= 60]
    if whole:
        window = whole
    scores = {i: _summary_score(a, i, p) for i in window}
    leaning = {i for i in window if leans_back(a.sentences[i].text)}

    def score_after(i: int, chosen: Sequence[int]) -> float | None:
        """``i``'s score as a follower of ``chosen``, or None if it may not follow them."""
        if i in leaning:
            if i - 1 not in chosen:
                return None
            if _ANAPHORIC.match(a.sentences[i].text):
                return scores[i] + p.anaphora_penalty  # its antecedent is shown just before
        return scores[i]

    best: tuple[float, tuple[int, ...]] | None = None
    for i in window:
        if i in leaning:
            continue
        options: list[tuple[float, tuple[int, ...]]] = [(scores[i], (i,))]
        if sentences >= 2:
            for j in window:
                if j <= i or a.word_counts[i] + a.word_counts[j] > p.summary_words:
                    continue
                sj = score_after(j, (i,))
                if sj is None or min(scores[i], sj) < 0:
                    continue  # a sentence that scores below zero is never worth adding
                value = (
                    max(scores[i], sj)
                    + p.second_weight * min(scores[i], sj)
                    - p.redundancy * _dot(a.vectors[i], a.vectors[j])
                )
                options.append((value, (i, j)))
        for option in options:
            if best is None or option[0] > best[0]:
                best = option  # strictly better: ties keep the earlier sentences
    if best is None:  # every sentence leans on another: the best one all the same
        return [max(window, key=lambda i: (scores[i], -i))]
    chosen = list(best[1])
    total = sum(a.word_counts[i] for i in chosen)
    while len(chosen) < sentences:
        options_more = []
        for i in window:
            si = score_after(i, chosen) if i not in chosen else None
            if si is not None and si >= 0 and total + a.word_counts[i] <= p.summary_words:
                redundant = max(_dot(a.vectors[i], a.vectors[c]) for c in chosen)
                options_more.append((si - p.redundancy * redundant, -i))
        if not options_more:
            break
        pick = -max(options_more)[1]
        chosen.append(pick)
        total += a.word_counts[pick]
    return sorted(chosen)


def choose_lessons(a: _Analysis, count: int, exclude: set[int], p: Params) -> list[Lesson]:
    """Up to ``count`` lessons: those the article states under a heading first, then
    its takeaway sentences by relevance and novelty; in document order.

    Only sentences that read as a takeaway (``lesson_cue`` at least ``TAKEAWAY_CUE``)
    qualify: a news story with none gets no lesson, not its facts relabelled.
    """
    stated = stated_lessons(a.text, count)
    taken = [(x.start, x.end) for x in stated]
    n = len(a.sentences)
    cues = {i: lesson_cue(a.sentences[i].text, a.word_counts[i]) for i in range(n)}
    spans: dict[int, tuple[int, int, bool]] = {}
    for i in range(n):
        sentence = a.sentences[i]
        if i in exclude or cues[i] < TAKEAWAY_CUE or sentence.text.rstrip(_CLOSE).endswith("?"):
            continue
        if any(s < sentence.end and sentence.start < e for s, e in taken):
            continue  # part of a stated lesson already
        span = _lesson_span(a, i)
        if span is not None:
            spans[i] = span

    def relevance(i: int) -> float:
        return (
            a.centrality[i]
            + p.lesson_title * a.title_similarity[i]
            + p.lesson_position / (1.0 + i / 3.0)
            + p.lesson_cue * cues[i]
        )

    pool = list(spans)
    scores = {i: relevance(i) for i in pool}
    # Highest similarity of each candidate to what is already taken (summary, lessons).
    overlap = {
        i: max((_dot(a.vectors[i], a.vectors[j]) for j in exclude), default=0.0) for i in pool
    }
    chosen: list[int] = []
    while pool and len(chosen) < count - len(stated):
        best = max(
            pool, key=lambda i: (p.mmr_lambda * scores[i] - (1 - p.mmr_lambda) * overlap[i], -i)
        )
        pool.remove(best)
        if overlap[best] > 0.8:
            continue  # a near-repeat of the summary or of a chosen lesson
        chosen.append(best)
        for i in pool:
            overlap[i] = max(overlap[i], _dot(a.vectors[i], a.vectors[best]))
    found = stated + [_attributed(a, i, _lesson(a.text, *spans[i])) for i in chosen]
    return sorted(found, key=lambda x: x.start)


_CLOSE = "»”\"' )"

# The headings under which an article states its own lessons (the institute's « Ce que
# cela nous apprend », « À retenir », "Key takeaways"…), alone on their line.
_LESSON_HEADING = re.compile(
    r"^\W*(?:ce que (?:cela|ça|ceci|nous) (?:nous )?(?:apprend|enseigne|retenons)"
    r"|ce qu['’](?:il faut|on peut) (?:en )?retenir|(?:ce qu['’]il faut |à )retenir"
    r"|(?:les |nos |trois |quelques )?(?:le[çc]ons?|enseignements?)"
    r"(?: à (?:en )?(?:tirer|retenir))?"
    r"|(?:key |our |the )?(?:takeaways?|lessons?(?: learned| learnt)?)"
    r"|what (?:this|it) means(?: for (?:us|you))?|what we (?:learn|learned|learnt))\W*$",
    re.IGNORECASE,
)


def is_lesson_heading(line: str) -> bool:
    """Whether ``line`` is a heading for lessons (« Ce que cela nous apprend »): a lesson
    that says only that teaches nothing."""
    return count_words(line) <= 8 and bool(_LESSON_HEADING.match(line.strip()))


STATED_WORDS = 30
"""A lesson stated by the article may be this long (whole), else its first sentence is used."""


def stated_lessons(text: str, count: int) -> list[Lesson]:
    """The items listed under a lessons heading (see ``_LESSON_HEADING``), at most ``count``.

    A lead-in ending with a colon (« Pour nous, cette crise est un cas d'école : ») is
    skipped; the list ends at the next heading (a short line without final punctuation).
    """
    masked = mask_markup(text[:MAX_CHARS])
    lines = text_lines(masked)
    for k, (start, end) in enumerate(lines):
        line = masked[start:end]
        if not is_lesson_heading(line):
            continue
        found: list[Lesson] = []
        for s, e in lines[k + 1 :]:
            bullet = _BULLET_START.match(masked, s, e)
            if bullet:
                s = bullet.end()
            while s < e and masked[s].isspace():
                s += 1
            while e > s and masked[e - 1].isspace():
                e -= 1
            item = masked[s:e]
            if not any(c.isalnum() for c in item):
                continue
            complete = _is_sentence(item)
            heading = not bullet and not complete and not item.endswith(":")
            if heading and (count_words(item) <= 3 or not found or _is_sentence(found[-1].quote)):
                break  # the next heading: « Conclusion »
            if item.endswith(":") and not found:
                continue  # a lead-in to the list
            span = _stated_span(text, s, e)
            if span is not None:
                found.append(_lesson(text, *span))
            if len(found) >= count:
                break
        if found:
            return found
    return []


_BULLET_START = re.compile(r"[ \t]*(?:[-–—•*·▪►✓→]|\d{1,2}[.)])\s+")


def _is_sentence(text: str) -> bool:
    return text.rstrip(_CLOSE + "\u00a0")[-1:] in tuple(".!?…")


def _stated_span(text: str, start: int, end: int) -> tuple[int, int, bool] | None:
    """The item whole, else its first sentence, when short enough to read as a lesson."""
    if count_words(mask_markup(text[start:end])) <= STATED_WORDS:
        return start, end, True
    first = split_sentences(text[:end])
    for sentence in first:
        if sentence.start >= start:
            if count_words(mask_markup(sentence.text)) <= STATED_WORDS:
                return sentence.start, sentence.end, True
            return None
    return None


def _display(a: _Analysis, i: int) -> str:
    sentence = a.sentences[i]
    if a.word_counts[i] <= 60:
        return clean_display(sentence.text)
    start, end = trim_span(a.text, sentence.start, sentence.end, 45)
    return _as_text(a.text[start:end], cut=end < sentence.end)


def _punctuated(text: str) -> str:
    return text if text.rstrip("»”\"')] 」』）")[-1:] in tuple(".!?…。！？") else text + "."


def _lesson(text: str, start: int, end: int, whole: bool = True) -> Lesson:
    """A lesson showing ``text[start:end]``: a whole sentence, or a complete clause that
    ends at a semicolon (shown with a full stop, never with « … »)."""
    quote = text[start:end]
    shown = _as_text(quote, cut=False)
    if not whole:
        shown = shown.rstrip(" ;,") + "."
    return Lesson(_punctuated(shown), quote, start, end, backend=ExtractiveSummarizer.name)


# Where a complete clause ends inside a sentence: a semicolon, or a comma before a
# conjunction that opens another main clause (« …, et des formats ouverts garantissent… »).
# « Selon l'OMS, … », « D'après l'enquête, … », "According to the survey, …": who says so.
_ATTRIBUTION = re.compile(
    r"^\W*(?:selon|d['’]après|according to)\s[^,.;:]{1,80},\s*", re.IGNORECASE
)


def _attributed(a: _Analysis, i: int, lesson: Lesson) -> Lesson:
    """A lesson that starts after its sentence's attribution keeps it: « Selon l'OMS, X »
    is shown whole, with the whole sentence as its quote, not as X alone."""
    sentence = a.sentences[i]
    match = _ATTRIBUTION.match(sentence.text)
    if match is None or lesson.start <= sentence.start:
        return lesson
    lead = clean_display(match.group()).rstrip() + " "
    text = lead + lesson.text[:1].lower() + lesson.text[1:]
    if count_words(text) > LESSON_WORDS + 10:
        return lesson  # too long with it: the point alone
    quote = a.text[sentence.start : lesson.end]
    return Lesson(text, quote, sentence.start, lesson.end, lesson.backend)


_CLAUSE = re.compile(r"\s*;\s|,\s+(?=(?:et|mais|car|donc|and|but|so)\s)", re.IGNORECASE)
# Openers that refer back to something the lesson does not show: « Elle a dit… »,
# « Cette décision… », "They said…". Impersonal « Il faut », « Il est temps de » are fine.
_ANAPHORIC = re.compile(
    r"^\W*(?:(?:il|elle|ils|elles)(?!\s+(?:faut|faudra|faudrait|vaut|y\s|est\s+[^\W\d]+\s+d))"
    r"|cela|ça|ceci|celui|celle|ceux|celles|lui|leurs?|son|sa|ses"
    r"|ce(?:t|tte|s)?(?!\s+(?:qu|soir|matin|midi|week-end|weekend|jour|lundi|mardi|mercredi"
    r"|jeudi|vendredi|samedi|dimanche|mois|printemps|été|automne|hiver|année|\d))"
    r"|c['’]est|he|she|it(?!\s+is\s+[^\W\d]+\s+to)|they|this|these|those|that|his|her|its"
    r"|their)(?![^\W_])",
    re.IGNORECASE,
)


def _lesson_span(a: _Analysis, i: int) -> tuple[int, int, bool] | None:
    """The span a takeaway shows and whether it is the whole sentence, or None.

    A lesson is a whole point: the sentence when it fits in ``LESSON_WORDS`` (plus
    ``TAKEAWAY_SLACK``); else what follows its announcement (« la leçon est claire :
    X » gives X); else its first clause up to a semicolon. Nothing else: a sentence
    cut in the middle of a thought is no lesson. A sentence that opens on a pronoun
    with nothing to refer to (« Elle a ajouté… ») counts only by its announced point.
    """
    sentence = a.sentences[i]
    limit = LESSON_WORDS + TAKEAWAY_SLACK
    body = _takeaway_body(a.text, sentence)
    anaphoric = bool(_ANAPHORIC.match(mask_markup(sentence.text)))
    if a.word_counts[i] <= limit and not anaphoric:
        return sentence.start, sentence.end, True
    point = mask_markup(a.text[body : sentence.end]) if body is not None else ""
    if point and count_words(point) <= limit and not _ANAPHORIC.match(point):
        return body or 0, sentence.end, True
    if anaphoric:
        return None
    start = body if body is not None else sentence.start
    clause = _CLAUSE.search(a.text, start, sentence.end)
    if clause is not None:
        words_in = count_words(mask_markup(a.text[start : clause.start()]))
        if 6 <= words_in <= limit:
            return start, clause.start(), False
    return None


# -- lesson-likeness ---------------------------------------------------------------------

# The newsletter's lessons are takeaways for people who train and work in creative
# fields, and articles often state them outright: « Pour les écoles, la leçon est
# claire : … », « il faut enseigner… », « For teachers, the takeaway is to… ». Centrality
# alone prefers the facts that the rest of the article repeats, so these cues raise
# the sentences that speak to the reader. Cheap regexes, no model: deterministic.

_STRONG_CUE = re.compile(
    r"(?<!\w)(?:(?:le[çc]ons?|enseignements?|retenir|mieux vaut|il (?:faut|faudra|faudrait)"
    r"|cela (?:signifie|plaide|montre|implique|veut dire|suppose)"
    r"|l[’']enjeu(?= (?:est|reste)\b|\s*[,:])"
    r"|lessons?|takeaways?|the point is|this means|what this means)(?!\w)"
    r"|montr(?:e|ent|ait) (?:bien |aussi |surtout |donc )?qu(?:e(?!\w)|['’]))",
    re.IGNORECASE,
)
_WEAK_CUE = re.compile(
    r"(?<!\w)(?:doi(?:t|vent)|devr(?:ait|aient|a|ont)|apprend\w*|apprenn\w*|enseigner"
    r"|sa(?:voir|it|vent|chent) (?:[^\W\d]+ )?[^\W\d]+(?:er|ir|re)"
    r"|should|must|needs? to|ha(?:ve|s) to|learn(?:s|ing)?|teach(?:es|ing)?)(?!\w)",
    re.IGNORECASE,
)
# « Pour les écoles, … », « For anyone teaching user research, … »: a sentence that
# addresses the people the newsletter is for (the audience words are stems).
_OPENER = re.compile(r"^\W*(?:pour|chez|for)\s+(?P<who>[^,:;.!?\d]{2,90}?)\s*,", re.IGNORECASE)
_AUDIENCE = re.compile(
    r"(?<!\w)(?:écol|format|étudi|élève|enseign|design|graphist|illustr|artist|créati|studio"
    r"|équipe|indépendant|freelance|entrepris|agence|métier|profession|développeu|personnes"
    r"|jeunes|débutant|recruteu|employeu|apprenant|diplômé|tous|chacun|celles|ceux|nous|vous"
    r"|ux|school|student|teacher|educator|trainer|team|people|anyone|everyone|those"
    r"|newcomer|career|developer|compan|business|beginner|learner|graduate|creative|agenc)",
    re.IGNORECASE,
)
# « Les organisateurs retiennent trois enseignements », « Several tips came out of the
# day »: a sentence that announces a list is not itself a lesson.
_ANNOUNCES_LIST = re.compile(
    r"(?<!\w)(?:deux|trois|quatre|cinq|plusieurs|quelques|\d+|two|three|four|five|several"
    r"|a few|some)\s+(?:[^\W\d]+\s+)?(?:le[çc]ons|enseignements|constats|conseils|lessons"
    r"|takeaways|tips)(?!\w)",
    re.IGNORECASE,
)
_MONEY = re.compile(r"\d\s*(?:€|k€|M€|euros?|dollars?|\$|£|livres)(?!\w)|[€$£]\s?\d", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f ]\d+)*")

TAKEAWAY_CUE = 0.8
"""A ``lesson_cue`` from which a sentence counts as a takeaway (may use ``TAKEAWAY_SLACK``)."""


def lesson_cue(text: str, word_count: int | None = None) -> float:
    """How much a sentence reads as a takeaway, from 0 (a plain fact) to 1.

    An opener addressing the audience counts 0.5, an announced lesson or consequence
    (« leçon », « cela plaide », « il faut », « takeaway ») 0.6, advice or a skill
    (« doivent », « savoir + verb », « should ») 0.3; capped at 1. Sentences made of
    prices and figures (« L’entrée coûte 14 euros ») get nothing, whatever their words;
    direct speech gets half.
    """
    plain = mask_markup(text)
    if word_count is None:
        word_count = count_words(plain)
    numbers = len(_NUMBER.findall(plain))
    if _MONEY.search(plain) or numbers >= max(2, word_count // 8):
        return 0.0
    cue = 0.0
    opener = _OPENER.match(plain)
    if opener and _AUDIENCE.search(opener.group("who")):
        cue += 0.5
    if _STRONG_CUE.search(plain) and not _ANNOUNCES_LIST.search(plain):
        cue += 0.6
    if _WEAK_CUE.search(plain):
        cue += 0.3
    if _SPEECH.search(plain):
        cue *= 0.5  # « il faut… », says someone: a voice in the story, less the reader's lesson
    return min(1.0, cue)


# « …, la leçon est claire : », « the takeaway is to », « the lesson is that »: the end
# of an announcement, after which the point itself starts.
_ANNOUNCEMENT = re.compile(
    r"(?<!\w)(?:le[çc]ons?|enseignements?|message|conseil|morale|conclusion|constat|à retenir"
    r"|l[’']enjeu|lessons?|takeaways?|advice|moral)(?!\w)[^:.;!?]{0,40}?\s*:\s*"
    r"|(?<!\w)(?:lessons?|takeaways?|point|message|advice|moral)\s+(?:here\s+)?"
    r"(?:is|was|remains)\s+(?:that|to)\s+"
    r"|(?<!\w)(?:cela|ça|ceci|this|it)\s+(?:montre|prouve|rappelle|signifie|shows|proves|means)"
    r"\s+(?:bien\s+|aussi\s+|donc\s+)?(?:que\s+|qu['’]|that\s+)",
    re.IGNORECASE,
)


def _takeaway_body(text: str, sentence: Sentence) -> int | None:
    """Where the announced point of a takeaway starts in ``text``, if it is announced
    within its first 20 words and leaves at least 5 words of point."""
    match = _ANNOUNCEMENT.search(mask_markup(sentence.text))
    if match is None or count_words(sentence.text[: match.start()]) > 20:
        return None
    if count_words(sentence.text[match.end() :]) < 5:
        return None
    return sentence.start + match.end()


def _as_text(quote: str, cut: bool) -> str:
    text = _balance(clean_display(quote))
    if cut and not text.endswith((".", "!", "?", "…")):  # a cut that kept the end needs no « … »
        text = text.rstrip(" ,;:—–-") + "…"
    return text[:1].upper() + text[1:]


def _balance(text: str) -> str:
    """Close or drop a quotation mark that a cut left open (display only, not the quote)."""
    if text.count('"') % 2:
        first = text.index('"')
        if first == 0:
            text = text[1:].lstrip()
        elif not text[first - 1].isspace() and text[first + 1 : first + 2] in ("", " ", ",", "."):
            text = '"' + text  # the first mark closes a quotation opened before the span
        else:
            text = text + '"'
    opened, closed = text.count("«"), text.count("»")
    if opened > closed:
        text = text[1:].lstrip() if text.startswith("«") else text + " »"
    elif closed > opened:
        text = text.rstrip()[:-1].rstrip() if text.rstrip().endswith("»") else "« " + text
    return text


_CLAUSE_END = re.compile(r"[,;:)]$|^[—–]$")


def trim_span(
    text: str, start: int, end: int, limit: int, minimum: int | None = None
) -> tuple[int, int]:
    """At most ``limit`` words of ``text[start:end]``, cut at clauses (see ``_trim_words``).

    Also at most ``12 × limit`` characters, so text without spaces (Chinese,
    Japanese, a run of markup) stays short too.
    """
    s, e = _trim_words(text, start, end, limit, minimum)
    cap = 12 * limit
    if e - s > cap:
        space = text.rfind(" ", s, s + cap)
        e = space if space > s + cap // 2 else s + cap
    return s, e


def _trim_words(
    text: str, start: int, end: int, limit: int, minimum: int | None = None
) -> tuple[int, int]:
    """The longest part of ``text[start:end]`` of at most ``limit`` words cut at clauses.

    Prefer a prefix ending at a clause boundary (a comma, semicolon, colon, dash);
    else a run of whole clauses inside the sentence; else the first ``limit`` words.
    A prefix has at least ``minimum`` words (by default two fifths of ``limit``, at least 6).
    """
    tokens = []
    for match in re.finditer(r"\S+", text[start:end]):
        tokens.append((match.start(), match.end()))
        if len(tokens) > 4 * limit:  # a run-on « sentence » of a whole page: its start will do
            break
    else:
        if len(tokens) <= limit:
            return start, end
    # Boundaries: token indexes after which a clause ends.
    boundaries = [
        k for k, (s, e) in enumerate(tokens) if _CLAUSE_END.search(text[start + s : start + e])
    ]
    if minimum is None:
        minimum = max(6, (2 * limit) // 5)
    prefixes = [k for k in boundaries if minimum - 1 <= k < limit]
    if prefixes:
        k = prefixes[-1]
        return start, start + tokens[k][1] - (1 if text[start + tokens[k][1] - 1] in ",;:" else 0)
    starts = [0] + [k + 1 for k in boundaries]
    ends = boundaries + [len(tokens) - 1]
    best: tuple[int, int] | None = None
    for a in starts:
        for b in ends:
            if (
                b >= a
                and minimum <= b - a + 1 <= limit
                and (best is None or b - a > best[1] - best[0])
            ):
                best = (a, b)
    if best is not None:
        a, b = best
        s, e = start + tokens[a][0], start + tokens[b][1]
        while e > s and text[e - 1] in ",;:—– ":
            e -= 1
        return s, e
    return start, start + tokens[limit - 1][1]
