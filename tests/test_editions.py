"""Editions and sections: each subscriber gets the edition of their language and tags.

The demo configuration tags two of its three sources (« Écoles et métiers » for
etudiants and formateurs, « Design & Tech Notes » for partenaires and international)
and gives the English edition its own introduction; the example list has one
English-speaking subscriber. Real parts: the capture SMTP server on loopback, SQLite
files, the PostgreSQL fixture where the ledger is involved.
"""

from __future__ import annotations

import email.message
import re
import threading
import warnings
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from pipeline_helpers import captured, cli, make_config

from digest import pipeline
from digest.capture import CaptureServer
from digest.config import load_settings
from digest.db import Store, schema
from digest.db import subscribers as subscriber_rows
from digest.editions import Edition, edition_for, edition_issue
from digest.models import Issue, IssueItem, SendProgress

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PERIOD = "2026-W48"
EMILY = "emily.carter@example.com"  # language en, tags partenaires;international
CAMILLE = "camille.lefevre@example.org"  # fr, etudiants
FRANCOIS = "francois.belanger@example.net"  # fr, formateurs;partenaires
ECOLES = "Écoles et métiers du numérique"
DESIGN = "Design & Tech Notes"
VEILLE = "Veille créative – IAN"


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def by_recipient(box: CaptureServer) -> dict[str, email.message.EmailMessage]:
    return {m["X-Digest-Envelope-To"]: m for m in captured(box)}


def sources_in(message: email.message.EmailMessage) -> set[str]:
    text = text_of(message)
    return {name for name in (ECOLES, DESIGN, VEILLE) if name in text}


def demo(tmp_path: Path, box: CaptureServer, edit: dict[str, str] | None = None) -> Path:
    config = make_config(tmp_path, box.port, edit=edit)
    assert cli(config, "subscribers", "import", str(tmp_path / "subscribers.example.csv")) == 0
    assert cli(config, "collect") == 0
    return config


def preview_client(config: Path, request: pytest.FixtureRequest) -> TestClient:
    """The preview of the week's draft, made from ``config``."""
    from digest.preview import create_preview_app

    settings = load_settings(config)
    store = Store(settings.database.url)
    request.addfinalizer(store.close)
    store.migrate()
    pipeline.draft(settings, store, PERIOD)
    return TestClient(create_preview_app(settings, store, PERIOD), base_url="http://127.0.0.1:8000")


# -- the rules, on an issue built by hand -----------------------------------------------------


def item(position: int, *tags: str, note: bool = False) -> IssueItem:
    return IssueItem(
        article_id=None if note else position,
        position=position,
        source="s",
        title=f"item {position}",
        url="" if note else f"https://example.org/{position}",
        summary="",
        lessons=(),
        tags=tags,
    )


ISSUE = Issue(
    period=PERIOD,
    title="Semaine du 23 novembre 2026",
    intro="Bonjour à tous",
    items=(item(1), item(2, "alumni"), item(3, "etudiants", "Formateurs")),
    language="fr",
)


def test_sections_select_items_by_tags_and_untagged_items_go_to_everyone() -> None:
    everything = edition_for(ISSUE, "fr", ())
    assert everything == Edition("fr") and everything.key == "fr"
    # tags compare without case; only the issue's own tags make the key
    alumni = edition_for(ISSUE, "fr-FR", ("Alumni", "inconnu"))
    assert alumni is not None and alumni.key == "fr+alumni"
    assert [i.position for i in edition_issue(ISSUE, alumni).items] == [1, 2]
    assert edition_for(ISSUE, "fr", "formateurs").key == "fr+formateurs"  # type: ignore[union-attr]
    # every tag the issue uses: that is everything, one edition with those without tags
    assert edition_for(ISSUE, "fr", ("alumni", "etudiants", "formateurs")) == Edition("fr")
    # tags that match nothing: the untagged items only
    other = edition_for(ISSUE, "en", ("inconnu",))
    assert other is not None and other.key == "en+"
    assert [i.position for i in edition_issue(ISSUE, other).items] == [1]
    # a language the templates do not speak: the issue's own
    assert edition_for(ISSUE, "de", ()) == Edition("fr")
    assert Edition.parse("en+alumni,etudiants") == Edition("en", ("alumni", "etudiants"))


