"""The offline summarizer, the registry, the cache and ``summarize_stream``."""

# ruff: noqa: E501  (article fixtures are prose, kept one paragraph a line)

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import replace
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import digest.summarize as summarize
from digest.config import SummarizeSettings
from digest.db import Store
from digest.errors import DigestError, SummarizerError
from digest.models import NO_TAKEAWAY, Article, Lesson, Summary
from digest.summarize import (
    ENTRY_POINT_GROUP,
    NothingToSummarize,
    Summarizer,
    available_backends,
    get_summarizer,
    summarize_article,
)
from digest.summarize.extractive import ExtractiveSummarizer, leans_back, lesson_cue
from digest.summarize.grounding import locate_quote, unsupported_facts
from digest.summarize.jsonl import summarize_stream
from digest.summarize.text import split_sentences

# Written for these tests: the shape of the institute's news (a hook, facts, figures,
# quotes, a heading, a closing paragraph).
FRENCH = """Les écoles de design face à l’IA générative
Publié le 3 mars 2026 - 3 min de lecture

Les outils d’image générative entrent dans les écoles. Le réseau Créa+, qui regroupe 14 écoles de design en France, a annoncé lundi qu’il formera tous ses étudiants à ces outils dès la rentrée 2026. La décision fait suite à une enquête menée auprès de 1.200 diplômés : 68 % d’entre eux disent utiliser une IA générative au moins une fois par semaine dans leur travail.
« Nos étudiants doivent savoir s’en servir, mais surtout savoir quand ne pas s’en servir », explique Mme Laure Dumas, directrice pédagogique du réseau. Les cours porteront sur la pratique des outils, sur le droit d’auteur et sur l’impact environnemental des modèles.
Un marché du travail qui change
Selon l’enquête, les studios recrutent désormais des profils capables de combiner direction artistique et maîtrise des outils. Les agences interrogées citent la rapidité de production comme premier bénéfice, mais s’inquiètent de l’uniformisation des styles visuels.
Le coût reste un frein : les licences professionnelles représentent près de 300 euros par étudiant et par an, une somme que les écoles comptent partager avec des partenaires industriels.
Les syndicats d’illustrateurs, de leur côté, demandent que les écoles enseignent aussi la rémunération des artistes dont les œuvres ont servi à entraîner les modèles.
"""

ENGLISH = (
    "The studio announced on Monday that it would lay off 200 employees. "
    "The company said the decision followed a drop in sales of its latest game. "
    "Analysts had expected cuts after a difficult year for the whole games industry. "
    "Unions criticised the lack of consultation and asked for a meeting with the board. "
    "The studio will keep its Montreal office open and continue to hire artists there."
)


def article(
    text: str, title: str = "Les écoles de design face à l’IA générative", language: str = ""
) -> Article:
    return Article(
        source="test",
        url="https://example.org/a",
        title=title,
        text=text,
        published=dt.datetime(2026, 3, 3, tzinfo=dt.UTC),
        language=language,
    )


def assert_spans(result: Summary, text: str) -> None:
    """Every lesson points at its own words in the article."""
    for lesson in result.lessons:
        assert 0 <= lesson.start < lesson.end <= len(text)
        assert text[lesson.start : lesson.end] == lesson.quote
        assert locate_quote(lesson.quote, text) is not None
        assert unsupported_facts(lesson.text, text) == []
    assert unsupported_facts(result.summary, text) == []


# -- the offline default ---------------------------------------------------------------


# Written for these tests: an article that states its lessons under the institute's
# heading, after a lead-in, before another heading.
STATED = """Un studio lyonnais passe à la semaine de quatre jours
Le studio d’animation Lumen, à Lyon, est passé à la semaine de quatre jours en janvier. Ses 40 salariés travaillent 32 heures, payées 35, et la production n’a pas baissé selon la direction.
Le studio avait d’abord testé le dispositif pendant six mois avec une seule équipe.
Ce que cela nous apprend
Pour une école comme la nôtre, l’expérience mérite qu’on s’y arrête :
- Organisation : mesurer avant de généraliser, avec une équipe pilote.
- Management : la confiance se construit avec des objectifs clairs, pas avec des horaires.
- Recrutement : le temps libre devient un argument face aux grands studios.
- Santé : moins d’heures, c’est aussi moins d’épuisement en fin de production.
Conclusion
La direction fera un nouveau bilan en juin.
"""
STATED_ITEMS = [
    "Organisation : mesurer avant de généraliser, avec une équipe pilote.",
    "Management : la confiance se construit avec des objectifs clairs, pas avec des horaires.",
    "Recrutement : le temps libre devient un argument face aux grands studios.",
    "Santé : moins d’heures, c’est aussi moins d’épuisement en fin de production.",
]


