"""The only place where stages meet: collect → select → summarize → draft → render → send.

Each function here is one CLI command's worth of work, taking settings and a
store and returning a small report; the CLI prints the report and the scheduler
calls ``run``. Stages themselves know nothing of each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import DigestError, IssueError
from .models import Issue, IssueItem, RenderedIssue, RunOutcome, RunReport, SendReport
from .period import current_period, period_bounds
from .select import select_articles
from .store import Store

if TYPE_CHECKING:
    from .collect import CollectReport
    from .render import Check

__all__ = [
    "DraftResult",
    "RenderResult",
    "RunReport",
    "approve",
    "collect",
    "draft",
    "load_issue",
    "render",
    "run",
    "send",
    "send_test",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftResult:
    issue: Issue
    path: Path
    articles: int


@dataclass(frozen=True)
class RenderResult:
    issue: Issue
    rendered: RenderedIssue
    checks: list[Check]
    files: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.level == "error"]


def period_or_current(
    settings: Settings, period: str | None, now: dt.datetime | None = None
) -> str:
    return period or current_period(settings.newsletter.timezone, now)


# -- collect ---------------------------------------------------------------------------


def collect(
    settings: Settings, store: Store, progress: Callable[[Any], None] | None = None
) -> CollectReport:
    from .collect import collect as collect_sources

    return collect_sources(settings, store, progress=progress)


# -- draft -----------------------------------------------------------------------------


def build_issue(settings: Settings, store: Store, period: str) -> Issue:
    """A fresh machine-made issue for ``period``: the selected articles, summarized."""
    from .summarize import NothingToSummarize, get_summarizer, summarize_article

    get_summarizer(settings.summarize)  # a misconfigured backend fails here, not per article
    items: list[IssueItem] = []
    for article in select_articles(settings, store, period):
        try:
            summary = summarize_article(article, settings.summarize, store)
        except NothingToSummarize as exc:
            log.warning("skipping %s: %s", article.url, exc)
            continue
        items.append(
            IssueItem(
                article_id=article.id,
                position=len(items) + 1,
                source=article.source,
                title=article.title,
                url=article.url,
                summary=summary.summary,
                lessons=tuple(lesson.text for lesson in summary.lessons),
                published=article.published,
                image_url=article.image_url,
                image_alt=article.image_alt,
                backend=summary.backend,
                grounded=summary.grounded,
            )
        )
    return Issue(
        period=period,
        title=issue_title(period, settings.newsletter.language, settings.newsletter.timezone),
        intro=settings.draft.intro,
        items=tuple(items),
        language=settings.newsletter.language,
    )


def issue_title(period: str, language: str, timezone: str) -> str:
    """The default title, « Semaine du 23 novembre 2026 »: editors usually write their own."""
    from zoneinfo import ZoneInfo

    from .i18n import format_date, strings_for

    start, _ = period_bounds(period, timezone)
    monday = start.astimezone(ZoneInfo(timezone)).date()
    return strings_for(language)["week_of"].format(date=format_date(monday, language))


def draft(
    settings: Settings, store: Store, period: str | None = None, *, refresh: bool = False
) -> DraftResult:
    """Select and summarize, store the draft and write its editable file.

    Re-running keeps what the editor changed in the file; ``refresh`` rebuilds
    only the articles the editor has not touched.
    """
    from .draftfile import draft_path, merge_draft, read_draft, write_draft

    period = period_or_current(settings, period)
    stored = store.issue(period)
    if stored is not None and stored.status in ("sending", "sent"):
        raise IssueError(
            f"issue {period} is already {stored.status}; it cannot be drafted again",
            hint="draft the next period instead",
        )
    path = draft_path(settings, period)
    existing = read_draft(path) if path.exists() else None
    generated = build_issue(settings, store, period)
    issue = merge_draft(generated, existing, refresh=refresh)
    saved = store.save_issue(issue)
    write_draft(saved, path)
    return DraftResult(saved, path, len(saved.items))


def load_issue(settings: Settings, store: Store, period: str | None = None) -> Issue:
    """The issue for ``period`` as the editor left it: stored issue plus the draft file's edits."""
    from .draftfile import draft_path, read_draft

    period = period_or_current(settings, period)
    stored = store.issue(period)
    if stored is None:
        raise IssueError(f"there is no issue for {period}", hint="create it with `digest draft`")
    path = draft_path(settings, period)
    if stored.status in ("sending", "sent") or not path.exists():
        return stored
    edited = read_draft(path)
    if edited.period != period:
        raise IssueError(f"{path} is the draft of {edited.period}, not {period}")
    return store.save_issue(dataclasses.replace(edited, id=stored.id))


