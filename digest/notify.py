"""Emails to the editors: the report after each run, and an alert when a run fails.

Unattended runs need a human to hear about them: an issue sent, a week skipped
for want of articles, a draft waiting for review (with the preview attached, so
the editor can read it on a phone), or a failure. These messages go to
``[run] notify`` through the same SMTP settings as the newsletter.

Notifying must never break the run it reports on: every failure here is logged
and swallowed, and ``notify_editors`` says whether the message went out.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from .config import Settings
from .errors import DigestError
from .i18n import base_language, translate_source_error
from .models import RunReport
from .smtp import send_one
from .typography import french_spacing

__all__ = ["build_report_message", "describe_run", "notify_editors"]

log = logging.getLogger(__name__)

# Enough failures to act on; the full list is in the store and `digest status`.
MAX_LISTED = 50


# Editors of the reference institution read French; anything else gets English.
_TEXTS = {
    "fr": {
        "sent": "envoyé",
        "already_sent": "déjà envoyé",
        "skipped": "semaine sautée",
        "draft_ready": "brouillon prêt à relire",
        "failed": "ÉCHEC",
        "partial": "envoi incomplet",
        "alert": "ALERTE",
        "period": "Période",
        "outcome": "Résultat",
        "run": "Exécution",
        "sent_count": "Messages envoyés",
        "failed_count": "Destinataires en échec",
        "sources": "Sources en échec",
        "recipients": "Destinataires en échec",
        "more": "… et {n} de plus (voir `digest status`)",
        "review": (
            "Le brouillon attend une relecture : l'aperçu est joint. Pour l'envoyer, "
            "relisez-le (`digest preview`), puis `digest approve` et `digest send`."
        ),
        "footer": "Message automatique de digest ; ne pas répondre.",
        "error": "Message d’erreur (en anglais, tel que le programme l’a écrit)",
    },
    "en": {
        "sent": "sent",
        "already_sent": "already sent",
        "skipped": "week skipped",
        "draft_ready": "draft ready for review",
        "failed": "FAILED",
        "partial": "sent with failures",
        "alert": "ALERT",
        "period": "Period",
        "outcome": "Outcome",
        "run": "Run",
        "sent_count": "Messages sent",
        "failed_count": "Failed recipients",
        "sources": "Failed sources",
        "recipients": "Failed recipients",
        "more": "… and {n} more (see `digest status`)",
        "review": (
            "The draft is waiting for review: the preview is attached. To send it, "
            "review it (`digest preview`), then `digest approve` and `digest send`."
        ),
        "footer": "Automatic message from digest; do not reply.",
        "error": "Error message",
    },
}

# Why a run ended as it did: one line per reason and language, filled from
# ``RunReport.values``. The English line is also the report's ``detail``, which the
# CLI prints and the runs table keeps.
_REASONS = {
    "fr": {
        "sent": "envoyé à {sent} abonné(s)",
        "sent_with_failures": "envoyé à {sent} abonné(s), {failed} en échec",
        "already_sent": "le numéro {period} a déjà été envoyé",
        "too_few_articles": (
            "{count} article(s), moins que les {required} demandés ; "
            "gardés pour la semaine prochaine"
        ),
        "locked": "une autre exécution est en cours ; elle envoie ce numéro",
        "draft_ready": "le brouillon {period} attend une relecture",
        "collect_failed": 'la collecte a échoué ([run] on_collect_failure = "abort")',
        "send_failed": "l’envoi n’a pas pu se faire",
        "error": "l’exécution s’est arrêtée sur une erreur",
    },
    "en": {
        "sent": "sent to {sent} subscriber(s)",
        "sent_with_failures": "sent to {sent} subscriber(s), {failed} failed",
        "already_sent": "issue {period} was already sent",
        "too_few_articles": (
            "{count} article(s), fewer than the {required} required; kept for next week"
        ),
        "locked": "another run is in progress; it sends this issue",
        "draft_ready": "draft {period} is ready for review",
        "collect_failed": 'collection failed ([run] on_collect_failure = "abort")',
        "send_failed": "the send could not go out",
        "error": "the run stopped on an error",
    },
}

_ALERT_OUTCOMES = {"failed", "partial"}


def build_report_message(
    settings: Settings, report: RunReport, attachment_html: str | None = None
) -> EmailMessage:
    """The report email for ``report``, addressed to ``[run] notify``.

    A failed or partial run is an alert: its subject says so first, so it
    stands out in an inbox. ``attachment_html`` (the rendered preview) is
    attached as a file rather than used as the body: the body stays a plain
    report an editor can read anywhere.
    """
    language = _language(settings)
    texts = _TEXTS[language]
    label = texts.get(report.outcome, report.outcome)
    alert = report.outcome in _ALERT_OUTCOMES
    prefix = f"[{texts['alert']}] " if alert else ""
    # ``say`` is for our own words, spaced the French way in French; what others
    # wrote (an error's text, a server's reply, a source's name) is quoted as it is.
    french = language == "fr"

    def say(text: str) -> str:
        return french_spacing(text) if french else text

    colon = "\u00a0:" if french else ":"
    subject = f"{prefix}{settings.newsletter.title} {report.period}{colon} {label}"

    lines = [
        f"{texts['period']}{colon} {report.period}",
        f"{texts['outcome']}{colon} {label}",
        f"{texts['run']}{colon} {report.run_id or '-'}",
        "",
        describe_run(report, language),
    ]
    error = report.values.get("error")
    if error:
        lines += ["", f"{texts['error']}{colon}", str(error)]
    if report.sent or report.failed:
        lines += ["", f"{texts['sent_count']}{colon} {report.sent}"]
        lines.append(f"{texts['failed_count']}{colon} {report.failed}")
    failed_sources = [
        f"{name}{colon} {translate_source_error(reason, language)}"
        for name, reason in report.source_errors
    ]
    lines += _section(f"{texts['sources']}{colon}", failed_sources, texts)
    lines += _section(f"{texts['recipients']}{colon}", report.recipient_failures, texts)
    if report.outcome == "draft_ready":
        lines += ["", say(texts["review"])]
    lines += ["", "-- ", say(texts["footer"])]

    sender = settings.newsletter.from_address
    message = EmailMessage()
    message["Subject"] = _one_line(subject)
    message["From"] = Address(_one_line(settings.newsletter.from_name), addr_spec=sender)
    message["To"] = ", ".join(settings.run.notify)
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid("digest-report", domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content("\n".join(_one_line(line) for line in lines) + "\n")
    if attachment_html is not None:
        message.add_attachment(
            attachment_html, subtype="html", filename=f"preview-{report.period}.html"
        )
    return message


def describe_run(report: RunReport, language: str = "en") -> str:
    """Why ``report``'s run ended as it did, in ``language`` (English when unknown).

    A report without a known reason (built by hand, or by an older caller) says
    its ``detail`` as it is.
    """
    language = language if language in _REASONS else "en"
    template = _REASONS[language].get(report.reason)
    if template is None:
        return report.detail
    values = {"period": report.period, "sent": report.sent, "failed": report.failed}
    values.update(report.values)
    text = template.format(**values)
    return french_spacing(text) if language == "fr" else text


def _language(settings: Settings) -> str:
    """The editors read the newsletter's language when we have their texts, else English."""
    language = base_language(settings.newsletter.language)
    return language if language in _TEXTS else "en"


