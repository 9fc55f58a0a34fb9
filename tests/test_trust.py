"""Nothing a feed writes reaches a subscriber's secrets; a real send refuses placeholders.

End to end where it matters: a hostile feed on a loopback HTTP server, collected,
drafted and sent to the capture SMTP server, then the bytes that arrived are read
for the reader's name and unsubscribe token in any address that is not ours.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import lxml.html
import pytest
from conftest import HTTPServer, Route
from pipeline_helpers import cli, make_config
from quality_helpers import PERIOD, received
from render_sample import sample_issue, sample_settings

from digest.capture import CaptureServer
from digest.checks import check_email, check_settings
from digest.collect.images import is_tracking_image, lead_image
from digest.config import LLMSettings, SummarizeSettings, load_settings
from digest.i18n import translate_check
from digest.models import RenderedIssue
from digest.render import render_issue
from digest.starter import write_starter

# -- item 7: per-recipient values never leave in someone else's URL --------------------------

READER_NAME = "Zébulon Confidentiel"

MARKER_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Veille piégée</title><link>{base}/</link>
<description>d</description>
<item>
<title>Un atelier %%DIGEST_NAME%% à Lyon</title>
<link>{base}/a?who=%%DIGEST_NAME%%&amp;u=%%DIGEST_UNSUBSCRIBE_URL%%</link>
<guid>marker-1</guid>
<pubDate>Tue, 24 Nov 2026 09:00:00 +0000</pubDate>
<description><![CDATA[<p><img
src="{base}/lead.jpg?n=%%DIGEST_NAME%%&amp;u=%%DIGEST_UNSUBSCRIBE_URL%%"
width="640" height="360" alt="Atelier"></p>
<p>L’école de design de Lyon a ouvert le 23 novembre 2026 un atelier de création numérique
pour 40 étudiants. Le projet réunit 12 studios partenaires et dure six mois.</p>
<p><a href="{base}/b?%%DIGEST_UNSUBSCRIBE_URL%%">Le programme</a> sera publié en décembre.</p>
]]></description>
</item>
</channel></rss>
"""


def _foreign_urls(html: str, text: str, own_host: str) -> list[str]:
    """Every address in the message (attributes, and words of both parts) not on ``own_host``."""
    doc = lxml.html.document_fromstring(html.encode("utf-8"))
    urls = [
        value
        for node in doc.iter()
        if isinstance(node.tag, str)
        for attr, value in node.attrib.items()
        if attr in ("href", "src", "background", "srcset", "action")
    ]
    urls += re.findall(r"https?://\S+", text + " " + doc.text_content())
    return [u for u in urls if urlsplit(u.strip()).hostname not in (own_host, None)]


def test_feed_cannot_put_the_readers_name_or_token_into_its_own_urls(
    tmp_path: Path, smtp_capture: CaptureServer, http_server: HTTPServer
) -> None:
    base = http_server.url("").rstrip("/").replace("127.0.0.1", "localhost")
    http_server.routes["/marker.xml"] = Route(
        200, MARKER_FEED.format(base=base).encode(), {"Content-Type": "application/rss+xml"}
    )
    sources = f'[[sources]]\nname = "Veille piégée"\nurl = "{http_server.url("/marker.xml")}"\n'
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    people = tmp_path / "people.csv"
    people.write_text(f"email,name,language\nzeb@exemple.fr,{READER_NAME},fr\n", encoding="utf-8")
    assert cli(config, "subscribers", "import", str(people)) == 0
    assert cli(config, "run", "--period", PERIOD) == 0

    [message] = received(smtp_capture)
    unsubscribe = re.search(r"<(http[^>]+/u/([^>]+))>", str(message.message["List-Unsubscribe"]))
    assert unsubscribe, message.message["List-Unsubscribe"]
    token = unsubscribe.group(2)
    own_host = urlsplit(unsubscribe.group(1)).hostname
    assert own_host == "127.0.0.1"  # the feed lives on "localhost": another host
    html, text = message.html, message.text
    assert f"Bonjour {READER_NAME}" in text  # the greeting still gets the name
    assert "Un atelier" in html  # the hostile article did go out, made harmless
    foreign = _foreign_urls(html, text, own_host)
    assert any("/a?who=" in u for u in foreign), "the feed's link should be in the email"
    assert any("/lead.jpg" in u for u in foreign), "the feed's image should be the lead image"
    for url in foreign:
        seen = unquote(unquote(url))
        assert token not in seen, url
        assert "Zébulon" not in seen and "Z%C3%A9bulon" not in url, url


