"""The only place where stages meet: collect → select → summarize → draft → render → send.

Each function here is one CLI command's worth of work, taking settings and a
store and returning a small report; the CLI prints the report and the scheduler
calls ``run``. Stages themselves know nothing of each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .db import Store, articles, issues, locks, runs
from .db import subscribers as subscriber_rows
from .errors import ConfigError, DigestError, IssueError, LockedError
from .models import (
    EditionText,
    Issue,
    IssueItem,
    RenderedEmail,
    RenderedIssue,
    RunOutcome,
    RunReport,
    SendReport,
    SourceError,
    Subscriber,
)
from .notify import describe_run, notify_editors
from .period import current_period
from .richtext import markdown_escape
from .selection import select_articles

if TYPE_CHECKING:
    from .checks import Check
    from .collect import CollectReport

__all__ = [
    "DraftResult",
    "DryRun",
    "RenderResult",
    "RunReport",
    "approve",
    "collect",
    "draft",
    "dry_run",
    "load_issue",
    "render",
    "run",
    "send",
    "send_test",
]

log = logging.getLogger(__name__)

SAMPLE_READER = Subscriber(email="camille@example.org", name="Camille")
"""The fictional reader of every preview and rendered file."""
SAMPLE_TOKEN = "exemple-de-jeton"
"""Her unsubscribe token: real tokens are random, so it unsubscribes nobody."""


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
    edition: str = ""
    """The edition ``rendered`` is (``editions.Edition.key``); "" for the issue's default."""
    editions: dict[str, RenderedIssue] = field(default_factory=dict)
    """Every edition a send would need, rendered and checked (``_sendable`` fills it)."""

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
    from .summarize import NothingToSummarize, get_summarizer, summarize_many

    get_summarizer(settings.summarize)  # a misconfigured backend fails here, not per article
    selected = select_articles(settings, store, period)
    source_tags = {source.name: source.tags for source in settings.sources}
    items: list[IssueItem] = []
    # A remote model is asked a few articles at a time, within one deadline per issue.
    for article, summary in zip(
        selected, summarize_many(selected, settings.summarize, store), strict=True
    ):
        if isinstance(summary, NothingToSummarize):
            log.warning("skipping %s: %s", article.url, summary)
            continue
        items.append(
            IssueItem(
                article_id=article.id,
                position=len(items) + 1,
                source=article.source,
                title=article.title,
                url=article.url,
                # The summarizer writes plain text; the issue holds Markdown.
                summary=markdown_escape(summary.summary),
                lessons=tuple(
                    dataclasses.replace(lesson, text=markdown_escape(lesson.text))
                    for lesson in summary.lessons
                ),
                published=article.published,
                image_url=article.image_url,
                image_alt=article.image_alt,
                backend=summary.backend,
                grounded=summary.grounded,
                tags=source_tags.get(article.source, ()),
            )
        )
    return Issue(
        period=period,
        title=issue_title(period, settings.newsletter.language, settings.newsletter.timezone),
        intro=settings.draft.intro,
        items=tuple(items),
        language=settings.newsletter.language,
        editions=tuple(EditionText(e.language, e.title, e.intro) for e in settings.draft.editions),
    )


def issue_title(period: str, language: str, timezone: str) -> str:
    """The default title, « Semaine du 23 novembre 2026 »: editors usually write their own."""
    from .editions import week_title

    return week_title(period, language, timezone)