def test_a_selection_with_no_article_is_nothing_and_notes_alone_do_not_make_an_issue() -> None:
    tagged = Issue(PERIOD, "T", "", (item(1, "alumni"), item(2, note=True)), language="fr")
    assert edition_for(tagged, "fr", ("etudiants",)) is None
    assert edition_for(tagged, "fr", ("alumni",)) == Edition("fr")


def test_an_edition_in_another_language_translates_the_default_title() -> None:
    english = edition_issue(ISSUE, "en")
    assert english.language == "en" and english.title == "Week of November 23, 2026"
    assert english.intro == "Bonjour à tous"  # no intro of its own: the default one


# -- the demo: real sends into the capture server -----------------------------------------------


def test_the_demo_sends_each_subscriber_the_edition_of_their_language_and_sections(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "run", "--period", PERIOD) == 0
    got = by_recipient(smtp_capture)

    emily = got[EMILY]
    assert emily["Content-Language"] == "en"
    assert re.search(r'<html[^>]* lang="en"', html_of(emily))
    assert "Week of November 23, 2026" in emily["Subject"]
    for part in (text_of(emily), html_of(emily)):
        assert "What this teaches us" in part and "Ce que cela nous apprend" not in part
        assert "This week: schools reinventing themselves" in part  # its own introduction
        assert "Unsubscribe" in part
    # French articles keep their language inside the English email
    assert re.search(r'lang="fr"', html_of(emily))

    camille = got[CAMILLE]
    assert camille["Content-Language"] == "fr"
    assert re.search(r'<html[^>]* lang="fr"', html_of(camille))
    for part in (text_of(camille), html_of(camille)):
        assert "Ce que cela nous apprend" in part and "What this teaches us" not in part
        assert "Cette semaine" in part and "This week" not in part

    # Sections: untagged sources go to everyone, tagged ones to those with a matching tag.
    assert sources_in(camille) == {VEILLE, ECOLES}  # etudiants
    assert sources_in(emily) == {VEILLE, DESIGN}  # partenaires, international
    assert sources_in(got[FRANCOIS]) == {VEILLE, ECOLES, DESIGN}  # formateurs, partenaires

    # The ledger says which edition each went out in.
    with closing(Store(load_settings(config).database.url)) as store, store.connect() as conn:
        editions = dict(
            conn.execute(sa.select(schema.deliveries.c.email, schema.deliveries.c.edition)).all()
        )
    assert editions[EMILY] == "en+international,partenaires"
    assert editions[CAMILLE] == "fr+etudiants"
    assert editions[FRANCOIS] == "fr+formateurs,partenaires"


