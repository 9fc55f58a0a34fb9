"""Sentence splitting, language detection and the grounding checks."""

# ruff: noqa: E501  (article fixtures are prose, kept one paragraph a line)

from __future__ import annotations

import pytest

from digest.language import detect_language
from digest.summarize.grounding import Evidence, locate_quote, unsupported_facts
from digest.summarize.text import (
    clean_display,
    split_sentences,
    stem_words,
    unglue,
    words,
)


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "M. Dupont est arrivé. Il a salué Mme Durand et le Dr. Martin.",
            ["M. Dupont est arrivé.", "Il a salué Mme Durand et le Dr. Martin."],
        ),
        (
            "Le navire peut contenir plus de 2.600 passagers. La hausse atteint 5,3 %. Fin.",
            [
                "Le navire peut contenir plus de 2.600 passagers.",
                "La hausse atteint 5,3 %.",
                "Fin.",
            ],
        ),
        (
            "« C'est incroyable ! » a-t-il dit. « Partons. » Puis il est sorti.",
            ["« C'est incroyable ! » a-t-il dit.", "« Partons. »", "Puis il est sorti."],
        ),
        (
            "Pourquoi ce coup de frein ? Parce que la concurrence s’intensifie.",
            ["Pourquoi ce coup de frein ?", "Parce que la concurrence s’intensifie."],
        ),
        (
            "The U.S. economy grew, e.g. in exports. Dr. Smith agreed. J. K. Rowling did not.",
            [
                "The U.S. economy grew, e.g. in exports.",
                "Dr. Smith agreed.",
                "J. K. Rowling did not.",
            ],
        ),
        (
            "He said \u201cstop.\u201d Then he left... Nobody followed.",
            ["He said \u201cstop.\u201d", "Then he left...", "Nobody followed."],
        ),
        (
            "Les passagers visitaient Venise.Selon le quotidien, le câble a cédé.",
            ["Les passagers visitaient Venise.", "Selon le quotidien, le câble a cédé."],
        ),
        (
            "Il l'a précisé.À MOINS DE PAYER...Les passagers (15H30 GMT).L'actrice a parlé.",
            [
                "Il l'a précisé.",
                "À MOINS DE PAYER...",
                "Les passagers (15H30 GMT).",
                "L'actrice a parlé.",
            ],
        ),
        (
            "Un chiffre clé en 2019. 300 personnes étaient présentes.",
            ["Un chiffre clé en 2019.", "300 personnes étaient présentes."],
        ),
        (  # a quotation is one sentence with its attribution
            "« Je suis venu. Je suis reparti », a-t-il dit. Puis il est sorti.",
            ["« Je suis venu. Je suis reparti », a-t-il dit.", "Puis il est sorti."],
        ),
        (  # paragraphs glued at a straight quote, which closes or opens
            'Il a dit "c\'est fini."Le lendemain, il est parti.Des renforts existants."Nous restons", dit-il.',
            [
                'Il a dit "c\'est fini."',
                "Le lendemain, il est parti.",
                "Des renforts existants.",
                '"Nous restons", dit-il.',
            ],
        ),
        (  # a line break lost between a heading and a paragraph
            "Les durs à cuireTout juste arrivés, ils repartent. Philippe revient à la chargeLe chef parle.",
            [
                "Les durs à cuire",
                "Tout juste arrivés, ils repartent.",
                "Philippe revient à la charge",
                "Le chef parle.",
            ],
        ),
        (  # names written in camel case are not lost breaks
            "Le clip a été vu sur YouTube et sur iPhone. ChatGPT aussi.",
            ["Le clip a été vu sur YouTube et sur iPhone.", "ChatGPT aussi."],
        ),
    ],
)
def test_sentences_split_where_a_reader_would(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_lines_bullets_and_headings_are_kept_apart_with_exact_offsets() -> None:
    text = (
        "Un budget sous tension\n"
        "- Le studio aurait dépensé 5 millions d’euros.\n"
        "• Les prévisions annoncent 12 millions de pertes.\n"
        "Pour nous, ce retard est un exemple à étudier :\n"
    )
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "Un budget sous tension",
        "Le studio aurait dépensé 5 millions d’euros.",
        "Les prévisions annoncent 12 millions de pertes.",
        "Pour nous, ce retard est un exemple à étudier :",
    ]
    assert [s.complete for s in sentences] == [False, True, True, False]
    for s in sentences:
        assert text[s.start : s.end] == s.text


def test_markup_remnants_split_but_keep_offsets() -> None:
    text = "<p>Le <b>paquebot</b> a heurté le quai.</p><p>Quatre blessés &amp; un mort.</p>"
    sentences = split_sentences(text)
    assert [clean_display(s.text) for s in sentences] == [
        "Le paquebot a heurté le quai.",
        "Quatre blessés & un mort.",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)