def approve(settings: Settings, store: Store, period: str | None = None) -> Issue:
    from .draftfile import draft_path, write_draft

    issue = load_issue(settings, store, period)
    if issue.status in ("sending", "sent"):
        raise IssueError(f"issue {issue.period} is already {issue.status}")
    approved = store.save_issue(dataclasses.replace(issue, status="approved"))
    write_draft(approved, draft_path(settings, approved.period))
    return approved


# -- render and send ---------------------------------------------------------------------


def render(
    settings: Settings, store: Store, period: str | None = None, out: Path | None = None
) -> RenderResult:
    """Render the issue once and run the pre-send checks; with ``out``, write the files."""
    from .render import check_email, render_issue

    issue = load_issue(settings, store, period)
    rendered = render_issue(issue, settings)
    checks = check_email(rendered, issue)
    files: list[Path] = []
    if out is not None:
        files = write_rendered(settings, store, rendered, out)
    return RenderResult(issue, rendered, checks, files)


def write_rendered(
    settings: Settings, store: Store, rendered: RenderedIssue, out: Path
) -> list[Path]:
    """``email.html``, ``email.txt`` and ``email.eml`` as the first active subscriber gets them."""
    from .compose import MessageFactory
    from .subscribers import sample_subscriber

    out.mkdir(parents=True, exist_ok=True)
    subscriber, token = sample_subscriber(settings, store)
    factory = MessageFactory(rendered, settings)
    email = rendered.personalise(subscriber.name, factory.unsubscribe_url(token))
    files = [out / "email.html", out / "email.txt", out / "email.eml"]
    files[0].write_text(email.html, encoding="utf-8")
    files[1].write_text(email.text, encoding="utf-8")
    files[2].write_bytes(factory.build(subscriber, token))
    return files


def _sendable(settings: Settings, store: Store, period: str | None, force: bool) -> RenderResult:
    result = render(settings, store, period)
    if result.errors and not force:
        problems = "; ".join(c.message for c in result.errors)
        raise IssueError(
            f"issue {result.issue.period} fails its pre-send checks: {problems}",
            hint="fix the draft (see `digest preview`), or pass --force to send anyway",
        )
    return result


def send_test(settings: Settings, store: Store, period: str | None, address: str) -> None:
    """Send the draft to one address, outside the ledger: for editors checking an inbox."""
    from .send import send_issue

    result = _sendable(settings, store, period, force=True)
    send_issue(settings, store, result.issue, result.rendered, only_to=address)