def draft(
    settings: Settings, store: Store, period: str | None = None, *, refresh: bool = False
) -> DraftResult:
    """Select and summarize, store the draft and write its editable file.

    Re-running keeps what the editor changed in the file; ``refresh`` rebuilds
    only the articles the editor has not touched.
    """
    from .draft import draft_path, merge_draft, read_draft, write_draft

    period = period_or_current(settings, period)
    stored = issues.get(store, period)
    if stored is not None and stored.status in ("sending", "sent"):
        raise IssueError(
            f"issue {period} is already {stored.status}; it cannot be drafted again",
            hint="draft the next period instead",
        )
    path = draft_path(settings, period)
    existing = read_draft(path) if path.exists() else None
    if existing is not None:
        _check_articles(store, existing, path)
    fill = existing is not None and not refresh
    wanted = settings
    if fill:  # candidates enough to fill the room whichever ones the editor deleted
        removed = len(getattr(existing, "removed", ()))
        select = dataclasses.replace(
            settings.select, max_articles=settings.select.max_articles + removed
        )
        wanted = dataclasses.replace(settings, select=select)
    generated = build_issue(wanted, store, period)
    issue = merge_draft(generated, existing, refresh=refresh)
    if fill:
        issue = _fill(issue, generated, settings.select.max_articles)
    saved = issues.save(store, issue)
    write_draft(saved, path)
    return DraftResult(saved, path, sum(not item.is_note for item in saved.items))


def _fill(issue: Issue, generated: Issue, max_articles: int) -> Issue:
    """``issue`` with newly selected articles appended while it has room.

    A draft made before the week's articles arrived (or trimmed by the editor)
    would otherwise stay as it is until someone thinks of ``--refresh``, and a
    scheduled run would skip the week. The editor's order comes first, articles
    they deleted stay out, and an approved issue is never changed behind their back.
    """
    if issue.status != "draft":
        return issue
    present = {item.article_id for item in issue.items}
    removed = set(getattr(issue, "removed", ()))
    room = max(0, max_articles - len(issue.items))
    added = [
        item
        for item in generated.items
        if item.article_id not in present and item.article_id not in removed
    ][:room]
    if not added:
        return issue
    items = [*issue.items, *added]
    return dataclasses.replace(
        issue, items=tuple(dataclasses.replace(i, position=n) for n, i in enumerate(items, 1))
    )


def _check_articles(store: Store, issue: Issue, path: Path) -> None:
    """Refuse a draft block that names an article the database does not have.

    Saving it would fail deep in the store; the editor needs the block's line.
    """
    gone = articles.missing(store, [i.article_id for i in issue.items if i.article_id is not None])
    for item in issue.items:
        if item.article_id not in gone:
            continue
        text = path.read_text(encoding="utf-8-sig") if path.exists() else ""
        meta = re.compile(rf"^\s*<!--\s*digest:.*\barticle\s*=\s*{item.article_id}\b")
        line = next((n for n, t in enumerate(text.splitlines(), 1) if meta.match(t)), None)
        where = f"{path}, line {line}" if line else str(path)
        raise IssueError(
            f"{where}: the article « {item.title} » points at article {item.article_id}, "
            "which is not in the database",
            hint="undo the change to its '<!-- digest: … -->' line, or delete the whole block",
        )


def load_issue(settings: Settings, store: Store, period: str | None = None) -> Issue:
    """The issue for ``period`` as the editor left it: stored issue plus the draft file's edits.

    Read-only: the preview calls this on every rebuild, and reading must not change
    what is stored. The edits reach the store when something acts on them
    (``draft``, ``approve``, ``send``). Lessons the editor left as they were keep
    the evidence (the supporting quote) that the store has for them.
    """
    from .draft import draft_path, read_draft, with_evidence

    period = period_or_current(settings, period)
    stored = issues.get(store, period)
    if stored is None:
        raise IssueError(f"there is no issue for {period}", hint="create it with `digest draft`")
    path = draft_path(settings, period)
    if not path.exists():
        return stored
    if stored.status in ("sending", "sent"):
        # What went out (or is going out) is the stored issue: an edit made since
        # would otherwise be silently ignored by render, preview and send.
        if _draft_differs(stored, path):
            raise IssueError(
                f"{path} was edited after issue {period} started sending ({stored.status}); "
                "the edits cannot be used, since recipients must all get the same issue",
                hint=f"undo the edits to {path.name} (move the file away to keep them); "
                "what is sent is the issue as it was when sending started",
            )
        return stored
    edited = read_draft(path)
    if edited.period != period:
        raise IssueError(f"{path} is the draft of {edited.period}, not {period}")
    _check_articles(store, edited, path)
    return with_evidence(dataclasses.replace(edited, id=stored.id), stored)