def test_lessons_stated_by_the_article_come_first_and_whole() -> None:
    for count in (2, 3, 4):
        result = summarize_article(
            article(STATED, title="Un studio lyonnais passe à la semaine de quatre jours"),
            SummarizeSettings(max_lessons=count),
        )
        assert [x.text for x in result.lessons] == STATED_ITEMS[:count]
        assert all(x.backend == "extractive" for x in result.lessons)
        assert result.no_lessons == ""
        assert all(result.checks.values()), result.checks
        assert "Ce que cela nous apprend" not in result.summary
        assert_spans(result, STATED)


def test_news_without_a_takeaway_gets_an_empty_lesson_for_the_editor() -> None:
    result = summarize_article(article(FRENCH), SummarizeSettings())
    assert result.backend == "extractive"
    assert result.grounded is True
    assert result.lessons == ()  # not facts relabelled as lessons
    assert result.no_lessons == NO_TAKEAWAY
    assert result.checks["summary_facts"] and result.checks["summary_length"]
    summary_sentences = split_sentences(result.summary)
    assert 1 <= len(summary_sentences) <= 2
    assert len(result.summary.split()) <= 60
    assert result.summary in " ".join(FRENCH.split()) or all(
        s.text in FRENCH for s in summary_sentences
    )
    assert_spans(result, FRENCH)
    # Headings, bylines and reading times are not prose.
    everything = result.summary + " ".join(x.text for x in result.lessons)
    assert "min de lecture" not in everything
    assert "Un marché du travail qui change" not in everything


def test_the_summary_skips_a_hook_for_the_sentence_that_carries_the_news() -> None:
    text = (
        "La vidéo est devenue virale. "
        "Elle montre un robot dessinateur conçu par des étudiants de l’école Créa+ de Lyon, "
        "qui réalise un portrait en moins de trois minutes. "
        "Le projet a été présenté mardi au salon du design numérique. "
        "Les visiteurs ont fait la queue pendant des heures pour poser devant la machine."
    )
    robot = article(text, title="Un robot dessinateur conçu par des étudiants")
    result = summarize_article(robot, SummarizeSettings(summary_sentences=2))
    # The news is in the sentence that opens on « Elle »: it is shown, after the
    # sentence it refers to, so that the summary introduces its subject.
    assert result.summary.startswith(
        "La vidéo est devenue virale. Elle montre un robot dessinateur"
    )
    # Asked for one sentence, the summary still never opens on a dangling pronoun.
    one = summarize_article(robot, SummarizeSettings(summary_sentences=1))
    assert len(split_sentences(one.summary)) == 1
    assert not one.summary.startswith("Elle")
    two = summarize_article(article(FRENCH), SummarizeSettings(summary_sentences=2))
    assert "14 écoles" in two.summary


def test_a_sentence_that_leans_on_the_one_before_never_opens_the_summary() -> None:
    text = (
        "Le festival d’Annecy a ouvert ses portes lundi sous la pluie. "
        "Les files d’attente s’allongeaient devant le cinéma Bonlieu dès huit heures. "
        "Mais la vraie nouvelle de cette édition est l’arrivée d’un prix pour les écoles "
        "d’animation, doté de vingt mille euros. "
        "Le jury sera présidé par une réalisatrice japonaise."
    )
    news = article(text, title="Un nouveau prix pour les écoles d’animation à Annecy")
    one = summarize_article(news, SummarizeSettings(summary_sentences=1))
    assert not one.summary.startswith("Mais")
    # With room for two, the sentence that carries the news is shown after the one it
    # continues, never after a sentence from elsewhere in the article.
    two = summarize_article(news, SummarizeSettings(summary_sentences=2))
    assert two.summary == (
        "Les files d’attente s’allongeaient devant le cinéma Bonlieu dès huit heures. "
        "Mais la vraie nouvelle de cette édition est l’arrivée d’un prix pour les écoles "
        "d’animation, doté de vingt mille euros."
    )


