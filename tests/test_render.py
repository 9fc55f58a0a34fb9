"""The rendered email: structure, accessibility, typography, personalization, bad input.

The "email" rules of docs/quality.md (and the HTML side of
6 and 11) are checked here against the real pipeline: Jinja2 → mjml-python →
premailer. The browser checks (no horizontal scroll, dark mode) are in
test_render_browser.py, the whole-output comparison in test_render_golden.py.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import lxml.html
import pytest
from render_sample import sample_issue, sample_items, sample_settings

from digest.checks import check_email
from digest.errors import TemplateError
from digest.models import NAME_MARKER, UNSUBSCRIBE_MARKER, IssueItem, RenderedIssue
from digest.render import (
    MAX_HTML_BYTES,
    compile_mjml,
    inline_css,
    render_issue,
    render_mjml,
)
from digest.theme import Theme, contrast_ratio
from digest.typography import NBSP, NNBSP

UNSUBSCRIBE = "https://veille.exemple.org/u/tok3n?x=1&y=2"


def render(count: int = 3, settings_changes: dict[str, object] | None = None, **issue_changes):  # type: ignore[no-untyped-def]
    return render_issue(
        sample_issue(count, **issue_changes), sample_settings(**(settings_changes or {}))
    )


def tree(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html.encode("utf-8"))


def visible_text(html: str) -> str:
    doc = tree(html)
    for node in doc.xpath("//style|//title|//script"):
        node.drop_tree()
    return doc.text_content()


def errors(checks: list) -> list:  # type: ignore[type-arg]
    return [c for c in checks if c.level == "error"]


def item(**changes: object) -> IssueItem:
    return dataclasses.replace(sample_items(1)[0], **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the whole email


def test_a_ten_article_issue_passes_every_check_and_fits_under_gmails_clipping() -> None:
    issue = sample_issue(10)
    rendered = render_issue(issue, sample_settings())
    assert check_email(rendered, issue) == []
    assert len(rendered.html.encode("utf-8")) < MAX_HTML_BYTES
    assert rendered.subject == (
        f"La veille des arts numériques — Semaine 48{NBSP}: l'IA entre urgence et qualité"
    )


def test_html_declares_language_colour_schemes_and_keeps_media_rules() -> None:
    html = render().html
    assert html.lower().startswith("<!doctype html>")
    doc = tree(html)
    assert doc.get("lang") == "fr"
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    styles = "\n".join(s.text_content() for s in doc.xpath("//style"))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert "max-width: 479px" in styles  # the mobile rules survive inlining


def test_english_issue_is_in_english() -> None:
    rendered = render(language="en", title="Week 48: AI between urgency and quality?")
    assert tree(rendered.html).get("lang") == "en"
    assert "What this teaches us" in rendered.text
    assert "Ce que cela nous apprend" not in rendered.html
    assert "Week of November 23, 2026" in rendered.text
    assert "Unsubscribe:" in rendered.text
    # No French spacing in English.
    assert "Week 48: AI between urgency and quality?" in rendered.text


def test_msoconditional_comments_survive_inlining() -> None:
    compiled = compile_mjml(render_mjml(sample_issue(3), sample_settings()))
    inlined = inline_css(compiled)
    for marker in ("<!--[if mso", "<!--[if !mso", "<![endif]-->", "<!--<![endif]-->"):
        assert compiled.count(marker) > 0 or marker == "<!--[if !mso"
        assert inlined.count(marker) == compiled.count(marker), marker


def test_premailer_inlines_our_rules_keeps_media_queries_and_works_offline() -> None:
    html = (
        "<!doctype html><html><head>"
        '<link rel="stylesheet" href="https://fonts.example.invalid/css">'
        "<style>.lead { color: #123456; } @media (max-width: 479px) { .lead { color: red; } }"
        '</style></head><body><p class="lead">Bonjour</p></body></html>'
    )
    out = inline_css(html)
    (p,) = tree(out).xpath("//p")
    assert "color:#123456" in p.get("style").replace(" ", "")
    assert "@media (max-width: 479px)" in out
    assert out.lower().startswith("<!doctype html>")


def test_mjml_reset_stays_in_the_head_instead_of_bloating_every_cell() -> None:
    html = render().html
    assert "table, td { border-collapse: collapse;" in html
    assert "mso-table-lspace" not in "".join(t.get("style") or "" for t in tree(html).xpath("//td"))


def test_every_image_has_alt_and_every_layout_table_is_presentation() -> None:
    rendered = render(3, {"logo_url": "https://exemple.org/logo.png"})
    doc = tree(rendered.html)
    images = doc.xpath("//img")
    assert len(images) == 2  # the logo and the first article's image
    assert all(img.get("alt") is not None for img in images)
    logo = next(img for img in images if img.get("src") == "https://exemple.org/logo.png")
    assert logo.get("alt") == "Logo de La veille des arts numériques"
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)


def test_article_image_without_alt_gets_an_empty_alt_and_the_title_carries_meaning() -> None:
    issue = sample_issue(1, items=(item(image_alt=""),))
    rendered = render_issue(issue, sample_settings())
    (img,) = tree(rendered.html).xpath("//img")
    assert img.get("alt") == ""
    assert img.getparent().tag != "a"  # a link with no name would be announced as its URL
    assert check_email(rendered, issue) == []


def test_link_texts_are_descriptive() -> None:
    doc = tree(render(3, {"logo_url": "https://exemple.org/logo.png"}).html)
    vague = {"ici", "cliquez ici", "click here", "here", "lien", "link", "lire la suite", "plus"}
    links = doc.xpath("//a")
    assert links
    for link in links:
        text = " ".join(link.text_content().split()).lower()
        label = text or " ".join(img.get("alt", "") for img in link.xpath(".//img"))
        assert label and label not in vague, lxml.html.tostring(link)


def test_preheader_is_the_first_text_of_the_body() -> None:
    rendered = render()
    assert rendered.preheader.startswith("Cette semaine, un studio qui ralentit")
    body = tree(rendered.html).body
    first_text = next(t for t in body.itertext() if t.strip())
    assert first_text.strip() == rendered.preheader
    assert len(rendered.preheader) <= 140


def test_preheader_falls_back_to_the_first_summary() -> None:
    rendered = render(intro="")
    assert rendered.preheader.startswith("Le studio lyonnais Pixel Nord a déclaré")


def test_articles_show_source_date_linked_title_summary_and_lessons() -> None:
    issue = sample_issue(3)
    rendered = render_issue(issue, sample_settings())
    doc = tree(rendered.html)
    text = " ".join(visible_text(rendered.html).split())
    for it in issue.items:
        (link,) = {a for a in doc.xpath("//h2/a") if a.get("href") == it.url}
        assert " ".join(link.text_content().split()).replace(NBSP, " ") == it.title
        assert it.source.upper() in text.upper()
        for lesson in it.lessons:
            assert _plain(lesson.text) in _plain(text)
        assert _plain(it.summary) in _plain(text)
    assert text.count("Ce que cela nous apprend") == 3
    assert "23 novembre 2026" in text


def _plain(text: str) -> str:
    return " ".join(text.replace(NBSP, " ").replace(NNBSP, " ").split()).replace(" ", "")


def test_sections_group_items_under_headings_in_order_of_first_appearance() -> None:
    a, b, c = sample_items(3)
    items = (
        dataclasses.replace(a, section="Création"),
        dataclasses.replace(b, section="Métiers"),
        dataclasses.replace(c, section="Création"),
    )
    rendered = render_issue(sample_issue(3, items=items), sample_settings())
    doc = tree(rendered.html)
    headings = [" ".join(h.text_content().split()) for h in doc.xpath("//h2")]
    assert headings == ["Création", "Métiers"]
    order = [a.get("href") for a in doc.xpath("//h3/a")]
    assert order == [a.url, c.url, b.url]
    assert rendered.text.index("== CRÉATION ==") < rendered.text.index("== MÉTIERS ==")


def test_footer_says_why_who_and_how_to_leave() -> None:
    rendered = render()
    doc = tree(rendered.html)
    text = visible_text(rendered.html)
    assert "Vous recevez cette veille parce que vous suivez une formation" in text
    assert "12 rue de l'Exemple, 75011 Paris" in text
    unsubscribe = [a for a in doc.xpath("//a") if a.get("href") == rendered.unsubscribe_marker]
    assert [a.text_content() for a in unsubscribe] == ["Se désabonner"]
    archive = [
        (a.text_content(), a.get("href"))
        for a in doc.xpath("//a[@href]")
        if "archives" in a.get("href")
    ]
    assert archive == [
        ("Lire ce numéro en ligne", "https://veille.exemple.org/archives/2026-W48"),
        ("Tous les numéros", "https://veille.exemple.org/archives"),
    ]
    assert "https://veille.exemple.org/archives/2026-W48\n" in rendered.text
    assert "https://veille.exemple.org/archives\n" in rendered.text


def test_without_archive_url_no_archive_link_and_default_why() -> None:
    settings = sample_settings(archive_url="")
    settings = dataclasses.replace(
        settings, newsletter=dataclasses.replace(settings.newsletter, why="", postal_address="")
    )
    rendered = render_issue(sample_issue(1), settings)
    assert "archives" not in rendered.html
    assert "Tous les numéros" not in rendered.text
    html_text = visible_text(rendered.html)
    assert "abonné·e à La veille des arts numériques" in html_text
    # With no postal address the sender's name still says who writes.
    assert "Institut des Arts Numériques" in html_text
    assert "Institut des Arts Numériques" in rendered.text


def test_an_issue_without_articles_must_not_go_out() -> None:
    issue = sample_issue(0)
    rendered = render_issue(issue, sample_settings())
    assert [c.name for c in errors(check_email(rendered, issue))] == ["empty-issue"]


def test_cssutils_complaints_about_mso_properties_are_silenced(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    render()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []
    assert "mso-" not in capfd.readouterr().err


# ------------------------------------------------------------------ editors' settings


def test_colours_font_and_logo_come_from_the_config() -> None:
    rendered = render(
        2,
        {
            "primary_color": "#1e5bb3",
            "font_family": "Georgia, serif",
            "logo_url": "https://exemple.org/logo.png",
            "logo_alt": "Institut des Arts Numériques",
        },
    )
    assert "#1e5bb3" in rendered.html
    assert "#b3261e" not in rendered.html
    assert "Georgia, serif" in rendered.html
    (logo,) = [i for i in tree(rendered.html).xpath("//img") if "logo" in i.get("src")]
    assert logo.get("alt") == "Institut des Arts Numériques"
    # The logo sits on a white plate, so a dark logo stays visible in dark mode.
    plate = logo.getparent()
    assert plate.tag == "td" and "background-color:#ffffff" in plate.get("style").replace(" ", "")


def test_default_palette_has_readable_contrast_in_light_and_dark() -> None:
    theme = Theme.from_settings(sample_settings(), "logo")
    pairs = {
        "body text on card": (theme.text_color, theme.card_color),
        "accent on card": (theme.primary_color, theme.card_color),
        "lessons title on tint": (theme.primary_color, theme.tint_color),
        "lessons text on tint": (theme.text_color, theme.tint_color),
        "masthead text": (theme.on_primary_color, theme.primary_color),
        "footer": (theme.muted_color, theme.background_color),
        "dark body text": (theme.dark_text, theme.dark_card),
        "dark accent": (theme.dark_primary, theme.dark_card),
        "dark lessons": (theme.dark_text, theme.dark_tint),
        "dark lessons title": (theme.dark_primary, theme.dark_tint),
        "dark footer": (theme.dark_muted, theme.dark_background),
    }
    for name, (fg, bg) in pairs.items():
        assert contrast_ratio(fg, bg) >= 4.5, name


def test_a_light_primary_colour_gets_dark_masthead_text() -> None:
    theme = Theme.from_settings(sample_settings(primary_color="#f5d000"), "logo")
    assert contrast_ratio(theme.on_primary_color, "#f5d000") >= 4.5


# ------------------------------------------------------------------ French typography


def test_french_spacing_and_dates_in_both_parts() -> None:
    rendered = render()
    html_text = visible_text(rendered.html)
    for part in (html_text, rendered.text):
        assert f"Semaine 48{NBSP}: l'IA" in part
        assert f"«{NBSP}pause qualité{NBSP}»" in part
        assert f"Bonne lecture{NNBSP}!" in part
        assert f"moteur de rendu{NNBSP}; l" in part
        assert "Semaine du 23 novembre 2026" in part
    assert f"Ce que cela nous apprend{NBSP}:" in rendered.text
    assert f"Se désabonner{NBSP}:" in rendered.text


def test_french_spacing_leaves_urls_times_and_markup_alone() -> None:
    summary = "Rendez-vous à 14:30 sur https://exemple.org/live?jour=1&h=14:30 ; c'est gratuit !"
    rendered = render(1, items=(item(summary=summary),))
    expected = (
        "Rendez-vous à 14:30 sur https://exemple.org/live?jour=1&h=14:30"
        f"{NNBSP}; c'est gratuit{NNBSP}!"
    )
    assert expected in " ".join(visible_text(rendered.html).split(" "))
    assert expected in rendered.text.replace("\n", " ")


# ------------------------------------------------------------------ personalization


def test_personalize_fills_name_and_unsubscribe_url_escaped_in_html() -> None:
    rendered = render()
    email = rendered.personalize("Zoé <Admin> & Co", UNSUBSCRIBE)
    assert NAME_MARKER not in email.html + email.text
    assert UNSUBSCRIBE_MARKER not in email.html + email.text
    assert "Bonjour Zoé &lt;Admin&gt; &amp; Co," in email.html
    assert "Bonjour Zoé <Admin> & Co," in email.text
    doc = tree(email.html)
    assert [a.get("href") for a in doc.xpath("//a") if a.text_content() == "Se désabonner"] == [
        UNSUBSCRIBE
    ]
    assert UNSUBSCRIBE in email.text
    assert (email.subject, email.preheader) == (rendered.subject, rendered.preheader)


def test_personalize_without_a_name_greets_everyone() -> None:
    email = render().personalize("", UNSUBSCRIBE)
    assert "Bonjour," in email.text
    assert "Bonjour ," not in email.text
    assert "Bonjour," in visible_text(email.html)


def test_personalize_gives_each_recipient_their_own_values() -> None:
    rendered = render()
    first = rendered.personalize("Ana", "https://x.example/u/1")
    second = rendered.personalize("", "https://x.example/u/2")
    third = rendered.personalize("Bo", "https://x.example/u/3")
    assert "Ana" in first.text and "u/1" in first.text and "u/2" not in first.text
    assert "Bonjour," in second.text and "u/2" in second.text
    assert "Bo," in third.html and "u/3" in third.html and "Ana" not in third.html


# ------------------------------------------------------------------ bad input


def test_html_and_jinja_in_feed_text_are_shown_as_text_never_run() -> None:
    title = "<script>alert('x')</script> {{ 7 * 7 }} {% if true %}oui{% endif %}"
    summary = '<img src=x onerror="alert(1)"> %%DIGEST_UNSUBSCRIBE_URL%% {{ settings }}'
    issue = sample_issue(1, items=(item(title=title, summary=summary),))
    rendered = render_issue(issue, sample_settings())
    doc = tree(rendered.html)
    assert not doc.xpath("//script")
    assert not [i for i in doc.xpath("//img") if i.get("onerror") is not None]
    # Without the greeting's marker: its random hex digits could read "49".
    text = visible_text(rendered.html.replace(rendered.name_marker, "")).replace("\u2060", "")
    assert "<script>alert('x')</script>" in text
    assert "{{ 7 * 7 }}" in text and "49" not in text
    assert "{% if true %}oui{% endif %}" in text
    assert '<img src=x onerror="alert(1)">' in text
    # A marker smuggled in a summary is never filled with a recipient's unsubscribe URL.
    email = rendered.personalize("Ana", UNSUBSCRIBE)
    assert email.html.count("tok3n") == 1
    assert email.text.count("tok3n") == 1
    # And none of it is taken for a template leftover.
    assert [c for c in check_email(rendered, issue) if c.name == "template-leftover"] == []


def test_javascript_and_relative_urls_never_become_links() -> None:
    issue = sample_issue(
        2,
        items=(
            item(url="javascript:alert(1)"),
            dataclasses.replace(sample_items(2)[1], url="/relative/path"),
        ),
    )
    rendered = render_issue(issue, sample_settings())
    assert "javascript:" not in rendered.html
    assert 'href="/relative' not in rendered.html
    problems = [c.message for c in errors(check_email(rendered, issue))]
    assert any("article 1 has no usable link" in m for m in problems)
    assert any("article 2 has no usable link" in m for m in problems)


def test_article_without_title_or_summary_is_an_error() -> None:
    issue = sample_issue(
        2, items=(item(title=""), dataclasses.replace(sample_items(2)[1], summary=" "))
    )
    rendered = render_issue(issue, sample_settings())
    problems = [
        c.message for c in errors(check_email(rendered, issue)) if c.name == "empty-article"
    ]
    assert len(problems) == 2
    assert "article 1" in problems[0] and "no title" in problems[0]
    assert "article 2" in problems[1] and "no summary" in problems[1]


def test_a_3000_character_title_is_cut_and_warned_about() -> None:
    title = ("Une très longue histoire " * 130).strip()
    assert len(title) > 3000
    issue = sample_issue(1, items=(item(title=title),))
    rendered = render_issue(issue, sample_settings())
    (heading,) = tree(rendered.html).xpath("//h2")
    shown = heading.text_content()
    assert len(shown) <= 200 and shown.endswith("…")
    checks = check_email(rendered, issue)
    assert errors(checks) == []
    assert [c.name for c in checks] == ["title-length"]
    assert max(len(line.encode()) for line in rendered.text.splitlines()) <= 998


def test_missing_or_broken_image_urls_are_left_out() -> None:
    items = (
        item(image_url=""),
        dataclasses.replace(sample_items(2)[1], image_url="not a url", image_alt="x"),
    )
    issue = sample_issue(2, items=items)
    rendered = render_issue(issue, sample_settings())
    assert tree(rendered.html).xpath("//img") == []
    checks = check_email(rendered, issue)
    assert errors(checks) == []
    assert [c.message for c in checks] == ["article 2: image 'not a url' is not a URL, left out"]


def test_control_characters_and_line_breaks_in_feed_text_are_dropped() -> None:
    issue = sample_issue(
        1, title="Semaine\r\n48", items=(item(title="Titre\x00 avec\x0b contrôle\r\nBcc: x@y"),)
    )
    settings = sample_settings()
    settings = dataclasses.replace(
        settings, newsletter=dataclasses.replace(settings.newsletter, title="La veille\nBcc: z")
    )
    rendered = render_issue(issue, settings)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert "Titre avec contrôle Bcc : x@y" in visible_text(rendered.html).replace(NBSP, " ")
    assert "\x00" not in rendered.html + rendered.text


def test_sixty_articles_are_too_big_and_the_check_says_how_many_to_drop() -> None:
    issue = sample_issue(60)
    rendered = render_issue(issue, sample_settings())
    (size,) = [c for c in check_email(rendered, issue) if c.name == "size"]
    assert size.level == "error"
    match = re.search(r"drop (\d+) of the 60 articles", size.message)
    assert match, size.message
    drop = int(match.group(1))
    # The advice is right: dropping that many fits, one fewer does not.
    fits = render_issue(sample_issue(60 - drop), sample_settings())
    assert len(fits.html.encode()) <= MAX_HTML_BYTES
    too_big = render_issue(sample_issue(60 - drop + 1), sample_settings())
    assert len(too_big.html.encode()) > MAX_HTML_BYTES - 2_000


# ------------------------------------------------------------------ custom templates


def _settings_with(tmp_path: Path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    folder = tmp_path / "my-templates"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return sample_settings(tmp_path, templates=folder)


def test_user_templates_override_the_bundled_ones_file_by_file(tmp_path: Path) -> None:
    footer = (
        "<mj-section><mj-column><mj-text>Pied de page maison — "
        '<a href="{{ unsubscribe_marker }}">Se désabonner de {{ newsletter.title }}</a>'
        "</mj-text></mj-column></mj-section>\n"
    )
    settings = _settings_with(tmp_path, {"_footer.mjml.j2": footer})
    rendered = render_issue(sample_issue(2), settings)
    assert "Pied de page maison" in rendered.html
    assert "Ce que cela nous apprend" in rendered.html  # the rest is still bundled


def test_user_templates_may_live_in_an_email_subfolder(tmp_path: Path) -> None:
    (tmp_path / "t" / "email").mkdir(parents=True)
    (tmp_path / "t" / "email" / "issue.txt.j2").write_text(
        "Texte maison {{ unsubscribe_marker }}\n", encoding="utf-8"
    )
    rendered = render_issue(sample_issue(1), sample_settings(tmp_path, templates=tmp_path / "t"))
    assert rendered.text == f"Texte maison {rendered.unsubscribe_marker}\n"


def test_syntax_error_in_a_custom_template_names_file_and_line(tmp_path: Path) -> None:
    broken = "<mj-section>\n<mj-column>\n<mj-text>{% if newsletter.title %}oops</mj-text>\n"
    settings = _settings_with(tmp_path, {"_footer.mjml.j2": broken})
    with pytest.raises(TemplateError) as caught:
        render_issue(sample_issue(1), settings)
    message = str(caught.value)
    assert "_footer.mjml.j2" in message and "my-templates" in message
    assert re.search(r"line \d+", message), message


def test_syntax_error_reports_the_exact_line(tmp_path: Path) -> None:
    broken = "line one\nline two\n{{ newsletter.title }\n"
    settings = _settings_with(tmp_path, {"issue.txt.j2": broken})
    with pytest.raises(TemplateError, match=r"issue\.txt\.j2, line 3"):
        render_issue(sample_issue(1), settings)


def test_unknown_template_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    template = "{{ t.greeting }}\n{{ newsletter.titel }}\n{{ unsubscribe_marker }}\n"
    settings = _settings_with(tmp_path, {"issue.txt.j2": template})
    with pytest.raises(TemplateError) as caught:
        render_issue(sample_issue(1), settings)
    message = str(caught.value)
    assert "titel" in message
    assert "issue.txt.j2, line 2" in message


def test_missing_template_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        render_issue(sample_issue(1), sample_settings(tmp_path, templates=tmp_path / "nope"))


def test_template_producing_invalid_mjml_is_a_template_error(tmp_path: Path) -> None:
    settings = _settings_with(tmp_path, {"issue.mjml.j2": "<mjml><mj-body><mj-section>"})
    with pytest.raises(TemplateError, match="MJML"):
        render_issue(sample_issue(1), settings)


# ------------------------------------------------------------------ check_email on its own


def _rendered(
    html: str, text: str = f"Hello\n{UNSUBSCRIBE_MARKER}\n", subject: str = "S"
) -> RenderedIssue:
    return RenderedIssue(subject=subject, preheader="p", html=html, text=text)


UNSUB_LINK = f'<a href="{UNSUBSCRIBE_MARKER}">Se désabonner</a>'
HTML_OPEN = '<html lang="fr"><body>'


def test_check_email_finds_missing_alt_and_non_https_urls() -> None:
    html = (
        f'<html lang="fr"><body><img src="https://a.example/i.png">{UNSUB_LINK}'
        '<a href="http://a.example/x">x</a><a href="/relative">y</a>'
        '<img src="data:image/png;base64,xx" alt=""></body></html>'
    )
    text = f"http://a.example/x /relative {UNSUBSCRIBE_MARKER}"
    checks = check_email(_rendered(html, text))
    found = {(c.name, c.level) for c in checks}
    assert ("image-alt", "error") in found
    assert ("links", "warning") in found  # http
    messages = [c.message for c in checks if c.level == "error" and c.name == "links"]
    assert any("/relative" in m for m in messages)
    assert any("data:image" in m for m in messages)


def test_check_email_finds_template_leftovers_and_unknown_markers() -> None:
    body = f"{UNSUB_LINK} Bonjour {{{{ name }}}} %%OTHER_MARKER%% {NAME_MARKER}"
    html = f"<html><body>{body}</body></html>"
    checks = check_email(_rendered(html, f"{{% endif %}} {UNSUBSCRIBE_MARKER}"))
    leftovers = [c.message for c in checks if c.name == "template-leftover"]
    assert len(leftovers) == 2
    assert "{{" in leftovers[0] and "%%OTHER_MARKER%%" in leftovers[0]
    assert NAME_MARKER not in leftovers[0]
    assert "{%" in leftovers[1]


def test_check_email_requires_text_part_unsubscribe_and_a_sane_subject() -> None:
    html = '<html><body><a href="https://a.example/article">Article</a></body></html>'
    checks = check_email(_rendered(html, text="", subject=""))
    names = {c.name for c in errors(checks)}
    assert {"text-part", "unsubscribe", "subject"} <= names
    long_subject = check_email(
        _rendered(f"{HTML_OPEN}{UNSUB_LINK}</body></html>", subject="x" * 120)
    )
    assert [(c.name, c.level) for c in long_subject] == [("subject", "warning")]


def test_check_email_finds_text_part_that_differs_from_html() -> None:
    issue = sample_issue(2)
    rendered = render_issue(issue, sample_settings())
    first = issue.items[0]
    text = rendered.text.replace(first.url, "https://exemple.org/autre")
    checks = check_email(dataclasses.replace(rendered, text=text), issue)
    messages = [c.message for c in errors(checks)]
    assert any("article 1's URL is missing from the text part" in m for m in messages)
    assert any(first.url in m and "not in the text part" in m for m in messages)


def test_check_email_finds_overlong_lines() -> None:
    html = f"{HTML_OPEN}{UNSUB_LINK}</body></html>"
    text = "court\n" + "é" * 500 + f"\n{UNSUBSCRIBE_MARKER}\n"
    (check,) = check_email(_rendered(html, text))
    assert (check.name, check.level) == ("line-length", "error")
    assert "line 2" in check.message


def test_unknown_variable_in_an_included_partial_names_the_partial(tmp_path: Path) -> None:
    footer = "<mj-section><mj-column>\n<mj-text>{{ newsletter.adresse }}</mj-text>\n"
    settings = _settings_with(tmp_path, {"_footer.mjml.j2": footer})
    with pytest.raises(TemplateError, match=r"_footer\.mjml\.j2, line 2") as caught:
        render_issue(sample_issue(1), settings)
    assert "adresse" in str(caught.value)


def test_a_bare_issue_renders_with_every_optional_part_missing() -> None:
    bare = IssueItem(
        article_id=None,
        position=0,
        source="",
        title="Un titre",
        url="https://exemple.org/a",
        summary="Un résumé.",
        lessons=(),
    )
    issue = sample_issue(1, period="brouillon", title="", intro="", items=(bare,))
    settings = sample_settings(archive_url="")
    settings = dataclasses.replace(
        settings,
        newsletter=dataclasses.replace(
            settings.newsletter, why="", postal_address="", from_name=""
        ),
    )
    rendered = render_issue(issue, settings)
    assert rendered.subject == "La veille des arts numériques"
    assert rendered.preheader == "Un résumé."
    assert "Ce que cela nous apprend" not in rendered.html + rendered.text
    assert "Lire l’article" in visible_text(rendered.html)
    assert errors(check_email(rendered, issue)) == []


def test_check_email_flags_vague_link_texts_and_a_missing_lang() -> None:
    html = (
        f"<html><body>{UNSUB_LINK}"
        '<a href="https://a.example/1">cliquez ici</a>'
        '<a href="https://a.example/2">Lire la suite…</a>'
        '<a href="https://a.example/3"><img src="https://a.example/i.png" alt=""></a>'
        '<a href="https://a.example/4"><img src="https://a.example/i.png" alt="Le programme"></a>'
        "</body></html>"
    )
    links = " ".join(f"https://a.example/{n}" for n in range(1, 5))
    text = f"{links} {UNSUBSCRIBE_MARKER}"
    checks = check_email(_rendered(html, text))
    vague = [c.message for c in checks if c.name == "link-text"]
    assert len(vague) == 3
    assert all(c.level == "warning" for c in checks if c.name in ("link-text", "lang"))
    assert [c.name for c in checks if c.name == "lang"] == ["lang"]
