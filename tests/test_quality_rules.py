"""docs/quality.md rules checked on what a subscriber really receives.

The unit tests of compose, render and send check each rule on hand-made inputs; these
tests run the whole pipeline (real feeds, real SQLite, the real capture SMTP server) and
check the rules on the bytes that arrived, so a rule broken by the wiring between
stages (a header set twice, a part built from the wrong object, a feed title reaching
a header) fails here too. The last tests fill gaps in Delivery and Collection,
among them two bugs found while writing them (hard-wrapped feed HTML cutting
sentences, a resumed send adding new subscribers).
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import re
import threading
import time
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from conftest import ROOT, HTTPServer, Route
from pipeline_helpers import cli, make_config
from quality_helpers import PERIOD, Received, received

from digest.capture import CaptureServer
from digest.config import load_settings
from digest.db import Store, schema
from digest.send import send_issue
from digest.subscribers import unsubscribe
from digest.web import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SUBSCRIBERS_CSV = (ROOT / "subscribers.example.csv").read_text(encoding="utf-8")
EVERY_ADDRESS = re.findall(r"^([^,\s]+@[^,\s]+),", SUBSCRIBERS_CSV, re.MULTILINE)
ACTIVE = [a for a in EVERY_ADDRESS if "oceane" not in a]  # the example's unsubscribed one
SENDER_DOMAIN = "ian.example"  # examples/digest.toml: from_address = "veille@ian.example"


def send_demo_issue(
    folder: Path, box: CaptureServer, config_edit: dict[str, str] | None = None
) -> Path:
    """Import the example list and run the demo configuration for PERIOD into ``box``."""
    config = make_config(folder, box.port, edit=config_edit)
    assert cli(config, "subscribers", "import", str(folder / "subscribers.example.csv")) == 0
    assert cli(config, "run", "--period", PERIOD) == 0
    return config


@pytest.fixture
def messages(tmp_path: Path, smtp_capture: CaptureServer) -> list[Received]:
    send_demo_issue(tmp_path, smtp_capture)
    got = received(smtp_capture)
    assert sorted(m.envelope_to for m in got) == sorted(ACTIVE)
    return got


class VisibleText(HTMLParser):
    """The text a reader sees in the HTML part, plus the tags for structural checks."""

    HIDDEN = {"head", "style", "script", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.chunks: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.links: list[tuple[str, str]] = []
        self._link: list[str] | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.HIDDEN:
            self.depth += 1
        if tag == "a":
            self._link, self._href = [], dict(attrs).get("href") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.depth -= 1
        if tag == "a" and self._link is not None:
            self.links.append((self._href, " ".join("".join(self._link).split())))
            self._link = None

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.chunks.append(data)
            if self._link is not None:
                self._link.append(data)

    @classmethod
    def of(cls, html: str) -> VisibleText:
        parser = cls()
        parser.feed(html)
        return parser

    @property
    def text(self) -> str:
        return " ".join(self.chunks)


def words(text: str) -> set[str]:
    text = re.sub(r"\S+://\S+", " ", text)  # the text part spells links out; HTML hides them
    return set(re.findall(r"[^\W\d_]{4,}", text.lower()))


# -- rules 1, 2 and 12: structure and wire format of every message that arrived ------------


def test_rule_1_each_message_is_text_then_html_and_the_text_says_what_the_html_says(
    messages: list[Received],
) -> None:
    for got in messages:
        assert got.message.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in got.message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        html_words, text_words = words(VisibleText.of(got.html).text), words(got.text)
        assert len(html_words) > 200  # a whole issue, not a stub
        # What SpamAssassin's MPART_ALT_DIFF measures: the two parts share their words.
        assert len(html_words - text_words) <= len(html_words) // 50, html_words - text_words
        assert len(text_words - html_words) <= len(text_words) // 50, text_words - html_words


def test_rule_2_headers_encodings_and_line_lengths_on_the_wire(
    messages: list[Received],
) -> None:
    for got in messages:
        raw, message = got.raw, got.message
        assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF on the wire"
        assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR on the wire"
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert email.utils.parsedate_to_datetime(message["Date"]) is not None
        assert re.fullmatch(r"<[^@<>\s]+@" + re.escape(SENDER_DOMAIN) + ">", message["Message-ID"])
        # The French subject and names travel as RFC 2047 encoded words, decoded intact.
        assert re.search(rb"^Subject: =\?utf-8\?[qb]\?", got.head, re.I | re.M)
        # The English-speaking subscriber gets the English edition (Content-Language: en).
        month = "November" if message["Content-Language"] == "en" else "novembre"
        assert "’" in message["Subject"] and month in message["Subject"]
        assert message["From"].addresses[0].display_name == "Institut des Arts et du Numérique"
        assert got.head.isascii()
        html_part = got.message.get_body(("html",))
        assert html_part is not None
        assert html_part["Content-Transfer-Encoding"].lower() in {"quoted-printable", "base64"}


def test_rule_12_one_envelope_recipient_and_no_one_elses_address(
    messages: list[Received],
) -> None:
    # The capture server writes one file per envelope recipient: a message sent to two
    # people would show up twice with the same Message-ID.
    assert len({m.message["Message-ID"] for m in messages}) == len(messages)
    for got in messages:
        assert [a.addr_spec for a in got.message["To"].addresses] == [got.envelope_to]
        everything = (got.raw + got.text.encode() + got.html.encode()).lower()
        for other in EVERY_ADDRESS:
            if other != got.envelope_to:
                assert other.lower().encode() not in everything, (got.envelope_to, other)


# -- rules 3 and 4: one-click unsubscribe, end to end -----------------------------------------


def unsubscribe_urls(got: Received) -> tuple[str, str]:
    header = " ".join(got.message["List-Unsubscribe"].split())
    found = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>", header)
    assert found, header
    return found.group(1), found.group(2)


def test_rules_3_4_one_click_from_the_received_header_stops_the_next_issue(
    tmp_path: Path, smtp_capture: CaptureServer
) -> None:
    config = send_demo_issue(
        tmp_path,
        smtp_capture,
        {'base_url = "http://127.0.0.1:8080"': 'base_url = "https://veille.ian.example"'},
    )
    first = received(smtp_capture)
    assert len(first) == len(ACTIVE)
    urls = {}
    for got in first:
        https_url, mailto = unsubscribe_urls(got)
        assert https_url.startswith("https://veille.ian.example/u/")
        assert mailto.startswith("mailto:veille@ian.example")
        assert got.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert got.message["List-Id"].endswith("<veille.ian.example>")
        # A visible link in the body too, in both parts.
        links = VisibleText.of(got.html).links
        assert any(href == https_url and text for href, text in links), links
        assert https_url in got.text
        urls[got.envelope_to] = https_url
    # Per subscriber and unguessable: distinct, at least 128 bits of token each.
    tokens = {urlsplit(u).path.rsplit("/", 1)[1] for u in urls.values()}
    assert len(tokens) == len(ACTIVE)
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 16

    leaver = ACTIVE[0]
    settings = load_settings(config)
    store = Store(settings.database.url)
    try:
        with TestClient(create_app(settings, store), base_url=settings.web.base_url) as client:
            path = urlsplit(urls[leaver]).path
            # What Gmail and Yahoo do: a bare POST, no cookie, no login, no confirmation.
            answer = client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert 200 <= answer.status_code < 300
            assert "location" not in answer.headers
    finally:
        store.close()

    assert cli(config, "run", "--period", "2026-W49") == 0
    second = received(smtp_capture)[len(first) :]
    assert sorted(m.envelope_to for m in second) == sorted(a for a in ACTIVE if a != leaver)


# -- rules 5 to 10: what the HTML part of a real message looks like ----------------------------


def test_rules_5_to_10_the_received_html(messages: list[Received]) -> None:
    for got in messages:
        html = got.html
        assert len(html.encode("utf-8")) < 100_000  # rule 5: under Gmail's clipping
        assert re.search(r'max-width:\s*600px|width="600"|width:\s*600px', html)
        page = VisibleText.of(html)
        # Rule 6: language, alt on every image, presentation tables, link texts, preheader.
        html_tag = next(attrs for tag, attrs in page.tags if tag == "html")
        english = got.envelope_to == "emily.carter@example.com"  # the list's `en` subscriber
        assert (
            html_tag.get("lang") == got.message["Content-Language"] == ("en" if english else "fr")
        )
        images = [attrs for tag, attrs in page.tags if tag == "img"]
        assert images and all("alt" in attrs for attrs in images)
        tables = [attrs for tag, attrs in page.tags if tag == "table"]
        assert tables and all(attrs.get("role") == "presentation" for attrs in tables)
        vague = {"ici", "cliquez ici", "lire", "lien", "here", "click here", "en savoir plus"}
        assert not [text for _, text in page.links if text.lower() in vague or not text]
        first_text = next(c.strip() for c in page.chunks if c.strip())
        # the intro (the English edition's own) is the preheader
        assert first_text.startswith("This week" if english else "Cette semaine")
        # Rule 7: dark mode declared.
        assert re.search(r'<meta[^>]+name="color-scheme"[^>]+content="light dark"', html)
        # Rule 8: Outlook's conditional comments survived inlining.
        assert "<!--[if mso" in html and "<![endif]-->" in html
        # Rule 9: responsive rules kept, no web-font link unless configured.
        assert "@media" in html
        assert "fonts.googleapis.com" not in html
        # Rule 10: French typography and dates in both parts (English ones in English).
        for part in (page.text, got.text):
            if english:
                assert "This week:" in part and "What this teaches us" in part
                assert "Ce que cela nous apprend" not in part
                assert re.search(r"\bNovember \d{1,2}, 2026\b", part)
                continue
            assert "Cette semaine\u00a0:" in part and "Ce que cela nous apprend" in part
            assert re.search(r"\b\d{1,2} novembre 2026\b", part)
            assert not re.search(r"\w [:;!?](\s|$)", part.replace("\u00a0", "_"))


# -- rule 11: hostile feed and subscriber text ------------------------------------------------


# CR/LF as character references: a parser hands them to us as real line breaks.
HOSTILE_TITLE = (
    "Titre piégé&#13;&#10;Bcc: evil-title@attacker.example&#13;&#10;"
    "&lt;script&gt;x()&lt;/script&gt;"
)
HOSTILE_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Source piégée</title><link>{base}/</link>
<description>test</description>
<item>
<title>{title}</title>
<link>{base}/article-1</link>
<guid>hostile-1</guid>
<pubDate>Tue, 24 Nov 2026 09:00:00 +0000</pubDate>
<description><![CDATA[<p>L’école de design de Lyon a ouvert le 23 novembre 2026 un atelier de
création numérique pour 40 étudiants.</p>
<script>document.location='https://attacker.example/'</script>
<p onmouseover="steal()">Le projet, financé par la région, réunit 12 studios partenaires
et dure six mois.</p><img src="https://attacker.example/x.png" onerror="steal()" alt="x">
<p><a href="javascript:steal()">Le programme complet</a> sera publié en décembre
et les inscriptions ouvriront en janvier 2027.</p>]]></description>
</item>
<item>
<title>Lien piégé</title>
<link>javascript:steal()</link>
<guid>hostile-2</guid>
<pubDate>Tue, 24 Nov 2026 10:00:00 +0000</pubDate>
<description>Un autre article sur les métiers du numérique, publié pour tester les liens.
Il décrit un outil de montage vidéo utilisé par 30 écoles en France.</description>
</item>
</channel></rss>
"""