@pytest.mark.parametrize(
    ("sentence", "leans"),
    [
        ("Elle a ajouté que le studio recrutait.", True),
        ("Cette décision a surpris les élèves.", True),
        ("Mais la vraie nouvelle est ailleurs.", True),
        ("Par ailleurs, le jury sera présidé par une réalisatrice.", True),
        ("However, the school stayed open.", True),
        ("Alors que la loi doit être votée, le député s’y oppose.", False),
        ("Il faut former les équipes avant de changer d’outil.", False),
        ("Le studio Lumen est passé à la semaine de quatre jours.", False),
    ],
)
def test_which_sentences_lean_on_the_one_before(sentence: str, leans: bool) -> None:
    assert leans_back(sentence) is leans


def test_the_summary_reports_rather_than_quotes() -> None:
    text = (
        "Le conseil municipal de Grenoble a voté mardi le rachat de l’ancien cinéma Rex pour "
        "y ouvrir une école d’animation publique. "
        "« Ce cinéma, nous le rendons aux jeunes de Grenoble, qui pourront y apprendre "
        "l’animation gratuitement dès la rentrée », a lancé le maire de Grenoble. "
        "Mais les commerçants du quartier regrettent déjà les séances du dimanche. "
        "L’école d’animation accueillera quarante étudiants par promotion, sélectionnés sur "
        "dossier. "
        "Les travaux commenceront au printemps."
    )
    news = article(text, title="Grenoble rachète un cinéma pour ouvrir une école d’animation")
    result = summarize_article(news, SummarizeSettings(summary_sentences=2))
    assert result.summary.startswith("Le conseil municipal de Grenoble a voté mardi")
    assert "quarante étudiants" in result.summary
    assert "»" not in result.summary  # the mayor's words are a voice in the story


def test_settings_bound_the_number_of_lessons() -> None:
    four = summarize_article(article(STATED), SummarizeSettings(max_lessons=4))
    two = summarize_article(article(STATED), SummarizeSettings(max_lessons=2))
    assert len(four.lessons) == 4 and len(two.lessons) == 2
    assert len({x.quote for x in four.lessons}) == 4
    many = summarize_article(article(STATED), SummarizeSettings(max_lessons=9))
    assert len(many.lessons) == 4


def test_the_result_is_deterministic() -> None:
    first = ExtractiveSummarizer().summarize(article(FRENCH))
    second = ExtractiveSummarizer().summarize(article(FRENCH))
    assert first == second


def test_a_long_takeaway_is_a_complete_clause_or_nothing() -> None:
    clause = "Pour les écoles de jeu vidéo, il faut enseigner la production autant que la création"
    long_takeaway = (
        clause + " ; les studios de la région, qui recrutent depuis 2019 dans toutes les écoles "
        "publiques et privées, demandent des profils capables de tenir un planning et un budget."
    )
    cut_in_the_middle = (
        "Pour les écoles de design, il faut enseigner la gestion de projet dès la première année "
        "parce que les studios qui recrutent des diplômés leur demandent de tenir des plannings "
        "serrés avec des clients exigeants et des budgets qui ne cessent de baisser."
    )
    text = (
        "Le conseil régional a voté mardi un budget pour les formations au jeu vidéo. "
        + "Le secteur recrute dans toute la région. " * 2
        + long_takeaway
        + " "
        + cut_in_the_middle
        + " Les écoles applaudissent la mesure annoncée hier."
    )
    result = ExtractiveSummarizer(SummarizeSettings(summary_sentences=1)).summarize(
        article(text, title="Jeu vidéo")
    )
    assert [x.text for x in result.lessons] == [clause + "."]
    lesson = result.lessons[0]
    assert text[lesson.start : lesson.end] == lesson.quote == clause
    # The other takeaway has no clause that stands alone: it is left out, not cut with « … ».
    assert not any("…" in x.text for x in result.lessons)