def _draft_differs(stored: Issue, path: Path) -> bool:
    """Whether the draft file says something else than the stored issue (read-only).

    Both sides go through the same writer and reader, so formatting (the
    instructions, fingerprints, blank lines) does not count, only the texts.
    """
    from .draft import format_draft, parse_draft

    def texts(issue: Issue) -> tuple[Any, ...]:
        return (
            issue.title,
            issue.intro,
            issue.editions,
            tuple(
                (i.article_id, i.title, i.url, i.summary, tuple(x.text for x in i.lessons))
                + (i.image_url, i.image_alt, i.section, i.tags)
                for i in issue.items
            ),
        )

    try:
        edited = parse_draft(path.read_text(encoding="utf-8-sig"), path)
    except (OSError, DigestError):
        return True
    return texts(edited) != texts(parse_draft(format_draft(stored), path))


def approve(settings: Settings, store: Store, period: str | None = None) -> Issue:
    from .draft import draft_path, write_draft

    issue = load_issue(settings, store, period)
    if issue.status in ("sending", "sent"):
        raise IssueError(f"issue {issue.period} is already {issue.status}")
    approved = issues.save(store, dataclasses.replace(issue, status="approved"))
    write_draft(approved, draft_path(settings, approved.period))
    return approved


# -- render and send ---------------------------------------------------------------------


def render(
    settings: Settings,
    store: Store,
    period: str | None = None,
    out: Path | None = None,
    *,
    edition: str = "",
) -> RenderResult:
    """Render the issue once and run the pre-send checks; with ``out``, write the files.

    ``edition`` (a key, see ``editions``; ``choose_edition`` makes one from a language
    and tags): that edition instead of the issue's default one.
    """
    issue = load_issue(settings, store, period)
    rendered, checks = _render_checked(settings, issue, edition)
    files: list[Path] = []
    if out is not None:
        files = write_rendered(settings, store, rendered, out)
    return RenderResult(issue, rendered, checks, files, edition=edition)


def render_edition(settings: Settings, issue: Issue, edition: str) -> RenderedIssue:
    """``edition`` of ``issue`` rendered: its language, its items, its title and intro."""
    from .render import render_issue

    return render_issue(_edition_of(settings, issue, edition), settings)


def _edition_of(settings: Settings, issue: Issue, edition: str) -> Issue:
    """``issue`` as ``edition`` reads ("" for the issue's default edition)."""
    from .editions import edition_issue

    return edition_issue(issue, edition or issue.language, settings.newsletter.timezone)


def _render_checked(
    settings: Settings, issue: Issue, edition: str
) -> tuple[RenderedIssue, list[Check]]:
    from .checks import check_email
    from .render import render_issue

    version = _edition_of(settings, issue, edition)
    rendered = render_issue(version, settings)
    local = settings.web.base_url if settings.web.allow_local_links else ""
    # a link twice: said once
    return rendered, list(dict.fromkeys(check_email(rendered, version, local_base_url=local)))


def choose_edition(issue: Issue, language: str = "", tags: str = "") -> str:
    """The edition key a subscriber of ``language`` and ``tags`` (comma-separated) gets.

    Raises ``IssueError`` when those tags select no article of the issue.
    """
    from .editions import edition_for, issue_tags
    from .i18n import CATALOGUE, base_language

    if language and base_language(language) not in CATALOGUE:
        raise IssueError(
            f"the email templates have no texts in the language {language!r}",
            hint=f"use one of {', '.join(sorted(CATALOGUE))}",
        )
    edition = edition_for(issue, language or issue.language, tags)
    if edition is None:
        raise IssueError(
            f"no article of issue {issue.period} is for the tags {tags!r}",
            hint="the issue's sections are: " + (", ".join(issue_tags(issue)) or "(none)"),
        )
    return edition.key


