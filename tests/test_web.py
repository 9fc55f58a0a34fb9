"""The public endpoints: one-click unsubscribe (RFC 8058) and the archive."""

from __future__ import annotations

import datetime as dt
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from conftest import token_of

from digest.capture import free_port
from digest.config import NewsletterSettings, Settings, WebSettings
from digest.db import Store, issues, schema
from digest.models import Issue, IssueItem, Lesson
from digest.subscribers import import_csv
from digest.web import create_app

# Starlette's TestClient warns (on import and on use) that it is moving to httpx2.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(title="La veille", from_address="veille@ecole.example"),
        web=WebSettings(base_url="https://digest.ecole.example"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,language\nalice@exemple.fr,Alice,fr\nbob@exemple.fr,Bob,fr\n",
        encoding="utf-8",
    )
    import_csv(store, path)
    return store


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(
        create_app(settings, store), base_url="https://digest.ecole.example", follow_redirects=False
    ) as test_client:
        yield test_client


def statuses(store: Store) -> dict[str, str]:
    with store.begin() as conn:
        return dict(
            conn.execute(sa.select(schema.subscribers.c.email, schema.subscribers.c.status)).all()
        )


def test_one_click_post_unsubscribes_without_login_or_redirect(
    client: TestClient, store: Store
) -> None:
    token = token_of(store, "alice@exemple.fr")
    response = client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
    assert 200 <= response.status_code < 300
    assert "location" not in response.headers
    assert statuses(store) == {"alice@exemple.fr": "unsubscribed", "bob@exemple.fr": "active"}
    # Pressing it again is harmless.
    again = client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
    assert again.status_code == 200
    assert statuses(store)["alice@exemple.fr"] == "unsubscribed"


def test_multipart_one_click_post_works_too(client: TestClient, store: Store) -> None:
    token = token_of(store, "bob@exemple.fr")
    response = client.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert statuses(store)["bob@exemple.fr"] == "unsubscribed"


def test_get_shows_a_french_confirmation_page_and_changes_nothing(
    client: TestClient, store: Store
) -> None:
    token = token_of(store, "alice@exemple.fr")
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert '<form method="post">' in page.text and "Me désabonner" in page.text
    assert "alice@exemple.fr" not in page.text  # masked: the link may have been forwarded
    assert "a•••@exemple.fr" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert statuses(store)["alice@exemple.fr"] == "active"


def test_bad_and_foreign_tokens_change_nothing_and_look_alike(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    alice = token_of(store, "alice@exemple.fr")
    assert alice is not None
    altered = alice[:-1] + ("A" if alice[-1] != "A" else "B")
    foreign_store = Store(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    path = tmp_path / "other.csv"
    path.write_text("email,name,language\nalice@exemple.fr,Alice,fr\n", encoding="utf-8")
    import_csv(foreign_store, path)
    foreign = token_of(foreign_store, "alice@exemple.fr")
    answers = set()
    for token in (altered, foreign, "x" * 22, "short", "a/b%2Fc", alice.lower()):
        for method in ("GET", "POST"):
            response = client.request(method, f"/u/{token}", headers=FORM, **ONE_CLICK)
            answers.add((response.status_code, response.text))
    assert len(answers) == 1  # one answer for every bad token, whatever the method
    assert statuses(store) == {"alice@exemple.fr": "active", "bob@exemple.fr": "active"}


def sent_issue(store: Store) -> None:
    item = IssueItem(
        article_id=None,
        position=1,
        source="Exemple",
        title="L’IA générative à l’école",
        url="https://exemple.fr/article",
        summary="Un résumé de l’article.",
        lessons=(Lesson("Une leçon."), Lesson("Une autre leçon.")),
        published=dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
    )
    issues.save(store, Issue(period="2026-W48", title="La veille n° 48", intro="", items=(item,)))
    issues.set_status(store, "2026-W48", "sent")
    issues.save(store, Issue(period="2026-W49", title="Brouillon", intro="", items=(item,)))


def test_archive_lists_sent_issues_and_shows_them_without_personal_data(
    client: TestClient, store: Store
) -> None:
    sent_issue(store)
    listing = client.get("/archive")
    assert listing.status_code == 200
    assert "/archive/2026-W48" in listing.text and "2026-W49" not in listing.text
    page = client.get("/archive/2026-W48")
    assert page.status_code == 200
    assert (
        "L’IA générative" in page.text or "L&rsquo;IA" in page.text or "IA générative" in page.text
    )
    assert "%%DIGEST" not in page.text  # markers replaced
    assert "/u/" not in page.text  # no one's token
    assert "mailto:veille@ecole.example?subject=unsubscribe" in page.text
    for period in ("2026-W49", "2026-W99", "nope", "..%2F..%2Fetc"):
        assert client.get(f"/archive/{period}").status_code == 404


@pytest.fixture
def live_server(settings: Settings, store: Store) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, store), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def test_one_click_against_a_real_uvicorn(live_server: str, store: Store) -> None:
    token = token_of(store, "bob@exemple.fr")
    # What a mailbox provider does: a POST with the RFC 8058 body, no cookies, no redirects.
    response = httpx.post(
        f"{live_server}/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={**FORM, "Host": "digest.ecole.example"},  # as behind the public name's proxy
        follow_redirects=False,
    )
    assert response.status_code == 200
    assert statuses(store)["bob@exemple.fr"] == "unsubscribed"
    bad = httpx.post(
        f"{live_server}/u/not-a-real-token-at-all",
        content=b"x",
        headers={**FORM, "Host": "digest.ecole.example"},
    )
    assert bad.status_code == 404
    assert statuses(store)["alice@exemple.fr"] == "active"


def test_tokens_never_reach_the_log(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    token = token_of(store, "alice@exemple.fr")
    assert token is not None
    client.post(f"/u/{token}", headers=FORM, **ONE_CLICK)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("digest"))
    assert "POST /u/… 200" in ours and token not in ours
