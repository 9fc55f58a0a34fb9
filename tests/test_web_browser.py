"""The reader's whole journey in a real headless Chromium against ``digest serve`` running for real.

Form → confirmation email (caught by the capture SMTP server on loopback) →
the link → the button → subscribed → a preference change → unsubscribe →
resubscribe, which takes a new confirmation.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from digest.capture import CaptureServer, free_port
from digest.db import Store, schema
from digest.subscribers import import_csv

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
CONFIG = """
[newsletter]
title = "La veille de l’institut"
from_address = "veille@institut.example"

[database]
url = "sqlite:///{db}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}

[render]
primary_color = "#1d4ed8"

[web]
base_url = "http://127.0.0.1:{port}"
"""


@pytest.fixture
def served(tmp_path: Path, smtp_capture: CaptureServer) -> Iterator[tuple[str, Store]]:
    """``digest serve`` in its own process, on a free loopback port."""
    port = free_port()
    db = tmp_path / "digest.db"
    config = tmp_path / "digest.toml"
    config.write_text(CONFIG.format(db=db, smtp_port=smtp_capture.port, port=port), "utf-8")
    store = Store(f"sqlite:///{db}")
    people = tmp_path / "list.csv"
    people.write_text("email,name,language,tags\nano@exemple.fr,Ano,fr,design;son\n", "utf-8")
    import_csv(store, people)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "digest", "--config", str(config), "serve"]
    log_file = log.open("wb")
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ},  # with the test's DIGEST_SECRET_KEY
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            assert server.poll() is None, log.read_text("utf-8", "replace")
            try:
                if httpx.get(f"{base}/subscribe").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("digest serve did not start")
        yield base, store
    finally:
        server.terminate()
        server.wait(timeout=20)
        log_file.close()
        store.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    if CHROMIUM is None and not os.environ.get("CI"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    assert CHROMIUM is not None, "CI must have chromium: apt-get install -y chromium"
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser.new_page(viewport={"width": 390, "height": 844}, locale="fr-FR")
        finally:
            browser.close()


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("DIGEST_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def confirmation_link(box: CaptureServer, count: int) -> str:
    """The link in the ``count``-th message the capture server got (waits for it)."""
    for _ in range(300):
        files = sorted(box.handler.folder.glob("*.eml"))
        if len(files) >= count:
            message = email.message_from_bytes(files[count - 1].read_bytes(), policy=default)
            assert isinstance(message, EmailMessage)
            body = message.get_body(("plain",))
            assert body is not None
            text = body.get_content()
            found = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text)
            assert found is not None, text
            return found.group(0)
        time.sleep(0.1)
    pytest.fail(f"no confirmation email number {count}")


def row(store: Store, address: str) -> tuple[str, str, str] | None:
    with store.connect() as conn:
        found = conn.execute(
            sa.select(
                schema.subscribers.c.status,
                schema.subscribers.c.language,
                schema.subscribers.c.tags,
            ).where(schema.subscribers.c.email == address)
        ).first()
    return None if found is None else (found.status, found.language, found.tags)


def test_signup_confirm_preferences_unsubscribe_resubscribe(
    served: tuple[str, Store], page: object, smtp_capture: CaptureServer
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    base, store = served
    page.goto(f"{base}/subscribe")
    expect(page.get_by_role("heading", name="S’abonner à La veille de l’institut")).to_be_visible()
    page.get_by_label("Adresse e-mail").fill("lea@exemple.fr")
    page.get_by_label("Prénom ou nom (facultatif)").fill("Léa")
    page.screenshot(path=str(artifacts_dir() / "signup-form.png"), full_page=True)
    page.get_by_role("button", name="M’abonner").click()
    expect(page.get_by_role("heading", name="Vérifiez votre boîte de réception")).to_be_visible()
    assert row(store, "lea@exemple.fr") is None

    # The link shows a button; only pressing it subscribes.
    page.goto(confirmation_link(smtp_capture, 1))
    expect(page.get_by_role("button", name="Je confirme mon abonnement")).to_be_visible()
    assert row(store, "lea@exemple.fr") is None
    page.get_by_role("button", name="Je confirme mon abonnement").click()
    expect(page.get_by_role("heading", name="Abonnement confirmé")).to_be_visible()
    assert row(store, "lea@exemple.fr") == ("active", "fr", "")

    # Preferences: the English edition and one section.
    page.get_by_role("link", name="Gérer vos préférences").click()
    expect(page.get_by_role("heading", name="Vos préférences")).to_be_visible()
    page.get_by_label("Langue de la lettre").select_option("en")
    page.get_by_label("design").check()
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
    assert page.locator("html").get_attribute("lang") == "en"
    assert row(store, "lea@exemple.fr") == ("active", "en", "design")
    page.screenshot(path=str(artifacts_dir() / "signup-preferences.png"), full_page=True)

    # Leaving, then coming back: a new confirmation, in her language now.
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("button", name="Subscribe again")).to_be_visible()
    assert row(store, "lea@exemple.fr") == ("unsubscribed", "en", "design")
    page.get_by_role("button", name="Subscribe again").click()
    expect(page.get_by_role("status")).to_contain_text("A confirmation email has just been sent")
    assert row(store, "lea@exemple.fr") == ("unsubscribed", "en", "design")
    page.goto(confirmation_link(smtp_capture, 2))
    page.get_by_role("button", name="I confirm my subscription").click()
    expect(page.get_by_role("heading", name="Subscription confirmed")).to_be_visible()
    assert row(store, "lea@exemple.fr") == ("active", "en", "design")
    # The form's colour is the newsletter's.
    band = page.locator("header.band")
    assert band.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(29, 78, 216)"