def _section(title: str, entries: Sequence[str], texts: dict[str, str]) -> list[str]:
    if not entries:
        return []
    listed = [f"- {entry}" for entry in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        listed.append(texts["more"].format(n=len(entries) - MAX_LISTED))
    return ["", title, *listed]


def _one_line(text: str) -> str:
    """Error messages can carry newlines; in a header they would start a new header."""
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def notify_editors(
    settings: Settings, report: RunReport, attachment_html: str | None = None
) -> bool:
    """Email the run report to ``[run] notify``; return whether it went out.

    Never raises: a notification that cannot be sent is logged, and the run it
    reports on keeps its outcome.
    """
    if not settings.run.notify:
        log.debug("no [run] notify addresses: run report not emailed")
        return False
    try:
        message = build_report_message(settings, report, attachment_html)
        wire = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        refused = send_one(
            settings.smtp, settings.newsletter.from_address, settings.run.notify, wire
        )
    except (DigestError, ValueError) as exc:
        # DeliveryError covers refused connections, timeouts, TLS and login failures.
        log.error(
            "could not email the run report for %s to %s: %s",
            report.period,
            ", ".join(settings.run.notify),
            exc,
        )
        return False
    for address, reason in refused.items():
        log.error("the run report for %s was refused for %s: %s", report.period, address, reason)
    delivered = [a for a in settings.run.notify if a not in refused]
    log.info("run report for %s emailed to %s", report.period, ", ".join(delivered))
    return True
