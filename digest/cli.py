"""The command line: parse arguments, call the pipeline, print the result.

Library errors (``DigestError``) become one line on stderr and exit code 1 here
and only here; "done, but some sources or recipients failed" is exit code 2.
``main(argv)`` runs in-process, which is how the tests call it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__, pipeline
from .config import Settings, find_config_path, load_settings
from .db import Store, articles, issues, locks, runs
from .errors import DigestError

__all__ = ["main"]

PARTIAL = 2  # exit code: done, but some sources or recipients failed


class Context:
    """What every command needs, loaded on first use so `init` works without a config."""

    def __init__(self, config: str | None, verbose: bool) -> None:
        self.config = config
        self.verbose = verbose
        self._settings: Settings | None = None
        self._store: Store | None = None
        self.console = make_console()
        self.err = make_console(stderr=True)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database.url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def make_console(stderr: bool = False) -> Console:
    """A console for messages: never wrapped, and never narrowed when not on a terminal.

    Markup and highlighting are off: feed titles, errors and addresses are data,
    never rich markup. Off a terminal (a pipe, a log file, cron's mail) rich
    would assume 80 columns and fold every longer line and table cell; a line a
    script greps for must stay one line, so the width is then unbounded.
    """
    console = Console(stderr=stderr, highlight=False, markup=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(
            stderr=stderr, highlight=False, markup=False, soft_wrap=True, width=UNBOUNDED_WIDTH
        )
    return console


UNBOUNDED_WIDTH = 100_000  # wider than any line we print: rich sizes tables to their content

pass_ctx = click.make_pass_decorator(Context)
period_option = click.option(
    "--period", "period", metavar="P", help="ISO week, e.g. 2026-W48 (default: this week)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    envvar="DIGEST_CONFIG",
    help="Config file (default: $DIGEST_CONFIG, else ./digest.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(click_ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Weekly newsletter digests: collect, summarize, render, send."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = Context(config, verbose)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


# -- init ----------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@pass_ctx
def init(ctx: Context, directory: Path) -> None:
    """Write a commented starter config, a template folder and an example subscriber CSV."""
    from .starter import write_starter

    written = write_starter(directory)
    for path in written:
        ctx.console.print(f"wrote {path}")
    ctx.console.print(
        f"Next: edit {directory / 'digest.toml'}, then `digest --config "
        f"{directory / 'digest.toml'} collect`."
    )


# -- collect, draft, approve, render ----------------------------------------------------


@cli.command()
@pass_ctx
def collect(ctx: Context) -> None:
    """Fetch every source, store new articles, print each source's health."""
    report = pipeline.collect(ctx.settings, ctx.store)
    table = Table("source", "status", "new", "updated", "error", title="Collection")
    for s in report.sources:
        label = s.status + (f" (failing {s.consecutive_failures}×)" if s.flagged else "")
        status = Text(label, style="red" if s.status == "error" else "")
        table.add_row(Text(s.name), status, str(s.new), str(s.updated), Text(s.error))
    ctx.console.print(table)
    ctx.console.print(f"{report.new} new article(s) from {len(report.sources)} source(s).")
    if report.failed:
        names = ", ".join(s.name for s in report.failed)
        ctx.err.print(f"some sources failed: {names}")
        raise SystemExit(PARTIAL)


@cli.command()
@period_option
@click.option("--refresh", is_flag=True, help="Rebuild the articles the editor has not touched.")
@pass_ctx
def draft(ctx: Context, period: str | None, refresh: bool) -> None:
    """Select and summarize; store the draft and write its editable file."""
    result = pipeline.draft(ctx.settings, ctx.store, period, refresh=refresh)
    ctx.console.print(
        f"Draft {result.issue.period}: {result.articles} article(s), status {result.issue.status}."
    )
    ctx.console.print(f"Edit it in {result.path}, then `digest approve`.")


@cli.command()
@period_option
@pass_ctx
def approve(ctx: Context, period: str | None) -> None:
    """Mark the draft ready to send."""
    issue = pipeline.approve(ctx.settings, ctx.store, period)
    ctx.console.print(f"Issue {issue.period} approved: `digest send` will send it.")


@cli.command()
@period_option
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for email.html, email.txt and email.eml.",
)
@click.option(
    "--language",
    default="",
    help="The edition of a subscriber of this language (default: the issue's own).",
)
@click.option(
    "--tags",
    default="",
    help="The edition of a subscriber with these tags, comma-separated (default: every section).",
)
@pass_ctx
def render(ctx: Context, period: str | None, out: Path, language: str, tags: str) -> None:
    """Write the email as one subscriber gets it, and run the pre-send checks."""
    edition = ""
    if language or tags:
        issue = pipeline.load_issue(ctx.settings, ctx.store, period)
        edition = pipeline.choose_edition(issue, language, tags)
        ctx.console.print(f"Edition {edition}.")
    result = pipeline.render(ctx.settings, ctx.store, period, out, edition=edition)
    for path in result.files:
        ctx.console.print(f"wrote {path}")
    _print_checks(ctx, result.checks)
    if result.errors:
        raise SystemExit(1)


