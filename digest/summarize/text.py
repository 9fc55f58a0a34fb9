"""Plain-text tools for the summarizers: sentences with offsets, words, stems, stop words.

Everything here is deterministic and offline. Sentence splitting is written by hand
because the libraries that do it well either download models at run time (NLTK
punkt) or are too slow for our budget (pysbd takes milliseconds per paragraph);
news prose in French and English needs only a handful of rules: abbreviations
(``M.``, ``Mme``, ``Dr.``, ``e.g.``, ``U.S.``), numbers (``2.600``, ``5,3 %``),
quotes and « guillemets », French spacing before ``? !``, lines that are headings
or bullets. Sentences keep their character offsets into the original text, so
every lesson can point at its evidence.

Stop-word lists are ours (short, for ranking, not linguistics): the packaged
lists run to hundreds of words and would drop words that carry news (« gouvernement »,
« million »). Stemming is Snowball (``snowballstemmer``, which uses PyStemmer's C
code when it is installed); stems are memoised because the pure-Python stemmer
costs about 40 µs a word.
"""

from __future__ import annotations

import html
import re
import threading
from dataclasses import dataclass

import snowballstemmer

__all__ = [
    "MAX_CHARS",
    "Sentence",
    "clean_display",
    "count_words",
    "mask_markup",
    "split_sentences",
    "quoted_share",
    "stem_words",
    "lost_breaks",
    "stop_words",
    "text_lines",
    "unglue",
    "words",
]

MAX_CHARS = 60_000
"""Only this much of an article is read by the extractive ranking (≈ 10,000 words):
an article's point is made near its start, and the work must stay bounded whatever
a feed sends (a 200,000-word page included)."""


# Abbreviations after which a period does not end a sentence (lower-cased, no dot).
# Single letters (initials, « M. », « p. ») are handled by rule, not listed.
def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ABBREVIATIONS = _wordset(
    """
    mme mmes mlle mlles mm mgr dr drs pr prof ste sts cf env av apr hab chap fig éd coll
    trad réf tél num nos op vs al mr mrs ms jr sr gén lt sgt capt cmdt inc ltd corp dept
    approx janv fév avr déc bd boul
    """
)
# Abbreviations that are also ordinary words (« me », « no », « est ») only count
# with their capital: « Me Dupond », « No. 5 », « St. Louis ».
_CASED_ABBREVIATIONS = _wordset("Me No St Co Ex Art Vol Gen Col Rev Ed Jan Feb Aug Oct Nov Dec")

# Characters that may close a sentence after its final punctuation.
_CLOSERS = "»”\"’')]」』）"
# Characters that may open a sentence before its first letter.
_OPENERS = "«\"“‘'([¿¡—–-"
_SPACES = " \t\u00a0\u202f\u2009"

_CANDIDATE = re.compile(r"[.!?…]+")
_FULLWIDTH = re.compile(r"[。！？]+[」』”）]*")
# A sentence glued to the next by a careless feed: « précisé.À MOINS », « GMT).L'actrice ».
_GLUED = re.compile(
    # (the leading lookahead makes the scan skip every other position cheaply)
    r"(?=[.!?…])(?:(?<=[^\W\d_]{2})|(?<=\d{4})|(?<=[)»\"”’]))"
    r"[.!?…]+(?=[A-ZÀ-ÖØ-Ý](?:[^\W\d_]|['’][^\W\d_]|\s))"
)
_LINE = re.compile(r"[^\n\r\u2028\u2029]+")
# Words glued where a feed lost a line break: « les durs à cuireTout juste », « la
# chargeLe chef ». A lower-case word of three letters or more running into a capital
# that starts a word; or any word running into a capitalised function word (« ParisLe »).
# « YouTube », « iPhone » and « ChatGPT » start otherwise and are left alone. The regex
# finds the rare places where a small letter meets a capital; Python judges them.
_CAPITAL_AFTER_SMALL = re.compile(r"(?<=[a-zß-öø-ÿ\d])(?=[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ])")
_FUNCTION_WORDS = _wordset(
    "Le La Les Un Une Des Il Ils Elle Elles Ce Cet Cette Ces En Au Aux Dans Pour Selon Mais "
    "Depuis Après Alors Lors Sur The In It He She They This"
)
# Quotation marks that open or close: paired to keep a quotation in one sentence.
_QUOTE_MARKS = re.compile(r"[«»“”\"]")
_BULLET = re.compile(r"[\s]*(?:[-–—•*·▪►✓→]|\d{1,2}[.)])\s+")
_MARKUP = re.compile(r"<[!/?a-zA-Z][^<>]{0,500}>|&(?:[a-zA-Z]{2,8}|#\d{1,6}|#x[0-9a-fA-F]{1,6});")
_TAG = re.compile(r"<[!/?a-zA-Z][^<>]{0,500}>")
_WORD = re.compile(r"[^\W_]+")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]?-?(?:[^\W\d_]\.?)?$")