def planned_editions(store: Store, issue: Issue) -> dict[str, list[str]]:
    """Who would get which edition if the issue were sent now: key → addresses, in list
    order; key "" gathers those whose tags select no article (they get nothing)."""
    from .editions import edition_for

    planned: dict[str, list[str]] = {}
    for subscriber in subscriber_rows.listed(store):
        if subscriber.status != "active":
            continue
        edition = edition_for(issue, subscriber.language, subscriber.tags)
        planned.setdefault("" if edition is None else edition.key, []).append(subscriber.email)
    return planned


def sample_email(settings: Settings, rendered: RenderedIssue) -> tuple[RenderedEmail, bytes]:
    """The email as the fictional sample reader gets it, and its whole message as sent.

    Never a real subscriber: previews and rendered files get forwarded and attached,
    and they would carry that person's name and a live one-click unsubscribe link.
    """
    from .compose import MessageFactory

    factory = MessageFactory(rendered, settings)
    email = rendered.personalize(SAMPLE_READER.name, factory.unsubscribe_url(SAMPLE_TOKEN))
    return email, factory.build(SAMPLE_READER, SAMPLE_TOKEN)


def archived_html(
    settings: Settings, store: Store, period: str, unsubscribe_link: str, language: str = ""
) -> str | None:
    """The issue of ``period`` as the web archive shows it, or None if it was never sent.

    No name and no token: « Bonjour, », and the footer's unsubscribe link is
    ``unsubscribe_link`` (the list's mailto address), which works for anyone.
    ``language``: the edition of that language, every section (its emails link here).
    """
    from .render import render_issue

    issue = issues.get(store, period)
    if issue is None or issue.status not in ("sending", "sent"):
        return None
    version = _edition_of(settings, issue, language) if language else issue
    return render_issue(version, settings).personalize("", unsubscribe_link).html


def write_rendered(
    settings: Settings, store: Store, rendered: RenderedIssue, out: Path
) -> list[Path]:
    """``email.html``, ``email.txt`` and ``email.eml`` as the sample reader gets them."""
    out.mkdir(parents=True, exist_ok=True)
    email, message = sample_email(settings, rendered)
    files = [out / "email.html", out / "email.txt", out / "email.eml"]
    files[0].write_text(email.html, encoding="utf-8")
    files[1].write_text(email.text, encoding="utf-8")
    files[2].write_bytes(message)
    return files


def _sendable(settings: Settings, store: Store, period: str | None, force: bool) -> RenderResult:
    """The issue rendered in every edition a send would use, each one checked."""
    result = _render_editions(settings, store, period)
    if result.errors and not force:
        problems = "; ".join(c.message for c in result.errors)
        raise IssueError(
            f"issue {result.issue.period} fails its pre-send checks: {problems}",
            hint="fix the draft (see `digest preview`), or pass --force to send anyway",
        )
    return result


def _render_editions(settings: Settings, store: Store, period: str | None) -> RenderResult:
    """``render`` plus every other edition that the list (or a send under way) needs;
    a check that fails in another edition only names that edition."""
    result = render(settings, store, period)
    issue = result.issue
    keys = set(planned_editions(store, issue)) | set(issues.delivery_editions(store, issue.period))
    keys -= {"", issue.language}
    editions = {"": result.rendered, issue.language: result.rendered}
    checks = list(result.checks)
    same: dict[tuple[str, tuple[int, ...]], RenderedIssue] = {
        _selection(issue, issue.language): result.rendered
    }
    for key in sorted(keys):
        # Two keys selecting the same items (tags of the same sources) read alike: one render.
        twin = same.get(_selection(issue, key))
        if twin is not None:
            editions[key] = twin
            continue
        rendered, found = _render_checked(settings, issue, key)
        editions[key] = same[_selection(issue, key)] = rendered
        checks += [
            dataclasses.replace(c, message=f"edition {key}: {c.message}")
            for c in found
            if c not in result.checks
        ]
    return dataclasses.replace(result, checks=list(dict.fromkeys(checks)), editions=editions)