def test_english_articles_are_handled_in_english() -> None:
    result = summarize_article(article(ENGLISH, title="Studio lays off 200"), SummarizeSettings())
    assert "200 employees" in result.summary
    assert result.lessons == () and result.no_lessons == NO_TAKEAWAY
    assert_spans(result, ENGLISH)
    result = summarize_article(
        article(TAKEAWAY_EN, title="Harbour opens a motion capture studio"), SummarizeSettings()
    )
    assert [x.quote for x in result.lessons] == [TAKEAWAY_EN_SENTENCE]


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "   \n\t ", "Les écoles de design face à l’IA générative", "Bonjour."]
)
def test_nothing_to_summarize_is_a_clear_error(text: str) -> None:
    with pytest.raises(NothingToSummarize) as info:
        summarize_article(article(text), SummarizeSettings())
    assert isinstance(info.value, SummarizerError) and isinstance(info.value, DigestError)
    assert "nothing to summarize" in str(info.value)


def test_one_sentence_becomes_the_summary_with_no_invented_lessons() -> None:
    text = "Le ministère a annoncé mardi un plan de 3 millions d'euros pour les écoles d'art numérique."
    result = summarize_article(article(text), SummarizeSettings())
    assert result.summary == text
    assert result.lessons == ()
    assert result.checks["lessons_count"] is False


def test_a_text_that_is_only_a_quote() -> None:
    text = (
        "« Nous voulons que chaque étudiant sache utiliser les outils de création numérique, "
        "et qu'il comprenne aussi leurs limites », a déclaré la ministre."
    )
    result = summarize_article(article(text), SummarizeSettings())
    assert result.summary == text
    assert_spans(result, text)


def test_a_huge_article_is_capped_and_still_answers() -> None:
    text = (STATED + "\n") * 1400  # ≈ 190,000 words
    assert len(text.split()) > 180_000
    result = summarize_article(article(text), SummarizeSettings())
    assert len(result.lessons) >= 2
    assert all(x.end <= 60_000 for x in result.lessons)
    assert_spans(result, text)


def test_another_language_gets_a_sensible_extract() -> None:
    text = (
        "Die Regierung hat am Dienstag eine Reform der Kunsthochschulen angekündigt. "
        "Der Minister sagte, dass die Reform im Jahr 2026 beginnen soll. "
        "Die Studierenden kritisieren den Plan scharf. "
        "Sie fordern mehr Gespräche mit den Hochschulen. "
        "Eine Demonstration ist für Samstag in Berlin geplant."
    )
    result = summarize_article(article(text, title="Reform"), SummarizeSettings())
    assert result.summary.startswith("Die Regierung")
    assert result.lessons == ()  # no takeaway cue in German: nothing to offer
    assert_spans(result, text)


def test_html_remnants_are_not_shown_and_quotes_still_point_at_the_text() -> None:
    text = (
        "<p>Le <b>festival</b> Ars Electronica ouvre ses portes à Linz cette semaine.</p>"
        "<p>Plus de 1&nbsp;000 artistes y présentent des œuvres interactives.</p><ul>"
        "<li>Des ateliers de création sonore sont proposés aux étudiants.</li>"
        "<li>Une exposition consacrée à l'IA générative attire les foules.</li></ul>"
    )
    result = summarize_article(article(text, title="Ars Electronica"), SummarizeSettings())
    shown = result.summary + " ".join(x.text for x in result.lessons)
    assert "<" not in shown and "&nbsp;" not in shown and "&amp;" not in shown
    assert result.grounded and result.checks["summary_facts"], result.checks
    assert_spans(result, text)
    lessons = "<p>Un festival.</p>\n<h3>À retenir</h3>\n<ul><li>Les ateliers comptent&nbsp;autant que les œuvres.</li>\n<li>Exposer tôt aide les étudiants.</li></ul>"
    result = summarize_article(article(lessons, title="Festival"), SummarizeSettings())
    assert [x.text for x in result.lessons] == [
        "Les ateliers comptent autant que les œuvres.",
        "Exposer tôt aide les étudiants.",
    ]
    assert_spans(result, lessons)


