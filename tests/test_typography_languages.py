"""Typography by language: numbers that never break, French rules only on French text,
and articles in another language than the issue marked as such."""

from __future__ import annotations

import dataclasses

import lxml.html
import pytest
from render_sample import sample_issue, sample_items, sample_settings

from digest.config import SourceSettings
from digest.models import IssueItem, Lesson
from digest.render import render_issue
from digest.typography import NBSP, NNBSP, typography


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plus de 4 000 étudiants", f"Plus de 4{NNBSP}000 étudiants"),
        (f"un budget de 1 250{NBSP}000 euros", f"un budget de 1{NNBSP}250{NNBSP}000 euros"),
        ("en 2026 200 écoles", "en 2026 200 écoles"),  # a year, then a number: two numbers
        ("π vaut 3,141 592", "π vaut 3,141 592"),  # the tail of a decimal
        ("12 ateliers", "12 ateliers"),
    ],
)
def test_numbers_keep_their_groups_together_in_french(text: str, expected: str) -> None:
    assert typography(text, "fr") == expected


def test_english_text_gets_no_french_rules() -> None:
    assert typography("AI in user research: faster notes for 4 000 people?", "en") == (
        "AI in user research: faster notes for 4 000 people?"
    )


ENGLISH = "AI in user research: faster notes"


def english_item() -> IssueItem:
    first = sample_items(1)[0]
    return dataclasses.replace(
        first,
        article_id=99,
        position=2,
        source="Design & Tech Notes",
        title=ENGLISH,
        url="https://design-tech.example/ai-research",
        summary="Teams now share notes within minutes: what changes for research?",
        lessons=(Lesson("Write the question first: tools come second!"),),
    )


def render_mixed():  # type: ignore[no-untyped-def]
    settings = sample_settings()
    settings = dataclasses.replace(
        settings,
        sources=(
            SourceSettings(name="Design & Tech Notes", url="https://x.example/f", language="en"),
        ),
    )
    french = sample_items(1)[0]
    issue = sample_issue(1, items=(french, english_item()))
    return render_issue(issue, settings), french


def test_an_english_article_in_a_french_issue_keeps_english_typography_and_says_so() -> None:
    rendered, french = render_mixed()
    doc = lxml.html.document_fromstring(rendered.html.encode("utf-8"))
    assert doc.get("lang") == "fr"
    title = doc.xpath("//*[contains(@class,'dg-article-title')][@lang='en']")
    assert len(title) == 1 and title[0].text_content().strip() == ENGLISH
    summary = doc.xpath("//p[contains(@class,'dg-summary')][@lang='en']")
    assert summary and f"minutes{NBSP}:" not in summary[0].text_content()
    assert doc.xpath("//ul[@lang='en']")
    assert f"research{NBSP}:" not in rendered.html and f"research{NBSP}:" not in rendered.text
    assert f"first{NBSP}:" not in rendered.text and f"second{NNBSP}!" not in rendered.text
    # the French article and the issue's own texts keep the French rules, without a lang
    french_titles = doc.xpath("//*[contains(@class,'dg-article-title')][not(@lang)]")
    assert len(french_titles) == 1
    assert f"{NBSP}:" in rendered.subject or ":" not in rendered.subject