def send_test(
    settings: Settings,
    store: Store,
    period: str | None,
    address: str,
    *,
    edition: str | None = None,
) -> str:
    """Send the draft to one address, outside the ledger: for editors checking an inbox.

    ``edition`` is a key (``choose_edition``; "" for the issue's own); None sends
    the edition the address gets as a subscriber (the issue's own for an address
    not on the list, or whose sections select nothing this week). Returns the key
    of the edition sent ("": the issue's own).
    """
    from .editions import edition_for
    from .send import send_issue
    from .subscribers import find_subscriber

    result = _sendable(settings, store, period, force=True)
    issue = result.issue
    if edition is None:
        subscriber = find_subscriber(store, address)
        chosen = (
            None if subscriber is None else edition_for(issue, subscriber.language, subscriber.tags)
        )
        edition = "" if chosen is None else chosen.key
    if edition == issue.language:
        edition = ""
    # Rendered already when someone on the list gets it (``_sendable`` renders those).
    rendered = result.editions.get(edition) or render_edition(settings, issue, edition)
    send_issue(settings, store, issue, rendered, only_to=address)
    return edition


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
    resume_stopped: bool = True,
) -> SendReport:
    """Send the approved issue to every active subscriber, once each; resumable.

    ``resume_stopped``: lift a stop that a sender of this issue decided after many
    failures in a row (an explicit send does; a worker's does not, so that the
    error storm stops every worker until someone looks).
    """
    from .send import send_issue

    period = period_or_current(settings, period)
    stored = issues.get(store, period)
    reopen = resend_uncertain and bool(issues.delivery_counts(store, period).get("uncertain"))
    if stored is not None and stored.status == "sent" and not reopen:
        raise IssueError(f"issue {period} was already sent", hint="nothing to do")
    result = _sendable(settings, store, period, force)
    issue = result.issue
    if issue.status == "draft" and not unreviewed:
        raise IssueError(
            f"issue {period} is not approved",
            hint="review it, then set approved = true in the draft file or run `digest approve`",
        )
    if not any(not item.is_note for item in issue.items):
        raise IssueError(
            f"issue {period} has no articles", hint="run `digest collect` and `digest draft`"
        )
    if dry_run:
        return send_issue(settings, store, issue, result.rendered, dry_run=True, progress=progress)
    _refuse_placeholders(settings)
    stopped = issues.send_stopped(store, period)
    if stopped and not resume_stopped:
        raise IssueError(
            f"the senders of issue {period} stopped: {stopped}",
            hint="fix the cause, then run `digest send` (which resumes)",
        )
    if stopped:
        issues.stop_sending(store, period, None)
    if issue.status in ("draft", "approved"):
        # What goes out is what the store keeps (the archive shows it): the draft's edits.
        issue = issues.save(store, issue)
    # "sent" too: an issue marked sent with uncertain recipients (by an earlier version).
    issues.set_status(store, period, "sending", expect=("draft", "approved", "sending", "sent"))
    before = issue.status if issue.status in ("draft", "approved") else "approved"
    try:
        report = send_issue(
            settings,
            store,
            issue,
            result.rendered,
            progress=progress,
            resend_uncertain=resend_uncertain,
            stop=stop,
            render_edition=_edition_renderer(settings, issue, result.editions),
        )
    except DigestError as exc:
        if _reopen_if_nobody_reached(store, issue, before):
            reopened = f"nobody was sent the issue: it is {before} again, and editable"
            exc.hint = f"{exc.hint}; {reopened}" if exc.hint else reopened
        raise
    if report.complete:
        issues.set_status(store, period, "sent", expect=("sending",))
    else:
        _reopen_if_nobody_reached(store, issue, before)
    return report