def send(
    settings: Settings,
    store: Store,
    period: str | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    unreviewed: bool = False,
    resend_uncertain: bool = False,
    progress: Callable[..., None] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Send the approved issue to every active subscriber, once each; resumable."""
    from .send import send_issue

    period = period_or_current(settings, period)
    stored = store.issue(period)
    reopen = resend_uncertain and bool(store.delivery_counts(period).get("uncertain"))
    if stored is not None and stored.status == "sent" and not reopen:
        raise IssueError(f"issue {period} was already sent", hint="nothing to do")
    result = _sendable(settings, store, period, force)
    issue = result.issue
    if issue.status == "draft" and not unreviewed:
        raise IssueError(
            f"issue {period} is not approved",
            hint="review it, then set approved = true in the draft file or run `digest approve`",
        )
    if not issue.items:
        raise IssueError(
            f"issue {period} has no articles", hint="run `digest collect` and `digest draft`"
        )
    if dry_run:
        return send_issue(settings, store, issue, result.rendered, dry_run=True, progress=progress)
    # "sent" too: an issue marked sent with uncertain recipients (by an earlier version).
    store.set_issue_status(period, "sending", expect=("draft", "approved", "sending", "sent"))
    report = send_issue(
        settings,
        store,
        issue,
        result.rendered,
        progress=progress,
        resend_uncertain=resend_uncertain,
        stop=stop,
    )
    if report.complete:
        store.set_issue_status(period, "sent", expect=("sending",))
    return report


# -- run ---------------------------------------------------------------------------------


def run(
    settings: Settings,
    store: Store,
    *,
    period: str | None = None,
    trigger: str = "manual",
    now: dt.datetime | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """collect → draft → send, once per period whatever happens.

    The issue's status in the store is what makes a second run a no-op; the
    ``run`` lock keeps two runs (a scheduled one and a manual one) from
    interleaving.
    """
    period = period_or_current(settings, period, now)
    run_id = uuid.uuid4().hex[:12]
    with store.lock("run"):
        stored = store.issue(period)
        if stored is not None and stored.status == "sent":
            return RunReport(period, "already_sent", f"issue {period} was already sent", run_id)
        row = store.start_run(run_id, period, trigger)
        outcome, detail = "failed", "the run stopped on an unexpected error"
        try:
            resume = stored is not None and stored.status == "sending"
            report = _run_stages(settings, store, period, run_id, resume, stop)
            outcome, detail = report.outcome, report.detail
        except DigestError as exc:
            detail = str(exc)
            raise
        finally:  # a run that raised still gets its outcome, or status would say "running"
            store.finish_run(row, outcome, detail)
        return report


def _run_stages(
    settings: Settings,
    store: Store,
    period: str,
    run_id: str,
    resume: bool,
    stop: threading.Event | None,
) -> RunReport:
    source_errors: list[str] = []
    if not resume:
        collected = collect(settings, store)
        source_errors = [f"{s.name}: {s.error}" for s in collected.failed]
        if source_errors and settings.run.on_collect_failure == "abort":
            return RunReport(
                period,
                "failed",
                "collection failed: " + "; ".join(source_errors),
                run_id,
                source_errors=source_errors,
            )
        drafted = draft(settings, store, period)
        if len(drafted.issue.items) < settings.run.min_articles:
            store.set_issue_status(period, "draft")
            return RunReport(
                period,
                "skipped",
                f"{len(drafted.issue.items)} article(s), fewer than the "
                f"{settings.run.min_articles} required; kept for next week",
                run_id,
                source_errors=source_errors,
            )
        issue = load_issue(settings, store, period)
        if issue.status != "approved" and not settings.run.send_unreviewed:
            return RunReport(
                period,
                "draft_ready",
                f"draft {period} is ready for review",
                run_id,
                source_errors=source_errors,
            )
    try:
        report = send(settings, store, period, unreviewed=settings.run.send_unreviewed, stop=stop)
    except DigestError as exc:
        return RunReport(period, "failed", str(exc), run_id, source_errors=source_errors)
    sent = report.counts.get("sent", 0)
    failures = [f"{address}: {reason}" for address, reason in report.failures]
    outcome: RunOutcome = "sent" if report.complete else "partial"
    detail = f"sent to {sent} subscriber(s)" + (f", {len(failures)} failed" if failures else "")
    return RunReport(
        period,
        outcome,
        detail,
        run_id,
        sent=sent,
        failed=len(failures),
        source_errors=source_errors,
        recipient_failures=failures,
    )


def draft_file(settings: Settings, period: str) -> Path:
    from .draftfile import draft_path

    return draft_path(settings, period)