def test_rule_11_feed_and_subscriber_text_never_add_a_header_or_run(
    tmp_path: Path, smtp_capture: CaptureServer, http_server: HTTPServer
) -> None:
    http_server.routes["/hostile.xml"] = Route(
        200,
        HOSTILE_FEED.format(base=http_server.base_url, title=HOSTILE_TITLE).encode(),
        {"Content-Type": "application/rss+xml"},
    )
    sources = (
        f'[[sources]]\nname = "Source piégée"\nurl = "{http_server.url("/hostile.xml")}"\n\n'
        '[[sources]]\nname = "Veille créative – IAN"\nurl = "feeds/veille-creative.xml"\n'
    )
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    people = tmp_path / "people.csv"
    people.write_bytes(
        b"email,name,language\r\n"
        b'lea@exemple.fr,"L\xc3\xa9a\r\nBcc: evil-name@attacker.example",fr\r\n'
        b'tom@exemple.fr,"Tom <script>x()</script> & Jerry",fr\r\n'
    )
    assert cli(config, "subscribers", "import", str(people)) in (0, 2)
    assert cli(config, "run", "--period", PERIOD) == 0
    got = received(smtp_capture)
    assert sorted(m.envelope_to for m in got) == ["lea@exemple.fr", "tom@exemple.fr"]
    for message in got:
        names = [line.split(b":")[0].lower() for line in message.head.split(b"\r\n")]
        assert b"bcc" not in names and b"cc" not in names
        assert message.message["Bcc"] is None
        assert [a.addr_spec for a in message.message["To"].addresses] == [message.envelope_to]
        assert all(message.message[h] is None for h in ("Cc", "Bcc", "Reply-To"))
        assert "attacker" not in str(message.message["Subject"])
        html = message.html
        assert "Titre piégé" in html  # the article is there, made harmless
        lowered = html.lower()
        assert "<script" not in lowered
        assert not re.search(r"<[^>]+\son\w+\s*=", lowered), "an on* attribute survived"
        assert "javascript:" not in lowered
    tom = next(m for m in got if m.envelope_to == "tom@exemple.fr")
    assert "Bonjour Tom &lt;script&gt;x()&lt;/script&gt; &amp; Jerry," in tom.html