def test_all_caps_and_bullet_lists() -> None:
    caps = (
        "LE GOUVERNEMENT ANNONCE UN PLAN POUR LE NUMÉRIQUE. LES ÉCOLES D'ART RECEVRONT 3 MILLIONS "
        "D'EUROS. LES SYNDICATS SALUENT UNE BONNE NOUVELLE. LA MESURE ENTRERA EN VIGUEUR EN 2026."
    )
    result = summarize_article(article(caps, title="PLAN"), SummarizeSettings())
    assert result.grounded and result.summary.startswith("LE GOUVERNEMENT")
    assert_spans(result, caps)

    bullets = (
        "Les points clés de la réforme\n"
        "- Les écoles d'art recevront un financement renforcé\n"
        "- Les étudiants pourront suivre des stages en entreprise\n"
        "- Un label qualité sera créé pour les formations numériques\n"
        "- Les enseignants seront formés à l'IA générative\n"
    )
    result = summarize_article(article(bullets, title="Réforme"), SummarizeSettings())
    assert not result.summary.startswith("-") and "- " not in result.summary
    assert_spans(result, bullets)
    takeaways = bullets.replace("Les points clés de la réforme", "Takeaways")
    result = summarize_article(article(takeaways, title="Réforme"), SummarizeSettings())
    assert [x.text for x in result.lessons] == [
        "Les écoles d'art recevront un financement renforcé.",
        "Les étudiants pourront suivre des stages en entreprise.",
        "Un label qualité sera créé pour les formations numériques.",
    ]
    assert_spans(result, takeaways)


# -- registry ----------------------------------------------------------------------------


def test_backends_are_found_by_name() -> None:
    backend = get_summarizer(SummarizeSettings())
    assert isinstance(backend, Summarizer)
    assert backend.name == "extractive"
    assert {"extractive", "openai"} <= set(available_backends())


def test_the_builtin_backend_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("extractive") == "digest.summarize.extractive:ExtractiveSummarizer"
    # Every built-in that pyproject.toml declares points where the fallback table does.
    for name, target in summarize._BUILTIN.items():
        assert names.get(name, target) == target


