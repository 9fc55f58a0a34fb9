"""The collector's building blocks, one rule at a time: the guard, cleaning, parsing, dedup."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import threading
from pathlib import Path

import httpx
import pytest

from digest.collect.dedupe import StoryIndex
from digest.collect.fetch import Fetcher, FetchError, _retry_after, default_user_agent
from digest.collect.fulltext import _canonical
from digest.collect.guard import Refused, check_address, parse_allow_list
from digest.collect.normalize import (
    canonical_url,
    clean_title,
    fingerprint,
    fold,
    html_to_text,
    sanitize_html,
    tidy_text,
    words,
)
from digest.collect.parse import discover_feeds, strip_doctype
from digest.config import CollectSettings
from digest.errors import ConfigError
from digest.language import detect_language, word_tokens

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

# -- the guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("100.100.100.200", "non-public"),  # shared address space (a metadata service too)
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
    ],
)
def test_guard_refuses_non_public_addresses(address: str, kind: str) -> None:
    with pytest.raises(Refused, match=f"{kind} address"):
        check_address(ipaddress.ip_address(address), ())


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_guard_lets_public_addresses_through(address: str) -> None:
    check_address(ipaddress.ip_address(address), ())


def test_allow_list_takes_addresses_and_networks() -> None:
    allowed = parse_allow_list(["127.0.0.1", "10.0.0.0/8", " fd00::/8 "])
    check_address(ipaddress.ip_address("127.0.0.1"), allowed)
    check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)  # same address
    check_address(ipaddress.ip_address("10.20.30.40"), allowed)
    check_address(ipaddress.ip_address("fd12::1"), allowed)
    with pytest.raises(Refused):
        check_address(ipaddress.ip_address("127.0.0.2"), allowed)


def test_allow_list_rejects_host_names_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="allow_private: 'localhost' is not an IP address"):
        parse_allow_list(["localhost"])


def test_injected_transport_still_gets_url_checks() -> None:
    """A test or plugin transport skips the network, not the scheme and literal-IP checks."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"<rss/>")

    async def fetch(url: str) -> bytes:
        settings = CollectSettings()
        async with Fetcher(settings, transport=httpx.MockTransport(handler)) as fetcher:
            return (await fetcher.get(url)).body

    assert asyncio.run(fetch("https://feeds.example/rss")) == b"<rss/>"
    assert seen[0].headers["User-Agent"] == default_user_agent()
    assert default_user_agent().startswith("digest/")
    with pytest.raises(FetchError, match="refused: address is link-local"):
        asyncio.run(fetch("http://169.254.169.254/latest"))
    with pytest.raises(FetchError, match="refused: javascript URL"):
        asyncio.run(fetch("javascript:alert(1)"))
    assert len(seen) == 1


def test_retry_after_accepts_dates_and_is_capped() -> None:
    far = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    when = _retry_after(far)
    assert when is not None
    assert when <= dt.datetime.now(dt.UTC) + dt.timedelta(days=7, seconds=5)
    assert _retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert _retry_after(httpx.Response(429)) is None


# -- cleaning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://Example.org:443/a/b?id=3&utm_source=rss&utm_campaign=x#xtor=RSS-3",
            "https://example.org/a/b?id=3",
        ),
        # A fragment can be what tells two entries apart: two comments on one page.
        ("https://example.org/release-2#comment-2", "https://example.org/release-2#comment-2"),
        ("http://example.org:80", "http://example.org/"),
        ("https://example.org/p?fbclid=1&gclid=2&mc_cid=3&mc_eid=4", "https://example.org/p"),
        ("https://example.org:8443/p?b=2&a=1", "https://example.org:8443/p?b=2&a=1"),
        (
            "https://example.org/p?page&q=a%20b+c&UTM_Source=x",
            "https://example.org/p?page&q=a%20b+c",
        ),
        ("https://user:pw@example.org/p", "https://example.org/p"),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_canonical_link_must_stay_on_the_same_site() -> None:
    page = "https://www.news.example/story?utm_source=x"
    assert _canonical(page, page, "https://news.example/story") == "https://news.example/story"
    assert _canonical(page, page, "https://other.example/") == "https://www.news.example/story"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Line one\r\nBcc: x@example.org", "Line one Bcc: x@example.org"),
        ("Bell\x07 and \x00null\u2028sep", "Bell and null sep"),
        ("  spaced\t\tout  ", "spaced out"),
        ("Vec<T> in Rust & C++", "Vec<T> in Rust & C++"),  # plain text stays as written
    ],
)
def test_clean_title(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("<b>Bold</b> title", "Bold title"),
        ("Vec&lt;T&gt; in <i>Rust</i>", "Vec<T> in Rust"),
    ],
)
def test_clean_title_of_html(raw: str, expected: str) -> None:
    assert clean_title(raw, is_html=True) == expected