# -- Delivery: `digest send` after `digest run` is a no-op ------------------------------------


def test_send_after_run_for_the_same_period_sends_nothing_more(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = send_demo_issue(tmp_path, smtp_capture)
    assert len(received(smtp_capture)) == len(ACTIVE)
    capsys.readouterr()
    # A no-op: nothing goes out, and the editor is told why (exit 1 today; `run` says 0).
    assert cli(config, "send", "--period", PERIOD) == 0  # a harmless repeat, not an error
    assert cli(config, "send", "--period", PERIOD, "--force") == 0
    assert cli(config, "run", "--period", PERIOD) == 0
    assert len(received(smtp_capture)) == len(ACTIVE)
    assert capsys.readouterr().out.count("already sent") == 3


# -- Collection: a failing source is shown by `digest status` --------------------------------


def test_a_failing_source_is_shown_by_digest_status(
    tmp_path: Path,
    smtp_capture: CaptureServer,
    http_server: HTTPServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    http_server.routes["/gone.xml"] = Route(410, b"gone")
    sources = (
        '[[sources]]\nname = "Veille créative – IAN"\nurl = "feeds/veille-creative.xml"\n\n'
        f'[[sources]]\nname = "Source disparue"\nurl = "{http_server.url("/gone.xml")}"\n'
    )
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    assert cli(config, "collect") == 2
    capsys.readouterr()
    assert cli(config, "status") == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "Source disparue" in line)
    assert "410" in line
    healthy = next(line for line in out.splitlines() if "Veille créative" in line)
    assert "410" not in healthy


# -- Collection: deduplication across runs of one source --------------------------------------


def test_the_same_story_is_stored_once_across_runs_by_guid_then_url_then_content(
    tmp_path: Path, http_server: HTTPServer
) -> None:
    from collect_helpers import feed_route, item, make_settings, rss, source, stored, unique_text

    from digest.collect import collect

    text = unique_text("une seule histoire", 120)
    settings = make_settings(tmp_path, source("blog", http_server.url("/feed")))
    store = Store(settings.database.url)
    try:
        runs = [
            # First seen.
            item(
                "Une histoire", "https://blog.example/h?utm_source=rss", guid="g1", description=text
            ),
            # Same GUID, the link lost its tracking parameter: the GUID says it is the same.
            item("Une histoire", "https://blog.example/h", guid="g1", description=text),
            # A new GUID (the CMS was migrated) but the same normalized URL.
            item(
                "Une histoire",
                "https://BLOG.example/h?utm_medium=feed#top",
                guid="g2",
                description=text,
            ),
            # A new GUID and a new URL, the same text: the content fingerprint says so.
            item("Une histoire", "https://blog.example/2026/h", guid="g3", description=text),
        ]
        for entry in runs:
            http_server.routes["/feed"] = feed_route(rss(entry))
            collect(settings, store)
            assert len(stored(store)) == 1, entry
        http_server.routes["/feed"] = feed_route(
            rss(item("Autre chose", "https://blog.example/x", guid="g4"))
        )
        collect(settings, store)
        assert len(stored(store)) == 2  # a different story is still new
    finally:
        store.close()


# -- Found while writing these: hard-wrapped feed HTML gives a summary that starts mid-sentence


WRAPPED_SENTENCES = (
    "L’école de design de Lyon a ouvert le 23 novembre 2026 un atelier de création "
    "numérique pour 40 étudiants.",
    "Le projet, financé par la région, réunit 12 studios partenaires et dure six mois.",
    "Le programme complet sera publié en décembre et les inscriptions ouvriront en janvier 2027.",
)


def hard_wrapped(sentence: str) -> str:
    """The sentence as many CMSs write it in a feed: wrapped in the middle, inside one <p>."""
    words = sentence.split()
    return "<p>" + " ".join(words[:6]) + "\n" + " ".join(words[6:]) + "</p>"


BUG_WRAPPED = (
    "html_to_text keeps the source's line breaks inside a <p> (digest/collect/normalize.py "
    "_tidy splits on \\n); the summarizer then treats each source line as a sentence, so the "
    "summary a subscriber reads starts mid-sentence"
)


def test_a_paragraph_wrapped_in_the_feed_source_is_one_line_of_text() -> None:
    from digest.collect.normalize import html_to_text

    assert html_to_text(hard_wrapped(WRAPPED_SENTENCES[0])) == WRAPPED_SENTENCES[0]


def test_the_summary_of_a_hard_wrapped_feed_is_made_of_whole_sentences(
    tmp_path: Path, smtp_capture: CaptureServer, http_server: HTTPServer
) -> None:
    description = "".join(hard_wrapped(s) for s in WRAPPED_SENTENCES)
    feed = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Ateliers</title><link>{http_server.base_url}/</link><description>d</description>"
        f"<item><title>Un atelier de création à Lyon</title><link>{http_server.base_url}/a</link>"
        "<guid isPermaLink='false'>a1</guid><pubDate>Tue, 24 Nov 2026 09:00:00 +0000</pubDate>"
        f"<description><![CDATA[{description}]]></description></item></channel></rss>"
    )
    http_server.routes["/feed.xml"] = Route(200, feed.encode(), {"Content-Type": "text/xml"})
    sources = f'[[sources]]\nname = "Ateliers"\nurl = "{http_server.url("/feed.xml")}"\n'
    config = make_config(tmp_path, smtp_capture.port, sources=sources)
    people = tmp_path / "people.csv"
    people.write_text("email,name,language\nlea@exemple.fr,Léa,fr\n", encoding="utf-8")
    assert cli(config, "subscribers", "import", str(people)) == 0
    assert cli(config, "run", "--period", PERIOD) == 0
    (got,) = received(smtp_capture)
    found = re.search(r'<p class="dg-summary"[^>]*>(.*?)</p>', got.html, re.S)
    assert found, "no summary paragraph in the email"
    summary = " ".join(VisibleText.of(found.group(1)).text.replace("\u00a0", " ").split())
    assert summary
    for sentence in re.split(r"(?<=\.) ", summary):
        assert sentence in WRAPPED_SENTENCES, summary