def _selection(issue: Issue, key: str) -> tuple[str, tuple[int, ...]]:
    """What an edition's readers get: its language and the positions of its items."""
    from .editions import Edition, selected_items

    edition = Edition.parse(key or issue.language)
    language = edition.language or issue.language
    return language, tuple(item.position for item in selected_items(issue, edition))


def _edition_renderer(
    settings: Settings, issue: Issue, done: dict[str, RenderedIssue]
) -> Callable[[str], RenderedIssue]:
    """Each edition's rendered issue: those checked before the send, else rendered now
    (a subscriber who changed language after the checks)."""

    def rendered(edition: str) -> RenderedIssue:
        found = done.get(edition)
        return found if found is not None else render_edition(settings, issue, edition)

    return rendered


def _refuse_placeholders(settings: Settings) -> None:
    """A real send stops on the config's own errors, ``--force`` or not: a link no reader
    can follow or the starter's sample sender is never what the editor meant."""
    from .checks import check_settings

    problems = check_settings(settings)
    if problems:
        raise ConfigError(
            f"{settings.path}: " + "; ".join(c.message for c in problems),
            hint="fix the config file and send again; nothing was sent",
        )


def _reopen_if_nobody_reached(store: Store, issue: Issue, status: str) -> bool:
    """Put an issue whose send reached nobody back to ``status`` (editable); say if it did.

    Only while no message can have reached anyone (every ledger row still
    queued): from the first attempt on, the issue is fixed, so that every
    recipient gets the same one.
    """
    from .db.deliveries import discard_if_untouched

    stored = issues.get(store, issue.period)
    if stored is None or stored.id is None or not discard_if_untouched(store, stored.id):
        return False
    issues.set_status(store, issue.period, status, expect=("sending",))
    log.info("%s: nobody was sent the issue; it is %s again", issue.period, status)
    return True


def work(
    settings: Settings,
    store: Store,
    *,
    stop: threading.Event,
    poll_seconds: float = 10.0,
    once: bool = False,
    on_report: Callable[[SendReport], None] | None = None,
) -> None:
    """Send every approved issue with due recipients, and keep watching, until ``stop``.

    The long-running form of ``send`` (``digest worker``). On PostgreSQL any
    number of workers share each issue (they claim disjoint batches); on
    SQLite a worker finding an issue sent by another process waits its turn.
    ``once``: one pass over what is due now, then return.
    """
    from .errors import LockedError

    reported: set[tuple[str, str]] = set()
    while not stop.is_set():
        worked = False
        for period in issues.sendable(store):
            if stop.is_set():
                break
            try:
                report = send(settings, store, period, stop=stop, resume_stopped=False)
            except LockedError as exc:
                log.info("%s: %s", period, exc.message)
                continue
            except DigestError as exc:
                if (period, str(exc)) not in reported:  # said once, not at every pass
                    reported.add((period, str(exc)))
                    log.error("%s: %s", period, exc)
                continue
            worked = worked or report.attempted > 0 or report.skipped > 0
            if on_report is not None:
                on_report(report)
        if once:
            return
        if not worked:
            stop.wait(poll_seconds)


@dataclass(frozen=True)
class DryRun:
    """What ``send`` would do, with nothing sent and nothing recorded."""

    period: str
    recipients: list[str] | None
    """Addresses that would get the issue, in list order; None for a send already under way,
    whose remaining recipients are counted in ``deliveries``."""
    subscribers: dict[str, int]
    """The whole list by status: active, unsubscribed, bounced…"""
    deliveries: dict[str, int]
    """The issue's ledger by status, counting those a send would queue now."""
    problems: list[str]
    """Why a real send would refuse to start; empty when it would go."""
    test_to: str = ""
    already_sent: bool = False
    editions: dict[str, int] = field(default_factory=dict)
    """Recipients per edition key (see ``editions``); "" counts those whose tags select
    no article of the issue (they would be skipped)."""
    recipient_editions: dict[str, str] = field(default_factory=dict)
    """Each listed recipient's edition key (with ``recipients``)."""


