"""Benchmark: collect 200 feeds, each answering after 300 ms, from a loopback server.

The server runs in a child process (so its work does not share the collector's
interpreter) and holds every request for LATENCY seconds before answering with
a feed of ten full-text entries. The collector runs for real: guarded HTTP
client, parsing, normalization, deduplication, a SQLite file. Printed: wall
time, peak memory (resident set of this process), and the ratio of wall time
to the ideal (one latency: every feed fetched at once, everything else free),
and where the CPU went: parsing feeds, storing (deduplication included), and the
rest (HTTP, the event loop, handing work between threads), each stage timed by
the CPU time of the thread running it.
A second run, against unchanged feeds, shows the cost of conditional requests.
Each feed is served from a loopback address of its own (127.0.0.1, 127.0.0.2…),
as 200 feeds are 200 sites; ``--hosts 1`` serves them all from one, whose
requests ``[collect] per_host`` then takes a few at a time, as it would for one
real site.

    .venv/bin/python benchmarks/collect.py [--feeds 200] [--concurrency N] [--latency 0.3]
        [--hosts N] [--workers N]

Targets (docs/quality.md): under 3 s wall for 200 feeds on a 2-core machine on a
first run, under 1 s when every feed answers 304, under 150 MB. The machine's
load average is printed: on a shared machine, compare runs taken together.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import functools
import math
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import digest.collect.parsing
from digest.collect import collect, prepare
from digest.collect.dedupe import Deduper
from digest.config import CollectSettings, DatabaseSettings, Settings, SourceSettings
from digest.db import Store

_WORDS_TEXT = (
    "design studio image atelier code graphic students portfolio motion sound game level "
    "light colour shape story public museum open source tool review jury school course "
    "week month year project screen print type layout sketch model render texture camera "
    "the of and to in for with on by from at as is was are were this that these those it "
    "team client brief budget deadline award festival exhibition gallery collection archive "
    "editor writer reader audience community network studio agency startup market price "
    "video film animation frame scene character voice music score rhythm tempo colourist "
    "paper ink brush pencil canvas tablet screen pixel vector font letter word line page"
)
WORDS = _WORDS_TEXT.split()


def feed_body(number: int, entries: int = 10) -> bytes:
    items = []
    for entry in range(entries):
        pick = random.Random(number * 1000 + entry)
        words = [pick.choice(WORDS) for _ in range(180)]
        text = f"Feed {number} entry {entry}. " + " ".join(words) + "."
        items.append(
            f"<item><title>Feed {number}, story {entry}: {words[0]} {words[1]} {words[2]}</title>"
            f"<link>https://feed{number}.example/story/{entry}</link>"
            f"<guid isPermaLink='false'>feed{number}-{entry}</guid>"
            f"<pubDate>Mon, 23 Nov 2026 0{entry % 10}:00:00 +0000</pubDate>"
            f"<description><![CDATA[<p>{text}</p>]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Feed {number}</title><link>https://feed{number}.example/</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def address(feed: int, hosts: int) -> str:
    """The loopback address serving ``feed`` when the feeds are spread over ``hosts`` hosts."""
    n = feed % hosts
    return f"127.0.{n // 250}.{n % 250 + 1}"


def serve(latency: float, feeds: int, hosts: int, ready: Connection) -> None:
    """The slow feed server (child process): every answer waits ``latency`` seconds.

    It listens on as many loopback addresses as ``hosts`` (one port): to the
    collector, each address is another host, with connections of its own.
    """
    bodies = {f"/feed/{n}": feed_body(n) for n in range(feeds)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                etag = f'"{path}"'
                conditional = any(
                    line.lower().startswith("if-none-match:") and etag in line for line in lines
                )
                await asyncio.sleep(latency)
                body = b"" if conditional else bodies.get(path, b"")
                status = "304 Not Modified" if conditional else "200 OK"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/rss+xml\r\n"
                    f"ETag: {etag}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        first = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port = first.sockets[0].getsockname()[1]
        others = [
            await asyncio.start_server(handle, address(n, hosts), port, backlog=1024)
            for n in range(1, hosts)
        ]
        ready.send(port)
        await asyncio.gather(*(server.serve_forever() for server in (first, *others)))

    asyncio.run(main())


class StageClock:
    """CPU seconds spent inside chosen functions, summed per stage over all threads.

    ``time.thread_time`` counts only the calling thread's CPU, so time spent
    waiting for the GIL or for I/O inside a stage is not charged to it.
    """

    def __init__(self) -> None:
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
        self._lock = threading.Lock()

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                with self._lock:
                    self.seconds[stage] += spent

        setattr(owner, name, timed)


def parse_alone(feeds: int, sources: tuple[SourceSettings, ...]) -> float:
    """CPU seconds to parse and prepare every feed once, here, one after another.

    The same work as a first run's parsing with nothing else going on: a yardstick
    for the machine's speed at the moment of the run (shared machines vary by half).
    """
    now = dt.datetime.now(dt.UTC)
    bodies = [feed_body(n) for n in range(feeds)]
    start = time.process_time()
    for body, source in zip(bodies, sources, strict=True):
        prepare.parse_and_prepare(
            body, source.url, "application/rss+xml", now, source.name, "", 500
        )
    return time.process_time() - start


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _forkserver_pid() -> int | None:
    """The process the parsing workers are forked from (Linux; None before the first pool)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def workers_cpu() -> float:
    """CPU seconds of the parsing workers so far: the fork server's, reaped children included."""
    pid = _forkserver_pid()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class WorkerMemory(threading.Thread):
    """Samples the memory of the parsing workers and their fork server every 100 ms.

    Proportional set sizes: the workers are forks of the server and share its
    pages, which a sum of resident sizes would count once per process.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        # Only the fork server's children are read: scanning every process of a busy
        # machine each time cost this process more CPU than the collector's HTTP did.
        # Not more often: each sample costs this process CPU, which the runs would share.
        while not self.done.wait(0.1):
            server = _forkserver_pid()
            if server is None:
                continue
            try:
                children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
            except OSError:
                continue
            total = 0
            for child in [str(server), *children]:
                try:
                    text = Path(f"/proc/{child}/smaps_rollup").read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            self.peak_kb = max(self.peak_kb, total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CollectSettings().concurrency,
        help="requests in flight (default: the [collect] concurrency default)",
    )
    parser.add_argument(
        "--hosts",
        type=int,
        default=None,
        help="loopback addresses the feeds are spread over (default: one per feed, as 200 "
        "feeds come from 200 sites; with fewer, [collect] per_host spaces out each one's turns)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parsing worker processes (0: parse in a thread; default: chosen from the cores)",
    )
    args = parser.parse_args(argv)
    if args.hosts is None:
        args.hosts = args.feeds

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve, args=(args.latency, args.feeds, args.hosts, child), daemon=True
    )
    server.start()
    port = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder)
            settings = Settings(
                path=base / "digest.toml",
                database=DatabaseSettings(url=f"sqlite:///{base / 'bench.db'}"),
                sources=tuple(
                    SourceSettings(
                        name=f"feed {n}",
                        url=f"http://{address(n, args.hosts)}:{port}/feed/{n}",
                        full_text="never",
                    )
                    for n in range(args.feeds)
                ),
                collect=CollectSettings(
                    concurrency=args.concurrency, allow_private=("127.0.0.0/8",)
                ),
            )
            store = Store(settings.database.url)
            clock = StageClock()
            # Parsing in this process is timed here; in worker processes, it is read from
            # the fork server they come from (it counts its children's CPU once they end).
            # --workers decides both how many workers the pool starts and how many the
            # run hands feeds to.
            for name in ("parser_pool", "worker_count"):
                chosen = functools.partial(getattr(prepare, name), workers=args.workers)
                setattr(digest.collect.parsing, name, chosen)
            worker_processes = prepare.worker_count(args.feeds, args.workers)
            workers_used = worker_processes > 0
            parsing = f"{worker_processes} worker process(es)" if workers_used else "a thread"
            clock.wrap(digest.collect.parsing, "parse_and_prepare", "parse")
            clock.wrap(Deduper, "save_in", "store")
            memory = WorkerMemory()
            memory.start()
            before = peak_rss_mb()
            ideal = args.latency
            per_host = math.ceil(args.feeds / args.hosts)
            rounds = max(
                math.ceil(args.feeds / args.concurrency),
                math.ceil(per_host / settings.collect.per_host),
            )
            bound = rounds * args.latency
            print(
                f"{args.feeds} feeds x 10 entries on {args.hosts} host(s), "
                f"{args.latency * 1000:.0f} ms latency each, concurrency {args.concurrency}, "
                f"parsing in {parsing}; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            print(f"ideal (one latency): {ideal:.2f} s; bound at this concurrency: {bound:.2f} s")
            first_wall = 0.0
            for label in ("first run (all new)", "second run (unchanged, conditional)"):
                clock.seconds.clear()
                start = time.perf_counter()
                cpu = time.process_time()
                workers = workers_cpu()
                report = collect(settings, store)
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu
                workers = workers_cpu() - workers
                first_wall = first_wall or wall
                statuses = {s.status for s in report.sources}
                print(
                    f"{label}: wall {wall:.2f} s, cpu {cpu:.2f} s, "
                    f"ratio to ideal {wall / ideal:.1f}x, to the concurrency bound "
                    f"{wall / bound:.2f}x, new {report.new}, statuses {sorted(statuses)}, "
                    f"failed {len(report.failed)}"
                )
                parse, stored = clock.seconds["parse"], clock.seconds["store"]
                where = f"{parse:.2f} s in this process"
                if workers_used:
                    where += f", {workers:.2f} s in worker processes (their start included)"
                print(
                    f"  cpu by stage: parse feeds {where}, store + deduplicate {stored:.2f} s, "
                    f"rest (HTTP, event loop, threads) {cpu - parse - stored:.2f} s; "
                    f"this process {cpu:.2f} s"
                )
            memory.done.set()
            memory.join()
            print(
                f"peak memory: {peak_rss_mb():.0f} MB resident ({before:.0f} MB before the runs); "
                "parsing workers and their fork server, all together (proportional set size): "
                f"{memory.peak_kb / 1024:.0f} MB"
            )
            store.close()
            reference = parse_alone(args.feeds, settings.sources)
            print(
                f"reference: parsing and preparing the same feeds in one process, no I/O, "
                f"{reference:.2f} s CPU; the first run took {first_wall / reference:.2f}x that "
                "(this machine's speed of the moment cancels out of the ratio)"
            )
    finally:
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
