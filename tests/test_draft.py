"""The editable draft file: what an editor writes there is what the issue becomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest

from digest.config import load_settings
from digest.draft import (
    draft_path,
    format_draft,
    item_fingerprint,
    merge_draft,
    read_draft,
    write_draft,
)
from digest.errors import DigestError, IssueError
from digest.models import Issue, IssueItem, Lesson
from digest.richtext import clean, markdown_escape, markdown_inline_text, markdown_text

PERIOD = "2026-W48"


def make_item(n: int, **changes: object) -> IssueItem:
    item = IssueItem(
        article_id=n,
        position=n,
        source=f"Source {n}",
        title=f"Article {n}",
        url=f"https://example.org/articles/{n}",
        summary=f"Le résumé généré de l'article {n}.",
        lessons=(
            Lesson(f"Première leçon de l'article {n}.", quote=f"Citation {n}.", start=0, end=11),
            Lesson(f"Deuxième leçon de l'article {n}."),
        ),
        published=dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC),
        image_url=f"https://example.org/img/{n}.png" if n == 1 else "",
        image_alt="Une photo" if n == 1 else "",
        backend="extractive",
    )
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def texts(lessons: tuple[Lesson, ...]) -> tuple[str, ...]:
    return tuple(lesson.text for lesson in lessons)


def make_issue(*numbers: int, **changes: object) -> Issue:
    issue = Issue(
        period=PERIOD,
        title="Semaine du 23 novembre 2026",
        intro="Bonjour,\n\nVoici la veille de la semaine.",
        items=tuple(make_item(n) for n in numbers),
    )
    return dataclasses.replace(issue, **changes)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "drafts" / f"{PERIOD}.md"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in the draft file"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_draft_path_is_in_the_configured_folder(tmp_path: Path) -> None:
    config = tmp_path / "site" / "digest.toml"
    config.parent.mkdir()
    config.write_text('[draft]\ndir = "brouillons"\n', encoding="utf-8")
    settings = load_settings(config)
    assert draft_path(settings, PERIOD) == tmp_path / "site" / "brouillons" / "2026-W48.md"


def test_round_trip_keeps_every_field_and_marks_nothing_edited(path: Path) -> None:
    issue = make_issue(1, 2, 3)
    write_draft(issue, path)
    back = read_draft(path)
    assert back.period == PERIOD
    assert back.title == issue.title
    assert back.intro == issue.intro
    assert back.status == "draft"
    assert back.language == "fr"
    # The file does not show the lessons' quotes: the store keeps them (see with_evidence).
    assert [dataclasses.asdict(i) for i in back.items] == [
        dataclasses.asdict(
            dataclasses.replace(i, lessons=tuple(Lesson(t) for t in texts(i.lessons)))
        )
        for i in issue.items
    ]


def test_file_is_plain_markdown_with_french_instructions(path: Path) -> None:
    write_draft(make_issue(1), path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("+++\n")
    assert "Modifiez les résumés et leçons" in text
    assert "mettez approved = true" in text
    assert "approved = false" in text
    assert "\n# Semaine du 23 novembre 2026\n" in text
    assert "\n## Article 1\n<!-- digest: article = 1," in text
    assert "### Ce que cela nous apprend\n\n- Première leçon de l'article 1." in text


def test_an_edited_lesson_is_kept_and_marked_edited(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    edit(path, "- Deuxième leçon de l'article 2.", "- Une leçon réécrite par l'équipe.")
    back = read_draft(path)
    assert texts(back.items[1].lessons) == (
        "Première leçon de l'article 2.",
        "Une leçon réécrite par l'équipe.",
    )
    assert [i.edited for i in back.items] == [False, True]


def test_edited_flag_survives_a_rewrite(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(path, "Le résumé généré de l'article 1.", "Un résumé à la main.")
    edited = read_draft(path)
    write_draft(edited, path)  # e.g. `digest approve` rewriting the file
    again = read_draft(path)
    assert again.items[0].summary == "Un résumé à la main."
    assert again.items[0].edited


def test_title_intro_and_added_lesson_lines(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(path, "# Semaine du 23 novembre 2026", "# Notre sélection : « IA et création »")
    edit(path, "Voici la veille de la semaine.", "Voici notre veille,\nsur deux lignes.")
    edit(
        path,
        "- Deuxième leçon de l'article 1.",
        "- Deuxième leçon.\n* Troisième leçon\n  sur deux lignes.",
    )
    back = read_draft(path)
    assert back.title == "Notre sélection : « IA et création »"
    assert back.intro == "Bonjour,\n\nVoici notre veille, sur deux lignes."
    assert texts(back.items[0].lessons) == (
        "Première leçon de l'article 1.",
        "Deuxième leçon.",
        "Troisième leçon sur deux lignes.",
    )


@pytest.mark.parametrize(
    "text",
    [
        "Il a dit \"bonjour\" et 'au revoir'",
        "Une « citation » : avec deux-points ; et point-virgule !",
        "# pas un titre",
        "## pas un article",
        "- pas une leçon",
        "1. pas une leçon",
        "{{ pas du Jinja }} {% if x %}",
        "<!-- pas un commentaire -->",
        "\\ une barre oblique inverse",
        "+++",
        "Accents, émojis 🎨 et espace fine\u202finsécable\u00a0!",
        "C# et F# ##",
    ],
)
def test_weird_text_round_trips_unedited(path: Path, text: str) -> None:
    # Texts are Markdown; plain text (what summarizers write) is escaped to show as written.
    markdown = markdown_escape(text)
    lessons = (Lesson(markdown), Lesson("Une autre : leçon"))
    item = make_item(1, title=text, summary=markdown, lessons=lessons)
    issue = make_issue(intro=markdown, items=(item,), title=text)
    write_draft(issue, path)
    back = read_draft(path)
    assert back.title == text
    assert back.intro == markdown
    assert back.items[0].summary == markdown
    assert texts(back.items[0].lessons) == (markdown, "Une autre : leçon")
    assert not back.items[0].edited
    # ... and reads as the plain text it was.
    assert markdown_text(back.intro) == (clean(text),)
    assert markdown_inline_text(back.items[0].lessons[0].text) == clean(text)


def test_machine_values_with_quotes_and_comment_ends_round_trip(path: Path) -> None:
    item = make_item(
        1,
        source='Le "Journal" « du design »',
        url="https://example.org/a?b=1&c=-->",
        image_alt="Logo \\ barre",
        section="Création",
        grounded=False,
    )
    write_draft(make_issue(items=(item,)), path)
    back = read_draft(path).items[0]
    assert (back.source, back.url, back.image_alt, back.section, back.grounded) == (
        item.source,
        item.url,
        item.image_alt,
        item.section,
        False,
    )


def test_removed_article_is_dropped_and_stays_dropped_on_refresh(path: Path) -> None:
    write_draft(make_issue(1, 2, 3), path)
    text = path.read_text(encoding="utf-8")
    start, end = text.index("## Article 2"), text.index("## Article 3")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    existing = read_draft(path)
    assert [i.article_id for i in existing.items] == [1, 3]

    regenerated = make_issue(1, 2, 3, 4)
    merged = merge_draft(regenerated, existing, refresh=True)
    assert [i.article_id for i in merged.items] == [1, 3, 4]
    assert [i.position for i in merged.items] == [1, 2, 3]

    # Even through the store (which knows nothing of deletions), the file remembers.
    write_draft(Issue(**{f.name: getattr(merged, f.name) for f in dataclasses.fields(Issue)}), path)
    again = merge_draft(make_issue(1, 2, 3, 4), read_draft(path), refresh=True)
    assert [i.article_id for i in again.items] == [1, 3, 4]


def test_reordering_blocks_reorders_the_issue(path: Path) -> None:
    write_draft(make_issue(1, 2, 3), path)
    text = path.read_text(encoding="utf-8")
    first, second, third = (
        text.index("## Article 1"),
        text.index("## Article 2"),
        text.index("## Article 3"),
    )
    head, one, two, three = text[:first], text[first:second], text[second:third], text[third:]
    path.write_text(head + three + "\n" + one + two, encoding="utf-8")
    back = read_draft(path)
    assert [i.article_id for i in back.items] == [3, 1, 2]
    assert [i.position for i in back.items] == [1, 2, 3]
    assert not any(i.edited for i in back.items)
    merged = merge_draft(make_issue(1, 2, 3), back)
    assert [i.article_id for i in merged.items] == [3, 1, 2]


def test_rerunning_draft_keeps_every_edit(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    edit(path, "# Semaine du 23 novembre 2026", "# Mon titre")
    edit(path, "Voici la veille de la semaine.", "Mon introduction.")
    edit(path, "Première leçon de l'article 1.", "Ma leçon.")
    existing = read_draft(path)

    regenerated = make_issue(
        1, 2, 3, items=tuple(make_item(n, summary=f"Nouveau résumé {n}.") for n in (1, 2, 3))
    )
    merged = merge_draft(regenerated, existing)
    assert merged.title == "Mon titre"
    assert merged.intro == "Bonjour,\n\nMon introduction."
    assert [i.article_id for i in merged.items] == [1, 2]  # nothing added without --refresh
    assert merged.items[0].lessons[0] == Lesson("Ma leçon.")  # rewritten: no quote any more
    assert merged.items[0].lessons[1] == make_item(1).lessons[1]
    assert merged.items[1].summary == "Le résumé généré de l'article 2."  # kept, not regenerated


def test_refresh_rebuilds_only_untouched_articles(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    edit(path, "Le résumé généré de l'article 1.", "Résumé revu par l'équipe.")
    existing = read_draft(path)

    regenerated = make_issue(
        items=tuple(make_item(n, summary=f"Nouveau résumé {n}.") for n in (1, 2, 5))
    )
    merged = merge_draft(regenerated, existing, refresh=True)
    assert [i.article_id for i in merged.items] == [1, 2, 5]
    assert merged.items[0].summary == "Résumé revu par l'équipe."
    assert merged.items[0].edited
    assert merged.items[1].summary == "Nouveau résumé 2."
    assert merged.items[2].summary == "Nouveau résumé 5."


def test_article_no_longer_selected_stays_if_the_editor_kept_it(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    merged = merge_draft(make_issue(2), read_draft(path), refresh=True)
    assert [i.article_id for i in merged.items] == [1, 2]


def test_approved_flag_is_read_and_kept_on_merge(path: Path) -> None:
    write_draft(make_issue(1), path)
    assert read_draft(path).status == "draft"
    edit(path, "approved = false", "approved = true")
    existing = read_draft(path)
    assert existing.status == "approved"
    assert merge_draft(make_issue(1), existing, refresh=True).status == "approved"
    write_draft(make_issue(1, status="approved"), path)
    assert "approved = true" in path.read_text(encoding="utf-8")


def test_no_existing_file_means_the_generated_issue(path: Path) -> None:
    generated = make_issue(1, 2)
    assert merge_draft(generated, None) is generated


def test_merge_refuses_another_period(path: Path) -> None:
    write_draft(make_issue(1, period="2026-W47"), path)
    with pytest.raises(IssueError, match="2026-W47"):
        merge_draft(make_issue(1), read_draft(path))


def test_merge_takes_machine_fields_from_the_regenerated_issue(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(path, "Première leçon", "Ma leçon")
    regenerated = make_issue(items=(make_item(1, image_url="https://example.org/new.png"),))
    merged = merge_draft(regenerated, read_draft(path))
    assert merged.items[0].image_url == "https://example.org/new.png"
    assert merged.items[0].lessons[0].text.startswith("Ma leçon")


@pytest.mark.parametrize(
    ("old", "new", "line_of", "words"),
    [
        ("approved = false", "approved = vrai", "approved = vrai", "settings block"),
        ("approved = false", "approved = True", "approved = True", "settings block"),
        ("approved = false", 'approved = "true"', 'approved = "true"', "true or false"),
        ("approved = false", "aproved = true", "aproved = true", "unknown setting 'aproved'"),
        ("article = 2, ", "article = deux, ", "<!-- digest: article = deux", "damaged"),
        ("## Article 3", "# Article 3", "# Article 3", "second title"),
        ("## Article 3", "<!-- oubli\n## Article 3", "<!-- oubli", "never closed"),
        ("article = 3,", "article = 1,", '<!-- digest: article = 1, source = "Source 3"', "twice"),
    ],
)
def test_broken_file_names_the_file_and_line(
    path: Path, old: str, new: str, line_of: str, words: str
) -> None:
    write_draft(make_issue(1, 2, 3), path)
    edit(path, old, new)
    lines = path.read_text(encoding="utf-8").split("\n")
    number = next(n for n, line in enumerate(lines, 1) if line.startswith(line_of))
    with pytest.raises(IssueError) as raised:
        read_draft(path)
    message = str(raised.value)
    assert f"{path}, line {number}:" in message
    assert words in message
    assert raised.value.hint  # says how to fix it


def test_file_without_settings_block_is_an_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("# Un titre\n\nDu texte.\n", encoding="utf-8")
    with pytest.raises(DigestError, match=r"line 1: the file must start with the settings"):
        read_draft(path)


def test_missing_file_says_how_to_create_it(path: Path) -> None:
    with pytest.raises(IssueError, match="digest draft"):
        read_draft(path)


def test_windows_editor_bom_and_crlf_are_fine(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    back = read_draft(path)
    assert [i.edited for i in back.items] == [False, False]
    assert texts(back.items[0].lessons) == texts(make_item(1).lessons)


def test_editor_comments_and_plain_label_are_ignored(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(
        path,
        "### Ce que cela nous apprend",
        "<!-- à revoir\navec Paul -->\nCe que cela nous apprend\u202f:",
    )
    back = read_draft(path)
    assert back.items[0].summary == "Le résumé généré de l'article 1."
    assert not back.items[0].edited


def test_write_is_atomic_and_never_overwrites_a_broken_file(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(path, "approved = false", "approved = peut-être")
    broken = path.read_text(encoding="utf-8")
    with pytest.raises(IssueError):
        write_draft(make_issue(1, 2), path)
    assert path.read_text(encoding="utf-8") == broken  # the editor's text is intact
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_write_replaces_the_file_in_one_step(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_draft(make_issue(1), path)
    before = path.read_text(encoding="utf-8")
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # At the moment of the swap the old file is still whole and the new one complete.
        assert Path(dst).read_text(encoding="utf-8") == before
        assert Path(src).read_text(encoding="utf-8") == format_draft(make_issue(1, 2), [1])
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_draft(make_issue(1, 2), path)
    assert replaced and Path(replaced[0][1]) == path
    assert read_draft(path).items[1].article_id == 2


def test_failed_write_leaves_the_old_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_draft(make_issue(1), path)
    before = path.read_text(encoding="utf-8")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_draft(make_issue(1, 2), path)
    assert path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_fingerprint_ignores_line_wrapping_but_not_words() -> None:
    item = make_item(1)
    rewrapped = dataclasses.replace(item, summary=item.summary.replace(" ", "\n", 2))
    assert item_fingerprint(rewrapped) == item_fingerprint(item)
    changed = dataclasses.replace(item, lessons=(item.lessons[0], Lesson("Autre chose.")))
    assert item_fingerprint(changed) != item_fingerprint(item)


def test_english_issue_gets_english_instructions(path: Path) -> None:
    write_draft(make_issue(1, language="en"), path)
    text = path.read_text(encoding="utf-8")
    assert "set approved = true" in text
    assert "### What this teaches us" in text
    assert read_draft(path).language == "en"


# -- Markdown, the editor's own blocks, evidence ------------------------------------------


def test_markdown_in_every_text_is_kept_as_written(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    edit(
        path,
        "Voici la veille de la semaine.",
        "Voici la veille, avec une [journée d'étude](https://exemple.org/j) :\n\n"
        "- un **atelier** ;\n- une *table ronde*.",
    )
    edit(path, "Le résumé généré de l'article 1.", "Un résumé **revu**.\n\n1. un\n2. deux")
    edit(path, "- Première leçon de l'article 1.", "- Une leçon [sourcée](https://e.org/s).")
    back = read_draft(path)
    assert back.intro == (
        "Bonjour,\n\nVoici la veille, avec une [journée d'étude](https://exemple.org/j) :"
        "\n\n- un **atelier** ;\n- une *table ronde*."
    )
    assert back.items[0].summary == "Un résumé **revu**.\n\n1. un\n2. deux"
    assert texts(back.items[0].lessons)[0] == "Une leçon [sourcée](https://e.org/s)."
    assert back.items[0].edited and not back.items[1].edited
    write_draft(back, path)  # and a rewrite (approve, draft again) changes none of it
    again = read_draft(path)
    assert (again.intro, again.items) == (back.intro, back.items)


def test_a_block_without_digest_line_is_the_editors_own(path: Path) -> None:
    write_draft(make_issue(1, 2), path)
    edit(
        path,
        "## Article 2",
        "## Journée d'étude\n\nLe **12 décembre** :\n\n- ateliers ;\n- table ronde.\n\n"
        "## À lire aussi\n\n## Article 2",
    )
    text = path.read_text(encoding="utf-8") + "\n## Le mot de la fin\n\nMerci !\n"
    path.write_text(text, encoding="utf-8")
    back = read_draft(path)
    assert [i.title for i in back.items] == [
        "Article 1",
        "Journée d'étude",
        "À lire aussi",
        "Article 2",
        "Le mot de la fin",
    ]
    note, heading = back.items[1], back.items[2]
    assert note.is_note and heading.is_note and not back.items[3].is_note
    assert note.summary == "Le **12 décembre** :\n\n- ateliers ;\n- table ronde."
    assert note.lessons == () and heading.summary == ""
    assert [i.position for i in back.items] == [1, 2, 3, 4, 5]
    # Written back as they were: no digest line, no lessons label.
    write_draft(back, path)
    assert read_draft(path).items == back.items
    assert "## À lire aussi\n\n## Article 2\n<!-- digest:" in path.read_text(encoding="utf-8")
    # Drafting again keeps them where the editor put them.
    merged = merge_draft(make_issue(1, 2, 3), read_draft(path), refresh=True)
    assert [i.title for i in merged.items] == [*(i.title for i in back.items), "Article 3"]


def test_a_draft_written_by_the_first_version_still_reads(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(
        "+++\n"
        "# Brouillon de la lettre 2026-W48.\n"
        'period = "2026-W48"\nlanguage = "fr"\napproved = false\noffered = [7, 9]\n'
        "+++\n\n# Titre\n\nIntro.\n\n## Un titre\n"
        '<!-- digest: article = 7, source = "Le Journal", url = "https://e.org/a", '
        'published = 2026-11-24T08:30:00Z, backend = "extractive", '
        'fingerprint = "a2de903fc9f18558" -->\n\n'
        "Le résumé.\n\n### Ce que cela nous apprend\n\n- Une leçon.\n- Une autre.\n",
        encoding="utf-8",
    )
    back = read_draft(path)
    (item,) = back.items
    assert (back.title, back.intro, back.removed) == ("Titre", "Intro.", (9,))
    assert (item.article_id, item.source, item.url, item.summary) == (
        7,
        "Le Journal",
        "https://e.org/a",
        "Le résumé.",
    )
    assert item.published == dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)
    assert texts(item.lessons) == ("Une leçon.", "Une autre.")
    assert not item.edited  # the fingerprint the first version wrote still matches


def test_unedited_lessons_keep_their_quote_through_a_redraft(path: Path) -> None:
    generated = make_issue(1)
    write_draft(generated, path)
    untouched = merge_draft(generated, read_draft(path))
    assert untouched.items[0].lessons == generated.items[0].lessons  # quote and offsets back
    edit(path, "Première leçon de l'article 1.", "Une leçon réécrite.")
    rewritten = merge_draft(generated, read_draft(path))
    assert rewritten.items[0].lessons[0] == Lesson("Une leçon réécrite.")


def test_the_lessons_label_is_the_emails(path: Path) -> None:
    from digest.i18n import strings_for

    for language in ("fr", "en"):
        write_draft(make_issue(1, language=language), path)
        label = strings_for(language)["lessons_title"]
        assert f"\n### {label}\n" in path.read_text(encoding="utf-8")
        path.unlink()


def test_without_the_label_an_articles_list_is_its_lessons(path: Path) -> None:
    write_draft(make_issue(1), path)
    edit(path, "### Ce que cela nous apprend\n\n", "")
    back = read_draft(path)
    assert back.items[0].summary == "Le résumé généré de l'article 1."
    assert texts(back.items[0].lessons) == texts(make_item(1).lessons)
    assert not back.items[0].edited