def test_markers_are_drawn_per_render_and_content_cannot_guess_them() -> None:
    issue = sample_issue(2)
    first = render_issue(issue, sample_settings())
    second = render_issue(issue, sample_settings())
    assert first.name_marker != second.name_marker
    assert first.unsubscribe_marker != second.unsubscribe_marker
    # Content carrying the very markers of a render is not filled in at send time
    # unless the template put it there: the fixed markers of older versions are inert.
    email = first.personalize("Ana", "https://lettre.ian.fr/u/TOKEN")
    assert first.name_marker not in email.html and "TOKEN" in email.html
    assert "%%DIGEST_NAME%%" not in first.html


def _rendered(html: str, text: str) -> RenderedIssue:
    return RenderedIssue(
        subject="S",
        preheader="p",
        html=html,
        text=text,
        name_marker="%%DIGEST_NAME_AB12%%",
        unsubscribe_marker="%%DIGEST_UNSUBSCRIBE_AB12%%",
    )


UNSUB = '<a href="%%DIGEST_UNSUBSCRIBE_AB12%%">Se désabonner</a>'
TEXT = "Bonjour %%DIGEST_NAME_AB12%%,\nSe désabonner : %%DIGEST_UNSUBSCRIBE_AB12%%\n"


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://pub.example.org/?n=%%DIGEST_NAME_AB12%%">Lire</a>',
        '<img alt="" src="https://pub.example.org/p.gif?u=%%DIGEST_UNSUBSCRIBE_AB12%%">',
        '<a href="https://pub.example.org/r?to=%%DIGEST_UNSUBSCRIBE_AB12%%">Partir</a>',
        "<p>Voir https://pub.example.org/%%DIGEST_NAME_AB12%%</p>",
        '<p style="background:url(https://pub.example.org/b.png?%%DIGEST_NAME_AB12%%)">x</p>',
        "<style>p { background: url(https://pub.example.org/?%%DIGEST_NAME_AB12%%) }</style>",
    ],
)
def test_a_recipient_value_in_a_foreign_url_fails_the_checks(html: str) -> None:
    page = f'<html lang="fr"><body>{html}{UNSUB}</body></html>'
    errors = [c for c in check_email(_rendered(page, TEXT)) if c.name == "recipient-values"]
    assert errors and errors[0].level == "error"
    assert "only the unsubscribe link may carry it" in errors[0].message


def test_the_recipient_value_findings_read_in_french_in_the_preview() -> None:
    page = (
        '<html lang="fr"><body><a href="https://pub.example.org/?n=%%DIGEST_NAME_AB12%%">Lire</a>'
        f"<p>Voir https://pub.example.org/%%DIGEST_UNSUBSCRIBE_AB12%%</p>{UNSUB}</body></html>"
    )
    found = [c for c in check_email(_rendered(page, TEXT)) if c.name == "recipient-values"]
    french = [translate_check(c.message, "fr") for c in found]
    assert len(french) == 2
    assert french[0].startswith("Le nom du lecteur serait écrit dans l’attribut href")
    assert french[1].startswith("La partie HTML écrit l’adresse de désinscription du lecteur")


def test_the_templates_own_markers_pass_the_recipient_value_check() -> None:
    rendered = render_issue(sample_issue(3), sample_settings())
    assert not [c for c in check_email(rendered) if c.name == "recipient-values"]