def _print_checks(ctx: Context, checks: Sequence[Any]) -> None:
    if not checks:
        ctx.console.print("Pre-send checks: all passed.")
    for check in checks:
        colour = "red" if check.level == "error" else "yellow"
        ctx.console.print(Text(check.level, style=colour), f"{check.name}: {check.message}")


# -- send, run ----------------------------------------------------------------------------


@cli.command()
@period_option
@click.option("--to", "to", metavar="ADDR", help="A test send to this one address only.")
@click.option(
    "--language",
    default="",
    help="With --to: the edition of a subscriber of this language (default: the address's own).",
)
@click.option(
    "--tags",
    default="",
    help="With --to: the edition of a subscriber with these tags, comma-separated.",
)
@click.option("--dry-run", is_flag=True, help="Show who would get it; send nothing.")
@click.option(
    "--all", "show_all", is_flag=True, help="With --dry-run: list every address, not the first."
)
@click.option("--force", is_flag=True, help="Send although pre-send checks report errors.")
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Also send to recipients whose earlier attempt may or may not have gone out.",
)
@pass_ctx
def send(
    ctx: Context,
    period: str | None,
    to: str | None,
    language: str,
    tags: str,
    dry_run: bool,
    show_all: bool,
    force: bool,
    resend_uncertain: bool,
) -> None:
    """Send the approved issue to every active subscriber, once each (resumable)."""
    if (language or tags) and not to:
        raise click.UsageError(
            "--language and --tags choose a test send's edition: use them with --to ADDR"
        )
    if dry_run:
        plan = pipeline.dry_run(ctx.settings, ctx.store, period, to=to, force=force)
        _print_dry_run(ctx, plan, show_all)
        return
    if to:
        chosen = None
        if language or tags:
            issue = pipeline.load_issue(ctx.settings, ctx.store, period)
            chosen = pipeline.choose_edition(issue, language, tags)
        key = pipeline.send_test(ctx.settings, ctx.store, period, to, edition=chosen)
        edition = f" (edition {key})" if key else ""
        ctx.console.print(f"Test message{edition} sent to {to}.")
        return
    period = pipeline.period_or_current(ctx.settings, period)
    stored = issues.get(ctx.store, period)
    uncertain = resend_uncertain and issues.delivery_counts(ctx.store, period).get("uncertain")
    if stored is not None and stored.status == "sent" and not uncertain:
        # a repeat is harmless: a cron job calling send twice must not raise an alarm
        ctx.console.print(f"Issue {period} was already sent; nothing to do.")
        return
    with _send_progress(ctx) as progress:
        report = pipeline.send(
            ctx.settings,
            ctx.store,
            period,
            force=force,
            resend_uncertain=resend_uncertain,
            progress=progress,
        )
    _print_send(ctx, report)
    if report.failures or not (report.complete or report.dry_run):
        raise SystemExit(PARTIAL)  # someone failed, is still queued, retrying or uncertain


