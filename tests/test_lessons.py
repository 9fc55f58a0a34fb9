"""A lesson is a value with its evidence; the store keeps both, and still reads older rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from digest.db import Store, issues
from digest.models import Issue, IssueItem, Lesson, decode_lessons, encode_lessons

LESSONS = (
    Lesson(
        "Écrire les règles tôt coûte moins cher.", "Les règles écrites tôt coûtent moins.", 4, 41
    ),
    Lesson("Une leçon réécrite, sans citation."),
)


def test_lessons_round_trip_with_their_evidence() -> None:
    assert decode_lessons(encode_lessons(LESSONS)) == LESSONS
    assert json.loads(encode_lessons(LESSONS))[0]["quote"] == LESSONS[0].quote


def test_the_first_versions_list_of_strings_still_reads() -> None:
    assert decode_lessons('["Une leçon.", "Une autre."]') == (
        Lesson("Une leçon."),
        Lesson("Une autre."),
    )


def test_the_store_keeps_the_evidence_and_reads_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    store = Store(f"sqlite:///{path}")
    item = IssueItem(None, 1, "Source", "Titre", "https://e.org/a", "Résumé.", LESSONS)
    assert issues.save(store, Issue("2026-W48", "Titre", "", (item,))).items[0].lessons == LESSONS
    # A database written before lessons had evidence holds a list of strings.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE issue_items SET lessons = ?", ('["Une leçon."]',))
    stored = issues.get(store, "2026-W48")
    assert stored is not None and stored.items[0].lessons == (Lesson("Une leçon."),)


def test_an_article_left_without_lessons_is_a_warning_for_the_editor() -> None:
    import dataclasses

    from render_sample import sample_issue, sample_settings

    from digest.checks import check_email
    from digest.render import render_issue

    issue = sample_issue(2)
    bare = dataclasses.replace(issue.items[1], lessons=())
    issue = dataclasses.replace(issue, items=(issue.items[0], bare))
    rendered = render_issue(issue, sample_settings())
    warnings = [c for c in check_email(rendered, issue) if c.name == "lessons"]
    assert [c.level for c in warnings] == ["warning"]
    assert bare.title in warnings[0].message
    # The email simply has no « Ce que cela nous apprend » box for that article.
    assert rendered.html.count("Ce que cela nous apprend") == 1
