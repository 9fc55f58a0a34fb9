"""Signup with double opt-in, preferences, the archive feed, and the hardening of the web pages.

Driven through Starlette's TestClient with a real SQLite file and the capture
SMTP server on loopback; the whole journey in a real browser is in
``test_web_browser.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
import time
import warnings
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import feedparser
import pytest
import sqlalchemy as sa
from conftest import token_of
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest import cli
from digest.capture import CaptureServer
from digest.config import NewsletterSettings, Settings, SmtpSettings, WebSettings
from digest.db import Store, issues, schema
from digest.db import subscribers as subscriber_rows
from digest.models import Issue, IssueItem, Lesson
from digest.subscribers import delete, import_csv
from digest.web import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BASE = "https://lettre.ecole.example"
KEY = "a-test-key-that-is-long-enough-0123456789"
SECURITY = ("content-security-policy", "x-content-type-options", "referrer-policy")


def make_settings(tmp_path: Path, smtp_port: int, **web: object) -> Settings:
    return Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(title="La veille", from_address="veille@ecole.example"),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp_port),
        web=WebSettings(base_url=BASE, **web),  # type: ignore[arg-type]
        secret_key=KEY,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,language,tags,status\n"
        "alice@exemple.fr,Alice,fr,design;son,active\n"
        "oceane@exemple.fr,Océane,fr,,unsubscribed\n",
        encoding="utf-8",
    )
    import_csv(store, path)
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path, smtp_capture: CaptureServer) -> Settings:
    return make_settings(tmp_path, smtp_capture.port)


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, store)
    with TestClient(app, base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def mails(box: CaptureServer) -> list[EmailMessage]:
    out = []
    for path in sorted(box.handler.folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"https://\S+/confirm/\S+", body.get_content())
    assert found is not None, body.get_content()
    return found.group(0)


def rows(store: Store) -> dict[str, tuple[str, str, str]]:
    with store.connect() as conn:
        result = conn.execute(
            sa.select(
                schema.subscribers.c.email,
                schema.subscribers.c.status,
                schema.subscribers.c.language,
                schema.subscribers.c.tags,
            )
        )
        return {r.email: (r.status, r.language, r.tags) for r in result}


class SignedLongAgo(TimestampSigner):
    """Signs as if it were 49 hours ago: the link has expired."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 49 * 3600


def signup(client: TestClient, address: str, **fields: str) -> object:
    return client.post("/subscribe", data={"email": address, **fields})


# -- the form and the confirmation link ---------------------------------------------------------