DRY_RUN_LISTED = 10  # addresses a dry run shows unless --all


def _print_dry_run(ctx: Context, plan: pipeline.DryRun, show_all: bool) -> None:
    ctx.console.print(f"Dry run of {plan.period}: nothing is sent.")
    if plan.test_to:
        ctx.console.print(f"A test send would go to {plan.test_to} only.")
    elif plan.already_sent:
        ledger = ", ".join(f"{n} {s}" for s, n in sorted(plan.deliveries.items()))
        ctx.console.print(f"Issue {plan.period} was already sent ({ledger}); a send does nothing.")
    else:
        listed = ", ".join(f"{n} {s}" for s, n in sorted(plan.subscribers.items()))
        ctx.console.print(f"Subscribers: {listed or 'none'}.")
        queued = plan.deliveries.get("queued", 0)
        ledger = ", ".join(f"{n} {s}" for s, n in sorted(plan.deliveries.items()))
        ctx.console.print(f"Would send to {queued} subscriber(s) (deliveries: {ledger or 'none'}).")
        _print_editions(ctx, plan.editions)
        if plan.recipients is None:
            ctx.console.print("The send has started; `digest send` resumes with those still due.")
        else:
            shown = plan.recipients if show_all else plan.recipients[:DRY_RUN_LISTED]
            for address in shown:
                edition = plan.recipient_editions.get(address)
                label = "" if edition is None else f"  edition {edition or '(none: skipped)'}"
                ctx.console.print(f"  {address}{label}")
            if len(shown) < len(plan.recipients):
                more = len(plan.recipients) - len(shown)
                ctx.console.print(f"  … and {more} more (`--all` lists everyone)")
    for problem in plan.problems:
        ctx.err.print(f"a real send would stop: {problem}")
    if plan.problems:
        raise SystemExit(1)


def _print_editions(ctx: Context, editions: dict[str, int]) -> None:
    """One line per edition: its key, what it is, how many get it."""
    from .editions import Edition

    if not editions:
        return
    ctx.console.print("By edition:")
    for key, count in sorted(editions.items(), key=lambda kv: (kv[0] == "", kv[0])):
        if key:
            ctx.console.print(f"  {key}: {count} ({Edition.parse(key).describe()})")
        else:
            ctx.console.print(f"  skipped: {count} (their tags select no article of this issue)")


