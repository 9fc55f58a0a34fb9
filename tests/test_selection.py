from __future__ import annotations

import datetime as dt

from digest.config import SourceSettings
from digest.models import Article
from digest.period import parse_period, period_bounds, period_of
from digest.selection import rank_articles

BASE = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def art(i: int, source: str, title: str = "", days: int = 0, text: str = "x") -> Article:
    return Article(
        source,
        f"https://e.org/{i}",
        title or f"Titre {i}",
        text,
        BASE - dt.timedelta(days=days),
        id=i,
    )


def test_weight_then_recency_then_caps() -> None:
    sources = [SourceSettings("A", "a", weight=2.0, max_items=1), SourceSettings("B", "b")]
    chosen = rank_articles(
        [art(1, "B", days=0), art(2, "A", days=3), art(3, "A", days=1), art(4, "B", days=2)],
        sources,
        max_articles=10,
        max_per_source=4,
    )
    assert [a.id for a in chosen] == [3, 1, 4]


def test_near_identical_titles_appear_once_and_filters_apply() -> None:
    sources = [
        SourceSettings("A", "a", exclude=("sponsorisé",)),
        SourceSettings("B", "b", include=("3D",)),
    ]
    chosen = rank_articles(
        [
            art(1, "A", "Le Musée ouvre!"),
            art(2, "A", "le musée ouvre", days=1),
            art(3, "A", "Article sponsorisé"),
            art(4, "B", "Impression 3D"),
            art(5, "B", "Autre sujet"),
        ],
        sources,
        max_articles=10,
        max_per_source=10,
    )
    assert [a.id for a in chosen] == [1, 4]


def test_periods_are_iso_weeks_in_local_time() -> None:
    assert parse_period("2026-W48") == (2026, 48)
    start, end = period_bounds("2026-W48", "Europe/Paris")
    assert start == dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(days=7)
    # Sunday 23:30 UTC is already Monday in Paris
    assert period_of(dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC)) == "2026-W49"
    assert period_of(dt.datetime(2026, 11, 29, 22, 30, tzinfo=dt.UTC)) == "2026-W48"


def test_the_same_story_from_two_sources_appears_once_from_the_heavier_one() -> None:
    story = (
        "Du 13 au 15 novembre la Filature numérique de Lille a accueilli la première édition "
        "de la Jam Sobriété avec 171 participants répartis en 36 équipes et une limite de huit "
        "mégaoctets par jeu pour le lauréat Racines qui pèse 5,2 Mo et tourne partout"
    )
    retold = "Compte rendu : " + story.replace("première", "toute première") + " cette année."
    other = " ".join(f"mot{i}" for i in range(60))
    sources = [SourceSettings("Heavy", "h", weight=2.0), SourceSettings("Light", "l")]
    chosen = rank_articles(
        [
            art(1, "Light", "Jam à Lille", text=retold),
            art(2, "Heavy", "La Jam Sobriété", days=1, text=story),
            art(3, "Light", "Autre chose", text=other),
        ],
        sources,
        max_articles=10,
        max_per_source=10,
    )
    assert [a.id for a in chosen] == [2, 3]
