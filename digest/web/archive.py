"""The public archive: a list of the issues sent, each as it was emailed, and an Atom feed.

Sent issues never change, so each page is rendered once and kept in memory.
Whether search engines may index the archive is ``[web] indexing``: the
``robots`` meta and the ``X-Robots-Tag`` header say so on every archive answer.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..db import Store, issues
from ..i18n import CATALOGUE, base_language, format_date, web_language
from ..period import period_bounds
from ..richtext import markdown_text, shorten
from .pages import NOINDEX, Pages

__all__ = ["Archive"]

_PERIOD = re.compile(r"^\d{4}-W\d{2}$")
LEAD_CHARS = 280


class Archive:
    def __init__(self, settings: Settings, store: Store, pages: Pages, mailto: str) -> None:
        self.settings = settings
        self.store = store
        self.pages = pages
        self.mailto = mailto
        self.base_url = settings.web.base_url.rstrip("/")
        self.language = web_language(settings.newsletter.language)
        self._pages: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    @property
    def robots(self) -> str:
        return "index, follow" if self.settings.web.indexing else NOINDEX

    def entries(self) -> list[dict[str, Any]]:
        """The sent issues, newest first, with their date and first lines."""
        dates = issues.sent_dates(self.store)
        entries = []
        for period, title in issues.sent_issues(self.store):
            issue = issues.get(self.store, period)
            intro = issue.intro if issue else ""
            lead = " ".join(markdown_text(intro, urls=False)[:1])
            if not lead and issue is not None:
                lead = next((i.summary for i in issue.items if not i.is_note and i.summary), "")
            when = dates.get(period) or period_bounds(period, self.settings.newsletter.timezone)[0]
            entries.append(
                {
                    "period": period,
                    "title": title,
                    "href": f"{self.base_url}/archive/{period}",
                    "date": format_date(when, self.language),
                    "updated": when.astimezone(dt.UTC).isoformat(timespec="seconds"),
                    "lead": shorten(lead, LEAD_CHARS),
                }
            )
        return entries

    async def index(self, request: Request) -> Response:
        return self.pages.page(
            "archive.html.j2",
            self.language,
            indexable=True,
            heading=self.pages.text(self.language, "archive_title"),
            entries=self.entries(),
            feed_url="/archive/feed.xml",
            subscribe_url="/subscribe",
        )

    async def feed(self, request: Request) -> Response:
        entries = self.entries()
        updated = entries[0]["updated"] if entries else "1970-01-01T00:00:00+00:00"
        body = self.pages.render(
            "feed.xml.j2",
            self.language,
            robots=self.robots,
            archive_url=f"{self.base_url}/archive",
            feed_url=f"{self.base_url}/archive/feed.xml",
            updated=updated,
            author=self.settings.newsletter.from_name or self.settings.newsletter.title,
            entries=entries,
        )
        return Response(
            body,
            media_type="application/atom+xml; charset=utf-8",
            headers={"X-Robots-Tag": self.robots, "Cache-Control": "public, max-age=600"},
        )

    async def issue(self, request: Request) -> Response:
        period = request.path_params["period"]
        # ?language=en: that edition (an English subscriber's email links to it).
        language = base_language(request.query_params.get("language", "")[:20])
        if language not in CATALOGUE:
            language = ""
        page = self._issue_html(period, language) if _PERIOD.match(period) else None
        if page is None:
            return self.pages.page(
                "message.html.j2",
                self.language,
                status=404,
                heading=self.pages.text(self.language, "not_found_title"),
                paragraphs=[self.pages.text(self.language, "not_found")],
                link={
                    "href": "/archive",
                    "label": self.pages.text(self.language, "back_to_archive"),
                },
            )
        page = page.replace("<head>", f'<head><meta name="robots" content="{self.robots}">', 1)
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"X-Robots-Tag": self.robots, "Cache-Control": "public, max-age=3600"},
        )

    def _issue_html(self, period: str, language: str) -> str | None:
        with self._lock:
            if (period, language) in self._pages:
                return self._pages[period, language]
        from .. import pipeline

        page = pipeline.archived_html(self.settings, self.store, period, self.mailto, language)
        if page is None:
            return None
        with self._lock:
            self._pages[period, language] = page  # a sent issue never changes
        return page