@contextlib.contextmanager
def _send_progress(ctx: Context) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar with rate and ETA on a terminal; nothing otherwise (the summary says it)."""
    if not ctx.console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("sending", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=ctx.console) as bar:
        task = bar.add_task("send", total=None)
        yield lambda p: bar.update(task, completed=p.done, total=p.total)


def _print_send(ctx: Context, report: Any) -> None:
    ctx.console.print(report.summary())
    for address, reason in report.failures:
        ctx.err.print(f"failed: {address}: {reason}")
    for address in report.uncertain:
        ctx.err.print(
            f"uncertain: {address}: may have been delivered; `digest send --resend-uncertain` "
            "sends again"
        )


@cli.command()
@period_option
@pass_ctx
def run(ctx: Context, period: str | None) -> None:
    """collect → draft → send, once per period (running it again does nothing)."""
    from .pipeline import notify_run

    report = pipeline.run(ctx.settings, ctx.store, period=period)
    notify_run(ctx.settings, ctx.store, report)
    ctx.console.print(f"{report.period}: {report.outcome}: {report.detail}")
    for error in report.source_errors:
        ctx.err.print(f"source failed: {error}")
    for failure in report.recipient_failures:
        ctx.err.print(f"recipient failed: {failure}")
    if report.outcome == "failed":
        raise SystemExit(1)
    if report.source_errors or report.recipient_failures or report.outcome == "partial":
        raise SystemExit(PARTIAL)


# -- preview, serve, schedule, summarize -------------------------------------------------


@cli.command()
@period_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other machines can reach (they could read the draft and send tests).",
)
@pass_ctx
def preview(ctx: Context, period: str | None, host: str, port: int, allow_remote: bool) -> None:
    """A local web page of the draft that reloads itself when you edit it."""
    from .preview import check_host, serve_preview

    check_host(host, allow_remote)
    period = pipeline.period_or_current(ctx.settings, period)
    pipeline.load_issue(ctx.settings, ctx.store, period)  # fail now, clearly, if there is no draft
    ctx.console.print(
        f"Starting the preview of {period} on http://{host}:{port}/ (Ctrl-C to stop)."
    )
    serve_preview(ctx.settings, ctx.store, period, host=host, port=port, allow_remote=allow_remote)


@cli.command()
@click.option("--host", help="Address to bind (default: [web] host).")
@click.option("--port", type=int, help="Port to listen on (default: [web] port).")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """The public web endpoints: signup, preferences, one-click unsubscribe and the archive."""
    from .web import serve as serve_web

    settings = ctx.settings
    serve_web(settings, ctx.store, host or settings.web.host, port or settings.web.port)


@cli.command()
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="Log lines as plain text or as JSON lines.",
)
@pass_ctx
def schedule(ctx: Context, log_format: str) -> None:
    """Run `digest run` on the configured weekly schedule, until stopped."""
    from .logs import configure_logging
    from .schedule import run_scheduler

    configure_logging(log_format, logging.DEBUG if ctx.verbose else logging.INFO)
    run_scheduler(ctx.settings, ctx.store)


@cli.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between looks for due recipients when idle.",
)
@pass_ctx
def worker(ctx: Context, once: bool, poll: float) -> None:
    """Send any approved issue with due recipients, until stopped (SIGTERM, Ctrl-C).

    Several workers, on one or several machines, share the work on PostgreSQL;
    on SQLite one sends at a time. SIGTERM lets the messages in flight finish.
    """
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        pipeline.work(
            ctx.settings,
            ctx.store,
            stop=stop,
            poll_seconds=poll,
            once=once,
            on_report=lambda report: ctx.console.print(report.summary()),
        )
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--backend", help="Summarizer to use (default: [summarize] backend).")
@pass_ctx
def summarize(ctx: Context, file: Any, backend: str | None) -> None:
    """JSON lines of articles in (FILE or -), JSON lines of summaries and lessons out."""
    import dataclasses
    import os

    from .config import LLMSettings, SummarizeSettings
    from .summarize.jsonl import summarize_stream

    if find_config_path(ctx.config).is_file():
        settings = ctx.settings.summarize
    else:  # trying the summarizer on a text needs no config file
        try:
            timeout = float(os.environ.get("DIGEST_LLM_TIMEOUT", "") or LLMSettings.timeout)
        except ValueError:
            raise DigestError("environment: DIGEST_LLM_TIMEOUT must be seconds") from None
        llm = LLMSettings(
            base_url=os.environ.get("DIGEST_LLM_BASE_URL", ""),
            model=os.environ.get("DIGEST_LLM_MODEL", ""),
            api_key=os.environ.get("DIGEST_LLM_API_KEY", ""),
            timeout=timeout,
        )
        settings = SummarizeSettings(llm=llm)
    if backend:
        settings = dataclasses.replace(settings, backend=backend)

    def progress(done: int, total: int, article: Any) -> None:
        # A model on a CPU takes minutes an article: say where it is, on stderr.
        click.echo(f"summarized: {article.title or '(untitled)'}", err=True)

    remote = settings.backend != "extractive"
    summarize_stream(file, sys.stdout, settings, progress=progress if remote else None)


# -- subscribers ---------------------------------------------------------------------------


@cli.group()
def subscribers() -> None:
    """The subscriber list: import, export, list, unsubscribe, delete."""


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def subscribers_import(ctx: Context, file: Path) -> None:
    """Import (or update) subscribers from a CSV file."""
    from .subscribers import import_csv

    report = import_csv(ctx.store, file)
    duplicates = f", {report.duplicates} duplicate row(s) merged" if report.duplicates else ""
    ctx.console.print(
        f"{report.added} added, {report.updated} updated, {report.skipped} kept as they were, "
        f"{len(report.errors)} rejected{duplicates}."
    )
    for row in report.folded_names:
        ctx.err.print(
            f"{file}: row {row}: the name held a line break; imported on one line, check it"
        )
    for row, reason in report.errors:
        ctx.err.print(f"{file}: row {row}: {reason}")
    if report.errors:
        raise SystemExit(PARTIAL)


@subscribers.command("list")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced"]))
@pass_ctx
def subscribers_list(ctx: Context, status: str | None) -> None:
    """List subscribers, optionally by status."""
    from .subscribers import list_subscribers

    rows = list_subscribers(ctx.store, status)
    table = Table("email", "name", "language", "status", "tags")
    for column in table.columns:  # never cut a value short with an ellipsis
        column.overflow = "fold"
    # an address folded across two lines cannot be copied: it keeps its whole width
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(s.email) for s in rows), default=5)
    for s in rows:
        table.add_row(
            *(Text(v) for v in (s.email, s.name, s.language, s.status, ", ".join(s.tags)))
        )
    ctx.console.print(table)
    ctx.console.print(f"{len(rows)} subscriber(s).")


@subscribers.command("export")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
@pass_ctx
def subscribers_export(ctx: Context, out: Path | None) -> None:
    """Export the list as CSV (spreadsheet-safe)."""
    from .subscribers import export_csv

    if out is None:
        export_csv(ctx.store, sys.stdout)
    else:
        with out.open("w", encoding="utf-8", newline="") as handle:
            export_csv(ctx.store, handle)


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_ctx
def subscribers_unsubscribe(ctx: Context, email: str) -> None:
    """Unsubscribe one address."""
    from .subscribers import unsubscribe

    unsubscribe(ctx.store, email)
    ctx.console.print(f"{email} unsubscribed.")


@subscribers.command("delete")
@click.argument("email")
@pass_ctx
def subscribers_delete(ctx: Context, email: str) -> None:
    """Erase one person, keeping only a hash so a re-import does not bring them back."""
    from .subscribers import delete

    delete(ctx.store, email)
    ctx.console.print(f"{email} deleted.")


# -- bounces ----------------------------------------------------------------------------------


@cli.command()
@click.option("--imap", "imap", metavar="URL", help="imaps://user@host[:port]/FOLDER.")
@click.option("--maildir", "maildir", type=click.Path(path_type=Path), help="A Maildir folder.")
@click.option("--mbox", "mbox", type=click.Path(path_type=Path), help="An mbox file.")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@pass_ctx
def bounces(
    ctx: Context, imap: str | None, maildir: Path | None, mbox: Path | None, dry_run: bool
) -> None:
    """Read bounces, complaints and mailto unsubscribes from a mailbox; update the list."""
    from .bounces import open_source, process

    source = open_source(ctx.settings, imap=imap, maildir=maildir, mbox=mbox)
    try:
        report = process(ctx.settings, ctx.store, source, dry_run=dry_run)
    finally:
        source.close()
    if report.outcomes:
        table = Table("message", "kind", "subscriber", "action")
        for o in report.outcomes:
            table.add_row(Text(o.message), o.kind, Text(o.subscriber), Text(o.action))
        ctx.console.print(table)
    ctx.console.print(report.summary())


# -- status, mailbox, demo --------------------------------------------------------------------


@cli.command()
@pass_ctx
def status(ctx: Context) -> None:
    """Last and next run, source health, delivery counts."""
    settings, store = ctx.settings, ctx.store
    last = runs.last(store)
    if last:
        ctx.console.print(
            f"Last run: {last['period']} started {_local(settings, last['started_at'])}: "
            f"{last['outcome'] or 'running'} ({last['detail']})"
        )
    else:
        ctx.console.print("Last run: never.")
    holder = locks.holder(store, "schedule")
    ctx.console.print(f"Scheduler: {'running (' + holder + ')' if holder else 'not running'}")
    next_fire = _next_fire_time(settings, store)
    ctx.console.print(
        "Next run: "
        + (_local(settings, next_fire) if next_fire else "not scheduled (start `digest schedule`)")
    )
    issue = issues.latest(store)
    if issue:
        counts = issues.delivery_counts(store, issue.period)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        ctx.console.print(f"Latest issue: {issue.period} ({issue.status}), deliveries: {summary}.")
        senders = issues.live_senders(store, issue.period)
        if senders:
            listed = ", ".join(f"{who} ({rate:.1f} msg/s)" for who, rate in sorted(senders.items()))
            ctx.console.print(f"Senders: {listed}.")
            left = sum(counts.get(k, 0) for k in ("queued", "sending", "awaiting_reply"))
            total_rate = sum(senders.values())
            if left and total_rate:
                ctx.console.print(f"ETA: about {max(1, round(left / total_rate / 60))} min.")
    table = Table("source", "last success", "last error", "failures in a row", title="Sources")
    for row in articles.source_states(store):
        table.add_row(
            Text(row["name"]),
            _local(settings, row["last_success_at"]) if row["last_success_at"] else "never",
            Text(row["last_error"] or ""),
            str(row["consecutive_failures"] or 0),
        )
    ctx.console.print(table)


def _next_fire_time(settings: Settings, store: Store) -> dt.datetime | None:
    try:
        from .schedule import next_fire_time
    except ImportError:
        return None
    return next_fire_time(settings, store)


def _local(settings: Settings, moment: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(settings.newsletter.timezone)).strftime("%Y-%m-%d %H:%M %Z")


@cli.command()
@click.option("--port", default=1025, show_default=True, help="Port to listen on (127.0.0.1).")
@click.option(
    "--dir",
    "folder",
    default="outbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where .eml files go.",
)
@pass_ctx
def mailbox(ctx: Context, port: int, folder: Path) -> None:
    """A capture SMTP server: every message it receives becomes an .eml file."""
    import threading

    from .capture import CaptureServer

    box = CaptureServer(folder, port=port, on_message=lambda p: ctx.console.print(f"captured {p}"))
    try:
        box.start()
    except OSError as exc:
        raise DigestError(
            f"cannot listen on 127.0.0.1:{port}: {exc}", hint="choose another --port"
        ) from None
    ctx.console.print(f"Capturing mail on 127.0.0.1:{box.port} into {folder}/ (Ctrl-C to stop).")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()


@cli.command()
@click.option(
    "--subscribers",
    "subscribers_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Subscriber CSV to import first (default: subscribers.example.csv near the config).",
)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where captured messages go (default: outbox/ beside the config).",
)
@pass_ctx
def demo(ctx: Context, subscribers_file: Path | None, outbox: Path | None) -> None:
    """Run the whole pipeline once into a built-in capture mailbox (nothing leaves this machine)."""
    from .demo import run_demo

    code = run_demo(ctx.settings, ctx.store, ctx.console, subscribers_file, outbox)
    if code:
        raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return its exit code instead of exiting (tests call this in-process)."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None, prog_name="digest", standalone_mode=False
        )
    except DigestError as exc:
        make_console(stderr=True).print(Text("error:", style="red"), str(exc))
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except click.UsageError as exc:
        # a misspelt command or option is wrong input (exit 1); click's own 2 would
        # say "partial failure" to a script reading our exit codes
        exc.show()
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