@pytest.mark.parametrize(
    "evil",
    [
        '<a href="javascript:alert(1)">x</a>',
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        '<a href=" javascript:alert(1)">x</a>',
        '<a href="vbscript:msgbox(1)">x</a>',
        '<img src="data:text/html;base64,PHNjcmlwdD4=">',
        '<img src="x" onerror="alert(1)">',
        '<svg onload="alert(1)"><circle/></svg>',
        '<iframe src="https://evil.example/"></iframe>',
        "<script>alert(1)</script>",
        '<p style="background:url(javascript:alert(1))">x</p>',
        '<form action="https://evil.example/"><input name="q"></form>',
        '<a href="file:///etc/passwd">x</a>',
    ],
)
def test_sanitize_html_removes_active_content(evil: str) -> None:
    clean = sanitize_html(evil, "https://feed.example/")
    for bad in ("javascript", "vbscript", "data:", "onerror", "onload", "<script", "<iframe"):
        assert bad not in clean.lower()
    assert "<form" not in clean and "style=" not in clean and "file:" not in clean


def test_sanitize_html_makes_links_absolute() -> None:
    clean = sanitize_html('<a href="../b">b</a><img src="/i.png" alt="">', "https://f.example/a/c")
    assert 'href="https://f.example/b"' in clean
    assert 'src="https://f.example/i.png"' in clean
    assert 'rel="noopener noreferrer nofollow"' in clean


def test_html_to_text_keeps_paragraphs_and_drops_scripts() -> None:
    text = html_to_text("<p>One &amp; two</p><script>var x</script><ul><li>three</li></ul>")
    assert text == "One & two\nthree"


def test_html_to_text_collapses_every_kind_of_space_and_control() -> None:
    # Tabs, carriage returns, line separators and control characters inside HTML text
    # are spaces (a text without any of them takes a shortcut: both must agree).
    raw = "<p>a\tb\r\nc\u2028d  e\x85f\x07g</p><p>plain text, one space each</p>"
    assert html_to_text(raw) == "a b c d e f g\nplain text, one space each"
    assert tidy_text("one\u2029two\x00three\r\n\n  four") == "one\ntwo three\nfour"


@pytest.mark.parametrize(
    "text",
    [
        "Vec<T> in Rust: 3 ways, l'école_d'été (2026)!",
        "plain ascii words-and_more 42",
        "Ελληνικά και ١٢٣ œuvre\u00a0«\u202fmot\u202f»",
        "",
    ],
)
def test_words_are_the_runs_of_word_characters(text: str) -> None:
    # ASCII text is split without the regular expression: the same words either way.
    assert word_tokens(text) == re.findall(r"\w+", text)
    assert words(text) == re.findall(r"\w+", fold(text))


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("Les étudiants de l'école ont présenté leurs projets dans une exposition.", "", "fr"),
        ("The students of the school presented their projects in an exhibition.", "", "en"),
        ("Design", "fr", "fr"),
        ("OK", "", ""),
    ],
)
def test_detect_language(text: str, hint: str, expected: str) -> None:
    assert detect_language(text, hint) == expected


def test_fingerprint_ignores_markup_case_and_spacing() -> None:
    body = "Un texte assez long " * 10
    assert fingerprint("A", body) == fingerprint("B", "  " + body.upper() + "!")
    assert fingerprint("A", body) != fingerprint("A", body + " de plus")


# -- parsing ----------------------------------------------------------------------------------


