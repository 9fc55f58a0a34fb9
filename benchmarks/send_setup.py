"""The send benchmarks' shared set-up: the issue, the subscribers and the settings.

``send.py`` (one sender against Postfix's ``smtp-sink``) and ``workers.py`` (several
senders sharing an issue) build the same material from here.
"""

from __future__ import annotations

import datetime as dt
import resource
import socket
from pathlib import Path

from digest.config import (
    DatabaseSettings,
    NewsletterSettings,
    SendSettings,
    Settings,
    SmtpSettings,
    WebSettings,
)
from digest.db import Store
from digest.db import subscribers as subscriber_rows
from digest.models import Issue, IssueItem, Lesson

PERIOD = "2026-W48"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_issue() -> Issue:
    items = tuple(
        IssueItem(
            article_id=None,
            position=i,
            source=f"Source {i % 3}",
            title=f"Titre de l’article numéro {i} sur la création numérique",
            url=f"https://exemple.fr/articles/{i}",
            summary=(
                "Un résumé de deux phrases qui explique l’essentiel de l’article. " * 4
            ).strip(),
            lessons=tuple(
                Lesson(
                    f"Leçon {j} : une idée courte tirée de l’article, en moins de vingt-cinq mots."
                )
                for j in range(3)
            ),
            published=dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
        )
        for i in range(10)
    )
    return Issue(
        period=PERIOD,
        title="La veille n° 48",
        intro="Bonjour et bienvenue dans la veille de la semaine.",
        items=items,
        status="sending",
    )


def settings_for(folder: Path, port: int, connections: int) -> Settings:
    return Settings(
        path=folder / "digest.toml",
        newsletter=NewsletterSettings(from_address="veille@ecole.example"),
        smtp=SmtpSettings(host="127.0.0.1", port=port),
        send=SendSettings(connections=connections, max_consecutive_failures=1000),
        web=WebSettings(base_url="https://digest.ecole.example"),
        database=DatabaseSettings(url=f"sqlite:///{folder / 'digest.db'}"),
    )


def populate(store: Store, count: int) -> None:
    """N active subscribers, inserted in bulk (importing is not what we measure here)."""
    rows = [
        {
            "email": f"lecteur{i:06d}@exemple.fr",
            "name": f"Lectrice Numéro {i}",
            "language": "fr",
            "status": "active",
            "tags": "",
        }
        for i in range(count)
    ]
    with store.begin() as conn:
        for start in range(0, count, 20_000):
            subscriber_rows.add_many(conn, rows[start : start + 20_000])


def peak_rss_kb() -> int:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux the latter
    carries over the parent's peak across fork and exec (here: the set-up's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