# -- Rule 3 and Delivery: an unsubscribe is final, even for a recipient still owed a retry -----


@pytest.fixture
def scripted() -> Iterator[Any]:
    from send_helpers import ScriptedServer

    server = ScriptedServer()
    server.start()
    yield server
    server.stop()


def make_retries_due(store: Store) -> None:
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.deliveries)
            .where(schema.deliveries.c.status.in_(["failed_temp", "uncertain"]))
            .values(next_attempt_at=sa.func.datetime("now", "-1 minute"))
        )


def test_rule_3_someone_who_leaves_while_owed_a_retry_gets_nothing(
    tmp_path: Path, scripted: Any
) -> None:
    from send_helpers import RENDERED, make_settings, make_store

    store, issue = make_store(tmp_path, 3)
    scripted.script.rcpt["r001@exemple.fr"] = ["450 4.2.0 greylisted, try later"]
    settings = make_settings(tmp_path, scripted.port)
    assert send_issue(settings, store, issue, RENDERED).counts == {"sent": 2, "failed_temp": 1}
    unsubscribe(store, "r001@exemple.fr")
    make_retries_due(store)
    send_issue(settings, store, issue, RENDERED)
    assert "r001@exemple.fr" not in scripted.script.received()
    store.close()


def test_rule_3_an_uncertain_recipient_who_left_is_not_resent_even_on_request(
    tmp_path: Path, scripted: Any
) -> None:
    from send_helpers import RENDERED, make_settings, make_store

    store, issue = make_store(tmp_path, 3)
    scripted.script.data["r001@exemple.fr"] = ["drop-after-dot"]
    settings = make_settings(tmp_path, scripted.port)
    assert send_issue(settings, store, issue, RENDERED).counts == {"sent": 2, "uncertain": 1}
    accepted_before = len(scripted.script.accepted)
    unsubscribe(store, "r001@exemple.fr")
    send_issue(settings, store, issue, RENDERED, resend_uncertain=True)
    assert len(scripted.script.accepted) == accepted_before
    store.close()


