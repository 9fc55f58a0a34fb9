"""Collecting articles from the configured sources.

``collect(settings, store)`` fetches every source concurrently (a bounded number
of requests in flight), parses feeds, fetches full text for teasers, cleans and
deduplicates entries, stores each source's articles in one transaction and
records its health. A failing source never stops the others: it gets an error
line in the report and in the ``sources`` table.

Modules, one job each: ``guard`` (which addresses may be reached), ``fetch``
(one request under limits), ``parse`` (feed bytes to clean entries),
``normalize`` (URLs, HTML, text, dates, language), ``fulltext`` (article pages),
``dedupe`` (the same story once, and the write), ``collector`` (the run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collector import CollectReport, SourceReport, collect, health_table

__all__ = ["CollectReport", "SourceReport", "collect", "health_table"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with the package: parsing worker processes import
    # ``prepare`` (and so this package) and must not pay for the HTTP client,
    # the database layer and the terminal tables they never use.
    if name in __all__:
        from . import collector

        return getattr(collector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
