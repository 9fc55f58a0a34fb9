"""Collect a corpus of real-world feed files and compare with what feedparser reads in them.

    python benchmarks/collect_corpus.py PATH [--only SUBFOLDER]

PATH is a folder of feed files written by others, read where it lies and never
copied into the project: for instance feedparser's own test suite, unpacked from
its source distribution::

    pip download feedparser --no-binary :all: --no-deps -d /tmp/fp
    tar xzf /tmp/fp/feedparser-*.tar.gz -C /tmp/fp
    python benchmarks/collect_corpus.py /tmp/fp/feedparser-*/tests

Every file is served from a loopback HTTP server with the headers its leading
comment declares (``Header: Content-type: …``, as feedparser's suite does;
``.gz`` and ``.z`` files as gzip and deflate bodies) and collected as one source,
all in one run into a fresh SQLite file, then once more (unchanged feeds). Printed:

- feeds that feedparser parses into entries, and how many of them the collector
  reported as an error (target: none);
- distinct stories with a web link (one per feed and link, as feedparser reads
  them) and how many are stored, in their own row or merged into a row with the
  same link or the same text (target: at least 98 %), with the merges by reason;
- how many new articles the second run stored (target: none).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import io
import re
import sys
import tempfile
import threading
import zlib
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import feedparser

from digest.collect import collect
from digest.collect.normalize import canonical_url, is_web_url
from digest.config import CollectSettings, DatabaseSettings, Settings, SourceSettings
from digest.db import Store
from digest.db import articles as rows

_HEADER = re.compile(rb"^Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)
_SKIPPED_HEADERS = {"status", "location"}  # redirects are the fetch tests' business


def declared_headers(body: bytes, name: str) -> dict[str, str]:
    headers = {}
    for key, value in _HEADER.findall(body[:2000]):
        if key.decode().lower() not in _SKIPPED_HEADERS:
            headers[key.decode()] = value.decode("latin-1")
    if name.endswith(".gz"):
        headers["Content-Encoding"] = "gzip"
    elif name.endswith(".z"):
        headers["Content-Encoding"] = "deflate"
    return headers


def decoded(body: bytes, headers: dict[str, str]) -> bytes | None:
    """The body as feedparser would see it after HTTP decompression (None if corrupt)."""
    encoding = headers.get("Content-Encoding", "")
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body, 32 + zlib.MAX_WBITS)
    except zlib.error:
        return None
    return body


def serve(files: dict[str, tuple[bytes, dict[str, str]]]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body, headers = files.get(self.path, (b"", {}))
            self.send_response(200 if self.path in files else 404)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def web_links(result: Any, url: str) -> set[str]:
    """The distinct web links of feedparser's entries (what a reader could open)."""
    links = set()
    for entry in result.entries:
        link = str(entry.get("link", "") or "").strip()
        if link:
            link = urljoin(url, link)
        if is_web_url(link):
            links.add(canonical_url(link))
    return links


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--only", default="", help="a subfolder of the corpus")
    parser.add_argument("--show", type=int, default=10, help="examples of each problem to print")
    args = parser.parse_args(argv)

    root = args.corpus / args.only if args.only else args.corpus
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in (".xml", ".rss", ".atom", ".rdf", ".gz", ".z")
    )
    files: dict[str, tuple[bytes, dict[str, str]]] = {}
    names: dict[str, str] = {}
    for path in paths:
        relative = path.relative_to(args.corpus).as_posix()
        body = path.read_bytes()
        files["/" + quote(relative)] = (body, declared_headers(body, path.name))
        names[relative] = "/" + quote(relative)
    server = serve(files)
    base = f"http://127.0.0.1:{server.server_address[1]}"

    # What feedparser reads in each file, given the same headers.
    expected: dict[str, set[str]] = {}
    with_entries: set[str] = set()
    for relative, path in names.items():
        body, headers = files[path]
        plain = decoded(body, headers)
        if plain is None:
            continue
        result = feedparser.parse(
            io.BytesIO(plain),
            response_headers={
                "content-type": headers.get("Content-type", "") or headers.get("Content-Type", ""),
                "content-location": base + path,
            },
        )
        if result.entries:
            with_entries.add(relative)
            expected[relative] = web_links(result, base + path)

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            path=Path(folder) / "digest.toml",
            database=DatabaseSettings(url=f"sqlite:///{Path(folder) / 'corpus.db'}"),
            sources=tuple(
                SourceSettings(name=relative, url=base + path, full_text="never")
                for relative, path in names.items()
            ),
            collect=CollectSettings(allow_private=("127.0.0.1",), concurrency=16),
        )
        store = Store(settings.database.url)
        report = collect(settings, store)
        again = collect(settings, store)
        lines = {line.name: line for line in report.sources}
        far = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
        stored = {
            (a.source, a.url)
            for a in rows.between(store, dt.datetime.min.replace(tzinfo=dt.UTC), far)
        }
        merges: list[Any] = rows.merges(store) if hasattr(rows, "merges") else []
        store.close()
    server.shutdown()

    errors = sorted(name for name in with_entries if lines[name].status == "error")
    merged = {(m["source"], m["url"]): m["reason"] for m in merges}
    true_reasons = {"same link", "same text", "same entry"}
    stories = [(name, link) for name, links in expected.items() for link in sorted(links)]
    kept = [s for s in stories if s in stored]
    stored_links = {link for _, link in stored}
    absorbed = [
        s
        for s in stories
        if s not in stored and (merged.get(s) in true_reasons or s[1] in stored_links)
    ]
    settled = set(kept) | set(absorbed)
    doubtful = [s for s in stories if s not in settled and s in merged]
    lost = [s for s in stories if s not in settled and s not in merged]
    notes = Counter(
        line.error.split(":")[0] for line in report.sources if line.status == "ok" and line.error
    )

    print(f"corpus: {root} ({len(paths)} files, collected at {dt.datetime.now():%H:%M})")
    print(f"feeds feedparser parses into entries: {len(with_entries)}")
    print(f"  reported as an error by the collector: {len(errors)}")
    for name in errors[: args.show]:
        print(f"    {name}: {lines[name].error}")
    share = (len(kept) + len(absorbed)) / len(stories) if stories else 1.0
    print(
        f"distinct stories with a web link: {len(stories)}; stored {share:.1%} "
        f"(own row {len(kept)}, merged into the same link or text {len(absorbed)}); "
        f"merged on a near match {len(doubtful)}; lost {len(lost)}"
    )
    for reason, count in sorted(Counter(merged.values()).items()):
        print(f"  merges recorded: {reason}: {count}")
    for name, link in lost[: args.show]:
        print(f"    lost: {name}: {link}")
    for name, link in doubtful[: args.show]:
        print(f"    near match: {name}: {link} ({merged[(name, link)]})")
    for note, count in notes.most_common(args.show):
        print(f"  health notes on healthy sources: {note}: {count}")
    print(f"second run (unchanged feeds): {again.new} new, {len(again.failed)} failed")
    for line in again.failed[: args.show]:
        print(f"    {line.name}: {line.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