# -- Delivery: the configured rate is applied, over one reused connection ----------------------


class RecordingStop(threading.Event):
    """A stop event that records every pause asked of it and returns at once.

    The sender paces itself by waiting on its stop event; recording the pauses
    checks the rate without a clock in the assertion.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout:
            self.pauses.append(timeout)
        return self.is_set()


def test_the_configured_rate_spaces_messages_on_one_connection(
    tmp_path: Path, scripted: Any
) -> None:
    from send_helpers import RENDERED, make_settings, make_store

    store, issue = make_store(tmp_path, 5)
    stop = RecordingStop()
    rate = 1.0  # one message a second: 5 messages take at least 4 s of pacing
    started = time.monotonic()
    report = send_issue(
        make_settings(tmp_path, scripted.port, rate=rate), store, issue, RENDERED, stop=stop
    )
    elapsed = time.monotonic() - started  # real time spent, which also counts as spacing
    assert report.sent == 5 and report.complete
    assert sum(stop.pauses) + elapsed >= (5 - 1) / rate - 0.01
    assert scripted.script.sessions == 1  # connection reuse
    store.close()


def test_the_recipient_list_is_the_snapshot_taken_when_sending_started(
    tmp_path: Path, scripted: Any
) -> None:
    from send_helpers import RENDERED, make_settings, make_store

    from digest.subscribers import import_csv

    store, issue = make_store(tmp_path, 3)
    scripted.script.rcpt["r001@exemple.fr"] = ["450 4.2.0 greylisted, try later"]
    settings = make_settings(tmp_path, scripted.port)
    first = send_issue(settings, store, issue, RENDERED)
    assert not first.complete and first.retry_pending == 1
    late = tmp_path / "late.csv"
    late.write_text("email,name,language\nlate@exemple.fr,Arrivée tardive,fr\n", encoding="utf-8")
    import_csv(store, late)
    make_retries_due(store)
    send_issue(settings, store, issue, RENDERED)
    received_now = scripted.script.received()
    assert received_now.get("r001@exemple.fr") == 1  # the retry went out
    assert "late@exemple.fr" not in received_now  # joined after the send started
    store.close()


# -- Rule 11: the other line breaks Unicode knows cannot add a header either --------------------


@pytest.mark.parametrize("separator", ["\r\n", "\n", "\r", "\u2028", "\u2029", "\x85", "\v", "\f"])
def test_rule_11_no_line_break_of_any_kind_adds_a_header(tmp_path: Path, separator: str) -> None:
    import dataclasses

    from compose_helpers import RENDERED as COMPOSE_RENDERED
    from compose_helpers import TOKEN, compose_settings

    from digest.compose import MessageFactory
    from digest.models import Subscriber

    evil = f"Léa{separator}Bcc: evil@attacker.example"
    rendered = dataclasses.replace(COMPOSE_RENDERED, subject=f"Semaine 48{separator}X-Evil: 1")
    raw = MessageFactory(rendered, compose_settings(tmp_path)).build(
        Subscriber(email="lea@exemple.fr", name=evil), TOKEN
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n") if line[:1] != b" "]
    assert b"bcc" not in names and b"x-evil" not in names
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in message["To"].addresses] == ["lea@exemple.fr"]
    assert message["Bcc"] is None and message["X-Evil"] is None
