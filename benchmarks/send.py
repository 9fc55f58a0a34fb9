"""Send benchmark: digest's sender against Postfix's own ``smtp-source``, same sink, same run.

    .venv/bin/python benchmarks/send.py                       # 10,000 subscribers
    .venv/bin/python benchmarks/send.py --subscribers 100000  # the memory figure
    .venv/bin/python benchmarks/send.py --connections 2       # both sides with 2 sessions
    .venv/bin/python benchmarks/send.py --runs 5              # 5 alternating pairs, median
    .venv/bin/python benchmarks/send.py --workers 1,2,4,8 --subscribers 800
                                  # senders sharing one issue: 800 recipients per worker

One 10-article issue rendered by ``render_issue`` (about 55 KB of HTML) goes to
N generated subscribers through Postfix's ``smtp-sink`` on loopback, with the
delivery ledger in a real SQLite file (every ledger write included). The
reference is ``smtp-source`` (Postfix's C test client) sending the same number
of messages of the same size to the same sink with the same number of
sessions, reusing its connections (``-d``) as digest does.

The send runs in a fresh child process so that its peak memory (max RSS) and
CPU time are its own, not the set-up's. Needs ``smtp-sink`` and ``smtp-source``
(Debian package ``postfix``) and root or a user ``nobody`` to run the sink as.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.send_setup import (  # noqa: E402
    PERIOD,
    free_port,
    make_issue,
    peak_rss_kb,
    populate,
    settings_for,
)
from digest.db import Store, issues  # noqa: E402


def child(folder: Path, port: int, connections: int) -> None:
    """The measured part: render once, then send_issue over the whole ledger."""
    from digest.render import render_issue
    from digest.send import send_issue

    settings = settings_for(folder, port, connections)
    store = Store(settings.database.url)
    issue = issues.get(store, PERIOD)
    assert issue is not None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rendered = render_issue(issue, settings)
    report = send_issue(settings, store, issue, rendered)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_kb = peak_rss_kb()
    print(
        json.dumps(
            {
                "sent": report.sent,
                "counts": report.counts,
                "wall": wall,
                "cpu": cpu,
                "peak_mb": peak_kb / 1024,
                "html_bytes": len(rendered.html.encode()),
            }
        )
    )


def message_size(folder: Path, connections: int) -> int:
    from digest.compose import MessageFactory
    from digest.render import render_issue
    from digest.subscribers import sample_subscriber

    settings = settings_for(folder, 25, connections)
    store = Store(settings.database.url)
    issue = issues.get(store, PERIOD)
    assert issue is not None
    subscriber, token = sample_subscriber(settings, store)
    return len(MessageFactory(render_issue(issue, settings), settings).build(subscriber, token))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--subscribers",
        type=int,
        default=10_000,
        help="recipients (with --workers: per worker, default 400)",
    )
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="pairs of runs (smtp-source, then digest), each on a fresh sink and ledger; "
        "the median ratio is steadier on a shared machine",
    )
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers",
        help="e.g. 1,2,4,8: that many senders on PostgreSQL against a slow sink "
        "(benchmarks/workers.py) instead of the smtp-sink comparison",
    )
    parser.add_argument("--latency", type=float, default=0.05, help="the slow sink's delay (s)")
    args = parser.parse_args()
    if args.workers:
        from benchmarks import workers

        counts = [int(n) for n in args.workers.split(",")]
        per_worker = args.subscribers if args.subscribers != 10_000 else 400
        workers.run(counts, per_worker, args.latency)
        return
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), args.connections)
        return

    for tool in ("smtp-sink", "smtp-source"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} not found: apt-get install postfix (choose 'No configuration')")
    sink_bin = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    source_bin = shutil.which("smtp-source") or "/usr/sbin/smtp-source"

    n, c = args.subscribers, args.connections
    pairs = [one_pair(sink_bin, source_bin, n, c) for _ in range(args.runs)]
    size, stats, _ = pairs[-1]
    print(
        f"subscribers: {n:,}; connections: {c}; message: {size:,} bytes "
        f"(HTML {stats['html_bytes']:,} bytes)"
    )
    print(f"ledger: {stats['counts']}")
    for run, (_, stats, reference) in enumerate(pairs, 1):
        rate = stats["sent"] / stats["wall"]
        label = f"run {run}: " if len(pairs) > 1 else ""
        print(
            f"{label}digest send:  {rate:8.0f} messages/s  ({stats['wall']:.1f} s wall, "
            "render included)"
        )
        print(
            f"{label}smtp-source:  {reference:8.0f} messages/s  (-s {c} -d, same sink, same size)"
        )
        print(f"{label}ratio:        {rate / reference:8.2f}  (target >= 0.6)")
        print(
            f"{label}CPU:          {stats['cpu'] / stats['sent'] * 1000:8.3f} ms per recipient "
            "(target < 1)"
        )
        print(f"{label}peak memory:  {stats['peak_mb']:8.1f} MB peak RSS of the sending process")
    if len(pairs) > 1:
        ratios = sorted(p[1]["sent"] / p[1]["wall"] / p[2] for p in pairs)
        cpus = sorted(p[1]["cpu"] / p[1]["sent"] * 1000 for p in pairs)
        print(
            f"median of {len(pairs)} runs: ratio {statistics.median(ratios):.2f}, "
            f"CPU {statistics.median(cpus):.3f} ms per recipient"
        )


def one_pair(sink_bin: str, source_bin: str, n: int, c: int) -> tuple[int, dict[str, Any], float]:
    """``smtp-source`` then digest, into a fresh sink and a fresh ledger: (size, stats, rate)."""
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    store = Store(f"sqlite:///{folder / 'digest.db'}")
    populate(store, n)
    issues.save(store, make_issue())
    store.close()
    size = message_size(folder, c)

    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([sink_bin, *user, f"127.0.0.1:{port}", "1000"])
    try:
        time.sleep(0.3)
        # Reference: Postfix's C client, same sink, same count, same size, same sessions.
        started = time.perf_counter()
        subprocess.run(
            [
                source_bin,
                "-s",
                str(c),
                "-d",
                "-m",
                str(n),
                "-l",
                str(size),
                "-f",
                "veille@ecole.example",
                "-t",
                "lecteur@exemple.fr",
                f"127.0.0.1:{port}",
            ],
            check=True,
        )
        reference = n / (time.perf_counter() - started)

        out = subprocess.run(
            [sys.executable, __file__, "--connections", str(c), "--child", str(folder), str(port)],
            check=True,
            capture_output=True,
            text=True,
        )
        stats = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return size, stats, reference


if __name__ == "__main__":
    main()
