"""The whole path, end to end, through the CLI: real feeds, real SQLite, real SMTP on loopback."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT, HTTPServer, Route
from pipeline_helpers import ACTIVE_EXAMPLE_SUBSCRIBERS, captured, cli, make_config

from digest.capture import CaptureServer
from digest.db import Store, articles, issues, schema
from digest.richtext import markdown_inline_text


def test_demo_leaves_one_message_per_active_subscriber_and_runs_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_port=1)  # the demo brings its own mailbox
    assert cli(config, "demo") == 0
    out = capsys.readouterr().out
    outbox = tmp_path / "outbox"
    messages = sorted(outbox.glob("*.eml"))
    assert len(messages) == ACTIVE_EXAMPLE_SUBSCRIBERS
    assert str(outbox.resolve()) in out
    assert (tmp_path / "preview" / "email.html").is_file()
    recipients = {
        email.message_from_bytes(p.read_bytes())["X-Digest-Envelope-To"] for p in messages
    }
    assert len(recipients) == ACTIVE_EXAMPLE_SUBSCRIBERS
    assert "oceane" not in " ".join(recipients).lower()  # the unsubscribed one

    assert cli(config, "demo") == 0
    assert len(sorted(outbox.glob("*.eml"))) == ACTIVE_EXAMPLE_SUBSCRIBERS
    assert "already" in capsys.readouterr().out


def test_run_twice_in_the_same_week_sends_nothing_the_second_time(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_capture.port)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "run") == 0
    first = captured(smtp_capture)
    assert len(first) == ACTIVE_EXAMPLE_SUBSCRIBERS
    message = first[0]
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Ce que cela nous apprend" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]

    capsys.readouterr()
    assert cli(config, "run") == 0
    assert "already_sent" in capsys.readouterr().out
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS


def test_a_failing_source_is_named_the_others_go_on_and_exit_is_2(
    tmp_path: Path,
    smtp_capture: CaptureServer,
    http_server: HTTPServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed = (ROOT / "examples" / "feeds" / "veille-creative.xml").read_bytes()
    http_server.routes["/good.xml"] = Route(200, feed, {"Content-Type": "application/rss+xml"})
    http_server.routes["/broken.xml"] = Route(500, b"oops")
    sources = (
        f'[[sources]]\nname = "Bonne source"\nurl = "{http_server.url("/good.xml")}"\n\n'
        f'[[sources]]\nname = "Source en panne"\nurl = "{http_server.url("/broken.xml")}"\n'
    )
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    capsys.readouterr()
    assert cli(config, "run") == 2
    captured_io = capsys.readouterr()
    assert "Source en panne" in captured_io.err
    assert "500" in captured_io.err
    assert (
        len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS
    )  # the good source still made an issue


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_smtp_server_is_one_clear_line_and_nobody_is_marked_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, closed_port())
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "approve") == 0
    capsys.readouterr()
    assert cli(config, "send") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "127.0.0.1" in err
    store = Store(f"sqlite:///{tmp_path / 'data' / 'digest.db'}")
    with store.engine.connect() as conn:
        sent = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.deliveries)
            .where(schema.deliveries.c.status == "sent")
        ).scalar()
    assert sent == 0


def test_malformed_subscriber_rows_are_reported_by_row_and_good_rows_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,name,language\n"
        "ana@example.org,Ana,fr\n"
        "not-an-address,Bob,fr\n"
        "chloe@example.org,Chloé,fr\n"
        ",Nobody,fr\n",
        encoding="utf-8",
    )
    assert cli(config, "subscribers", "import", str(csv)) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "row 5" in err
    assert cli(config, "subscribers", "list") == 0
    out = capsys.readouterr().out
    assert "ana@example.org" in out and "chloe@example.org" in out
    assert "2 subscriber(s)" in out


def test_render_writes_html_text_and_the_full_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 0
    html = (tmp_path / "out" / "email.html").read_text(encoding="utf-8")
    text = (tmp_path / "out" / "email.txt").read_text(encoding="utf-8")
    message = email.message_from_bytes(
        (tmp_path / "out" / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert '<html lang="fr"' in html
    assert "Ce que cela nous apprend" in text
    assert message.get_content_type() == "multipart/alternative"
    assert message["To"]


def test_the_cli_runs_as_a_subprocess(tmp_path: Path) -> None:
    config = make_config(tmp_path, 1)
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Sources" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(tmp_path / "nope.toml"), "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "digest init" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_every_lesson_of_the_demo_issue_is_grounded_in_its_article(tmp_path: Path) -> None:
    from digest.config import load_settings
    from digest.summarize.grounding import locate_quote

    config = make_config(tmp_path, 1)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    settings = load_settings(config)
    store = Store(settings.database.url)
    issue = issues.latest(store)
    assert issue is not None and len(issue.items) >= 8
    for item in issue.items:
        assert item.grounded, item.title
        # Only the article's own takeaways: some state one, none are padded with facts.
        assert len(item.lessons) <= 4, item.title
        assert item.article_id is not None
        with store.connect() as conn:
            article = articles.row(conn, item.article_id)
        assert article is not None
        for lesson in item.lessons:
            assert len(lesson.text.split()) <= 27, lesson
            assert not lesson.text.endswith("…"), lesson
            # extractive lessons are the article's own words: a sentence or a whole clause,
            # and the store keeps the quote that supports each one
            text = markdown_inline_text(lesson.text)
            assert locate_quote(text.rstrip("."), article["text"]) is not None, lesson
            assert lesson.quote and article["text"][lesson.start : lesson.end] == lesson.quote
    assert sum(len(item.lessons) for item in issue.items) >= len(issue.items)


def test_editor_markdown_and_notes_reach_the_email_and_reading_never_writes(
    tmp_path: Path,
) -> None:
    from digest.config import load_settings
    from digest.draft import draft_path

    config = make_config(tmp_path, 1)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    settings = load_settings(config)
    store = Store(settings.database.url)
    issue = issues.latest(store)
    assert issue is not None
    path = draft_path(settings, issue.period)
    text = path.read_text(encoding="utf-8")
    first_article = text.index("\n## ")
    text = (
        text[:first_article]
        + "\n**Nouveau** : une [journée d'étude](https://exemple.org/journee).\n"
        + "\n## Agenda\n\nLe *12 décembre* à l'Institut.\n"
        + text[first_article:]
    )
    path.write_text(text, encoding="utf-8")

    assert cli(config, "render", "--out", str(tmp_path / "out")) == 0
    html = (tmp_path / "out" / "email.html").read_text(encoding="utf-8")
    plain = (tmp_path / "out" / "email.txt").read_text(encoding="utf-8")
    assert "<strong>Nouveau</strong>" in html and "**" not in html
    assert 'href="https://exemple.org/journee"' in html
    assert "<em>12 décembre</em>" in html and "Agenda" in html
    assert "journée d'étude (https://exemple.org/journee)" in " ".join(plain.split())
    assert issues.get(store, issue.period) == issue  # rendering read the draft, stored nothing

    assert cli(config, "approve") == 0
    approved = issues.get(store, issue.period)
    assert approved is not None and approved.status == "approved"
    assert "journée d'étude" in approved.intro
    assert [i.title for i in approved.items if i.is_note] == ["Agenda"]


def test_a_send_that_reached_nobody_leaves_the_issue_editable_and_the_edit_goes_out(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    smtp_capture: CaptureServer,
) -> None:
    from digest.config import load_settings
    from digest.draft import draft_path

    config = make_config(tmp_path, closed_port())
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "approve") == 0
    capsys.readouterr()
    assert cli(config, "send") == 1  # the server cannot be reached
    assert "editable" in capsys.readouterr().err
    settings = load_settings(config)
    store = Store(settings.database.url)
    issue = issues.latest(store)
    assert issue is not None and issue.status == "approved"
    assert issues.delivery_counts(store, issue.period) == {}

    path = draft_path(settings, issue.period)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"# {issue.title}\n", "# Un titre revu\n", 1), encoding="utf-8")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(smtp_capture.port))
    assert cli(config, "send") == 0
    subjects = {str(m["Subject"]) for m in captured(smtp_capture)}
    assert subjects and all("Un titre revu" in s for s in subjects), subjects
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS


def test_an_edit_after_the_send_started_is_refused_with_its_file_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], smtp_capture: CaptureServer
) -> None:
    from digest.config import load_settings
    from digest.draft import draft_path

    config = make_config(tmp_path, smtp_capture.port)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "approve") == 0
    assert cli(config, "send") == 0
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 0  # untouched: fine
    settings = load_settings(config)
    issue = issues.latest(Store(settings.database.url))
    assert issue is not None and issue.status == "sent"
    path = draft_path(settings, issue.period)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"# {issue.title}\n", "# Trop tard\n", 1), encoding="utf-8")
    capsys.readouterr()
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert path.name in err and "edited after" in err and "Traceback" not in err


def test_worker_sends_every_approved_issue_once_and_leaves_drafts_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], smtp_capture: CaptureServer
) -> None:
    config = make_config(tmp_path, smtp_capture.port)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "worker", "--once") == 0
    assert captured(smtp_capture) == []  # a draft is not approved: nothing goes out
    assert cli(config, "approve") == 0
    capsys.readouterr()
    assert cli(config, "worker", "--once") == 0
    assert "sent" in capsys.readouterr().out
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS
    assert cli(config, "worker", "--once") == 0  # nothing due any more: nothing again
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS
    store = Store(f"sqlite:///{tmp_path / 'data' / 'digest.db'}")
    issue = issues.latest(store)
    assert issue is not None and issue.status == "sent"


def test_a_week_with_too_few_articles_says_how_many_it_had(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo's feeds give more than three articles; asking for 50 makes the week short.
    config = make_config(
        tmp_path, smtp_capture.port, edit={"min_articles = 1": "min_articles = 50"}
    )
    assert cli(config, "run") == 0
    line = capsys.readouterr().out
    assert re.search(r": skipped: \d+ article\(s\), fewer than the 50 required", line), line
    assert captured(smtp_capture) == []
