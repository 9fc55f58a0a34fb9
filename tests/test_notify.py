"""Editors' run reports and alerts, sent into a real capture SMTP server."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.capture import CaptureServer, free_port
from digest.config import Settings, load_settings
from digest.models import RunReport, SourceError
from digest.notify import MAX_LISTED, build_report_message, notify_editors
from digest.pipeline import run_report

EDITORS = ["redaction@ian.example", "direction@ian.example"]


def write_settings(folder: Path, port: int, language: str = "fr", notify: bool = True) -> Settings:
    addresses = ", ".join(f'"{a}"' for a in EDITORS) if notify else ""
    path = folder / "digest.toml"
    path.write_text(
        f"""
[newsletter]
title = "La veille"
language = "{language}"
from_name = "Institut des Arts et du Numérique"
from_address = "veille@ian.example"

[run]
notify = [{addresses}]

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = 5
""",
        encoding="utf-8",
    )
    return load_settings(path)


def received(box: CaptureServer) -> list[tuple[str, EmailMessage]]:
    result = []
    for path in sorted(box.handler.folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        result.append((str(message["X-Digest-Envelope-To"]), message))
    return result


def test_a_sent_run_reports_to_every_editor(tmp_path: Path, smtp_capture: CaptureServer) -> None:
    settings = write_settings(tmp_path, smtp_capture.port)
    report = run_report("2026-W49", "sent", "sent", "abc123", sent=120)
    assert report.detail == "sent to 120 subscriber(s)"  # the CLI's and the logs' line
    assert notify_editors(settings, report)
    got = received(smtp_capture)
    assert sorted(to for to, _ in got) == sorted(EDITORS)
    message = got[0][1]
    assert message["Subject"] == "La veille 2026-W49\u00a0: envoyé"
    assert "Institut des Arts et du Numérique" in str(message["From"])
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@ian.example>")
    body = message.get_content()
    assert "envoyé à 120 abonné(s)" in body
    assert "sent to" not in body  # the French editors read French only
    assert "abc123" in body
    assert "Messages envoyés\u00a0: 120" in body


def test_a_failure_is_an_alert_listing_sources_and_recipients(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    settings = write_settings(tmp_path, smtp_capture.port, language="en")
    report = RunReport(
        "2026-W49",
        "partial",
        "sent to 98 subscriber(s), 2 failed",
        run_id="r2",
        sent=98,
        failed=2,
        source_errors=[SourceError("Écoles et métiers", "HTTP 503")],
        recipient_failures=["a@example.org: 550 mailbox unavailable", "b@example.org: 552 full"],
    )
    assert notify_editors(settings, report)
    message = received(smtp_capture)[0][1]
    assert message["Subject"].startswith("[ALERT] ")
    body = message.get_content()
    for line in ("Écoles et métiers: HTTP 503", "a@example.org: 550", "b@example.org: 552"):
        assert line in body
    assert "Failed recipients: 2" in body


def test_a_draft_waiting_for_review_carries_the_preview(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    settings = write_settings(tmp_path, smtp_capture.port)
    # MJML output has very long lines: the attachment must still respect 998 octets a line.
    html = "<html lang='fr'><body>" + "<p>Ce que cela nous apprend</p>" * 2000 + "</body></html>"
    report = RunReport("2026-W49", "draft_ready", "draft 2026-W49 is ready for review")
    assert notify_editors(settings, report, attachment_html=html)
    path = sorted(smtp_capture.handler.folder.glob("*.eml"))[0]
    assert max(len(line) for line in path.read_bytes().splitlines()) <= 998
    message = received(smtp_capture)[0][1]
    assert "brouillon prêt à relire" in message["Subject"]
    assert "digest approve" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["preview-2026-W49.html"]
    assert attachments[0].get_content().rstrip() == html


def test_an_error_message_with_newlines_cannot_add_a_header(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, 25)
    report = RunReport("2026-W49", "failed", "boom\r\nBcc: everyone@example.org\r\n")
    message = build_report_message(settings, report)
    assert message["Bcc"] is None
    raw = message.as_bytes()
    assert b"\nBcc:" not in raw
    assert "boom Bcc: everyone@example.org" in message.get_content()


def test_long_failure_lists_are_capped(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, 25, language="en")
    failures = [f"user{i}@example.org: 550 no such user" for i in range(MAX_LISTED + 7)]
    report = RunReport("2026-W49", "partial", "many failed", recipient_failures=failures)
    body = build_report_message(settings, report).get_content()
    assert f"user{MAX_LISTED - 1}@example.org" in body
    assert f"user{MAX_LISTED}@example.org" not in body
    assert "and 7 more" in body


def test_no_addresses_means_no_email(tmp_path: Path, smtp_capture: CaptureServer) -> None:
    settings = write_settings(tmp_path, smtp_capture.port, notify=False)
    assert not notify_editors(settings, RunReport("2026-W49", "sent", "ok"))
    assert received(smtp_capture) == []


def test_an_unreachable_server_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = write_settings(tmp_path, free_port())  # nothing listens there
    assert not notify_editors(settings, RunReport("2026-W49", "failed", "collection failed"))
    assert "could not email the run report for 2026-W49" in caplog.text


def test_a_french_report_says_everything_in_french(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, 25)
    report = run_report(
        "2026-W49",
        "skipped",
        "too_few_articles",
        "r3",
        values={"count": 2, "required": 3},
        source_errors=[
            SourceError("Écoles et métiers", "HTTP 503 (next try after 2026-12-01 10:00 UTC)"),
            SourceError("Le blog", "timed out after 20s"),
            SourceError("Studio", "not a feed: got HTML"),
        ],
    )
    assert report.detail == "2 article(s), fewer than the 3 required; kept for next week"
    body = build_report_message(settings, report).get_content()
    assert "2 article(s), moins que les 3 demandés" in body
    assert (
        "Écoles et métiers\u00a0: Le serveur a répondu HTTP 503 (nouvel essai le 2026-12-01" in body
    )
    assert "Le blog\u00a0: Pas de réponse complète en 20\u00a0s" in body
    assert "Studio\u00a0: L’adresse donne une page web, pas un flux" in body
    for english in ("fewer than", "next try", "timed out", "not a feed"):
        assert english not in body


def test_an_error_keeps_its_own_words_under_a_french_label(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, 25)
    report = run_report("2026-W49", "failed", "error", values={"error": "OSError: disk full"})
    assert report.detail == "the run stopped on an error: OSError: disk full"
    body = build_report_message(settings, report).get_content()
    assert "l’exécution s’est arrêtée sur une erreur" in body
    assert (
        "Message d’erreur (en anglais, tel que le programme l’a écrit)\u00a0:\nOSError: disk full"
        in body
    )


def test_an_english_newsletter_gets_english_reports(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, 25, language="en")
    report = run_report(
        "2026-W49",
        "partial",
        "sent_with_failures",
        sent=8,
        failed=2,
        source_errors=[SourceError("Blog", "HTTP 404")],
    )
    body = build_report_message(settings, report).get_content()
    assert "sent to 8 subscriber(s), 2 failed" in body
    assert "Blog: HTTP 404" in body