def test_a_recipient_value_in_a_foreign_url_of_the_text_part_fails_the_checks() -> None:
    page = f'<html lang="fr"><body><p>Bonjour</p>{UNSUB}</body></html>'
    text = TEXT + "Voir https://pub.example.org/?u=%%DIGEST_UNSUBSCRIBE_AB12%%\n"
    assert [c for c in check_email(_rendered(page, text)) if c.name == "recipient-values"]


# -- item 8: tracking pixels never lead an article ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "width", "height"),
    [
        ("https://feeds.feedburner.com/~r/veille/~4/abc", "", ""),
        ("https://feeds.feedblitz.com/~/i/123/0/veille", "", ""),
        ("https://pixel.wp.com/g.gif?blog=1", "", ""),
        ("https://news.example.org/pixel.gif", "", ""),
        ("https://news.example.org/tracking/open/42.png", "", ""),
        ("https://news.example.org/img/a.png", "1", "1"),
        ("https://news.example.org/img/a.png", "1px", "600"),
        ("https://news.example.org/img/a.png?w=1&h=1", "", ""),
        ("https://news.example.org/img/spacer-1x1.gif", "", ""),
    ],
)
def test_tracking_images_are_recognized(url: str, width: str, height: str) -> None:
    assert is_tracking_image(url, width, height)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.org/img/atelier.jpg",
        "https://news.example.org/uploads/atelier-1024x576.jpg",
        "https://news.example.org/pixel-art/atelier.jpg",
    ],
)
def test_real_pictures_are_kept(url: str) -> None:
    assert not is_tracking_image(url, "640", "360")
    assert lead_image(url, "Atelier", "") == (url, "Atelier")


def test_a_pixel_first_in_the_html_gives_way_to_the_next_picture() -> None:
    html = (
        '<p><img src="https://news.example.org/c.gif" width="1" height="1" alt=""></p>'
        '<p><img src="https://news.example.org/atelier.jpg" alt="L’atelier"></p>'
    )
    assert lead_image("https://news.example.org/c.gif", "", html) == (
        "https://news.example.org/atelier.jpg",
        "L’atelier",
    )
    only_pixel = '<img src="https://feeds.feedburner.com/~r/x/~4/y" height="1" width="1">'
    assert lead_image("https://feeds.feedburner.com/~r/x/~4/y", "", only_pixel) == ("", "")


