"""French typography and the string catalogue (rule 10 of the email quality bar)."""

from __future__ import annotations

import datetime as dt

import pytest
from markupsafe import Markup, escape

from digest.i18n import format_date, strings_for
from digest.typography import NBSP, NNBSP, french_spacing, typography


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pourquoi ce coup de frein ?", f"Pourquoi ce coup de frein{NNBSP}?"),
        ("Pourquoi?", f"Pourquoi{NNBSP}?"),
        ("Vraiment ?!", f"Vraiment{NNBSP}?!"),
        ("Attention !", f"Attention{NNBSP}!"),
        ("d'abord ; ensuite", f"d'abord{NNBSP}; ensuite"),
        ("Résultat : tout", f"Résultat{NBSP}: tout"),
        ("Résultat: tout", f"Résultat{NBSP}: tout"),
        ("une « pause qualité » décidée", f"une «{NBSP}pause qualité{NBSP}» décidée"),
        ("«pause qualité»", f"«{NBSP}pause qualité{NBSP}»"),
        (f"déjà bon{NBSP}?", f"déjà bon{NNBSP}?"),
        # Left alone: times, ratios, URLs, e-mail addresses, smileys, brand names.
        ("rendez-vous à 14:30", "rendez-vous à 14:30"),
        ("un ratio 16:9", "un ratio 16:9"),
        ("https://exemple.org/a?b=c:d&e=f!", "https://exemple.org/a?b=c:d&e=f!"),
        ("voir www.exemple.org/?q=1", "voir www.exemple.org/?q=1"),
        ("écrire à veille@exemple.org ?", f"écrire à veille@exemple.org{NNBSP}?"),
        ("Yahoo!News", "Yahoo!News"),
        ("(?)", "(?)"),
        ("", ""),
    ],
)
def test_french_spacing(text: str, expected: str) -> None:
    assert french_spacing(text) == expected


def test_url_followed_by_punctuation_gets_the_space_but_keeps_its_own_characters() -> None:
    out = french_spacing("Lire https://exemple.org/a?x=1 ! Puis : rien")
    assert out == f"Lire https://exemple.org/a?x=1{NNBSP}! Puis{NBSP}: rien"


def test_markup_keeps_tags_and_entities_intact() -> None:
    value = escape("l'IA : « oui » & <b>non</b> !")
    out = typography(value, "fr")
    assert isinstance(out, Markup)
    assert "&#39;" in out and "&amp;" in out and "&lt;b&gt;" in out
    assert f"IA{NBSP}:" in out and f"«{NBSP}oui{NBSP}»" in out
    linked = typography(Markup('<a href="https://x.fr/?a=1&amp;b=2">lien ?</a> ; ok'), "fr")
    assert linked == Markup(f'<a href="https://x.fr/?a=1&amp;b=2">lien{NNBSP}?</a>{NNBSP}; ok')


def test_other_languages_and_other_types_pass_through() -> None:
    assert typography("Why? Because: yes!", "en") == "Why? Because: yes!"
    assert typography("Pourquoi ?", "fr-CA") == f"Pourquoi{NNBSP}?"
    assert typography(42, "fr") == 42
    assert typography(None, "fr") is None


def test_dates() -> None:
    assert format_date(dt.date(2026, 11, 25), "fr") == "25 novembre 2026"
    assert format_date(dt.date(2026, 12, 1), "fr") == "1er décembre 2026"
    assert format_date(dt.datetime(2026, 8, 3, 23, 0), "fr") == "3 août 2026"
    assert format_date(dt.date(2026, 11, 25), "en") == "November 25, 2026"


def test_catalogue_by_language_with_english_fallback() -> None:
    assert strings_for("fr")["lessons_title"] == "Ce que cela nous apprend"
    assert strings_for("fr_FR")["lessons_title"] == "Ce que cela nous apprend"
    assert strings_for("en")["lessons_title"] == "What this teaches us"
    assert strings_for("de") == strings_for("en")
    assert set(strings_for("fr")) == set(strings_for("en"))
