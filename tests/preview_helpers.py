"""A preview site (configuration, store, draft, source health) for the preview tests."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from conftest import store_article

from digest.config import Settings, load_settings
from digest.db import Store, issues
from digest.db.articles import record_fetch
from digest.draft import draft_path, write_draft
from digest.models import Article, Issue, IssueItem, Lesson

PERIOD = "2026-W48"
LESSON = "Un cadre commun évite que chaque équipe réinvente ses règles."
QUOTE = "Sans cadre commun, chaque équipe finissait par réinventer ses propres règles."
EVIDENCE = {LESSON: QUOTE}

CONFIG = """\
[newsletter]
title = "La veille de l'Institut"
from_name = "La veille"
from_address = "veille@institut.example"

[database]
url = "sqlite:///data/digest.db"

[smtp]
host = "127.0.0.1"
port = {smtp_port}

[[sources]]
name = "Le Journal du design"
url = "https://design.example/feed.xml"

[[sources]]
name = "Veille sonore"
url = "https://son.example/feed.xml"
"""


@dataclass
class Site:
    folder: Path
    config: Path
    settings: Settings
    store: Store

    @property
    def draft(self) -> Path:
        return draft_path(self.settings, PERIOD)

    def edit(self, path: Path, old: str, new: str) -> None:
        """Change a file as an editor's save does, with a visibly newer modification time."""
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path}"
        before = path.stat().st_mtime_ns
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def make_site(folder: Path, smtp_port: int = 2525, extra_config: str = "") -> Site:
    config = folder / "digest.toml"
    config.write_text(CONFIG.format(smtp_port=smtp_port) + extra_config, encoding="utf-8")
    settings = load_settings(config)
    store = Store(settings.database.url)
    published = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
    items = []
    texts = [
        (
            "Le Journal du design",
            "Un code de conduite pour les studios",
            "Trois studios publient un code de conduite commun pour leurs équipes.",
            (LESSON, "Écrire les règles tôt coûte moins cher que réparer après."),
        ),
        (
            "Veille sonore",
            "Le son spatial entre dans les écoles",
            "Des écoles d'art ouvrent des ateliers de son spatial, avec du matériel partagé.",
            ("Mutualiser le matériel rend possibles des cours autrement hors de portée.",),
        ),
    ]
    for position, (source, title, summary, lessons) in enumerate(texts, 1):
        url = f"https://{'design' if position == 1 else 'son'}.example/articles/{position}"
        article_id = store_article(
            store, Article(source=source, url=url, title=title, text=summary, published=published)
        )
        items.append(
            IssueItem(
                article_id=article_id,
                position=position,
                source=source,
                title=title,
                url=url,
                summary=summary,
                # The summarizer's evidence: the sentence of the article behind the lesson.
                lessons=tuple(Lesson(text, quote=EVIDENCE.get(text, "")) for text in lessons),
                published=published,
            )
        )
    issue = issues.save(
        store,
        Issue(PERIOD, "Semaine du 23 novembre 2026", "Bonjour, voici la veille.", tuple(items)),
    )
    write_draft(issue, draft_path(settings, PERIOD))
    now = dt.datetime.now(dt.UTC)
    record_fetch(
        store,
        "Le Journal du design",
        "https://design.example/feed.xml",
        last_fetch_at=now,
        last_success_at=now,
        consecutive_failures=0,
    )
    record_fetch(
        store,
        "Veille sonore",
        "https://son.example/feed.xml",
        last_fetch_at=now,
        last_error="HTTP 503 <b>Service indisponible</b>",
        consecutive_failures=4,
    )
    return Site(folder, config, settings, store)