def test_strip_doctype_removes_the_internal_subset_whole() -> None:
    doc = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [ <!ENTITY a "x]>y"> '
        b"<!ENTITY b SYSTEM 'file:///etc/passwd'> ]>\n<rss/>"
    )
    assert strip_doctype(doc) == b'<?xml version="1.0"?>\n\n<rss/>'
    assert strip_doctype(b"<rss/>") == b"<rss/>"
    assert strip_doctype(b"<!DOCTYPE rss [ <!ENTITY a 'never closed'") == b""


@pytest.mark.parametrize(
    "body",
    [
        b"<rss><channel><item><description><![CDATA[<!DOCTYPE html><p>x</p>]]></description>"
        b"</item></channel></rss>",
        b"<?xml version='1.0'?><!-- a comment --><rss><item><description>The &lt;!DOCTYPE "
        b"declaration</description></item><!DOCTYPE isnt here></rss>",
    ],
)
def test_strip_doctype_leaves_text_after_the_root_element_alone(body: bytes) -> None:
    assert strip_doctype(body) == body


def test_strip_doctype_after_comments_and_in_utf16() -> None:
    doc = "<?xml version='1.0'?>\n<!-- c --><!DOCTYPE rss [<!ENTITY a 'b'>]><rss>&a;</rss>"
    assert strip_doctype(doc.encode()) == b"<?xml version='1.0'?>\n<!-- c --><rss>&a;</rss>"
    wide = strip_doctype(doc.replace("'1.0'", "'1.0' encoding='utf-16'").encode("utf-16"))
    assert "ENTITY" not in wide.decode("utf-16") and wide.decode("utf-16").endswith(
        "<rss>&a;</rss>"
    )


def test_discover_feeds_in_page_order_resolving_relative_links() -> None:
    page = b"""<html><head>
    <link rel="stylesheet" href="/s.css">
    <link rel="alternate" type="application/atom+xml" href="/atom.xml">
    <link rel="alternate" type="application/rss+xml" href="https://cdn.example/rss">
    <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
    <link rel="alternate" hreflang="en" href="/en/">
    </head></html>"""
    assert discover_feeds(page, "https://blog.example/post/1") == [
        "https://blog.example/atom.xml",
        "https://cdn.example/rss",
    ]


# -- near duplicates ----------------------------------------------------------------------------


def test_story_index_matches_near_identical_titles_from_other_sources_only() -> None:
    index = StoryIndex()
    index.add(1, "a", "Tessella 2.0 : le logiciel libre de retopologie accélère", "", NOW)
    index.add(2, "a", "Semaine 12 : les nouvelles du design graphique", "", NOW)
    from digest.collect.story import Story

    def find(source: str, title: str, when: dt.datetime = NOW) -> int | None:
        return index.find(Story.of(source, title, "", when))

    assert find("b", "Tessella 2.0: le logiciel libre de retopologie accélère !") == 1
    assert find("a", "Tessella 2.0: le logiciel libre de retopologie accélère !") is None
    assert find("b", "Tessella 2.0 : le logiciel libre de retopologie accélère",
                NOW - dt.timedelta(days=30)) is None  # fmt: skip
    assert find("b", "Semaine 13 : les nouvelles du design graphique") is None
    assert find("b", "Tessella : un tout autre sujet sur la retopologie") is None


def test_sources_start_one_per_host_in_turn() -> None:
    from collect_helpers import source

    from digest.collect.collector import _one_per_host_in_turn

    urls = [
        "https://a.example/1", "https://a.example/2", "https://a.example/3",
        "https://b.example/feed", "https://c.example/1", "https://c.example/2",
    ]  # fmt: skip
    sources = tuple(source(f"s{n}", url) for n, url in enumerate(urls))
    assert _one_per_host_in_turn(sources) == [0, 3, 4, 1, 5, 2]


