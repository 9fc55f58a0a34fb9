"""The few words the email itself says, per language.

The catalogue is a plain dict so that adding a language is adding one entry;
templates reach it as ``t`` (``{{ t.lessons_title }}``). French is the reference
language; a language we do not know falls back to English, which a reader of
any language is likelier to read than French.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

__all__ = [
    "CATALOGUE",
    "DEFAULT_LANGUAGE",
    "base_language",
    "format_date",
    "strings_for",
    "translate_check",
    "web_language",
    "web_strings_for",
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

# The pages of ``digest serve`` (signup, confirmation, preferences, archive) and the
# confirmation email. ``consent`` is the wording shown beside the form: it is
# stored with each confirmed signup, so change it by adding words, knowingly.
WEB_CATALOGUE: dict[str, dict[str, str]] = {
    "fr": {
        "language_name": "Français",
        "subscribe_title": "S’abonner à {title}",
        "subscribe_intro": "Chaque semaine, une sélection d’articles et ce qu’ils nous apprennent.",
        "email_label": "Adresse e-mail",
        "name_label": "Prénom ou nom (facultatif)",
        "language_label": "Langue de la lettre",
        "honeypot_label": "Ne remplissez pas ce champ",
        "subscribe_button": "M’abonner",
        "consent": "En vous abonnant, vous acceptez de recevoir {title} par e-mail. Vous pourrez "
        "vous désabonner à tout moment depuis chaque lettre.",
        "invalid_email": "« {email} » n’est pas une adresse e-mail valable : vérifiez-la.",
        "check_inbox_title": "Vérifiez votre boîte de réception",
        "check_inbox": "Si l’adresse {email} peut recevoir {title}, un e-mail de confirmation "
        "vient d’y être envoyé. Cliquez sur son lien dans les {hours} heures pour confirmer "
        "votre abonnement.",
        "too_many_title": "Trop de demandes",
        "too_many": "Trop de demandes d’abonnement depuis votre connexion. Réessayez dans "
        "quelques minutes.",
        "unavailable_title": "Abonnement indisponible",
        "unavailable": "L’abonnement n’est pas possible pour le moment. Réessayez plus tard.",
        "confirm_title": "Confirmer votre abonnement",
        "confirm_text": "Confirmez-vous vouloir recevoir {title} à l’adresse {email} ?",
        "confirm_button": "Je confirme mon abonnement",
        "confirmed_title": "Abonnement confirmé",
        "confirmed": "C’est fait : vous recevrez {title} à l’adresse {email}.",
        "preferences_link": "Gérer vos préférences",
        "link_invalid_title": "Lien non valide",
        "link_invalid": "Ce lien n’est pas (ou plus) valide : il a peut-être expiré ou déjà "
        "servi. Vous pouvez recommencer votre inscription.",
        "subscribe_again": "S’abonner",
        "mail_subject": "Confirmez votre abonnement à {title}",
        "mail_text": "Bonjour,\n\nQuelqu’un (sans doute vous) a demandé à recevoir {title} à "
        "cette adresse. Pour confirmer, ouvrez ce lien dans les {hours} heures :\n\n{url}\n\n"
        "Si ce n’est pas vous, ignorez ce message : vous ne recevrez rien.",
        "preferences_title": "Vos préférences",
        "preferences_for": "Abonnement de {email} à {title}.",
        "sections_label": "Rubriques",
        "sections_help": "Aucune case cochée : vous recevez toutes les rubriques.",
        "save_button": "Enregistrer",
        "saved": "Vos préférences sont enregistrées.",
        "unsubscribe_button": "Me désabonner",
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_question": "Ne plus recevoir {title} à l’adresse {email} ?",
        "unsubscribed_title": "Désabonnement confirmé",
        "unsubscribed": "C’est fait : vous ne recevrez plus {title}.",
        "not_subscribed": "L’adresse {email} ne reçoit pas {title} en ce moment.",
        "resubscribe_button": "Me réabonner",
        "resubscribe_sent": "Un e-mail de confirmation vient d’être envoyé à {email} : "
        "cliquez sur son lien pour vous réabonner.",
        "unsubscribe_invalid": "Ce lien de désabonnement n’est pas (ou plus) valide. Pour vous "
        "désabonner, écrivez-nous depuis l’adresse qui reçoit la lettre.",
        "write_us": "Nous écrire",
        "archive_title": "Archives de {title}",
        "archive_empty": "Aucun numéro envoyé pour l’instant.",
        "archive_feed": "Flux Atom des numéros",
        "not_found_title": "Page introuvable",
        "not_found": "Cette page n’existe pas.",
        "error_title": "Erreur",
        "error": "Une erreur s’est produite de notre côté. Réessayez plus tard.",
        "back_to_archive": "Tous les numéros",
    },
    "en": {
        "language_name": "English",
        "subscribe_title": "Subscribe to {title}",
        "subscribe_intro": "Every week, a selection of articles and what they teach us.",
        "email_label": "Email address",
        "name_label": "Name (optional)",
        "language_label": "Language of the newsletter",
        "honeypot_label": "Leave this field empty",
        "subscribe_button": "Subscribe",
        "consent": "By subscribing, you agree to receive {title} by email. You can unsubscribe "
        "at any time from any issue.",
        "invalid_email": "“{email}” is not a valid email address: please check it.",
        "check_inbox_title": "Check your inbox",
        "check_inbox": "If the address {email} can receive {title}, a confirmation email has "
        "just been sent to it. Follow its link within {hours} hours to confirm your "
        "subscription.",
        "too_many_title": "Too many requests",
        "too_many": "Too many signup requests from your connection. Try again in a few minutes.",
        "unavailable_title": "Signup unavailable",
        "unavailable": "Signing up is not possible at the moment. Try again later.",
        "confirm_title": "Confirm your subscription",
        "confirm_text": "Do you confirm you want to receive {title} at {email}?",
        "confirm_button": "I confirm my subscription",
        "confirmed_title": "Subscription confirmed",
        "confirmed": "Done: you will receive {title} at {email}.",
        "preferences_link": "Manage your preferences",
        "link_invalid_title": "Invalid link",
        "link_invalid": "This link is not (or no longer) valid: it may have expired or been "
        "used already. You can sign up again.",
        "subscribe_again": "Subscribe",
        "mail_subject": "Confirm your subscription to {title}",
        "mail_text": "Hello,\n\nSomeone (probably you) asked to receive {title} at this "
        "address. To confirm, open this link within {hours} hours:\n\n{url}\n\n"
        "If it was not you, ignore this message: you will receive nothing.",
        "preferences_title": "Your preferences",
        "preferences_for": "Subscription of {email} to {title}.",
        "sections_label": "Sections",
        "sections_help": "No box ticked: you receive every section.",
        "save_button": "Save",
        "saved": "Your preferences are saved.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop receiving {title} at {email}?",
        "unsubscribed_title": "Unsubscribed",
        "unsubscribed": "Done: you will no longer receive {title}.",
        "not_subscribed": "The address {email} does not receive {title} at the moment.",
        "resubscribe_button": "Subscribe again",
        "resubscribe_sent": "A confirmation email has just been sent to {email}: follow its "
        "link to subscribe again.",
        "unsubscribe_invalid": "This unsubscribe link is not (or no longer) valid. To "
        "unsubscribe, write to us from the address that receives the newsletter.",
        "write_us": "Write to us",
        "archive_title": "{title} archive",
        "archive_empty": "No issue sent yet.",
        "archive_feed": "Atom feed of the issues",
        "not_found_title": "Page not found",
        "not_found": "This page does not exist.",
        "error_title": "Error",
        "error": "Something went wrong on our side. Try again later.",
        "back_to_archive": "All issues",
    },
}


def web_strings_for(language: str) -> dict[str, str]:
    """The web pages' strings for ``language``; English when we have none for it."""
    return WEB_CATALOGUE.get(base_language(language), WEB_CATALOGUE["en"])