def test_a_subscriber_whose_tags_select_no_article_is_skipped_not_failed(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every source tagged: someone with only other tags has nothing to read.
    config = demo(tmp_path, smtp_capture, {"weight = 2.0\n": 'weight = 2.0\ntags = ["culture"]\n'})
    (tmp_path / "more.csv").write_text(
        "email,name,language,tags\nsans.rubrique@example.org,Sans,fr,jardinage\n",
        encoding="utf-8",
    )
    assert cli(config, "subscribers", "import", str(tmp_path / "more.csv")) == 0
    assert cli(config, "run", "--period", PERIOD) == 0  # skipped is settled: exit 0
    got = by_recipient(smtp_capture)
    assert "sans.rubrique@example.org" not in got and len(got) == 5
    with closing(Store(load_settings(config).database.url)) as store, store.connect() as conn:
        row = conn.execute(
            sa.select(schema.deliveries.c.status, schema.deliveries.c.last_error).where(
                schema.deliveries.c.email == "sans.rubrique@example.org"
            )
        ).one()
    assert row.status == "skipped" and "sections" in row.last_error


def test_dry_run_counts_recipients_per_edition_and_names_each_ones(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "draft", "--period", PERIOD) == 0
    assert cli(config, "approve", "--period", PERIOD) == 0
    capsys.readouterr()
    assert cli(config, "send", "--dry-run", "--period", PERIOD) == 0
    out = capsys.readouterr().out
    assert "By edition:" in out
    assert re.search(r"en\+international,partenaires: 1 \(en, sections: international", out)
    assert re.search(r"fr\+etudiants: 2\b", out)  # Camille and Jérôme
    assert re.search(rf"{re.escape(EMILY)}\s+edition en\+international,partenaires", out)
    assert not captured(smtp_capture)


def test_render_writes_the_edition_asked_for(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "draft", "--period", PERIOD) == 0
    out = tmp_path / "en"
    args = ("render", "--period", PERIOD, "--out", str(out))
    assert cli(config, *args, "--language", "en", "--tags", "partenaires") == 0
    html = (out / "email.html").read_text(encoding="utf-8")
    assert 'lang="en"' in html and "What this teaches us" in html
    assert b"Content-Language: en" in (out / "email.eml").read_bytes()
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert DESIGN in text and ECOLES not in text
    capsys.readouterr()
    assert cli(config, *args, "--language", "xx") == 1
    err = capsys.readouterr().err
    assert "no texts in the language 'xx'" in err and "Traceback" not in err


def test_a_test_send_gets_the_edition_of_the_address_or_the_one_asked_for(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "draft", "--period", PERIOD) == 0
    send = ("send", "--period", PERIOD, "--to")
    assert cli(config, *send, EMILY) == 0  # on the list: her own edition
    assert "(edition en+international,partenaires)" in capsys.readouterr().out
    assert cli(config, *send, "redaction@institut.example") == 0  # not on it: the default
    assert cli(config, *send, CAMILLE, "--language", "en", "--tags", "partenaires") == 0
    emily, editor, asked = captured(smtp_capture)
    assert emily["Content-Language"] == "en" and sources_in(emily) == {VEILLE, DESIGN}
    assert editor["Content-Language"] == "fr" and sources_in(editor) == {VEILLE, ECOLES, DESIGN}
    assert asked["X-Digest-Envelope-To"] == CAMILLE
    assert asked["Content-Language"] == "en" and sources_in(asked) == {VEILLE, DESIGN}
    capsys.readouterr()
    assert cli(config, "send", "--period", PERIOD, "--language", "en") == 1
    assert "use them with --to" in capsys.readouterr().err
    assert len(captured(smtp_capture)) == 3  # and nobody else was sent anything


def test_the_preview_test_send_sends_the_edition_on_the_page(
    tmp_path: Path, smtp_capture: CaptureServer, request: pytest.FixtureRequest
) -> None:

    client = preview_client(demo(tmp_path, smtp_capture), request)
    page = client.get("/", params={"language": "en", "tags": "international"}).text
    assert 'name="edition" value="en+international"' in page
    token = client.app.state.preview.token  # type: ignore[attr-defined]
    form = {"address": "redaction@institut.example", "token": token, "edition": "en+international"}
    response = client.post("/envoi-test", data=form, follow_redirects=False)
    assert response.headers["location"] == "/?edition=en%2Binternational#envoi-test"
    (message,) = captured(smtp_capture)
    assert message["Content-Language"] == "en" and sources_in(message) == {VEILLE, DESIGN}


def test_an_english_email_links_to_the_english_page_of_the_archive(
    tmp_path: Path, smtp_capture: CaptureServer, request: pytest.FixtureRequest
) -> None:
    from digest.web import create_app

    config = demo(tmp_path, smtp_capture)
    assert cli(config, "run", "--period", PERIOD) == 0
    got = by_recipient(smtp_capture)
    assert f"/archive/{PERIOD}?language=en" in html_of(got[EMILY])
    assert f"/archive/{PERIOD}?language=en" in text_of(got[EMILY])
    assert f'/archive/{PERIOD}"' in html_of(got[CAMILLE])  # the newsletter's own language

    settings = load_settings(config)
    store = Store(settings.database.url)
    request.addfinalizer(store.close)
    client = TestClient(create_app(settings, store), base_url="http://127.0.0.1:8080")
    english = client.get(f"/archive/{PERIOD}", params={"language": "en"}).text
    assert re.search(r'<html[^>]* lang="en"', english) and "What this teaches us" in english
    assert ECOLES in english and "Design &amp; Tech Notes" in english  # every section
    french = client.get(f"/archive/{PERIOD}").text
    assert re.search(r'<html[^>]* lang="fr"', french) and "Ce que cela nous apprend" in french
    assert client.get(f"/archive/{PERIOD}", params={"language": "xx"}).text == french


# -- the ledger keeps each recipient's edition across a stop and a resume ------------------------


def test_a_resumed_send_gives_each_recipient_the_edition_they_were_queued_with(
    tmp_path: Path,
    smtp_capture: CaptureServer,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    config = demo(tmp_path, smtp_capture)
    settings = load_settings(config)
    store = Store(settings.database.url)
    request.addfinalizer(store.close)
    store.migrate()
    pipeline.draft(settings, store, PERIOD)
    pipeline.approve(settings, store, PERIOD)

    stop = threading.Event()

    def after_first(progress: SendProgress) -> None:
        stop.set()  # SIGTERM's way: the message in flight finishes, then the send returns

    report = pipeline.send(settings, store, PERIOD, progress=after_first, stop=stop)
    assert report.sent == 1 and not report.complete
    assert EMILY not in by_recipient(smtp_capture)
    # Emily switches to French and drops her tags after the send started.
    emily = next(s for s in subscriber_rows.listed(store) if s.email == EMILY)
    assert emily.id is not None
    with store.begin() as conn:
        subscriber_rows.set_preferences(conn, emily.id, "fr", ())

    report = pipeline.send(settings, store, PERIOD)
    assert report.complete
    got = by_recipient(smtp_capture)
    assert len(got) == 5
    assert got[EMILY]["Content-Language"] == "en"  # the edition of the snapshot
    assert sources_in(got[EMILY]) == {VEILLE, DESIGN}


# -- the preview's switch -------------------------------------------------------------------


def test_the_preview_switches_between_editions_and_says_when_one_reuses_the_intro(
    tmp_path: Path, smtp_capture: CaptureServer, request: pytest.FixtureRequest
) -> None:

    config = demo(tmp_path, smtp_capture)
    # Without the demo's English introduction
    text = config.read_text(encoding="utf-8")
    text, removed = re.subn(r'\[\[draft\.editions\]\]\nlanguage = "en"\nintro = ".*"\n', "", text)
    assert removed == 1
    config.write_text(text, encoding="utf-8")
    client = preview_client(config, request)

    default = client.get("/").text
    assert "toutes les rubriques" in default and 'id="default-intro"' not in default
    assert "en+international,partenaires" in default  # the planned editions, with counts

    english = client.get("/", params={"language": "en", "tags": "international"}).text
    assert "What this teaches us" in english  # the text part, on the page
    assert 'id="default-intro"' in english  # no English introduction: the default one
    assert "edition=en%2Binternational" in english  # the frame shows the same edition
    frame = client.get("/email.html", params={"edition": "en+international"}).text
    assert re.search(r'<html[^>]* lang="en"', frame)
    assert "Design &amp; Tech Notes" in frame and ECOLES not in frame
    french = client.get("/email.html").text
    assert re.search(r'<html[^>]* lang="fr"', french) and ECOLES in french


# -- the draft carries tags and the other editions' texts ---------------------------------------


def test_the_editor_changes_tags_and_the_english_title_in_the_draft(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "draft", "--period", PERIOD) == 0
    (path,) = (tmp_path / "drafts").glob("*.md")
    text = path.read_text(encoding="utf-8")
    assert 'tags = ["etudiants", "formateurs"]' in text and "[edition.en]" in text
    # The editor gives the English edition a title, and the Design notes to everyone.
    text = text.replace("[edition.en]\n", '[edition.en]\ntitle = "Our week in review"\n')
    text = text.replace('tags = ["partenaires", "international"], ', "")
    text = text.replace("approved = false", "approved = true")
    path.write_text(text, encoding="utf-8")
    assert cli(config, "send", "--period", PERIOD) == 0
    got = by_recipient(smtp_capture)
    assert "Our week in review" in got[EMILY]["Subject"]
    assert "Our week in review" not in got[CAMILLE]["Subject"]
    assert sources_in(got[CAMILLE]) == {VEILLE, ECOLES, DESIGN}


def test_a_bad_draft_edition_or_tags_line_names_its_line(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo(tmp_path, smtp_capture)
    assert cli(config, "draft", "--period", PERIOD) == 0
    (path,) = (tmp_path / "drafts").glob("*.md")
    good = path.read_text(encoding="utf-8")
    for bad, expected in (
        (good.replace("[edition.en]", "[edition.de]"), "no texts in this language"),
        (good.replace('tags = ["etudiants"', 'tags = [""'), "tags must be a list of words"),
    ):
        path.write_text(bad, encoding="utf-8")
        capsys.readouterr()
        assert cli(config, "render", "--period", PERIOD, "--out", str(tmp_path / "o")) == 1
        err = capsys.readouterr().err
        assert expected in err and re.search(r"line \d+", err) and "Traceback" not in err


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "named"),
    [('["alumni", "a,b"]', "'a,b' is not a tag"), ('"alumni"', "must be a list of strings")],
)
def test_bad_source_tags_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tags: str, named: str
) -> None:
    config = make_config(tmp_path, 1)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("weight = 2.0\n", f"weight = 2.0\ntags = {tags}\n"), "utf-8")
    assert cli(config, "status") == 1
    err = capsys.readouterr().err
    assert named in err and "sources[0]" in err and "tags" in err and str(config) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


