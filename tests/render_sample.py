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
        "Pixel Nord en « pause qualité » : le moteur avant les nouveautés",
        "https://exemple.org/articles/pixel-nord-pause-qualite",
        "Le studio lyonnais Pixel Nord a déclaré une « pause qualité » pour corriger son "
        "moteur de rendu ; l'extension et le mode en ligne attendront le printemps.",
        (
            "Quand le cœur du produit vacille, geler les projets annexes évite de "
            "disperser l'équipe.",
            "Un calendrier repoussé coûte souvent moins cher qu'une réputation abîmée.",
            "Dire publiquement ce qui est corrigé aide à garder la confiance des joueurs.",
        ),
        "https://exemple.org/images/pixel-nord.jpg",
        "Une équipe de développeurs devant des écrans de code",
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
            "Cette semaine, un studio qui ralentit pour mieux faire, des studios qui "
            "réinventent le storyboard et une directive qui fait de l'accessibilité un métier.\n\n"
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


_ENGLISH = [
    (
        "Digital Arts Weekly",
        "Animation studios sketch storyboards with image generators",
        "https://example.org/articles/storyboards",
        "Several European studios now rough out storyboards with generative tools, "
        "while artists keep the final drawing.",
        (
            "The tool speeds up sketching; the artist's eye still decides.",
            "Teaching new tools means teaching their limits too!",
        ),
        "https://example.org/images/storyboard.jpg",
        "A storyboard pinned to a studio wall",
    ),
    (
        "Design & Access",
        "Accessibility: what the European directive changes in 2025",
        "https://example.org/articles/accessibility-act",
        "Since June 2025 many digital services must be accessible; design schools are "
        "reworking their courses.",
        (
            "Accessibility becomes a skill employers expect from designers.",
            "Measurable criteria (contrast, text alternatives) guide the work.",
        ),
        "",
        "",
    ),
]


def english_issue() -> Issue:
    """An issue in English (``language = "en"``): English strings, dates and typography."""
    items = tuple(
        IssueItem(
            article_id=n + 1,
            position=n,
            source=source,
            title=title,
            url=url,
            summary=summary,
            lessons=tuple(Lesson(text) for text in lessons),
            published=dt.datetime(2026, 11, 24 + n, 9, 30, tzinfo=dt.UTC),
            image_url=image,
            image_alt=alt,
        )
        for n, (source, title, url, summary, lessons, image, alt) in enumerate(_ENGLISH)
    )
    return Issue(
        period="2026-W48",
        title="Week 48: tools, limits and access",
        intro="This week: studios adopting image generators, and a directive that makes "
        "accessibility a trade.\n\nEnjoy the read!",
        items=items,
        language="en",
    )


def english_settings(tmp: Path | None = None) -> Settings:
    settings = sample_settings(tmp)
    return dataclasses.replace(
        settings,
        newsletter=dataclasses.replace(
            settings.newsletter,
            title="Digital Arts Watch",
            language="en",
            from_name="Institute of Digital Arts",
            postal_address="Institute of Digital Arts, 12 Example Street, London",
            why="You receive this digest because you follow a course at the Institute.",
        ),
    )


def markdown_issue() -> Issue:
    """The sample issue as an editor might rework it: Markdown in the introduction, a
    summary and a lesson, a note of their own, a section heading and a closing word."""
    first, second, third = sample_items(3)
    first = dataclasses.replace(
        first,
        summary="Pixel Nord déclare une **« pause qualité »** : la *stabilité* du moteur passe "
        "avant l'extension ([le communiqué](https://exemple.org/communique)).\n\n"
        "Ce qui est mis en pause :\n\n- l'extension ;\n- le mode en ligne.",
        lessons=(
            Lesson("Gestion de projet : *geler* les annexes quand le cœur vacille."),
            Lesson("Voir aussi [notre dossier](https://exemple.org/dossier)."),
            first.lessons[2],
        ),
        edited=True,
    )
    note = IssueItem(
        article_id=None,
        position=2,
        source="",
        title="Journée d'étude : l'IA au studio",
        url="",
        summary="Le **12 décembre**, à l'Institut :\n\n1. ateliers le matin ;\n"
        "2. table ronde l'après-midi.\n\nInscriptions : [journée d'étude]"
        "(https://exemple.org/journee) ou [par e-mail](mailto:veille@exemple.org).",
        lessons=(),
        backend="editor",
        edited=True,
    )
    heading = dataclasses.replace(note, position=3, title="À lire aussi", summary="")
    closing = dataclasses.replace(
        note, position=6, title="Le mot de la fin", summary="Merci de votre *fidélité* !"
    )
    items = (
        first,
        note,
        heading,
        dataclasses.replace(second, position=4),
        dataclasses.replace(third, position=5),
        closing,
    )
    return sample_issue(
        3,
        intro="Cette semaine, **trois sujets** et une [journée d'étude](https://exemple.org/"
        "journee) :\n\n- un studio qui ralentit pour mieux faire ;"
        "\n- des studios qui réinventent le storyboard ;"
        "\n- l'accessibilité comme métier.\n\nBonne lecture !",
        items=items,
    )
