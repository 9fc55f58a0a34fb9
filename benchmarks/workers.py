"""Several senders on one issue through PostgreSQL, against a relay that answers slowly.

    .venv/bin/python benchmarks/send.py --workers 1,2,4,8 --subscribers 800
    .venv/bin/python benchmarks/send.py --workers 1,2,4 --subscribers 400 --latency 0.05

A relay's latency, not our CPU, is what bounds one sender in real life: the sink
here (a small asyncio SMTP server) answers each message's final dot after
``--latency`` seconds. For each number of workers N, a fresh ledger of N x
``--subscribers`` recipients (the same work per worker, so that every run lasts
about as long and start-up weighs the same) on a throwaway PostgreSQL server
(``initdb``/``pg_ctl`` from the Debian packages) is sent by N processes (one
connection each: ``[send] connections = N`` holds for all of them, and each takes
its share). Printed, each with its ratio to N x one worker (the ideal):

- end to end: messages over the wall time from starting the processes to the
  last one's exit, start-up included (interpreter, imports, rendering the issue);
- steady state: first to last delivery at the relay, the senders' pace once
  started;

and each worker's peak memory, and the database round trips (every statement
the server ran, from ``pg_stat_statements``, BEGIN and COMMIT included) per
message and per batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTED = time.monotonic()
sys.path.insert(0, str(ROOT / "tests"))  # the tests' throwaway PostgreSQL server

from pg_server import available, throwaway_postgres  # noqa: E402

from digest.capture import free_port  # noqa: E402

# -- a slow relay --------------------------------------------------------------------------


async def _session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    latency: float,
    delivered: list[float],
) -> None:
    writer.write(b"220 slow-sink ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-slow-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            # The whole message in one read up to the final dot, not line by line:
            # the sink must stay cheap next to eight senders on two cores.
            first = await reader.readline()
            if first != b".\r\n":
                await reader.readuntil(b"\r\n.\r\n")
            await asyncio.sleep(latency)  # the relay's time to take the message
            delivered.append(time.perf_counter())
            writer.write(b"250 2.0.0 queued\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


@contextmanager
def slow_sink(port: int, latency: float) -> Iterator[list[float]]:
    """A relay on ``port`` answering each message after ``latency``; yields the times
    (``time.perf_counter()``) at which it accepted each message."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    delivered: list[float] = []

    async def serve() -> None:
        server = await asyncio.start_server(
            lambda r, w: _session(r, w, latency, delivered), "127.0.0.1", port, limit=1 << 20
        )
        ready.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait()
    yield delivered


# -- a throwaway PostgreSQL ----------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[str]:
    # Counts every statement the senders run: the round trips per batch.
    with throwaway_postgres(
        "max_connections=100",
        "shared_preload_libraries=pg_stat_statements",
        "pg_stat_statements.track_utility=on",
    ) as url:
        yield url


# -- the measure ---------------------------------------------------------------------------


def worker_child(url: str, port: int, connections: int) -> None:
    """One sender: send the issue with whoever else is sending it; print its figures."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.send_setup import PERIOD, peak_rss_kb, settings_for
    from digest.db import Store, issues
    from digest.render import render_issue
    from digest.send import send_issue

    folder = Path(tempfile.mkdtemp(prefix="digest-bench-w-"))
    # The relay's limit, for all the workers together: each takes its share (one).
    settings = settings_for(folder, port, connections)
    store = Store(url)
    issue = issues.get(store, PERIOD)
    assert issue is not None
    rendered = render_issue(issue, settings)
    startup = time.monotonic() - STARTED  # interpreter, imports, rendering
    report = send_issue(settings, store, issue, rendered)
    print(json.dumps({"sent": report.sent, "peak_mb": peak_rss_kb() / 1024, "startup": startup}))
    shutil.rmtree(folder, ignore_errors=True)


def _statements(admin_url: str, name: str) -> list[tuple[int, str]]:
    """(calls, statement) of database ``name`` since the last reset, most called first."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"{admin_url}/postgres")  # where the extension lives
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT calls, query FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = :name AND query NOT LIKE '%pg_stat%' "
                "ORDER BY calls DESC"
            ),
            {"name": name},
        ).all()
    engine.dispose()
    return [(int(calls), " ".join(str(query).split())) for calls, query in rows]


def _report_statements(statements: list[tuple[int, str]], sent: int) -> None:
    from digest.send import BATCH

    batches = max(1, -(-sent // BATCH))
    total = sum(calls for calls, _ in statements)
    print(
        f"    database round trips: {total} for {sent} messages in about {batches} batches "
        f"of {BATCH}: {total / sent:.2f} per message"
    )
    for calls, query in statements[:8]:
        print(f"    {calls:7d} ({calls / batches:6.1f}/batch)  {query[:90]}")


def run(worker_counts: list[int], per_worker: int, latency: float) -> None:
    """For each N: N senders share an issue of N x ``per_worker`` recipients."""
    import sqlalchemy as sa

    from benchmarks.send_setup import make_issue, populate
    from digest.db import Store, issues

    if not available():
        sys.exit("initdb and pg_ctl not found: apt-get install postgresql")
    sink_port = free_port()
    ends: dict[int, float] = {}
    steadies: dict[int, float] = {}
    print(
        f"{per_worker} recipients per worker; relay latency {latency * 1000:.0f} ms per message; "
        "[send] connections = N for the N workers together (one each)"
    )
    with postgres() as server, slow_sink(sink_port, latency) as delivered:
        admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION pg_stat_statements"))
        for n in worker_counts:
            name = f"bench_{n}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = f"{server}/{name}"
            store = Store(url)
            populate(store, n * per_worker)
            issues.save(store, make_issue())
            store.close()
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_stat_statements_reset()"))
            first = len(delivered)
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, __file__, "--child", url, str(sink_port), str(n)],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                )
                for _ in range(n)
            ]
            outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            wall = time.perf_counter() - started
            sent = sum(o["sent"] for o in outs)
            times = delivered[first:]
            ends[n] = sent / wall
            # First to last delivery at the relay: the senders' pace once started,
            # without the start-up (interpreter, imports, rendering the issue).
            steadies[n] = (len(times) - 1) / (times[-1] - times[0])
            peak = max(o["peak_mb"] for o in outs)
            startup = max(o["startup"] for o in outs)
            print(f"{n} worker(s): {sent} sent; peak memory per worker {peak:.1f} MB")
            for label, rates in (("end to end", ends), ("steady state", steadies)):
                one = rates.get(1)
                ratio = f"{rates[n] / (n * one):.2f}" if one else "-"
                extra = f" ({wall:.1f} s, start-up up to {startup:.1f} s)" if rates is ends else ""
                print(
                    f"    {label:12s} {rates[n]:7.1f} msg/s; ratio to {n} x one worker: "
                    f"{ratio}{extra}"
                )
            _report_statements(_statements(server, name), sent)
        admin.dispose()


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        worker_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