@dataclass(frozen=True)
class Sentence:
    """A span of the article text.

    ``complete`` is false for lines that are not prose sentences (headings, bylines,
    « 2 min de lecture »): they end without final punctuation, or with a colon.
    """

    start: int
    end: int
    text: str
    complete: bool
    paragraph: int


def mask_markup(text: str) -> str:
    """The text with HTML tags and entities blanked out, keeping every offset."""
    if "<" not in text and "&" not in text:
        return text
    return _MARKUP.sub(lambda m: " " * len(m.group()), text)


def clean_display(span: str) -> str:
    """A span as a reader should see it: no markup, entities decoded, spaces collapsed."""
    if "<" in span or "&" in span:
        span = html.unescape(_TAG.sub(" ", span))
    return " ".join(span.split())


def split_sentences(text: str, limit: int = MAX_CHARS) -> list[Sentence]:
    """Sentences of ``text[:limit]``, with offsets into ``text``."""
    masked = mask_markup(text[:limit])
    sentences: list[Sentence] = []
    for paragraph, (line_start, line_end) in enumerate(text_lines(masked)):
        start = line_start
        bullet = _BULLET.match(masked, start, line_end)
        if bullet and bullet.end() < line_end:
            start = bullet.end()
        for s, e in _split_line(masked, start, line_end):
            s, e = _strip(masked, s, e)
            if e > s and any(c.isalnum() for c in masked[s:e]):
                sentences.append(Sentence(s, e, text[s:e], _is_complete(masked[s:e]), paragraph))
    return sentences


def lost_breaks(text: str) -> list[int]:
    """Offsets where a line break was lost between two glued words (see
    ``_CAPITAL_AFTER_SMALL``)."""
    found = []
    for match in _CAPITAL_AFTER_SMALL.finditer(text):
        at = match.start()
        start = at
        while start > 0 and (text[start - 1].isalnum() and text[start - 1] != "_"):
            start -= 1
        left = text[start:at]
        end = at + 1
        while end < len(text) and text[end].isalpha():
            end += 1
        if (len(left) >= 3 and left.isalpha() and left.islower()) or (
            len(left) >= 2 and text[at:end] in _FUNCTION_WORDS
        ):
            found.append(at)
    return found


def unglue(text: str) -> str:
    """``text`` with its lost line breaks put back (for readers and models, not offsets)."""
    breaks = lost_breaks(text)
    if not breaks:
        return text
    parts, previous = [], 0
    for cut in breaks:
        parts.append(text[previous:cut])
        previous = cut
    parts.append(text[previous:])
    return "\n".join(parts)


