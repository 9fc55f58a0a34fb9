"""A fixed sample issue for the render tests, the golden files and the benchmark.

Texts written for the project, in the voice of the reference user (an institute
for digital and creative arts); nothing here depends on the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from digest.config import NewsletterSettings, RenderSettings, Settings
from digest.models import Issue, IssueItem, Lesson

_ARTICLES = [
    (
        "Le Journal du numérique",
        "OpenAI en « code rouge » : la qualité avant la monétisation",
        "https://exemple.org/articles/openai-code-rouge",
        "Sam Altman a déclenché une opération « code rouge » pour améliorer d'urgence la "
        "qualité de ChatGPT ; la publicité et les agents spécialisés sont mis en pause.",
        (
            "Gestion de crise : hiérarchiser les priorités et recentrer les équipes sur "
            "la qualité du produit.",
            "Modèles économiques : abonnement, publicité, B2B… chacun a ses limites.",
            "Plateformes gratuites : la dégradation sous la pression de la monétisation "
            "reste une question ouverte.",
        ),
        "https://exemple.org/images/code-rouge.jpg",
        "Une salle de rédaction baignée de lumière rouge",
    ),
    (
        "Création & IA",
        "Les studios d'animation adoptent la génération d'images pour le storyboard",
        "https://exemple.org/articles/animation-storyboard",
        "Plusieurs studios européens utilisent désormais des outils génératifs pour "
        "esquisser leurs storyboards, tout en gardant la main sur le dessin final.",
        (
            "L'outil accélère l'esquisse ; le regard de l'artiste reste décisif.",
            "Former aux nouveaux outils, c'est aussi former à leurs limites !",
        ),
        "",
        "",
    ),
    (
        "Le Journal du numérique",
        "Accessibilité : ce que change la directive européenne en 2025",
        "https://exemple.org/articles/accessibilite-directive",
        "Depuis juin 2025, de nombreux services numériques doivent être accessibles ; "
        "les écoles de design revoient leurs programmes en conséquence.",
        (
            "L'accessibilité devient une compétence attendue des designers.",
            "Des critères mesurables (contraste, alternatives textuelles) guident le travail.",
        ),
        "",
        "",
    ),
]


def sample_items(count: int = 3) -> tuple[IssueItem, ...]:
    """``count`` items cycling through the sample articles (URLs kept distinct)."""
    items = []
    for n in range(count):
        source, title, url, summary, lessons, image, alt = _ARTICLES[n % len(_ARTICLES)]
        if n >= len(_ARTICLES):
            title = f"{title} ({n + 1})"
            url = f"{url}-{n + 1}"
        items.append(
            IssueItem(
                article_id=n + 1,
                position=n,
                source=source,
                title=title,
                url=url,
                summary=summary,
                lessons=tuple(Lesson(text) for text in lessons),
                published=dt.datetime(2026, 11, 23 + n % 5, 9, 30, tzinfo=dt.UTC),
                image_url=image,
                image_alt=alt,
            )
        )
    return tuple(items)


def sample_issue(count: int = 3, **changes: object) -> Issue:
    issue = Issue(
        period="2026-W48",
        title="Semaine 48 : l'IA entre urgence et qualité",
        intro=(
            "Cette semaine, une crise chez OpenAI, des studios qui réinventent le "
            "storyboard et une directive qui fait de l'accessibilité un métier.\n\n"
            "Bonne lecture !"
        ),
        items=sample_items(count),
        language="fr",
    )
    return dataclasses.replace(issue, **changes)  # type: ignore[arg-type]


def sample_settings(tmp: Path | None = None, **render: object) -> Settings:
    base = tmp or Path("/nonexistent-digest-config-dir")
    return Settings(
        path=base / "digest.toml",
        newsletter=NewsletterSettings(
            title="La veille des arts numériques",
            from_name="Institut des Arts Numériques",
            postal_address="Institut des Arts Numériques, 12 rue de l'Exemple, 75011 Paris",
            why="Vous recevez cette veille parce que vous suivez une formation de l'Institut.",
        ),
        render=dataclasses.replace(
            RenderSettings(archive_url="https://veille.exemple.org/archives"),
            **render,  # type: ignore[arg-type]
        ),
    )