def dry_run(
    settings: Settings,
    store: Store,
    period: str | None = None,
    *,
    to: str | None = None,
    force: bool = False,
) -> DryRun:
    """Who ``send`` (or ``send --to``) would send to, and what would stop it; sends nothing."""
    from .checks import check_settings
    from .send import send_issue
    from .subscribers import normalize_email

    period = period_or_current(settings, period)
    result = _render_editions(settings, store, period)
    issue = result.issue
    if to:  # a test send goes out whatever the checks say, as `send --to` does
        address = normalize_email(to)
        return DryRun(period, [address], {}, {}, [], test_to=address)
    problems = [] if force else [f"pre-send check: {c.message}" for c in result.errors]
    problems += [f"config: {c.message}" for c in check_settings(settings)]
    if issue.status == "sent":  # as `send` says: nothing to do, which is no error
        return DryRun(period, [], {}, issues.delivery_counts(store, period), [], already_sent=True)
    if issue.status == "draft":
        problems.append(f"issue {period} is not approved (`digest approve`)")
    if not issue.items and force:  # without --force, a check says so already
        problems.append(f"issue {period} has no articles")
    everyone = subscriber_rows.listed(store)
    by_status: dict[str, int] = {}
    for subscriber in everyone:
        by_status[subscriber.status] = by_status.get(subscriber.status, 0) + 1
    counts = send_issue(settings, store, issue, result.rendered, dry_run=True).counts
    started = any(n for status, n in counts.items() if status != "queued")
    # once a send has started, the ledger (not the list) knows who is still due
    recipients = None if started else [s.email for s in everyone if s.status == "active"]
    if started:
        editions = issues.delivery_editions(store, period)
        # rows queued before editions existed are the default edition
        editions[issue.language] = editions.get(issue.language, 0) + editions.pop("", 0)
        chosen: dict[str, str] = {}
    else:
        planned = planned_editions(store, issue)
        editions = {key: len(emails) for key, emails in planned.items()}
        chosen = {email: key for key, emails in planned.items() for email in emails}
    return DryRun(
        period,
        recipients,
        by_status,
        counts,
        problems,
        editions=editions,
        recipient_editions=chosen,
    )


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
    with locks.hold(store, "run"):
        stored = issues.get(store, period)
        if stored is not None and stored.status == "sent":
            return run_report(period, "already_sent", "already_sent", run_id)
        row = runs.start(store, run_id, period, trigger)
        outcome, detail = "failed", "the run stopped on an unexpected error"
        try:
            resume = stored is not None and stored.status == "sending"
            report = _run_stages(settings, store, period, run_id, resume, stop)
            outcome, detail = report.outcome, report.detail
        except DigestError as exc:
            detail = str(exc)
            raise
        finally:  # a run that raised still gets its outcome, or status would say "running"
            runs.finish(store, row, outcome, detail)
        return report