# -- an older ledger -------------------------------------------------------------------------


def test_a_ledger_from_before_editions_is_upgraded_and_its_rows_get_the_default_edition(
    tmp_path: Path,
) -> None:
    from send_helpers import RENDERED, make_settings, make_store

    from digest.compose import MessageFactory
    from digest.db import issues
    from digest.db.deliveries import Ledger
    from digest.send import Factories

    store, issue = make_store(tmp_path, 2)
    stored = issues.get(store, issue.period)
    assert stored is not None and stored.id is not None
    Ledger(store, stored.id).snapshot()  # queued as a version 5 sender would
    with store.begin() as conn:  # then back to version 5: no edition, no tags, no editions
        for table, column in (("deliveries", "edition"), ("issue_items", "tags")):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE issues DROP COLUMN editions"))
        conn.execute(
            sa.update(schema.meta).where(schema.meta.c.key == "schema_version").values(value="5")
        )
    store.close()

    upgraded = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    try:
        assert upgraded.schema_version() == schema.SCHEMA_VERSION
        assert issues.delivery_editions(upgraded, issue.period) == {"": 2}
        ledger = Ledger(upgraded, stored.id, "me")
        try:
            rows = ledger.claim(10).rows
        finally:
            ledger.close()
        assert [row.edition for row in rows] == ["", ""]
        settings = make_settings(tmp_path, 1)
        default = MessageFactory(RENDERED, settings)
        factories = Factories(settings, default, issue, lambda key: pytest.fail(key))
        assert factories[""] is default  # the issue's default edition, rendered once
    finally:
        upgraded.close()


def test_the_preference_page_offers_the_sections_the_sources_define(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from conftest import token_of

    from digest.web import create_app

    config = make_config(tmp_path, 1)
    settings = load_settings(config)
    store = Store(settings.database.url)
    request.addfinalizer(store.close)
    (tmp_path / "one.csv").write_text(
        f"email,name,language\n{CAMILLE},Camille,fr\n", encoding="utf-8"
    )
    from digest.subscribers import import_csv

    import_csv(store, tmp_path / "one.csv")  # nobody on the list has tags yet
    client = TestClient(create_app(settings, store), base_url=settings.web.base_url)
    token = token_of(store, CAMILLE)
    page = client.get(f"/p/{token}").text
    for tag in ("etudiants", "formateurs", "partenaires", "international"):
        assert f'value="{tag}"' in page
    client.post(f"/p/{token}", data={"action": "save", "language": "fr", "tags": ["etudiants"]})
    (chosen,) = [s.tags for s in subscriber_rows.listed(store) if s.email == CAMILLE]
    assert chosen == ("etudiants",)