def web_language(requested: str, accept_language: str = "") -> str:
    """The language a page speaks: ``requested`` if we have it, else the browser's, else French.

    ``accept_language`` is the ``Accept-Language`` header; its first language we
    have wins (weights are not worth parsing for two languages).
    """
    for candidate in [requested, *accept_language.split(",")]:
        base = base_language(candidate.split(";")[0].strip())
        if base in WEB_CATALOGUE:
            return base
    return DEFAULT_LANGUAGE


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
    (
        r"« (?P<title>.*) » has no lesson: write one in the draft",
        "« {title} » n’a pas de leçon : écrivez-en une dans le brouillon",
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


def _translated(
    table: list[tuple[re.Pattern[str], str]],
    message: str,
    adapt: Callable[[dict[str, str]], dict[str, str]],
) -> str | None:
    """``message`` said by the first pattern of ``table`` it matches whole, its values
    passed through ``adapt``; None when no pattern matches. Shared by the check and the
    source-failure translations, which differ only in their tables and values."""
    from .typography import french_spacing

    for pattern, text in table:
        match = pattern.fullmatch(message)
        if match:
            values = adapt({k: v or "" for k, v in match.groupdict().items()})
            translated = text.format(**values)
            return french_spacing(translated[0].upper() + translated[1:])
    return None


def _grouped(digits: str) -> str:
    """101,234 or 101234 → 101 234 (narrow no-break space), the French way."""
    return f"{int(digits.replace(',', '')):,}".replace(",", "\u202f")


def _check_values(values: dict[str, str]) -> dict[str, str]:
    if "what" in values:
        values["what"] = _WHAT.get(values["what"], values["what"])
    if "part" in values:
        values["part"] = _PART.get(values["part"], values["part"])
    if "size" in values:
        values["size"] = _grouped(values["size"])
        values["limit"] = _grouped(values["limit"])
    if values.get("kb"):
        values["kb"] = values["kb"].replace(".", ",")
    return values


def translate_check(message: str, language: str) -> str:
    """A pre-send check's message in ``language``; the English one when we have none."""
    found = _translated(_CHECKS.get(base_language(language), []), message, _check_values)
    return message if found is None else found


# -- why a source failed, for French pages and emails -------------------------------------
#
# The collector records a source's failure in English (the CLI's and the logs'
# language). The preview's source health and the editors' report are French, so
# the usual reasons are translated here; an unusual one (a parser's own words, an
# internal error) keeps its English text rather than being lost.

_SOURCE_ERRORS_FR: list[tuple[str, str]] = [
    (r"HTTP (?P<code>\d{3})", "le serveur a répondu HTTP {code}"),
    (r"timed out after (?P<s>[\d.]+)s", "pas de réponse complète en {s}\u00a0s"),
    (r"connection timed out after (?P<s>[\d.]+)s", "connexion impossible en {s}\u00a0s"),
    (r"cannot connect: connection refused", "connexion refusée par le serveur"),
    (r"cannot connect: (?P<why>.+)", "connexion impossible ({why})"),
    (r"connection failed: connection reset by the server", "connexion coupée par le serveur"),
    (r"connection failed: (?P<why>.+)", "connexion interrompue ({why})"),
    (r"redirect loop at (?P<url>\S+)", "boucle de redirections sur {url}"),
    (r"too many redirects \(more than (?P<n>\d+)\)", "plus de {n} redirections"),
    (
        r"(?:response|file) larger than (?P<n>\d+) bytes \(\[collect\] max_bytes\)",
        "réponse de plus de {n} octets (réglage [collect] max_bytes)",
    ),
    (r"corrupt compressed response", "réponse compressée illisible"),
    (r"not a feed: got HTML", "l’adresse donne une page web, pas un flux"),
    (r"not a feed: no RSS or Atom content", "l’adresse ne contient ni RSS ni Atom"),
    (r"parse error: (?P<why>.+)", "flux illisible ({why})"),
    (r"duplicate source name in the config", "nom de source en double dans la configuration"),
    (r"refused: (?P<why>.+)", "adresse refusée ({why})"),
]
_SOURCE_ERRORS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "fr": [(re.compile(pattern), text) for pattern, text in _SOURCE_ERRORS_FR]
}
_NEXT_TRY = re.compile(
    r"(?:rate-limited: next try after|(?P<head>.+) \(next try after) "
    r"(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d) UTC\)?"
)


def translate_source_error(message: str, language: str) -> str:
    """Why a source failed, in ``language``; the English reason when we have none."""
    from .typography import french_spacing

    table = _SOURCE_ERRORS.get(base_language(language))
    if not table:
        return message
    retry = _NEXT_TRY.fullmatch(message)
    if retry:
        when = retry.group("when").replace(" ", " à ") + " UTC"
        if retry.group("head") is None:
            return french_spacing(f"Limité par le serveur : nouvel essai le {when}")
        head = translate_source_error(retry.group("head"), language)
        return french_spacing(f"{head} (nouvel essai le {when})")
    found = _translated(table, message, _source_values)
    return message if found is None else found


def _source_values(values: dict[str, str]) -> dict[str, str]:
    if values.get("n"):
        values["n"] = _grouped(values["n"])
    return values