def text_lines(text: str) -> list[tuple[int, int]]:
    """Line spans of ``text``, also cut where a line break was lost (offsets unchanged).

    Give it masked text (``mask_markup``): a tag is not a line."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        previous = line.start()
        for cut in lost_breaks(line.group()):
            spans.append((previous, line.start() + cut))
            previous = line.start() + cut
        spans.append((previous, line.end()))
    return spans


def _quotations(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the quotations that open and close within ``text[start:end]``.

    « » and “ ” nest; straight quotes pair in order. A quotation over 600 characters
    is not one (an unbalanced mark would otherwise swallow a whole paragraph).
    """
    spans: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []
    straight: int | None = None
    for match in _QUOTE_MARKS.finditer(text, start, end):
        mark, at = match.group(), match.start()
        if mark == '"':
            # A straight quote opens after a space and closes before one; when that does
            # not tell, it alternates. An opener with one already open drops the older
            # (an unbalanced mark must not shift every pair after it).
            before = text[at - 1] if at > start else " "
            after = text[at + 1] if at + 1 < end else " "
            opens = before.isspace() or before in "([«“'’-–—"
            closes = after.isspace() or after in ".,;:!?)…»"
            if opens == closes:
                opens = straight is None
            if opens:
                straight = at
            elif straight is not None:
                spans.append((straight, at))
                straight = None
        elif mark in "«“":
            stack.append((mark, at))
        elif stack and stack[-1][0] == ("«" if mark == "»" else "“"):
            spans.append((stack.pop()[1], at))
    return [(s, e) for s, e in spans if e - s <= 600]


def _split_line(text: str, start: int, end: int) -> list[tuple[int, int]]:
    cuts: list[int] = []
    quotations = _quotations(text, start, end)

    def quoted(i: int) -> bool:  # a cut inside a quotation that closes later on the line
        return any(s < i <= e for s, e in quotations)

    for match in _CANDIDATE.finditer(text, start, end):
        stop = match.end()
        if text[stop : stop + 1] == '"' and text[stop + 1 : stop + 2].isupper():
            # « …existants."Alexandre », « fini."Le lendemain »: two sentences glued at a
            # straight quote, which closes the first (it ends a quotation) or opens the next.
            cuts.append(stop + 1 if quoted(stop) else stop)
            continue
        # Closing quotes or brackets belong to the sentence they close; a French
        # guillemet may sit after a (non-breaking) space.
        while stop < end:
            if text[stop] in _CLOSERS:
                stop += 1
            elif text[stop] in _SPACES and stop + 1 < end and text[stop + 1] == "»":
                stop += 2
            else:
                break
        if stop >= end or text[stop] not in _SPACES:
            continue
        if quoted(stop):
            continue  # « Je suis venu. Je suis reparti », a-t-il dit: one sentence
        if _starts_sentence(text, stop, end) and not _is_abbreviation(text, match, start):
            cuts.append(stop)
    for match in _FULLWIDTH.finditer(text, start, end):  # Chinese and Japanese need no space
        cuts.append(match.end())
    for match in _GLUED.finditer(text, start, end):  # « …visiter Venise.Selon le quotidien »
        if not _is_abbreviation(text, match, start):
            cuts.append(match.end())
    cuts.sort()
    spans, previous = [], start
    for cut in cuts:
        spans.append((previous, cut))
        previous = cut
    spans.append((previous, end))
    return spans


def _starts_sentence(text: str, i: int, end: int) -> bool:
    while i < end and (text[i] in _SPACES or text[i] in _OPENERS):
        i += 1
    return i < end and (text[i].isupper() or text[i].isdigit())


def _is_abbreviation(text: str, match: re.Match[str], line_start: int) -> bool:
    if match.group() != ".":
        return False  # « ! », « ? », « … » and « ... » always end a sentence
    i = match.start()
    j = i
    while j > line_start and not text[j - 1].isspace():
        j -= 1
    word = text[j:i].lstrip(_OPENERS)
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True  # an initial (« J. K. Rowling ») or « M. »
    if word.lower() in _ABBREVIATIONS or word in _CASED_ABBREVIATIONS:
        return True
    return bool(_DOTTED.match(word))  # « U.S », « e.g », « J.-C »


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _is_complete(span: str) -> bool:
    tail = span.rstrip(_CLOSERS + _SPACES)
    return bool(tail) and tail[-1] in ".!?…。！？"