def test_form_speaks_french_by_default_and_english_when_asked(client: TestClient) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text and "M’abonner" in page.text
    assert "#b3261e" in page.text  # the newsletter's colour, from the theme
    assert 'name="website"' in page.text  # the honeypot
    english = client.get("/subscribe", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english.text and "Subscribe" in english.text


def test_signup_is_stored_only_after_the_button_is_pressed(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    answer = signup(client, "Nouvelle@Exemple.FR", name="Nina", language="en")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    assert "nouvelle@exemple.fr" not in {e.lower() for e in rows(store)}
    [message] = mails(smtp_capture)
    assert message["X-Digest-Envelope-To"] == "Nouvelle@exemple.fr"
    assert message["Subject"] == "Confirm your subscription to La veille"
    assert message["Content-Language"] == "en"
    link = link_in(message)
    assert link.startswith(f"{BASE}/confirm/")
    path = link.removeprefix(BASE)

    # Opening the link (what a mail scanner does) subscribes nobody.
    page = client.get(path)
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "Nouvelle@exemple.fr" not in rows(store)

    done = client.post(path)
    assert done.status_code == 200 and "Subscription confirmed" in done.text
    assert rows(store)["Nouvelle@exemple.fr"] == ("active", "en", "")
    subscriber = subscriber_rows.by_token(store, token_of(store, "Nouvelle@exemple.fr"))
    assert subscriber is not None and subscriber.name == "Nina" and subscriber.id is not None
    [consent] = subscriber_rows.consents_of(store, subscriber.id)
    assert consent.form == "page" and consent.language == "en"
    assert consent.wording.startswith("By subscribing, you agree to receive La veille")
    assert consent.requested_at <= consent.confirmed_at
    # The confirmation page leads to the preference page.
    assert f'href="/p/{token_of(store, "Nouvelle@exemple.fr")}"' in done.text


def test_replayed_forged_and_expired_links_change_nothing(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    signup(client, "nina@exemple.fr")
    path = link_in(mails(smtp_capture)[0]).removeprefix(BASE)
    assert client.post(path).status_code == 200
    # She leaves; the old link must not bring her back.
    with store.begin() as conn:
        subscriber_rows.unsubscribe(conn, subscriber_rows.listed(store)[-1].id or 0)
    before = rows(store)
    token = path.removeprefix("/confirm/")
    stale = URLSafeTimedSerializer(KEY, salt="digest-signup", signer=SignedLongAgo)
    expired = stale.dumps({"e": "x@exemple.fr", "n": "", "l": "fr", "f": "page", "w": "", "r": "n"})
    other_key = URLSafeTimedSerializer("another-key-another-key-0000", salt="digest-signup")
    foreign = other_key.dumps(
        {"e": "y@exemple.fr", "n": "", "l": "fr", "f": "page", "w": "", "r": "m"}
    )
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    answers = set()
    for bad in (token, expired, foreign, altered, "nope", "a/b"):
        for method in ("GET", "POST"):
            response = client.request(method, f"/confirm/{bad}")
            answers.add((response.status_code, response.text))
    assert len(answers) == 1
    [(status, text)] = answers
    assert status == 404 and "Lien non valide" in text
    assert rows(store) == before


def test_same_answer_for_new_known_and_unsubscribed_addresses(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    texts = set()
    for address in ("alice@exemple.fr", "oceane@exemple.fr", "inconnue@exemple.fr"):
        answer = signup(client, address)
        assert answer.status_code == 200
        texts.add(answer.text.replace(address, "ADDRESS"))
    assert len(texts) == 1
    assert len(mails(smtp_capture)) == 3  # everyone gets the same email too
    assert rows(store)["oceane@exemple.fr"][0] == "unsubscribed"  # not until she confirms


def test_someone_who_left_or_was_erased_comes_back_only_by_confirming(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    delete(store, "alice@exemple.fr")
    for address in ("oceane@exemple.fr", "alice@exemple.fr"):
        signup(client, address)
    assert "alice@exemple.fr" not in rows(store)
    assert rows(store)["oceane@exemple.fr"][0] == "unsubscribed"
    for message in mails(smtp_capture):
        assert client.post(link_in(message).removeprefix(BASE)).status_code == 200
    assert rows(store)["oceane@exemple.fr"][0] == "active"
    assert rows(store)["alice@exemple.fr"][0] == "active"


def test_invalid_addresses_are_refused_clearly(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    before = rows(store)
    for address in ("", "pas-une-adresse", "a@b", "x@exemple.fr\r\nBcc: y@exemple.fr", "a" * 400):
        answer = signup(client, address)
        assert answer.status_code == 400
        assert "n’est pas une adresse e-mail valable" in answer.text
        assert 'role="alert"' in answer.text
    assert rows(store) == before
    assert mails(smtp_capture) == []


def test_honeypot_gets_the_usual_answer_and_nothing_happens(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    answer = signup(client, "robot@exemple.fr", website="https://spam.example")
    assert answer.status_code == 200 and "Vérifiez votre boîte de réception" in answer.text
    assert mails(smtp_capture) == []


def test_floods_are_limited_per_address_and_per_client(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    answers = [signup(client, "cible@exemple.fr").status_code for _ in range(5)]
    assert answers == [200] * 5  # no way to tell the limit from outside...
    assert len(mails(smtp_capture)) == 3  # ...but the mailbox is not bombed
    codes = [signup(client, f"n{i}@exemple.fr").status_code for i in range(10)]
    assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}  # ten per client
    assert "Trop de demandes" in signup(client, "encore@exemple.fr").text
    assert len(mails(smtp_capture)) == 8
    assert rows(store).keys() == {"alice@exemple.fr", "oceane@exemple.fr"}


def test_an_unreachable_mail_server_is_said_and_stores_nothing(
    tmp_path: Path, store: Store
) -> None:
    from digest.capture import free_port

    app = create_app(make_settings(tmp_path, free_port()), store)
    with TestClient(app, base_url=BASE) as test_client:
        answer = signup(test_client, "nina@exemple.fr")
    assert answer.status_code == 503 and "indisponible" in answer.text
    assert "nina@exemple.fr" not in rows(store)


def test_embeddable_form_posts_to_the_public_url(client: TestClient) -> None:
    snippet = client.get("/subscribe/embed")
    assert snippet.status_code == 200 and snippet.headers["content-type"].startswith("text/plain")
    assert f'action="{BASE}/subscribe"' in snippet.text
    assert 'name="form" value="embed"' in snippet.text and 'name="website"' in snippet.text
    assert "<html" not in snippet.text


def test_embedded_form_is_recorded_as_such(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    signup(client, "site@exemple.fr", form="embed")
    client.post(link_in(mails(smtp_capture)[0]).removeprefix(BASE))
    subscriber = subscriber_rows.by_token(store, token_of(store, "site@exemple.fr"))
    assert subscriber is not None and subscriber.id is not None
    assert [c.form for c in subscriber_rows.consents_of(store, subscriber.id)] == ["embed"]


def test_signup_needs_the_secret_key(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(make_settings(tmp_path, 25), secret_key="")
    with TestClient(create_app(settings, store), base_url=BASE) as test_client:
        assert test_client.get("/subscribe").status_code == 404
        assert test_client.get(f"/u/{token_of(store, 'alice@exemple.fr')}").status_code == 200
    config = tmp_path / "serve.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "serve.db"}"\n', encoding="utf-8")
    monkeypatch.delenv("DIGEST_SECRET_KEY")
    assert cli.main(["--config", str(config), "serve", "--port", "1"]) == 1
    monkeypatch.setenv("DIGEST_SECRET_KEY", "short")
    assert cli.main(["--config", str(config), "serve", "--port", "1"]) == 1


# -- preferences --------------------------------------------------------------------------------


def test_preferences_change_language_and_sections(client: TestClient, store: Store) -> None:
    token = token_of(store, "alice@exemple.fr")
    page = client.get(f"/p/{token}")
    assert page.status_code == 200 and "Vos préférences" in page.text
    assert 'value="design" checked' in page.text and 'value="son" checked' in page.text
    saved = client.post(
        f"/p/{token}", data={"action": "save", "language": "en", "tags": ["son", "piratage"]}
    )
    assert saved.status_code == 200
    assert '<html lang="en">' in saved.text and "Your preferences are saved." in saved.text
    assert rows(store)["alice@exemple.fr"] == ("active", "en", "son")  # unknown tag ignored
    client.post(f"/p/{token}", data={"action": "save", "language": "xx"})
    assert rows(store)["alice@exemple.fr"] == ("active", "en", "")


def test_preferences_unsubscribe_then_resubscribe_by_confirming(
    client: TestClient, store: Store, smtp_capture: CaptureServer
) -> None:
    token = token_of(store, "alice@exemple.fr")
    left = client.post(f"/p/{token}", data={"action": "unsubscribe"})
    assert "Me réabonner" in left.text
    assert rows(store)["alice@exemple.fr"][0] == "unsubscribed"
    asked = client.post(f"/p/{token}", data={"action": "resubscribe"})
    assert "Un e-mail de confirmation vient d’être envoyé" in asked.text
    assert rows(store)["alice@exemple.fr"][0] == "unsubscribed"
    client.post(link_in(mails(smtp_capture)[0]).removeprefix(BASE))
    assert rows(store)["alice@exemple.fr"] == ("active", "fr", "design,son")
    assert token_of(store, "alice@exemple.fr") == token  # her old links keep working


def test_bad_preference_tokens_change_nothing(client: TestClient, store: Store) -> None:
    before = rows(store)
    token = token_of(store, "alice@exemple.fr")
    answers = set()
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "short", "x" * 30):
        for data in ({"action": "unsubscribe"}, {"action": "save", "language": "en"}):
            response = client.post(f"/p/{bad}", data=data)
            answers.add((response.status_code, response.text))
        response = client.get(f"/p/{bad}")
        answers.add((response.status_code, response.text))
    assert len(answers) == 1 and next(iter(answers))[0] == 404
    assert rows(store) == before


# -- archive ------------------------------------------------------------------------------------


def sent_issue(store: Store) -> None:
    item = IssueItem(
        article_id=None,
        position=1,
        source="Exemple",
        title="L’IA générative à l’école",
        url="https://exemple.fr/article",
        summary="Un résumé de l’article.",
        lessons=(Lesson("Une leçon."),),
        published=dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
    )
    intro = "Cette semaine, **trois écoles** ouvrent leurs ateliers."
    issues.save(
        store, Issue(period="2026-W48", title="La veille n° 48", intro=intro, items=(item,))
    )
    issues.set_status(store, "2026-W48", "sending")
    issues.set_status(store, "2026-W48", "sent")
    issues.save(store, Issue(period="2026-W49", title="Brouillon", intro="", items=(item,)))


def test_archive_page_shows_dates_and_first_lines_and_is_not_indexed(
    client: TestClient, store: Store
) -> None:
    sent_issue(store)
    page = client.get("/archive")
    assert "Cette semaine, trois écoles ouvrent leurs ateliers." in page.text
    assert re.search(r"\d{1,2}(er)? \w+ 2026", page.text)  # a French date
    assert "Brouillon" not in page.text
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert client.get("/archive/2026-W48").headers["x-robots-tag"] == "noindex, nofollow"


def test_archive_can_be_indexed_by_config(tmp_path: Path, store: Store) -> None:
    sent_issue(store)
    app = create_app(make_settings(tmp_path, 25, indexing=True), store)
    with TestClient(app, base_url=BASE) as test_client:
        page = test_client.get("/archive")
        assert page.headers["x-robots-tag"] == "index, follow"
        assert '<meta name="robots" content="index, follow">' in page.text
        # A page with someone's token never is.
        token = token_of(store, "alice@exemple.fr")
        assert test_client.get(f"/p/{token}").headers["x-robots-tag"] == "noindex, nofollow"


def test_atom_feed_lists_the_sent_issues(client: TestClient, store: Store) -> None:
    sent_issue(store)
    answer = client.get("/archive/feed.xml")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == "La veille"
    [entry] = feed.entries
    assert entry.title == "La veille n° 48"
    assert entry.link == f"{BASE}/archive/2026-W48"
    assert "trois écoles" in entry.summary


# -- hosts and headers --------------------------------------------------------------------------


def test_forged_host_is_refused_and_nothing_is_built_from_it(client: TestClient) -> None:
    for host in ("evil.example", "lettre.ecole.example.evil.example", "127.0.0.1"):
        answer = client.get("/subscribe", headers={"Host": host})
        assert answer.status_code == 400
        assert "evil" not in answer.headers.get("location", "")
        for name in SECURITY:
            assert name in answer.headers, (host, name)
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/archive"
    # No slash redirect (it would be an absolute URL made from the Host header).
    assert "location" not in client.get("/archive/").headers


def test_every_answer_carries_the_security_headers(
    client: TestClient, store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [
        client.get("/subscribe"),
        client.get("/nowhere"),  # Starlette's 404
        client.delete("/subscribe"),  # Starlette's 405
        client.put("/archive"),
        client.get("/archive/feed.xml"),
        client.get("/subscribe/embed"),
    ]
    assert [a.status_code for a in answers] == [200, 404, 405, 405, 200, 200]

    def broken(store: Store) -> list[tuple[str, str]]:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(issues, "sent_issues", broken)
    with TestClient(
        create_app(settings, store), base_url=BASE, raise_server_exceptions=False
    ) as failing:
        error = failing.get("/archive")
    assert error.status_code == 500 and "the database went away" not in error.text
    for answer in [*answers, error]:
        for name in SECURITY:
            assert name in answer.headers, (answer.url, name)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "Page introuvable" in answers[1].text and '<html lang="fr">' in answers[1].text


# -- the records, on SQLite and PostgreSQL ------------------------------------------------------


def test_signup_records_on_every_backend(db_url: str) -> None:
    from digest.subscribers import confirm_signup, signup_link_used

    store = Store(db_url)
    try:
        now = dt.datetime.now(dt.UTC)
        consent = subscriber_rows.Consent("nonce-1", "page", "Les mots", "fr", now, now)
        confirmed = confirm_signup(store, "Lea@Exemple.fr", "Léa", "fr", consent)
        assert confirmed is not None
        lea, token = confirmed
        assert lea.status == "active" and lea.id is not None
        assert signup_link_used(store, "nonce-1") and not signup_link_used(store, "nonce-2")
        assert confirm_signup(store, "lea@exemple.fr", "", "en", consent) is None  # replayed
        with store.begin() as conn:
            subscriber_rows.set_preferences(conn, lea.id, "en", ("design", "son"))
            subscriber_rows.unsubscribe(conn, lea.id)
        assert subscriber_rows.tags_in_use(store) == ["design", "son"]
        again = subscriber_rows.Consent("nonce-2", "preferences", "Les mots", "en", now, now)
        back = confirm_signup(store, "LEA@exemple.fr", "", "en", again)
        assert back is not None
        assert back[0].status == "active" and back[0].name == "Léa" and back[1] == token
        assert back[0].tags == ("design", "son")
        assert [c.form for c in subscriber_rows.consents_of(store, lea.id)] == [
            "page",
            "preferences",
        ]
        delete(store, "lea@exemple.fr")  # erasure takes the consents with it
        assert subscriber_rows.consents_of(store, lea.id) == []
    finally:
        store.close()