def test_language_is_detected_for_french_english_and_others() -> None:
    assert (
        detect_language(
            "Le gouvernement a annoncé mardi une réforme des retraites pour les salariés."
        )
        == "fr"
    )
    assert (
        detect_language(
            "The government announced on Tuesday that it would reform the pension system."
        )
        == "en"
    )
    other = "Die Regierung hat am Dienstag eine Reform der Renten angekündigt, sagte der Minister heute."
    assert detect_language(other) == "de"  # ranked without French or English stop words
    assert detect_language("Bonjour", "fr") == "fr"  # too short to judge: the hint


def test_words_and_stems() -> None:
    assert words("L’équipage a perdu 2.600 passagers") == [
        "l",
        "équipage",
        "a",
        "perdu",
        "2",
        "600",
        "passagers",
    ]
    assert stem_words(["formations", "formation", "créatifs"], "fr") == [
        "format",
        "format",
        "créatif",
    ]
    assert stem_words(["word"], "xx") == ["word"]


# -- grounding -------------------------------------------------------------------------

ARTICLE = (
    "Lina Moreau, directrice de Pixel Nord, a déclaré une « pause qualité ». "
    "Pixel Nord aurait dépensé 5 milliards de centimes au premier semestre 2025. "
    "Le navire peut contenir plus de 2.600 passagers ; la hausse atteint 5,3 %. "
    "Quatre personnes ont été blessées à Venise."
)


@pytest.mark.parametrize(
    "quote",
    [
        "Pixel Nord aurait dépensé 5 milliards de centimes",
        "pixel nord   AURAIT dépensé 5 milliards\nde centimes",
        'Lina Moreau, directrice de Pixel Nord, a déclaré une "pause qualité"',
        "« Lina Moreau, directrice de Pixel Nord, a déclaré une « pause qualité ». »",
        "Lina Moreau, directrice de Pixel Nord […] une « pause qualité »",
    ],
)
def test_quotes_are_found_despite_case_spacing_and_quote_marks(quote: str) -> None:
    span = locate_quote(quote, ARTICLE)
    assert span is not None
    start, end = span
    found = ARTICLE[start:end]
    assert found.lower().startswith(("lina", "pixel"))


def test_a_quote_that_is_not_in_the_article_is_not_found() -> None:
    assert locate_quote("Pixel Nord aurait gagné 5 milliards de centimes", ARTICLE) is None
    # Accents are kept: « a » and « à » are different words.
    assert locate_quote("blessées a Venise", ARTICLE) is None
    assert locate_quote("", ARTICLE) is None


def test_numbers_and_names_must_come_from_the_article() -> None:
    assert unsupported_facts("Pixel Nord a dépensé 5 milliards en 2025.", ARTICLE) == []
    assert (
        unsupported_facts("Le navire accueille 2 600 passagers, soit 5.3 % de plus.", ARTICLE) == []
    )
    assert unsupported_facts("4 blessés à Venise.", ARTICLE) == []  # « Quatre » in the article
    assert unsupported_facts("Pixel Nord a dépensé 7 milliards en 2024.", ARTICLE) == ["7", "2024"]
    assert unsupported_facts("Selon Google, Lina Moreau a tort.", ARTICLE) == ["Google"]
    # A capital that only starts a sentence is not a name.
    assert (
        unsupported_facts("Comprendre la crise aide à former. Les équipes suivent.", ARTICLE) == []
    )
    # An acronym or a word with inner capitals is a name even at the start.
    assert unsupported_facts("ChatGPT ralentit.", ARTICLE) == ["ChatGPT"]


def test_times_roads_and_glued_words_are_not_names() -> None:
    article = "Un bouchon de 9 km sur l'A43 entre 18H00 et 9H00, selon 6MEDIAS."
    assert unsupported_facts("Vers 18H00, 9 km de bouchons sur l'A43.", article) == []
    assert unsupported_facts("Un bouchon sur l'A7.", article) == ["7", "l'A7"]


def test_evidence_indexes_once() -> None:
    evidence = Evidence(ARTICLE)
    assert evidence.unsupported("Venise et Pixel Nord, 2025.") == []
    assert evidence.locate("quatre personnes ont été blessées") is not None


def test_lost_line_breaks_are_put_back_for_readers() -> None:
    assert unglue("Les durs à cuireTout juste arrivés") == "Les durs à cuire\nTout juste arrivés"
    assert unglue("Vu sur YouTube.") == "Vu sur YouTube."