def test_feeds_are_parsed_in_this_process_when_the_workers_die(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed (out of memory, by an operator) costs no feed its parse."""
    from concurrent.futures import Executor, Future
    from concurrent.futures.process import BrokenProcessPool

    from collect_helpers import item, rss

    from digest.collect import parsing, prepare
    from digest.collect.parse import NotAFeed

    class DeadPool(Executor):
        def submit(self, fn: object, /, *args: object, **kwargs: object) -> Future[object]:
            future: Future[object] = Future()
            future.set_exception(BrokenProcessPool("a worker process died"))
            return future

    monkeypatch.setattr(parsing, "parser_pool", lambda sources: DeadPool())
    monkeypatch.setattr(parsing, "worker_count", lambda sources: 1)  # whatever the machine
    now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)

    async def run() -> list[object]:
        runner = parsing.Parsing(prepare.PARALLEL_SOURCES * 4)
        feeds = [rss(item(f"Story {n}", f"https://s.example/{n}")) for n in range(30)]
        jobs = [
            runner.parse(body, "https://s.example/feed", "", now, f"feed {n}", "", 500)
            for n, body in enumerate([*feeds, b"not a feed at all"])
        ]
        try:
            return await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 60)
        finally:
            await runner.close()

    with caplog.at_level("WARNING"):
        results = asyncio.run(run())
    *parsed, junk = results
    assert [feed.entries[0].title for feed, _ in parsed] == [f"Story {n}" for n in range(30)]
    assert isinstance(junk, NotAFeed)
    assert sum("workers stopped" in r.message for r in caplog.records) == 1


def test_feedparser_keeps_its_old_key_names_and_computed_keys_with_the_faster_reads() -> None:
    import feedparser

    import digest.collect.parse  # noqa: F401  (installs the faster reads)

    result = feedparser.parse(
        b"<rss version='2.0'><channel><title>T</title><item><guid>g1</guid>"
        b"<description>Words</description><pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate>"
        b"<enclosure url='https://e.example/a.mp3' type='audio/mpeg' length='1'/>"
        b"<category>Design</category></item></channel></rss>"
    )
    entry = result.entries[0]
    assert result["channel"]["title"] == "T" and result["items"] is result["entries"]
    assert entry["guid"] == entry["id"] == "g1" and "guid" in entry
    assert entry.get("description") == entry["summary"] == "Words"
    assert entry["enclosures"][0]["href"] == "https://e.example/a.mp3"
    assert entry["category"] == "Design" and "category" in entry
    assert entry.get("issued_parsed") == entry["published_parsed"]
    assert entry.get("nothing", "default") == "default" and "nothing" not in entry
    entry["copyright"] = "CC"
    assert dict.__getitem__(entry, "rights") == "CC"


def test_parsing_workers_only_for_large_runs_with_cores_to_spare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from digest.collect import prepare

    monkeypatch.setattr(prepare.os, "cpu_count", lambda: 1)
    assert prepare.parser_pool(500) is None  # one core: parsing stays in a thread
    monkeypatch.setattr(prepare.os, "cpu_count", lambda: 2)
    assert prepare.worker_count(500) == 1  # one core for the event loop, one for parsing
    monkeypatch.setattr(prepare.os, "cpu_count", lambda: 8)
    assert prepare.worker_count(500) == prepare.MAX_WORKERS
    assert prepare.parser_pool(prepare.PARALLEL_SOURCES - 1) is None
    pool = prepare.parser_pool(prepare.PARALLEL_SOURCES)
    assert pool is not None
    pool.shutdown()


def test_parsing_workers_neither_run_the_main_script_nor_load_the_http_and_database_layers(
    tmp_path: Path,
) -> None:
    """A worker starts with what parsing needs: its start is on a large run's clock."""
    import subprocess
    import sys

    marker = tmp_path / "main-ran-again"
    script = tmp_path / "program.py"
    script.write_text(
        "import sys\n"
        "if __name__ != '__main__':  # a worker running the program's script again\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "if __name__ == '__main__':\n"
        "    from digest.collect import prepare\n"
        "    pool = prepare.parser_pool(prepare.PARALLEL_SOURCES, workers=1)\n"
        "    loaded = pool.submit(eval, 'sorted(__import__(\"sys\").modules)').result()\n"
        "    pool.shutdown()\n"
        "    print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(done.stdout.split())
    assert "digest.collect.parse" in loaded
    assert not marker.exists()
    assert not {"httpx", "sqlalchemy", "rich", "digest.cli", "digest.db"} & loaded


# -- connections and writes ------------------------------------------------------------------


def test_sharded_pools_hold_every_request_in_flight_and_send_a_host_back_to_its_pool() -> None:
    from digest.collect.pools import SHARD, ShardedTransport

    in_flight: dict[int, int] = {}
    peak: dict[int, int] = {}
    served: list[tuple[str, int]] = []
    release = asyncio.Event()

    def pool(number: int) -> httpx.AsyncBaseTransport:
        async def answer(request: httpx.Request) -> httpx.Response:
            in_flight[number] = in_flight.get(number, 0) + 1
            peak[number] = max(peak.get(number, 0), in_flight[number])
            served.append((request.url.host, number))
            await release.wait()
            in_flight[number] -= 1
            return httpx.Response(200, text="ok")

        return httpx.MockTransport(answer)

    made: list[int] = []

    def make(size: int) -> httpx.AsyncBaseTransport:
        made.append(size)
        return pool(len(made) - 1)

    async def run() -> None:
        transport = ShardedTransport(20, make)
        async with httpx.AsyncClient(transport=transport) as client:

            async def get(host: str) -> None:
                response = await client.get(f"http://{host}/feed")
                await response.aclose()

            tasks = [asyncio.create_task(get(f"h{n}.example")) for n in range(20)]
            while len(served) < 20:  # every request reached a pool: none waits for room
                await asyncio.sleep(0)
            release.set()
            await asyncio.gather(*tasks)
            await get("h7.example")

    asyncio.run(run())
    assert sum(made) >= 20 and all(size <= SHARD for size in made)
    assert max(peak.values()) <= made[0]  # no pool held more than its connections
    first, again = [number for host, number in served if host == "h7.example"]
    assert again == first  # a host's next request goes where its connection is kept alive


def test_writer_commits_waiting_saves_together_and_a_failing_one_alone(db_url: str) -> None:
    import sqlalchemy as sa

    from digest.collect.writer import Writer
    from digest.db import Store
    from digest.db.schema import meta

    store = Store(db_url)  # PostgreSQL too, where a failed statement aborts the transaction
    forgotten: list[bool] = []

    def put(conn: sa.Connection, key: str) -> str:
        # "bad" writes a key that "a" holds already: the database refuses it.
        conn.execute(sa.insert(meta).values(key="a" if key == "bad" else key, value=key))
        return key

    async def run() -> list[object]:
        writer = Writer(store, lambda: forgotten.append(True))
        gate = threading.Event()
        # The writer is busy with this while the saves below queue up behind it.
        blocked = asyncio.ensure_future(writer.call(gate.wait))
        await asyncio.sleep(0.05)
        saves = [asyncio.ensure_future(writer.in_group(put, k)) for k in ("a", "bad", "c")]
        await asyncio.sleep(0.05)
        gate.set()
        await blocked
        results = await asyncio.gather(*saves, return_exceptions=True)
        writer.close()
        return results

    results = asyncio.run(run())
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], sa.exc.IntegrityError)
    with store.connect() as conn:
        values = {k: v for k, v in conn.execute(sa.select(meta.c.key, meta.c.value))}
    assert values["a"] == "a" and values["c"] == "c"  # the others' writes are kept
    assert forgotten  # what the rolled-back group taught is dropped
    store.close()


def test_writer_shares_one_commit_between_saves_that_wait(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from digest.collect.writer import Writer
    from digest.db import Store
    from digest.db.schema import meta

    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda conn: commits.append(1))

    def put(conn: sa.Connection, key: str) -> str:
        conn.execute(sa.insert(meta).values(key=key, value="1"))
        return key

    async def run() -> list[str]:
        writer = Writer(store, lambda: None)
        gate = threading.Event()
        blocked = asyncio.ensure_future(writer.call(gate.wait))
        await asyncio.sleep(0.05)
        saves = [asyncio.ensure_future(writer.in_group(put, f"k{n}")) for n in range(10)]
        await asyncio.sleep(0.05)
        commits.clear()
        gate.set()
        await blocked
        results = list(await asyncio.gather(*saves))
        writer.close()
        return results

    assert asyncio.run(run()) == [f"k{n}" for n in range(10)]
    assert len(commits) == 1  # ten sources, one sync to disk
    store.close()
