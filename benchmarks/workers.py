"""Several senders on one issue through PostgreSQL, against a relay that answers slowly.

    .venv/bin/python benchmarks/send.py --workers 1,2,4,8            # 2,000 subscribers
    .venv/bin/python benchmarks/send.py --workers 1,2,4 --subscribers 4000 --latency 0.05

A relay's latency, not our CPU, is what bounds one sender in real life: the sink
here (a small asyncio SMTP server) answers each message's final dot after
``--latency`` seconds. For each number of workers N, a fresh ledger on a throwaway
PostgreSQL server (``initdb``/``pg_ctl`` from the Debian packages) is sent by N
processes (one connection each); printed: messages per second, the ratio to N x one
worker (the ideal), and each worker's peak memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a slow relay --------------------------------------------------------------------------


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float):
    writer.write(b"220 slow-sink ESMTP\r\n")
    in_data = False
    while line := await reader.readline():
        if in_data:
            if line == b".\r\n":
                in_data = False
                await asyncio.sleep(latency)  # the relay's time to take the message
                writer.write(b"250 2.0.0 queued\r\n")
            continue
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-slow-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            in_data = True
            writer.write(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


@contextmanager
def slow_sink(port: int, latency: float) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> None:
        server = await asyncio.start_server(lambda r, w: _session(r, w, latency), "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait()
    yield


# -- a throwaway PostgreSQL ----------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run(
        _as_postgres(
            ["pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


# -- the measure ---------------------------------------------------------------------------


def worker_child(url: str, port: int) -> None:
    """One sender: send the issue with whoever else is sending it; print its figures."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.send_setup import PERIOD, peak_rss_kb, settings_for
    from digest.db import Store, issues
    from digest.render import render_issue
    from digest.send import send_issue

    folder = Path(tempfile.mkdtemp(prefix="digest-bench-w-"))
    settings = settings_for(folder, port, 1)
    store = Store(url)
    issue = issues.get(store, PERIOD)
    assert issue is not None
    report = send_issue(settings, store, issue, render_issue(issue, settings))
    print(json.dumps({"sent": report.sent, "peak_mb": peak_rss_kb() / 1024}))
    shutil.rmtree(folder, ignore_errors=True)


def run(worker_counts: list[int], subscribers: int, latency: float) -> None:
    import sqlalchemy as sa

    from benchmarks.send_setup import make_issue, populate
    from digest.db import Store, issues

    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        sys.exit("initdb and pg_ctl not found: apt-get install postgresql")
    sink_port = free_port()
    results: dict[int, float] = {}
    with postgres() as server, slow_sink(sink_port, latency):
        admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        for n in worker_counts:
            name = f"bench_{n}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = f"{server}/{name}"
            store = Store(url)
            populate(store, subscribers)
            issues.save(store, make_issue())
            store.close()
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, __file__, "--child", url, str(sink_port)],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                )
                for _ in range(n)
            ]
            outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            wall = time.perf_counter() - started
            sent = sum(o["sent"] for o in outs)
            rate = sent / wall
            results[n] = rate
            one = results.get(1)
            ratio = f"{rate / (n * one):.2f}" if one else "-"
            peak = max(o["peak_mb"] for o in outs)
            print(
                f"{n} worker(s): {sent} sent in {wall:.1f} s: {rate:6.1f} msg/s; "
                f"ratio to {n} x one worker: {ratio}; peak memory per worker: {peak:.1f} MB"
            )
        admin.dispose()


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        worker_child(sys.argv[2], int(sys.argv[3]))