def test_a_third_party_entry_point_is_used(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    plugin = EntryPoint(
        name="house-style",
        value="digest.summarize.extractive:ExtractiveSummarizer",
        group=ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(summarize, "entry_points", lambda group: [plugin])
    summarize._factories.cache_clear()  # entry points are scanned once a process
    request.addfinalizer(summarize._factories.cache_clear)
    assert "house-style" in available_backends()
    assert get_summarizer(SummarizeSettings(backend="house-style")).name == "extractive"


def test_an_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(SummarizerError) as info:
        get_summarizer(SummarizeSettings(backend="gpt-magic"))
    assert "gpt-magic" in str(info.value)
    assert "extractive" in str(info.value) and "openai" in str(info.value)


@pytest.mark.parametrize("failure", ["raises", "returns junk"])
def test_a_failing_plugin_falls_back_to_the_offline_default(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    class Broken:
        name = "broken"

        def __init__(self, settings: SummarizeSettings) -> None:
            pass

        def summarize(self, article: Article) -> Any:
            if failure == "raises":
                raise RuntimeError("model crashed")
            return {"summary": "not a Summary"}

    monkeypatch.setattr(summarize, "_factories", lambda: {"broken": lambda: Broken})
    result = summarize_article(article(STATED), SummarizeSettings(backend="broken"))
    assert result.backend == "extractive"
    assert len(result.lessons) >= 2
    # Nothing to summarize stays that, whichever backend says it.
    with pytest.raises(NothingToSummarize):
        summarize_article(article(""), SummarizeSettings(backend="broken"))


# -- cache -------------------------------------------------------------------------------


def test_results_are_cached_by_content_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    settings = SummarizeSettings()
    first = summarize_article(article(FRENCH), settings, store)

    def fail(self: ExtractiveSummarizer, article: Article) -> Summary:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(ExtractiveSummarizer, "summarize", fail)
    assert summarize_article(article(FRENCH), settings, store) == first
    # Another text or other settings: not the cached result.
    with pytest.raises(AssertionError):
        summarize_article(article(FRENCH + " Une phrase de plus."), settings, store)
    with pytest.raises(AssertionError):
        summarize_article(article(FRENCH), replace(settings, max_lessons=2), store)


# -- JSON lines --------------------------------------------------------------------------


def test_summarize_stream_writes_one_line_per_article() -> None:
    lines = [
        json.dumps({"title": "Design et IA", "text": FRENCH}),
        "",
        json.dumps({"title": "Studio", "text": ENGLISH, "language": "en"}),
        json.dumps({"title": "Vide", "text": ""}),
    ]
    out = io.StringIO()
    count = summarize_stream(io.StringIO("\n".join(lines) + "\n"), out, SummarizeSettings())
    assert count == 3
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(results) == 3
    for result, text in zip(results[:2], [FRENCH, ENGLISH], strict=True):
        assert set(result) >= {"summary", "lessons", "backend", "grounded", "evidence"}
        assert result["backend"] == "extractive" and result["grounded"] is True
        assert all(isinstance(x, str) for x in result["lessons"])
        for evidence in result["evidence"]:
            assert text[evidence["start"] : evidence["end"]] == evidence["quote"]
    assert results[2]["line"] == 4 and "nothing to summarize" in results[2]["error"]


@pytest.mark.parametrize(
    ("bad", "words"),
    [("{not json", "not JSON"), ('["a list"]', '"text"'), ('{"title": "no text"}', '"text"')],
)
def test_a_bad_line_is_an_error_naming_it(bad: str, words: str) -> None:
    good = json.dumps({"title": "Studio", "text": ENGLISH})
    out = io.StringIO()
    with pytest.raises(SummarizerError) as info:
        summarize_stream(io.StringIO(good + "\n" + bad + "\n"), out, SummarizeSettings())
    assert "line 2" in str(info.value) and words in str(info.value)
    assert len(out.getvalue().splitlines()) == 1  # what came before was written


def test_digest_summarize_works_on_a_pipe() -> None:
    import subprocess
    import sys

    lines = (
        json.dumps({"title": "Studio", "text": ENGLISH})
        + "\n"
        + json.dumps({"title": "Design", "text": FRENCH})
        + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "digest", "summarize", "-"],
        input=lines,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["backend"] for r in results] == ["extractive", "extractive"]
    assert "200 employees" in results[0]["summary"]
    assert all(r["grounded"] for r in results)
    assert [r["no_lessons"] for r in results] == ["no_takeaway", "no_takeaway"]


def test_a_run_on_page_without_punctuation_is_cut_not_repeated() -> None:
    text = "le studio crée des images pour les écoles de design, " * 30_000
    result = summarize_article(article(text, title="Run-on"), SummarizeSettings())
    assert len(result.summary.split()) <= 46
    assert all(len(x.text.split()) <= 26 for x in result.lessons)
    assert all(x.quote not in result.summary.rstrip("…") for x in result.lessons)
    assert_spans(result, text)


def test_chinese_text_without_spaces_is_split_and_kept_short() -> None:
    text = (
        "东京的设计学校宣布将在明年开设新的数字艺术课程。学生们可以学习动画和游戏设计。"
        "「这是一个重要的变化」，校长说。许多公司也对此表示欢迎！"
    )
    result = summarize_article(article(text, title="设计学校"), SummarizeSettings())
    assert (
        result.summary
        == "东京的设计学校宣布将在明年开设新的数字艺术课程。 学生们可以学习动画和游戏设计。"
    )
    assert result.lessons == ()
    assert_spans(result, text)
    run_on = summarize_article(article("无标点的长文本" * 20_000, title="x"), SummarizeSettings())
    assert len(run_on.summary) <= 12 * 45 + 1


# -- lessons that read as takeaways ----------------------------------------------------

# Written for these tests: five facts that share their vocabulary (LexRank favours
# them) and one takeaway for the newsletter's readers, near the end.
TAKEAWAY_FR = (
    "L’école Pixel Sud a inauguré mardi à Montpellier un studio de motion capture de 200 m². "
    "Le studio de motion capture compte 24 caméras et accueille les étudiants de l’école en animation 3D. "
    "Les étudiants en animation 3D de l’école y tourneront leurs projets de fin d’année dès janvier. "
    "Le studio a coûté 480 000 euros, financés par la région et par trois studios d’animation partenaires. "
    "Pour les formateurs, la leçon est claire : il faut apprendre aux élèves à diriger un acteur autant qu’à nettoyer des données. "
    "Les studios partenaires de l’école pourront louer le studio de motion capture le week-end."
)
TAKEAWAY_FR_SENTENCE = "Pour les formateurs, la leçon est claire : il faut apprendre aux élèves à diriger un acteur autant qu’à nettoyer des données."

TAKEAWAY_EN = (
    "The Harbour animation school opened a motion capture studio in Leeds on Tuesday. "
    "The motion capture studio has 24 cameras and will host the school's third-year animation students. "
    "Animation students at the school will shoot their final-year projects in the studio from January. "
    "The studio cost 480,000 pounds, paid for by the city and by three partner animation studios. "
    "For anyone teaching animation, the takeaway is to train students to direct a performer as well as to clean data. "
    "Partner studios of the school will be able to rent the motion capture studio at weekends."
)
TAKEAWAY_EN_SENTENCE = "For anyone teaching animation, the takeaway is to train students to direct a performer as well as to clean data."


def _in_sentence(lesson: Lesson, sentence: str, text: str) -> bool:
    start = text.index(sentence)
    return start <= lesson.start and lesson.end <= start + len(sentence)


@pytest.mark.parametrize(
    ("text", "title", "sentence"),
    [
        (TAKEAWAY_FR, "Pixel Sud ouvre un studio de motion capture", TAKEAWAY_FR_SENTENCE),
        (TAKEAWAY_EN, "Harbour opens a motion capture studio", TAKEAWAY_EN_SENTENCE),
    ],
)
def test_a_takeaway_sentence_is_among_the_lessons(text: str, title: str, sentence: str) -> None:
    for count in (2, 3):
        result = summarize_article(article(text, title=title), SummarizeSettings(max_lessons=count))
        # The one takeaway, and no fact of the story beside it.
        assert [x.quote for x in result.lessons] == [sentence]
        assert sentence not in result.summary
        starts = [x.start for x in result.lessons]
        assert starts == sorted(starts)
        assert_spans(result, text)


def test_figures_and_logistics_get_no_takeaway_boost() -> None:
    assert lesson_cue("L’entrée coûte 14 euros, et 8 euros pour les étudiants.") == 0.0
    assert lesson_cue("Les étudiants doivent payer 300 euros par an pour la licence.") == 0.0
    assert lesson_cue("Tickets cost $12, and students must pay $8 at the door.") == 0.0
    assert lesson_cue("Le festival se tient du 3 au 5 avril 2027, de 10 h à 18 h.") == 0.0
    assert lesson_cue("Le studio compte 24 caméras et une salle de montage.") == 0.0
    # A sentence that only announces a list is not a lesson either.
    assert lesson_cue("Les organisateurs retiennent trois enseignements de cette édition.") == 0.0
    # The same words, as advice, count.
    assert lesson_cue("Les étudiants doivent apprendre à chiffrer leurs devis.") > 0.0
    assert lesson_cue("Pour les écoles, cela plaide pour des cours de gestion.") >= 0.8
    assert lesson_cue("For schools, the lesson is that disclosure is a skill.") >= 0.8
    assert lesson_cue("L’enquête montre que les studios recrutent en CDD.") > 0.0
    assert lesson_cue("L’enquête montre qu’un studio sur deux recrute en CDD.") > 0.0
    # Advice in someone's mouth is a voice in the story: it counts less.
    assert lesson_cue("« Il faut former les étudiants aux outils », dit-il.") < lesson_cue(
        "Il faut former les étudiants aux outils."
    )
    # In an article, a figures-only sentence does not outrank the takeaway.
    text = TAKEAWAY_FR.replace(
        "Les studios partenaires",
        "L’entrée coûte 14 euros, et 8 euros pour les étudiants. Les studios partenaires",
    )
    result = summarize_article(
        article(text, title="Pixel Sud ouvre un studio de motion capture"),
        SummarizeSettings(max_lessons=2),
    )
    assert not any("14 euros" in x.quote for x in result.lessons)
    assert any(_in_sentence(x, TAKEAWAY_FR_SENTENCE, text) for x in result.lessons)


def test_a_long_announced_takeaway_keeps_its_point_verbatim() -> None:
    point = (
        "l’accessibilité ne se rajoute pas en fin de projet, elle se décide dès la maquette, "
        "au même titre que la grille, la couleur ou la typographie."
    )
    takeaway = "Pour les designers et les studios de la région, la leçon est claire : " + point
    text = TAKEAWAY_FR.replace(TAKEAWAY_FR_SENTENCE, takeaway)
    assert len(takeaway.split()) > 27
    result = summarize_article(
        article(text, title="Pixel Sud ouvre un studio de motion capture"),
        SummarizeSettings(max_lessons=3),
    )
    lesson = next(x for x in result.lessons if _in_sentence(x, takeaway, text))
    assert lesson.quote == point  # the announcement gives way to what it announces
    assert lesson.text == "L" + point[1:]  # shown as a sentence, not as a cut excerpt
    assert len(lesson.text.split()) <= 27
    assert_spans(result, text)


def test_a_short_takeaway_keeps_its_lead_in() -> None:
    result = summarize_article(
        article(TAKEAWAY_EN, title="Harbour opens a motion capture studio"),
        SummarizeSettings(max_lessons=2),
    )
    assert TAKEAWAY_EN_SENTENCE in [x.quote for x in result.lessons]


def test_a_takeaway_too_long_to_show_whole_keeps_the_start_of_its_point() -> None:
    point = (
        "les outils libres permettent d’enseigner sans coût de licence, et des formats ouverts comme "
        "glTF et USD garantissent que les travaux des étudiants resteront lisibles dans dix ans."
    )
    takeaway = "Pour les écoles et les studios, la leçon est double : " + point
    assert len(point.split()) > 27  # too long to show whole, even with the slack
    text = TAKEAWAY_FR.replace(TAKEAWAY_FR_SENTENCE, takeaway)
    result = summarize_article(
        article(text, title="Pixel Sud ouvre un studio de motion capture"),
        SummarizeSettings(max_lessons=3),
    )
    lesson = next(x for x in result.lessons if _in_sentence(x, takeaway, text))
    # Its first main clause, a whole thought, never cut with « … ».
    assert lesson.quote == "les outils libres permettent d’enseigner sans coût de licence"
    assert lesson.text == "Les outils libres permettent d’enseigner sans coût de licence."
    assert_spans(result, text)


def test_lessons_never_repeat_the_summary_nor_lean_on_a_pronoun() -> None:
    text = (
        "Pour les écoles d’art, il faut enseigner le droit d’auteur dès la première année. "
        "Le ministère a publié mardi un guide sur le droit d’auteur dans les écoles d’art. "
        "Elle doit aussi apprendre aux étudiants à négocier, selon les professionnels interrogés. "
        "Pour les illustrateurs, la leçon est claire : un contrat se lit avant de signer."
    )
    result = summarize_article(
        article(text, title="Le droit d’auteur dans les écoles d’art"), SummarizeSettings()
    )
    shown = [x.text for x in result.lessons]
    assert (
        "Pour les illustrateurs, la leçon est claire : un contrat se lit avant de signer." in shown
    )
    assert not any(x.startswith("Elle") for x in shown)  # « Elle » refers to nothing here
    for lesson in result.lessons:
        assert lesson.quote not in result.summary
    assert_spans(result, text)


def test_a_closing_quote_is_balanced_at_the_right_end() -> None:
    from digest.summarize.extractive import _balance

    assert _balance('les tests sont "parcellaires", a dit le préfet.') == (
        'les tests sont "parcellaires", a dit le préfet.'
    )
    assert _balance('sortie de son contexte", a dit le préfet.') == (
        '"sortie de son contexte", a dit le préfet.'
    )
    assert (
        _balance('Il a parlé de "sortie de son contexte')
        == 'Il a parlé de "sortie de son contexte"'
    )


def test_an_attribution_stays_with_its_lesson() -> None:
    point = "les écoles doivent apprendre aux étudiants à négocier un contrat et à fixer un prix juste avant de savoir dessiner un décor complet."
    sentence = (
        "Selon l’enquête de l’observatoire des métiers de l’animation, la leçon est claire : "
        + point
    )
    assert len(sentence.split()) > 27 >= len(point.split())  # too long whole: the point is shown
    text = TAKEAWAY_FR.replace(TAKEAWAY_FR_SENTENCE, sentence)
    result = summarize_article(
        article(text, title="Pixel Sud ouvre un studio de motion capture"), SummarizeSettings()
    )
    lesson = next(x for x in result.lessons if "négocier" in x.text)
    assert lesson.text == "Selon l’enquête de l’observatoire des métiers de l’animation, " + point
    assert lesson.quote == sentence
    assert_spans(result, text)
