"""The few words the email itself says, per language.

The catalogue is a plain dict so that adding a language is adding one entry;
templates reach it as ``t`` (``{{ t.lessons_title }}``). French is the reference
language; a language we do not know falls back to English, which a reader of
any language is likelier to read than French.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "CATALOGUE",
    "DEFAULT_LANGUAGE",
    "base_language",
    "format_date",
    "strings_for",
    "translate_check",
]

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


# -- the pre-send checks, for the French preview ------------------------------------------
#
# The checks speak English (the CLI's language); the preview page is French, so
# its list of findings is translated here, message by message. A message with
# no entry (a check added later) is shown as it is, in English, rather than lost.

_WHAT = {"link": "le lien", "image": "l’image"}
_PART = {"HTML": "HTML", "text": "texte"}

_CHECKS_FR: list[tuple[str, str]] = [
    (r"image (?P<src>.+) has no alt text", "l’image {src} n’a pas de texte alternatif"),
    (r"the (?P<part>HTML|text) part contains (?P<found>.+)", "la partie {part} contient {found}"),
    (
        r"link to (?P<href>\S+) says (?P<label>.+): say where it goes",
        "le lien vers {href} dit {label} : dites plutôt où il mène",
    ),
    (
        r"the <html> element has no lang: screen readers may mispronounce it",
        "l’élément <html> n’a pas d’attribut lang : les lecteurs d’écran risquent de mal "
        "prononcer le texte",
    ),
    (
        r"the (?P<part>HTML|text) part has no unsubscribe link",
        "la partie {part} n’a pas de lien de désinscription",
    ),
    (
        r"no preheader: inbox lists will show the first body text",
        "pas de texte d’aperçu : les boîtes de réception afficheront le début du corps",
    ),
    (
        r"text part line (?P<n>\d+) is over (?P<limit>\d+) octets",
        "la ligne {n} de la partie texte dépasse {limit} octets",
    ),
    (
        r"the HTML is (?P<size>[\d,]+) bytes, close to the (?P<limit>[\d,]+) limit",
        "le HTML pèse {size} octets, près de la limite de {limit}",
    ),
    (
        r"the HTML is (?P<size>[\d,]+) bytes, over (?P<limit>[\d,]+): Gmail clips it and may "
        r"hide the unsubscribe link; drop (?:about )?(?P<drop>\d+)(?: of the (?P<count>\d+))? "
        r"articles \(about (?P<kb>[\d.]+) KB each\)",
        "le HTML pèse {size} octets, plus de {limit} : Gmail le coupe et peut masquer le lien "
        "de désinscription ; retirez environ {drop} articles (environ {kb} Ko chacun)",
    ),
    (r"(?P<what>link|image) (?P<url>\S+) is not https", "{what} {url} n’est pas en https"),
    (
        r"(?P<what>link|image) (?P<url>.+) is not an absolute https URL",
        "{what} {url} n’est pas une adresse https complète",
    ),
    (
        r"the text part is empty: spam filters penalise HTML-only mail",
        "la partie texte est vide : les filtres anti-spam pénalisent les e-mails tout en HTML",
    ),
    (
        r"link (?P<href>\S+) is in the HTML but not in the text part",
        "le lien {href} figure dans le HTML mais pas dans la partie texte",
    ),
    (r"issue (?P<period>\S+) has no articles", "le numéro {period} n’a aucun article"),
    (
        r"article (?P<n>\d+) \((?P<what>.*)\) has no title",
        "l’article {n} ({what}) n’a pas de titre",
    ),
    (
        r"article (?P<n>\d+) \((?P<what>.*)\) has no summary",
        "l’article {n} ({what}) n’a pas de résumé",
    ),
    (
        r"article (?P<n>\d+): title cut to (?P<limit>\d+) characters",
        "article {n} : titre coupé à {limit} caractères",
    ),
    (
        r"article (?P<n>\d+) has no usable link: (?P<url>.*)",
        "l’article {n} n’a pas de lien utilisable : {url}",
    ),
    (
        r"article (?P<n>\d+): image (?P<url>.+) is not a URL, left out",
        "article {n} : l’image {url} n’est pas une adresse, elle est omise",
    ),
    (
        r"article (?P<n>\d+)'s title is missing from the (?P<part>HTML|text) part",
        "le titre de l’article {n} manque dans la partie {part}",
    ),
    (
        r"article (?P<n>\d+)'s URL is missing from the (?P<part>HTML|text) part",
        "le lien de l’article {n} manque dans la partie {part}",
    ),
    (r"the subject is empty", "l’objet est vide"),
    (r"the subject contains a line break", "l’objet contient un saut de ligne"),
    (
        r"the subject is (?P<n>\d+) characters; inboxes cut it near (?P<limit>\d+)",
        "l’objet fait {n} caractères ; les boîtes de réception le coupent vers {limit}",
    ),
    (r"the subject is over (?P<limit>\d+) octets", "l’objet dépasse {limit} octets"),
    (
        r"the reader's name would be written into the (?P<attr>\S+) of a (?P<tag><\S+>) "
        r"\((?P<value>.*)\): only the unsubscribe link may carry it; fix the custom template",
        "le nom du lecteur serait écrit dans l’attribut {attr} d’un {tag} ({value}) : seul le "
        "lien de désinscription peut le porter ; corrigez le modèle personnalisé",
    ),
    (
        r"the reader's unsubscribe URL would be written into the (?P<attr>\S+) of a "
        r"(?P<tag><\S+>) \((?P<value>.*)\): only the unsubscribe link may carry it; "
        r"fix the custom template",
        "l’adresse de désinscription du lecteur serait écrite dans l’attribut {attr} d’un "
        "{tag} ({value}) : seul le lien de désinscription peut la porter ; corrigez le modèle "
        "personnalisé",
    ),
    (
        r"the (?P<part>HTML|text) part writes the reader's name inside the address "
        r"(?P<url>\S+): only the unsubscribe link may carry it",
        "la partie {part} écrit le nom du lecteur dans l’adresse {url} : seul le lien de "
        "désinscription peut le porter",
    ),
    (
        r"the (?P<part>HTML|text) part writes the reader's unsubscribe URL inside the address "
        r"(?P<url>\S+): only the unsubscribe link may carry it",
        "la partie {part} écrit l’adresse de désinscription du lecteur dans l’adresse {url} : "
        "seul le lien de désinscription peut la porter",
    ),
]
_CHECKS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "fr": [(re.compile(pattern), text) for pattern, text in _CHECKS_FR]
}


def translate_check(message: str, language: str) -> str:
    """A pre-send check's message in ``language``; the English one when we have none."""
    from .typography import french_spacing

    for pattern, text in _CHECKS.get(base_language(language), []):
        match = pattern.fullmatch(message)
        if match:
            values = {k: v or "" for k, v in match.groupdict().items()}
            if "what" in values:
                values["what"] = _WHAT.get(values["what"], values["what"])
            if "part" in values:
                values["part"] = _PART.get(values["part"], values["part"])
            if "size" in values:  # 101,234 → 101 234, the French way
                values["size"] = values["size"].replace(",", "\u202f")
                values["limit"] = values["limit"].replace(",", "\u202f")
            if values.get("kb"):
                values["kb"] = values["kb"].replace(".", ",")
            translated = text.format(**values)
            return french_spacing(translated[0].upper() + translated[1:])
    return message