def run_and_notify(
    settings: Settings,
    store: Store,
    *,
    period: str | None = None,
    trigger: str = "manual",
    now: dt.datetime | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """``pipeline.run`` followed by the editors' report (or alert); never raises.

    A draft waiting for review is mailed with its preview attached. Anything
    raised by the run becomes a ``failed`` report and an alert, so a scheduler
    keeps going next week. ``stop``, once set, ends a send after the messages
    in flight.
    """
    period = period or period_or_current(settings, None, now)
    log.info("run starting: period %s, trigger %s", period, trigger, extra={"period": period})
    try:
        report = run(settings, store, period=period, trigger=trigger, now=now, stop=stop)
    except LockedError as exc:
        # Not a failure: the run in progress (manual or scheduled) sends this period.
        report = run_report(period, "skipped", "locked", values={"error": str(exc)})
    except Exception as exc:  # the run's bug must not kill the scheduler; it is reported
        log.exception("run for %s raised", period, extra={"period": period})
        report = run_report(
            period, "failed", "error", values={"error": f"{type(exc).__name__}: {exc}"}
        )
    level = logging.ERROR if report.outcome in ("failed", "partial") else logging.INFO
    log.log(
        level,
        "run %s period %s: %s: %s",
        report.run_id or "-",
        report.period,
        report.outcome,
        report.detail,
        extra={"run_id": report.run_id, "period": report.period, "outcome": report.outcome},
    )
    notify_run(settings, store, report, trigger=trigger)
    return report


def notify_run(
    settings: Settings, store: Store, report: RunReport, *, trigger: str = "manual"
) -> bool:
    """Email the editors about ``report`` when it is news; return whether an email went.

    A no-op ("already sent") is not news, nor is a retry that still leaves
    recipients for later. A draft waiting for review goes with its preview.
    """
    if report.outcome == "already_sent" or (trigger == "retry" and report.outcome == "partial"):
        return False
    preview = None
    if report.outcome == "draft_ready":
        preview = _preview_html(settings, store, report.period)
    return notify_editors(settings, report, attachment_html=preview)


def _preview_html(settings: Settings, store: Store, period: str) -> str | None:
    """The draft as a subscriber would see it, for the editors' email; None if it cannot render."""
    try:
        rendered = render(settings, store, period).rendered
        return rendered.personalize("", settings.web.base_url).html
    except Exception as exc:  # the notification still goes, without the attachment
        log.warning("could not render the preview of %s for the editors: %s", period, exc)
        return None


def _run_stages(
    settings: Settings,
    store: Store,
    period: str,
    run_id: str,
    resume: bool,
    stop: threading.Event | None,
) -> RunReport:
    source_errors: list[SourceError] = []
    if not resume:
        collected = collect(settings, store)
        source_errors = [SourceError(s.name, s.error) for s in collected.failed]
        if source_errors and settings.run.on_collect_failure == "abort":
            return run_report(
                period, "failed", "collect_failed", run_id, source_errors=source_errors
            )
        drafted = draft(settings, store, period)
        article_count = sum(not item.is_note for item in drafted.issue.items)
        if article_count < settings.run.min_articles:
            issues.set_status(store, period, "draft")
            return run_report(
                period,
                "skipped",
                "too_few_articles",
                run_id,
                values={"count": article_count, "required": settings.run.min_articles},
                source_errors=source_errors,
            )
        issue = load_issue(settings, store, period)
        if issue.status != "approved" and not settings.run.send_unreviewed:
            return run_report(
                period, "draft_ready", "draft_ready", run_id, source_errors=source_errors
            )
    try:
        report = send(settings, store, period, unreviewed=settings.run.send_unreviewed, stop=stop)
    except DigestError as exc:
        return run_report(
            period,
            "failed",
            "send_failed",
            run_id,
            values={"error": str(exc)},
            source_errors=source_errors,
        )
    sent = report.counts.get("sent", 0)
    failures = [f"{address}: {reason}" for address, reason in report.failures]
    outcome: RunOutcome = "sent" if report.complete else "partial"
    return run_report(
        period,
        outcome,
        "sent_with_failures" if failures else "sent",
        run_id,
        sent=sent,
        failed=len(failures),
        source_errors=source_errors,
        recipient_failures=failures,
    )


def run_report(
    period: str,
    outcome: RunOutcome,
    reason: str,
    run_id: str = "",
    *,
    values: dict[str, str | int] | None = None,
    **fields: Any,
) -> RunReport:
    """A run's report whose English ``detail`` is said from its ``reason`` and ``values``.

    Reports are built from data so that the editors' email can say the same in
    their own language; an error's own text is kept as it is, after the reason.
    """
    report = RunReport(period, outcome, "", run_id, reason=reason, values=values or {}, **fields)
    detail = describe_run(report)
    error = report.values.get("error")
    return dataclasses.replace(report, detail=f"{detail}: {error}" if error else detail)


def draft_file(settings: Settings, period: str) -> Path:
    from .draft import draft_path

    return draft_path(settings, period)
