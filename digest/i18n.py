"""The few words the email itself says, per language.

The catalogue is a plain dict so that adding a language is adding one entry;
templates reach it as ``t`` (``{{ t.lessons_title }}``). French is the reference
language; a language we do not know falls back to English, which a reader of
any language is likelier to read than French.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["CATALOGUE", "DEFAULT_LANGUAGE", "base_language", "format_date", "strings_for"]

DEFAULT_LANGUAGE = "fr"

CATALOGUE: dict[str, dict[str, str]] = {
    "fr": {
        "greeting": "Bonjour",
        "lessons_title": "Ce que cela nous apprend",
        "read_on": "Lire l’article sur {source}",
        "read_article": "Lire l’article",
        "week_of": "Semaine du {date}",
        "why_default": "Vous recevez cet e-mail parce que vous êtes abonné·e à {title}.",
        "unsubscribe": "Se désabonner",
        "unsubscribe_text": "Pour ne plus recevoir {title}",
        "archive": "Lire ce numéro en ligne",
        "archive_all": "Tous les numéros",
        "in_this_issue": "Au sommaire",
        "image_of": "Illustration de l’article",
        "logo_alt": "Logo de {title}",
    },
    "en": {
        "greeting": "Hello",
        "lessons_title": "What this teaches us",
        "read_on": "Read the article on {source}",
        "read_article": "Read the article",
        "week_of": "Week of {date}",
        "why_default": "You receive this email because you subscribed to {title}.",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_text": "To stop receiving {title}",
        "archive": "Read this issue online",
        "archive_all": "All issues",
        "in_this_issue": "In this issue",
        "image_of": "Illustration of the article",
        "logo_alt": "{title} logo",
    },
}

_MONTHS = {
    "fr": [
        *("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août"),
        *("septembre", "octobre", "novembre", "décembre"),
    ],
    "en": [
        *("January", "February", "March", "April", "May", "June", "July", "August"),
        *("September", "October", "November", "December"),
    ],
}


def base_language(language: str) -> str:
    """``fr-CA`` → ``fr``; the catalogue is keyed by base language."""
    return language.replace("_", "-").split("-")[0].lower()


def strings_for(language: str) -> dict[str, str]:
    """The strings for ``language``; English when we have no catalogue for it."""
    return CATALOGUE.get(base_language(language), CATALOGUE["en"])


def format_date(value: dt.date | dt.datetime, language: str) -> str:
    """A date as readers write it: ``25 novembre 2026``, ``1er mai 2026``, ``May 1, 2026``.

    Written by hand rather than through ``locale``: the process locale is global,
    often missing on servers, and not ours to change.
    """
    if isinstance(value, dt.datetime):
        value = value.date()
    base = base_language(language)
    if base == "fr":
        day = "1er" if value.day == 1 else str(value.day)
        return f"{day} {_MONTHS['fr'][value.month - 1]} {value.year}"
    return f"{_MONTHS['en'][value.month - 1]} {value.day}, {value.year}"