# -- words ---------------------------------------------------------------------------


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def count_words(text: str) -> int:
    """Words as a reader counts them: by spaces, or about two characters a word in
    Chinese and Japanese, which put no space between words."""
    return max(len(text.split()), len(_CJK.findall(text)) // 2)


def quoted_share(text: str) -> float:
    """The share of ``text``'s words inside quotation marks that open and close in it:
    0 for a reported fact, near 1 for a sentence that is someone's words."""
    total = count_words(text)
    if not total:
        return 0.0
    inside = sum(count_words(text[s:e]) for s, e in _quotations(text, 0, len(text)))
    return min(1.0, inside / total)


def words(text: str) -> list[str]:
    """Lower-cased words and numbers; apostrophes and hyphens separate words."""
    return _WORD.findall(text.lower())


_SNOWBALL = {
    "fr": "french",
    "en": "english",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "ca": "catalan",
    "ro": "romanian",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
}

_STEM_CACHE: dict[str, dict[str, str]] = {}
_STEM_CACHE_MAX = 200_000


def stem_words(tokens: list[str], language: str) -> list[str]:
    """Snowball stems of ``tokens`` for ``language`` (an ISO 639-1 code); unknown: unchanged."""
    name = _SNOWBALL.get(language[:2].lower())
    if name is None:
        return tokens
    cache = _STEM_CACHE.setdefault(name, {})
    # Looked up once into a local mapping: another thread may clear the shared cache.
    found = {t: cache.get(t, "") for t in set(tokens)}
    missing = [t for t, stem in found.items() if not stem]
    if missing:
        if len(cache) > _STEM_CACHE_MAX:
            cache.clear()
        new = dict(zip(missing, _stemmer(name).stemWords(missing), strict=True))
        cache.update(new)
        found.update(new)
    return [found[t] for t in tokens]


_LOCAL = threading.local()


def _stemmer(name: str) -> snowballstemmer.stemmer:
    """One stemmer per thread: a Snowball stemmer keeps its state while it works, so
    two threads sharing one (``summarize_many``) would corrupt each other's words."""
    stemmers: dict[str, snowballstemmer.stemmer] = _LOCAL.__dict__.setdefault("stemmers", {})
    found = stemmers.get(name)
    if found is None:
        found = stemmers[name] = snowballstemmer.stemmer(name)
    return found


_FRENCH_STOP = _wordset(
    """
    a à ai aie aient aies ait alors as au aucun aucune aupres auprès aura aurai auraient
    aurais aurait auras aurez auriez aurions aurons auront aussi autre autres aux avaient
    avais avait avant avec avez aviez avions avoir avons ayant ayez ayons bien c ça car
    ce ceci cela celle celles celui cependant certain certaines certains ces cet cette
    ceux chaque chez ci comme comment d dans de depuis des deux dès doit donc dont du
    elle elles en encore entre es est et étaient étais était étant été êtes étiez étions
    être eu eue eues eûmes eurent eus eut eux fait faire fois font furent fut ici il ils
    j je jusqu jusque l la là laquelle le lequel les lesquels leur leurs lors lorsque lui
    m ma mais me même mêmes mes moi mon n ne ni non nos notre nous on ont ou où par parce
    pas peu peut peuvent plus pour pourquoi qu quand que quel quelle quelles quels qui
    quoi s sa sans se selon sera serai seraient serais serait seras serez seriez serions
    serons seront ses si sien soi soient sois soit sommes son sont sous suis sur t ta
    tandis te tel telle tels tes toi ton tous tout toute toutes très tu un une unes uns
    vers via vos votre vous y déjà afin ainsi après assez autant beaucoup celle-ci
    désormais dit dite environ hui aujourd lorsqu puis quelque quelques tant toujours trop
    """
)

_ENGLISH_STOP = _wordset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would
    you your yours yourself yourselves also said says s t ll re ve d m don didn doesn isn
    wasn weren won wouldn couldn shouldn however may might must one new like get got
    """
)


def stop_words(language: str) -> frozenset[str]:
    """Stop words for ranking; an empty set for languages we have no list for."""
    code = language[:2].lower()
    if code == "fr":
        return _FRENCH_STOP
    if code == "en":
        return _ENGLISH_STOP
    return frozenset()
