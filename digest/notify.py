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
from .models import RunReport
from .smtp import send_one

__all__ = ["build_report_message", "notify_editors"]

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
    texts = _TEXTS.get(settings.newsletter.language, _TEXTS["en"])
    label = texts.get(report.outcome, report.outcome)
    alert = report.outcome in _ALERT_OUTCOMES
    prefix = f"[{texts['alert']}] " if alert else ""
    subject = f"{prefix}{settings.newsletter.title} {report.period}: {label}"

    lines = [
        f"{texts['period']}: {report.period}",
        f"{texts['outcome']}: {label}",
        f"{texts['run']}: {report.run_id or '-'}",
        "",
        report.detail,
    ]
    if report.sent or report.failed:
        lines += ["", f"{texts['sent_count']}: {report.sent}"]
        lines.append(f"{texts['failed_count']}: {report.failed}")
    lines += _section(texts["sources"], report.source_errors, texts)
    lines += _section(texts["recipients"], report.recipient_failures, texts)
    if report.outcome == "draft_ready":
        lines += ["", texts["review"]]
    lines += ["", "-- ", texts["footer"]]

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


def _section(title: str, entries: Sequence[str], texts: dict[str, str]) -> list[str]:
    if not entries:
        return []
    listed = [f"- {entry}" for entry in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        listed.append(texts["more"].format(n=len(entries) - MAX_LISTED))
    return ["", f"{title}:", *listed]


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