PIXEL_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Veille</title><link>{base}/</link><description>d</description>
<item>
<title>Un atelier de création à Lyon</title>
<link>{base}/article</link>
<guid>pixel-1</guid>
<pubDate>Tue, 24 Nov 2026 09:00:00 +0000</pubDate>
<description><![CDATA[<p>L’école de design de Lyon a ouvert le 23 novembre 2026 un atelier de
création numérique pour 40 étudiants. Le projet réunit 12 studios partenaires.</p>
<img src="https://feeds.feedburner.com/~r/veille/~4/tracked" height="1" width="1" alt="">]]>
</description>
</item>
</channel></rss>
"""


def test_a_tracking_pixel_is_not_the_lead_image_and_the_editor_can_set_one(
    tmp_path: Path, smtp_capture: CaptureServer, http_server: HTTPServer
) -> None:
    http_server.routes["/pixel.xml"] = Route(
        200,
        PIXEL_FEED.format(base=http_server.url("").rstrip("/")).encode(),
        {"Content-Type": "application/rss+xml"},
    )
    sources = f'[[sources]]\nname = "Veille"\nurl = "{http_server.url("/pixel.xml")}"\n'
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    assert cli(config, "collect") in (0, 2)
    assert cli(config, "draft", "--period", PERIOD) == 0
    out = tmp_path / "out"
    assert cli(config, "render", "--period", PERIOD, "--out", str(out)) in (0, 1)
    assert "feedburner" not in (out / "email.html").read_text(encoding="utf-8")

    # The draft's block carries the image: an editor who sets one sees it in the email.
    draft = next((tmp_path / "drafts").glob("*.md"))
    text = draft.read_text(encoding="utf-8")
    meta = re.search(r"^<!-- digest: article = .*-->$", text, re.MULTILINE)
    assert meta, text
    picture = "https://images.ian.fr/atelier.jpg"
    if "image_url" in meta.group(0):
        edited = re.sub(r'image_url\s*=\s*"[^"]*"', f'image_url = "{picture}"', meta.group(0))
    else:
        edited = meta.group(0).replace(" -->", f', image_url = "{picture}" -->')
    draft.write_text(text.replace(meta.group(0), edited), encoding="utf-8")
    assert cli(config, "render", "--period", PERIOD, "--out", str(out)) in (0, 1)
    assert f'src="{picture}"' in (out / "email.html").read_text(encoding="utf-8")


# -- item 9: a real send refuses links nobody can follow and the starter's placeholders ------


def _starter(tmp_path: Path) -> Path:
    write_starter(tmp_path)
    return tmp_path / "digest.toml"


def test_a_starter_config_left_as_written_is_refused_with_what_to_change(
    tmp_path: Path,
) -> None:
    settings = load_settings(_starter(tmp_path), environ={})
    messages = " | ".join(c.message for c in check_settings(settings))
    assert all(c.level == "error" for c in check_settings(settings))
    for key in ("from_address", "postal_address", "why", "base_url"):
        assert f"{key} is still the starter's example" in messages
    assert "write your own" in messages


def _edited(tmp_path: Path, **changes: str) -> list[str]:
    path = _starter(tmp_path)
    text = path.read_text(encoding="utf-8")
    values = {
        "from_address": '"veille@ian.fr"',
        "postal_address": '"IAN · 12 rue des Ateliers · 69000 Lyon"',
        "why": '"Vous suivez une formation de l’IAN."',
        "base_url": '"https://lettre.ian.fr"',
    }
    values.update(changes)
    for key, value in values.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.MULTILINE)
    path.write_text(text, encoding="utf-8")
    return [c.message for c in check_settings(load_settings(path, environ={}))]


def test_a_starter_config_with_real_values_passes(tmp_path: Path) -> None:
    assert _edited(tmp_path) == []


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ('"http://127.0.0.1:8080"', "private or loopback"),
        ('"lettre.ian.fr"', "has no scheme: write it as https://lettre.ian.fr"),
        ('"http://lettre.ian.fr"', "is not https"),
        ('"https://localhost:8080"', "a local name"),
        ('"https://10.0.0.4"', "private or loopback"),
        ('"https://lettre.ian.test"', "reserved example name"),
    ],
)
def test_unsubscribe_links_must_be_public_https(
    tmp_path: Path, base_url: str, expected: str
) -> None:
    [message] = _edited(tmp_path, base_url=base_url)
    assert message.startswith("[web] base_url") and expected in message


@pytest.mark.parametrize(
    "sender", ['"veille@example.com"', '"veille@ian.example"', '"a@b.invalid"', '"a@x.test"']
)
def test_a_sender_on_a_reserved_domain_is_refused(tmp_path: Path, sender: str) -> None:
    [message] = _edited(tmp_path, from_address=sender)
    assert "reserved example domain" in message


def test_the_archive_url_must_be_public_https_too(tmp_path: Path) -> None:
    assert _edited(tmp_path) == []
    path = tmp_path / "digest.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("[render]\n", '[render]\narchive_url = "http://127.0.0.1:8080/archive"\n')
    path.write_text(text, encoding="utf-8")
    [message] = [c.message for c in check_settings(load_settings(path, environ={}))]
    assert message.startswith("[render] archive_url")


def test_the_demo_opts_in_to_local_links_and_the_starter_does_not(tmp_path: Path) -> None:
    demo = load_settings(make_config(tmp_path, 1025), environ={})
    assert demo.web.allow_local_links
    assert check_settings(demo) == []
    assert not load_settings(_starter(tmp_path / "s"), environ={}).web.allow_local_links


def test_send_refuses_a_config_with_placeholders_even_with_force(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_capture.port, edit={"allow_local_links = true": ""})
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") in (0, 2)
    assert cli(config, "draft", "--period", PERIOD) == 0
    assert cli(config, "approve", "--period", PERIOD) == 0
    capsys.readouterr()
    assert cli(config, "send", "--period", PERIOD, "--force") == 1
    err = capsys.readouterr().err
    assert "[web] base_url (unsubscribe links) 'http://127.0.0.1:8080'" in err
    assert "nothing was sent" in err
    assert "Traceback" not in err
    assert received(smtp_capture) == []
    # The dry run says so too, before anything goes.
    assert cli(config, "send", "--period", PERIOD, "--dry-run") in (0, 1, 2)
    shown = capsys.readouterr()
    assert "[web] base_url" in shown.out + shown.err


# -- item 10: secrets never shown ------------------------------------------------------------

SECRETS = {
    "DIGEST_SMTP_PASSWORD": "smtp-pass-Secr3t",
    "DIGEST_LLM_API_KEY": "sk-llm-Secr3t",
    "DIGEST_SECRET_KEY": "hmac-key-Secr3t",
    "DIGEST_DATABASE_URL": "postgresql+psycopg://digest:db-pass-Secr3t@db.ian.fr/digest",
}


def test_repr_of_the_settings_shows_no_secret(tmp_path: Path) -> None:
    settings = load_settings(make_config(tmp_path, 1025), environ=SECRETS)
    assert settings.smtp.password == SECRETS["DIGEST_SMTP_PASSWORD"]
    assert settings.summarize.llm.api_key == SECRETS["DIGEST_LLM_API_KEY"]
    assert settings.secret_key == SECRETS["DIGEST_SECRET_KEY"]
    for shown in (repr(settings), str(settings), repr(settings.summarize), repr(settings.smtp)):
        assert "Secr3t" not in shown
    llm = LLMSettings(base_url="https://llm.ian.fr", api_key="sk-llm-Secr3t")
    assert "Secr3t" not in repr(SummarizeSettings(llm=llm))


def test_a_config_error_shows_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, 1025)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DIGEST_SMTP_PORT", "not-a-port")
    assert cli(config, "status") == 1
    captured = capsys.readouterr()
    assert "DIGEST_SMTP_PORT" in captured.err
    assert "Secr3t" not in captured.out + captured.err


def test_an_unreachable_database_error_shows_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, 1025)
    monkeypatch.setenv(
        "DIGEST_DATABASE_URL", "postgresql+psycopg://digest:db-pass-Secr3t@127.0.0.1:9/x"
    )
    monkeypatch.setenv("DIGEST_LLM_API_KEY", SECRETS["DIGEST_LLM_API_KEY"])
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRETS["DIGEST_SECRET_KEY"])
    assert cli(config, "status") == 1
    captured = capsys.readouterr()
    assert "digest:***@127.0.0.1" in captured.err  # the error names the database, masked
    assert "Secr3t" not in captured.out + captured.err


def test_the_llm_backend_errors_show_no_api_key(
    tmp_path: Path,
    http_server: HTTPServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http_server.routes["/v1/chat/completions"] = Route(401, b'{"error": "bad key"}')
    config = make_config(tmp_path, 1025)
    text = config.read_text(encoding="utf-8").replace(
        'backend = "extractive"', 'backend = "openai"'
    )
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("DIGEST_LLM_BASE_URL", http_server.url("/v1"))
    monkeypatch.setenv("DIGEST_LLM_MODEL", "m")
    monkeypatch.setenv("DIGEST_LLM_API_KEY", SECRETS["DIGEST_LLM_API_KEY"])
    assert cli(config, "collect") in (0, 2)
    with caplog.at_level(logging.WARNING):
        assert cli(config, "draft", "--period", PERIOD) == 0
    captured = capsys.readouterr()
    assert "summarizer 'openai' failed" in caplog.text  # the error path did run
    assert "Secr3t" not in captured.out + captured.err + caplog.text
