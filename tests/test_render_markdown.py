"""The editor's Markdown in the email: it renders, safely, in both parts; mistakes are flagged."""

from __future__ import annotations

import dataclasses

import lxml.html
from render_sample import markdown_issue, sample_issue, sample_items, sample_settings

from digest.checks import check_email
from digest.models import IssueItem, Lesson, RenderedIssue
from digest.render import render_issue
from digest.typography import NBSP, NNBSP


def render(**changes: object) -> RenderedIssue:
    return render_issue(sample_issue(3, **changes), sample_settings())


def doc(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html.encode("utf-8"))


def plain(text: str) -> str:
    return " ".join(text.replace(NBSP, " ").replace(NNBSP, " ").split())


def with_summary(summary: str, lessons: tuple[str, ...] = ()) -> tuple[IssueItem, ...]:
    first, *rest = sample_items(3)
    changed = dataclasses.replace(
        first, summary=summary, lessons=tuple(Lesson(t) for t in lessons) or first.lessons
    )
    return (changed, *rest)


def test_links_emphasis_and_lists_render_in_html_and_read_well_in_text() -> None:
    rendered = render(
        intro="**Nouveau** : une [journée d'étude](https://exemple.org/journee).\n\n"
        "- un atelier ;\n- une table ronde."
    )
    html = doc(rendered.html)
    (strong,) = html.xpath("//strong")
    assert strong.text == "Nouveau"
    (link,) = html.xpath("//a[@class='dg-inline-link']")
    assert link.get("href") == "https://exemple.org/journee"
    assert link.text == "journée d'étude"
    assert [plain(li.text_content()) for li in html.xpath("//ul[not(@class)]/li")][:2] == [
        "un atelier ;",
        "une table ronde.",
    ]
    text = plain(rendered.text)
    assert "Nouveau : une journée d'étude (https://exemple.org/journee)." in text
    assert "**" not in rendered.text and "](" not in rendered.text
    assert "- un atelier ; - une table ronde." in text
    assert not [c for c in check_email(rendered, sample_issue(3)) if c.level == "error"]


def test_summaries_and_lessons_render_their_markdown() -> None:
    items = with_summary(
        "Un résumé *en italique* avec `du code`.",
        ("Lire [le rapport](https://exemple.org/rapport) **en entier**.",),
    )
    rendered = render(items=items)
    html = doc(rendered.html)
    assert html.xpath("//p[@class='dg-summary']/em")[0].text == "en italique"
    assert html.xpath("//p[@class='dg-summary']/code")[0].text == "du code"
    lesson = html.xpath("//td[@class='dg-lessons-box']//li")[0]
    assert lesson.xpath("a")[0].get("href") == "https://exemple.org/rapport"
    assert lesson.xpath("strong")[0].text == "en entier"
    assert "- Lire le rapport (https://exemple.org/rapport) en entier." in rendered.text


def test_no_markup_script_or_dangerous_link_gets_through() -> None:
    hostile = (
        '<script>alert(1)</script> <img src=x onerror="alert(2)"> '
        "[clic](javascript:alert(3)) [data](data:text/html,x) <https://ok.example/a>"
        ' [q](https://ok.example/"onmouseover="x)'
    )
    rendered = render(intro=hostile, items=with_summary(hostile, (hostile,)))
    html = doc(rendered.html)
    assert not html.xpath("//script")
    assert not html.xpath("//img[@onerror]")
    assert not [a for a in html.xpath("//a") if a.get("onmouseover")]
    hrefs = [a.get("href") for a in html.xpath("//a[@class='dg-inline-link']")]
    assert hrefs and all(h.startswith("https://ok.example/") for h in hrefs)
    assert "javascript:" not in " ".join(a.get("href", "") for a in html.xpath("//a"))
    assert "<script>" not in rendered.html
    # The reader sees what was typed, as text, in both parts.
    assert "<script>alert(1)</script>" in html.text_content()
    assert "<script>alert(1)</script>" in rendered.text


def test_markdown_that_would_show_literally_is_a_warning() -> None:
    issue = sample_issue(
        3,
        intro="**Nouveau : une [journée d'étude] (https://exemple.org/journee) <b>ici</b>",
    )
    checks = check_email(render_issue(issue, sample_settings()), issue)
    (warning,) = [c for c in checks if c.name == "markdown"]
    assert warning.level == "warning"
    assert "the introduction" in warning.message
    for piece in ("**", "[journée d'étude] (", "<b>"):
        assert repr(piece) in warning.message
    clean = sample_issue(3, intro="**Nouveau** : une [journée](https://exemple.org/j).")
    assert not [
        c
        for c in check_email(render_issue(clean, sample_settings()), clean)
        if c.name == "markdown"
    ]


def test_plain_text_from_a_summarizer_is_shown_as_written() -> None:
    from digest.richtext import markdown_escape

    text = "Note 1. *pas* d'emphase, [pas](de lien) ni <b>balise</b> : 2 * 3 = 6"
    items = with_summary(markdown_escape("1. " + text), (markdown_escape("- " + text),))
    rendered = render(items=items)
    assert "1. " + text in plain(doc(rendered.html).text_content())
    assert "1. " + text in plain(rendered.text)
    assert "- " + text in plain(rendered.text)


def test_editor_notes_render_as_their_own_cards_and_headings() -> None:
    issue = markdown_issue()
    rendered = render_issue(issue, sample_settings())
    html = doc(rendered.html)
    notes = html.xpath("//*[contains(@class, 'dg-note')]")
    assert len(notes) == 2  # the event and the closing word; the heading is a section title
    event = plain(notes[0].text_content())
    assert "Journée d'étude : l'IA au studio" in event
    assert "Le 12 décembre, à l'Institut :" in event
    assert [plain(li.text_content()) for li in notes[0].xpath(".//ol/li")] == [
        "ateliers le matin ;",
        "table ronde l'après-midi.",
    ]
    assert "À lire aussi" in [h.text_content() for h in html.xpath("//h2")]
    # no source, date or "read the article" link on a note; no error for its missing URL
    assert "Lire l’article" not in event
    errors = [c for c in check_email(rendered, issue) if c.level == "error"]
    assert not errors
    text = rendered.text
    assert "== À lire aussi ==" in text
    assert text.index("Journée d'étude") < text.index("À lire aussi") < text.index("Le mot")
    assert "par e-mail (veille@exemple.org)" in plain(text)


def test_an_issue_of_notes_only_has_no_articles() -> None:
    issue = markdown_issue()
    notes_only = dataclasses.replace(issue, items=tuple(i for i in issue.items if i.is_note))
    checks = check_email(render_issue(notes_only, sample_settings()), notes_only)
    assert [c.name for c in checks if c.level == "error"] == ["empty-issue"]
