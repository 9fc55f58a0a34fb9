"""The local preview: what editors see, and that it follows their edits without a restart.

Most tests drive the Starlette app in-process; the last ones load the page in a
real headless Chromium served by a real uvicorn on loopback.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from preview_helpers import LESSON, PERIOD, QUOTE, Site, make_site

from digest import pipeline
from digest.capture import CaptureServer, free_port
from digest.config import Settings
from digest.db import Store, issues
from digest.db.articles import record_fetch
from digest.draft import draft_path, read_draft
from digest.errors import DeliveryError, DigestError
from digest.preview import (
    TEST_SENDS_PER_MINUTE,
    check_host,
    create_preview_app,
    serve_preview,
)

# Starlette's TestClient warns (on import and on use) that it is moving to httpx2;
# that is its business, not a fault of the preview.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    yield made
    made.store.engine.dispose()


@pytest.fixture
def client(site: Site) -> TestClient:
    return TestClient(
        create_preview_app(site.settings, site.store, PERIOD), base_url="http://127.0.0.1:8000"
    )


# -- in-process ------------------------------------------------------------------------------


def test_page_shows_the_email_text_headers_checks_and_sources(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.text
    assert '<html lang="fr">' in page
    assert "La veille de l&#39;Institut — Semaine du 23 novembre 2026" in page  # subject
    assert 'src="/email.html?v=' in page
    # the plain-text part, personalized for the sample reader
    text = page.split('id="text-part">')[1].split("</pre>")[0]
    assert "Bonjour Camille" in text
    assert LESSON in text
    # headers of the real message
    headers = page.split('id="en-tetes"')[1].split("</dl>")[0]
    for name in ("Subject", "From", "To", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert f"<dt>{name}</dt>" in headers
    assert "camille@example.org" in headers
    # checks
    assert "Vérifications avant envoi" in page
    # source health: the failing one shows its (escaped) error
    sources = page.split('id="sources"')[1].split("</table>")[0]
    assert "Le Journal du design" in sources and "en forme" in sources
    assert "en panne (4 échecs de suite)" in sources
    assert "HTTP 503 &lt;b&gt;Service indisponible&lt;/b&gt;" in sources
    assert "<b>Service" not in page
    # where to edit
    assert str(draft_path(client.app.state.preview.settings, PERIOD)) in page  # type: ignore[attr-defined]


def test_email_frame_serves_the_personalized_html_without_scripts(client: TestClient) -> None:
    response = client.get("/email.html")
    assert response.status_code == 200
    assert "script-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert LESSON in html
    assert "Camille" in html
    assert "%%DIGEST" not in html  # markers replaced
    assert '<base target="_blank">' in html
    assert client.get("/email.txt").text.count(LESSON) == 1


def test_checks_are_listed_with_their_level(site: Site, client: TestClient) -> None:
    long_title = "Une semaine très chargée en annonces, en rencontres et en nouveaux outils"
    site.edit(site.draft, "# Semaine du 23 novembre 2026", f"# {long_title}")
    page = client.get("/").text
    checks = page.split('id="verifications"')[1].split('id="envoi-test"')[0]
    assert '<li class="warning"><strong>Attention</strong>' in checks
    assert "subject" in checks


def test_draft_edit_changes_version_and_page(site: Site, client: TestClient) -> None:
    before = client.get("/_version").json()["version"]
    assert client.get("/_version").json()["version"] == before  # stable while nothing changes
    site.edit(site.draft, LESSON, "Une leçon réécrite : « plus claire ».")
    after = client.get("/_version").json()["version"]
    assert after != before
    page = client.get("/").text
    assert "Une leçon réécrite" in page
    assert LESSON not in page
    assert "Une leçon réécrite" in client.get("/email.html").text


def test_config_edit_shows_without_restart(site: Site, client: TestClient) -> None:
    before = client.get("/_version").json()["version"]
    site.edit(site.config, 'title = "La veille de l\'Institut"', 'title = "Le Fil créatif"')
    assert client.get("/_version").json()["version"] != before
    page = client.get("/").text
    assert "Le Fil créatif — Semaine du 23 novembre 2026" in page


def test_template_edit_shows_without_restart(tmp_path: Path) -> None:
    site = make_site(tmp_path, extra_config='\n[render]\ntemplates = "gabarits"\n')
    folder = tmp_path / "gabarits"
    folder.mkdir()
    template = folder / "issue.txt.j2"
    template.write_text(
        "Version maison : {{ issue.title }}\n{{ unsubscribe_marker }}\n", encoding="utf-8"
    )
    client = TestClient(
        create_preview_app(site.settings, site.store, PERIOD), base_url="http://127.0.0.1"
    )
    assert "Version maison : Semaine du 23 novembre 2026" in client.get("/").text
    before = client.get("/_version").json()["version"]
    site.edit(template, "Version maison", "Version revue")
    assert client.get("/_version").json()["version"] != before
    assert "Version revue : Semaine du 23 novembre 2026" in client.get("/").text


def test_source_health_change_reloads_the_page(site: Site, client: TestClient) -> None:
    before = client.get("/_version").json()["version"]
    record_fetch(
        site.store,
        "Veille sonore",
        "https://son.example/feed.xml",
        last_fetch_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        last_success_at=dt.datetime.now(dt.UTC),
        last_error=None,
        consecutive_failures=0,
    )
    assert client.get("/_version").json()["version"] != before
    assert "en panne" not in client.get("/").text


def test_broken_draft_is_shown_and_fixing_it_brings_the_email_back(
    site: Site, client: TestClient
) -> None:
    site.edit(site.draft, "approved = false", "approved = vrai")
    page = client.get("/")
    assert page.status_code == 200
    assert "Le brouillon ne peut pas être lu" in page.text
    assert f"{site.draft}, line " in page.text
    assert "Comment corriger" in page.text
    assert client.get("/email.html").status_code == 200
    site.edit(site.draft, "approved = vrai", "approved = true")
    page = client.get("/")
    assert "Le brouillon ne peut pas être lu" not in page.text
    assert LESSON in page.text
    assert "Approuvé" in page.text  # the file's flag, read again


def test_broken_config_is_shown_and_the_last_good_one_kept(site: Site, client: TestClient) -> None:
    site.edit(site.config, "[newsletter]", "[newsletter]\ncolour = 3")
    page = client.get("/").text
    assert "La configuration ne peut pas être lue" in page
    assert "colour" in page
    assert LESSON in page  # still showing the email with the last good settings


def test_everything_from_feeds_and_editors_is_escaped(site: Site, client: TestClient) -> None:
    site.edit(site.draft, "# Semaine du 23 novembre 2026", "# <script>alert(1)</script> & Cie")
    page = client.get("/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Cie" in page
    assert "<script>alert" not in client.get("/email.html").text


def test_test_send_form_sends_one_message(tmp_path: Path, smtp_capture: CaptureServer) -> None:
    site = make_site(tmp_path, smtp_port=smtp_capture.port)
    client = TestClient(
        create_preview_app(site.settings, site.store, PERIOD), base_url="http://127.0.0.1"
    )
    token = client.app.state.preview.token  # type: ignore[attr-defined]
    response = client.post(
        "/envoi-test",
        data={"address": "redaction@institut.example", "token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "E-mail de test envoyé à redaction@institut.example." in page
    files = sorted((tmp_path / "mailbox").glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["X-Digest-Envelope-To"] == "redaction@institut.example"
    assert LESSON in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "E-mail de test envoyé" not in client.get("/").text  # the notice shows once


def test_test_send_failure_is_shown(
    site: Site, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(
        settings: Settings, store: Store, period: str | None, address: str, **edition: str
    ) -> None:
        raise DeliveryError("cannot reach the SMTP server at 127.0.0.1:2525", hint="start it")

    monkeypatch.setattr(pipeline, "send_test", refuse)
    token = client.app.state.preview.token  # type: ignore[attr-defined]
    page = client.post("/envoi-test", data={"address": "a@b.example", "token": token}).text
    assert "L’envoi de test a échoué : cannot reach the SMTP server" in page


def test_test_send_needs_the_page_token_and_a_real_address(
    site: Site, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(
        pipeline, "send_test", lambda s, st, p, address, **edition: sent.append(address)
    )
    forged = client.post("/envoi-test", data={"address": "x@evil.example", "token": "guess"})
    assert forged.status_code == 403
    token = client.app.state.preview.token  # type: ignore[attr-defined]
    page = client.post("/envoi-test", data={"address": "pas une adresse", "token": token}).text
    assert "n’est pas une adresse e-mail valable" in page
    assert sent == []


def test_other_hosts_are_refused(client: TestClient) -> None:
    # A page on another site that rebinds its name to 127.0.0.1 must not read the draft.
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200


def test_preview_binds_loopback_by_default() -> None:
    import inspect

    assert inspect.signature(serve_preview).parameters["host"].default == "127.0.0.1"


def test_test_sends_are_limited(
    site: Site, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(
        pipeline, "send_test", lambda s, st, p, address, **edition: sent.append(address)
    )
    token = client.app.state.preview.token  # type: ignore[attr-defined]
    pages = [
        client.post("/envoi-test", data={"address": f"r{i}@institut.example", "token": token}).text
        for i in range(TEST_SENDS_PER_MINUTE + 2)
    ]
    assert len(sent) == TEST_SENDS_PER_MINUTE  # one a few seconds later still waits
    assert "Trop d’envois de test" in pages[-1]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "preview.example"])
def test_preview_refuses_a_reachable_host_without_allow_remote(site: Site, host: str) -> None:
    from digest.cli import main

    code = main(["--config", str(site.config), "preview", "--host", host, "--port", "1"])
    assert code == 1
    with pytest.raises(DigestError, match="--allow-remote"):
        serve_preview(site.settings, site.store, PERIOD, host=host, port=1)
    check_host("127.0.0.1", allow_remote=False)  # loopback needs no flag
    check_host("::1", allow_remote=False)
    check_host(host, allow_remote=True)


def test_taken_port_is_a_clear_error(site: Site) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DigestError, match=f"cannot listen on 127.0.0.1:{port}") as raised:
            serve_preview(site.settings, site.store, PERIOD, port=port)
    assert "--port" in str(raised.value)


def test_articles_list_shows_which_ones_the_editor_changed(site: Site, client: TestClient) -> None:
    site.edit(site.draft, LESSON, "Une leçon à nous.")
    articles = client.get("/").text.split('id="articles"')[1].split("</ol>")[0]
    first, second = articles.split('<li class="article">')[1:]
    assert "Un code de conduite pour les studios" in first and "modifié à la main" in first
    assert "Le son spatial" in second and "généré" in second


def test_each_lesson_shows_its_quote_until_the_editor_rewrites_it(
    site: Site, client: TestClient
) -> None:
    articles = client.get("/").text.split('id="articles"')[1].split("</ol>")[0]
    assert LESSON in articles
    assert f"« {QUOTE} »" in articles.replace("&#39;", "'")
    site.edit(site.draft, LESSON, "Une leçon à nous.")
    articles = client.get("/").text.split('id="articles"')[1].split("</ol>")[0]
    assert "Une leçon à nous." in articles
    assert QUOTE not in articles.replace("&#39;", "'")  # the quote backed the old text


def test_showing_the_preview_never_writes_the_issue(site: Site, client: TestClient) -> None:
    before = issues.get(site.store, PERIOD)
    site.edit(site.draft, "# Semaine du 23 novembre 2026", "# Un titre à nous")
    site.edit(site.draft, LESSON, "Une leçon à nous.")
    page = client.get("/").text
    assert "Un titre à nous" in page  # the preview shows the edit...
    assert issues.get(site.store, PERIOD) == before  # ...and the store still has what it had


def test_repeated_check_is_listed_once(tmp_path: Path) -> None:
    # The archive link appears twice in the email, so the renderer reports it twice.
    site = make_site(tmp_path, extra_config='[render]\narchive_url = "http://archive.example/"\n')
    client = TestClient(
        create_preview_app(site.settings, site.store, PERIOD), base_url="http://127.0.0.1"
    )
    page = client.get("/").text
    assert page.count("http://archive.example/ n’est pas en https") == 1  # in the page's French


def test_status_follows_the_approved_flag(site: Site, client: TestClient) -> None:
    assert '<span class="badge draft" id="status">Brouillon</span>' in client.get("/").text
    site.edit(site.draft, "approved = false", "approved = true")
    assert '<span class="badge approved" id="status">Approuvé</span>' in client.get("/").text
    assert read_draft(site.draft).status == "approved"


# -- in a real browser --------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("DIGEST_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    if CHROMIUM is None and not os.environ.get("CI"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    assert CHROMIUM is not None, "CI must have chromium: apt-get install -y chromium"
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
        sync_playwright = sync_api.sync_playwright
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def served(site: Site) -> Iterator[str]:
    """The preview on a real uvicorn, on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    app = create_preview_app(site.settings, site.store, PERIOD)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(200):
        if server.started:
            started.set()
            break
        threading.Event().wait(0.05)
    assert started.is_set(), "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_browser_shows_the_preview_and_follows_an_edit(
    site: Site, served: str, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    page.goto(served + "/")
    frame = page.frame_locator("#email")
    expect(frame.get_by_text(LESSON)).to_be_visible(timeout=30_000)
    expect(page.locator("#text-part")).to_contain_text(LESSON)
    expect(page.locator("#sources")).to_contain_text("en panne")
    # Waits by locator, not by wait_for_function: that one evaluates a string in the page,
    # which the preview's Content-Security-Policy (no 'unsafe-eval') rightly refuses.
    expect(page.locator("html[data-frame-loaded]")).to_have_count(1)
    # The frame grew to its content: the page scrolls, not a box inside it.
    height = page.locator("#email").bounding_box()
    assert height is not None and height["height"] > 900
    page.screenshot(path=str(artifacts_dir() / "preview-desktop.png"), full_page=True)

    # Mobile width: the frame is 375 px and the email does not scroll sideways there.
    page.get_by_role("button", name="Mobile · 375 px").click()
    expect(page.get_by_role("button", name="Mobile · 375 px")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#email")).to_have_js_property("offsetWidth", 375)
    expect(page.locator("#overflow")).to_be_hidden()
    page.screenshot(path=str(artifacts_dir() / "preview-mobile.png"), full_page=False)

    # The editor rewrites a lesson in the draft file and saves: the page follows by itself.
    loaded_at = page.evaluate("performance.timeOrigin")
    new_lesson = "Une règle écrite ensemble se respecte mieux : « on s’y tient »."
    site.edit(site.draft, LESSON, new_lesson)
    expect(frame.get_by_text(new_lesson)).to_be_visible(timeout=30_000)
    expect(page.locator("#text-part")).to_contain_text("Une règle écrite ensemble")
    assert page.evaluate("performance.timeOrigin") != loaded_at  # it reloaded itself
    assert frame.get_by_text(LESSON).count() == 0
    # The width the editor chose survives the reload.
    expect(page.get_by_role("button", name="Mobile · 375 px")).to_have_attribute(
        "aria-pressed", "true"
    )
