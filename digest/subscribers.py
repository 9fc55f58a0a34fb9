"""The subscriber list: CSV import and export, validation, unsubscribe and erasure.

Addresses are validated with email-validator (syntax only: no DNS, so importing
works offline) and normalized: the domain lower-cased and turned into its ASCII
(IDNA) form, the local part kept as written, since only the receiving server may
interpret it. Two addresses that differ only by case are the same person here,
though: nobody wants the digest twice because a spreadsheet capitalised a name.

Three rules protect people who left:

* re-importing a CSV never resubscribes someone who unsubscribed or bounced;
* ``delete`` erases a person and keeps only a keyed hash of the address in
  ``suppressions``, so a later import of an old CSV cannot bring them back;
* the hash key is random and lives in the database (``meta``), not in the
  environment: a rotated or missing ``DIGEST_SECRET_KEY`` must not silently
  reopen the door to people who asked to be forgotten.

Unsubscribe tokens are 128 random bits (``secrets.token_urlsafe(16)``) stored
with the subscriber. Random rather than derived from ``DIGEST_SECRET_KEY``: the
link in an email sent last year must keep working after the key is rotated.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from email_validator import EmailNotValidError, validate_email

from .config import Settings
from .db import Connection, Store
from .db import subscribers as subscriber_rows
from .errors import SubscriberError
from .models import Subscriber

__all__ = [
    "ImportReport",
    "RowError",
    "confirm_signup",
    "delete",
    "signup_link_used",
    "export_csv",
    "import_csv",
    "list_subscribers",
    "normalize_email",
    "sample_subscriber",
    "suppression_hash",
    "unsubscribe",
]

COLUMNS = ("email", "name", "language", "tags", "status")
IMPORT_STATUSES = ("active", "unsubscribed")
MAX_NAME = 200
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
_TAG_SPLIT = re.compile(r"[;|,]")
# Characters a spreadsheet treats as the start of a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Bidirectional overrides can make a name display as something else; never useful in a name.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


class RowError(NamedTuple):
    """A rejected row: its number as a spreadsheet shows it (the header is row 1), and why."""

    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    """Rows whose address appeared earlier in the same file (merged into the first)."""
    kept_unsubscribed: int = 0
    """Rows asking for ``active`` for someone who unsubscribed or bounced: left as they were."""
    unsubscribed: int = 0
    """Existing subscribers the file marked ``unsubscribed``."""
    suppressed: int = 0
    """Rows for people who were deleted: not imported."""
    errors: list[RowError] = field(default_factory=list)
    folded_names: list[int] = field(default_factory=list)
    """Rows whose name held a line break, joined into one line: worth a look (a header
    injection attempt, or a spreadsheet cell with two lines)."""

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged

    @property
    def skipped(self) -> int:
        """Valid rows that changed nothing: unchanged, left unsubscribed, or deleted earlier."""
        return self.unchanged + self.kept_unsubscribed + self.suppressed

    def summary(self) -> str:
        parts = [
            f"{self.rows} rows",
            f"{self.added} added",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates merged")
        if self.unsubscribed:
            parts.append(f"{self.unsubscribed} unsubscribed")
        if self.kept_unsubscribed:
            parts.append(f"{self.kept_unsubscribed} left unsubscribed or bounced")
        if self.suppressed:
            parts.append(f"{self.suppressed} deleted earlier, not re-imported")
        if self.errors:
            parts.append(f"{len(self.errors)} rejected")
        return ", ".join(parts)


# -- normalization ------------------------------------------------------------------------


def normalize_email(address: str) -> str:
    """The address as stored: local part as written, domain lower-case ASCII (IDNA).

    Raises ``SubscriberError`` with email-validator's explanation when invalid.
    """
    address = address.strip()
    if any(ch in address for ch in "\r\n\0"):
        raise SubscriberError(f"invalid address {address!r}: it contains a line break")
    local, at, domain = address.rpartition("@")
    if at and _SIMPLE_LOCAL.match(local):
        # The common case, fast: a plain dot-atom local part (which email-validator
        # always accepts) and a domain checked by email-validator once per domain.
        ascii_domain = _checked_domain(domain)
        if ascii_domain is not None:
            normalized = f"{local}@{ascii_domain}"
            if len(normalized) <= 254:
                return normalized
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid address {address!r}: {exc}") from None
    return f"{result.local_part}@{result.ascii_domain}"


_SIMPLE_LOCAL = re.compile(r"^[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*$")


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The domain's ASCII form if email-validator accepts it, else None (slow path)."""
    if len(domain) > 253:
        return None
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain
    except EmailNotValidError:
        return None


def _key(normalized: str) -> str:
    """What makes two addresses the same person (case-insensitive)."""
    return normalized.casefold()


def clean_name(name: str) -> str:
    """A display name safe for a header and a page: no control characters, one line."""
    if name.isprintable() and name.isascii():
        return " ".join(name.split())[:MAX_NAME]
    kept = []
    for ch in name:
        if ch in _BIDI:
            continue
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            kept.append(" ")  # a line break between two words becomes a space
        else:
            kept.append(ch)
    return " ".join("".join(kept).split())[:MAX_NAME]


def _clean_tags(raw: str) -> tuple[str, ...]:
    tags: list[str] = []
    for part in _TAG_SPLIT.split(raw):
        tag = clean_name(part)
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _unformula(cell: str) -> str:
    """Undo ``export_csv``'s neutralisation, so an export imports back unchanged."""
    if cell.startswith("'") and cell[1:2] and cell[1] in _FORMULA_START:
        return cell[1:]
    return cell


# -- suppression --------------------------------------------------------------------------


def suppression_hash(store: Store, address: str) -> str:
    """HMAC-SHA256 of the normalized, case-folded address (hex)."""
    return _hash(subscriber_rows.suppression_key(store), _key(normalize_email(address)))


def _hash(key: bytes, folded: str) -> str:
    return hmac.new(key, folded.encode("utf-8"), hashlib.sha256).hexdigest()


# -- import -------------------------------------------------------------------------------


@dataclass
class _Row:
    row: int
    email: str
    name: str
    language: str
    tags: tuple[str, ...]
    status: str


def _open_text(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SubscriberError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubscriberError(
            f"{path}: not UTF-8 text (byte {exc.start})",
            hint="save the file as 'CSV UTF-8' from your spreadsheet",
        ) from None


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """Comma by default; semicolon when the header uses it (French spreadsheets do)."""
    header = text.split("\n", 1)[0]
    if ";" in header and "," not in header:

        class Semicolon(csv.excel):
            delimiter = ";"

        return Semicolon
    return csv.excel


def _parse(path: str | Path, report: ImportReport, default_language: str) -> list[_Row]:
    text = _open_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    try:
        header = next(reader)
    except StopIteration:
        raise SubscriberError(f"{path}: the file is empty", hint=_COLUMNS_HINT) from None
    except csv.Error as exc:
        raise SubscriberError(f"{path}: not a CSV file: {exc}", hint=_COLUMNS_HINT) from None
    columns = [h.strip().lower() for h in header]
    if "email" not in columns:
        raise SubscriberError(f"{path}: no 'email' column in the header", hint=_COLUMNS_HINT)
    unknown = [c for c in columns if c and c not in COLUMNS]
    if unknown:
        raise SubscriberError(f"{path}: unknown column {unknown[0]!r}", hint=_COLUMNS_HINT)
    index = {name: columns.index(name) for name in COLUMNS if name in columns}

    rows: list[_Row] = []
    number = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            number += 1
            report.rows += 1
            report.errors.append(RowError(number, f"unreadable CSV: {exc}"))
            continue
        number += 1
        if not any(c.strip() for c in cells):
            continue  # blank lines are not rows anyone meant
        report.rows += 1

        def cell(name: str, cells: list[str] = cells) -> str:
            i = index.get(name)
            return _unformula(cells[i].strip()) if i is not None and i < len(cells) else ""

        raw_email = cell("email")
        try:
            email = normalize_email(raw_email)
        except SubscriberError as exc:
            reason = "missing address" if not raw_email else exc.message
            report.errors.append(RowError(number, reason))
            continue
        language = cell("language").lower().replace("_", "-") or default_language
        if not _LANGUAGE.match(language):
            report.errors.append(
                RowError(number, f"invalid language {language!r} (use a code like fr or en)")
            )
            continue
        status = cell("status").lower() or "active"
        if status not in IMPORT_STATUSES:
            report.errors.append(
                RowError(number, f"invalid status {status!r} (active or unsubscribed)")
            )
            continue
        raw_name = cell("name")
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in raw_name):
            report.folded_names.append(number)
        rows.append(
            _Row(number, email, clean_name(raw_name), language, _clean_tags(cell("tags")), status)
        )
    return rows


_COLUMNS_HINT = "the first line must name the columns: email,name,language[,tags][,status]"


def _merge(rows: list[_Row], report: ImportReport) -> dict[str, _Row]:
    """One row per person: first non-empty values win, tags add up, unsubscribed sticks."""
    merged: dict[str, _Row] = {}
    for row in rows:
        key = _key(row.email)
        first = merged.get(key)
        if first is None:
            merged[key] = row
            continue
        report.duplicates += 1
        first.name = first.name or row.name
        first.tags = first.tags + tuple(t for t in row.tags if t not in first.tags)
        if row.status == "unsubscribed":
            first.status = "unsubscribed"
    return merged


def import_csv(store: Store, path: str | Path, *, default_language: str = "fr") -> ImportReport:
    """Import a subscriber CSV; bad rows are reported (row number, reason), good rows kept.

    Columns: ``email,name,language[,tags][,status]`` in any order, comma or
    semicolon separated; tags separated by ``;`` or ``|``; status ``active`` or
    ``unsubscribed``. Importing is idempotent and never resubscribes anyone.
    """
    report = ImportReport()
    wanted = _merge(_parse(path, report, default_language), report)
    key = subscriber_rows.suppression_key(store)
    with store.begin() as conn:
        suppressed = subscriber_rows.suppressed(conn)
        existing = {_key(found.email): found for found in subscriber_rows.known(conn)}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for folded, row in wanted.items():
            old = existing.get(folded)
            if old is None:
                if suppressed and _hash(key, folded) in suppressed:
                    report.suppressed += 1
                    continue
                inserts.append(
                    {
                        "email": row.email,
                        "name": row.name,
                        "language": row.language,
                        "status": row.status,
                        "tags": ",".join(row.tags),
                    }
                )
                report.added += 1
                continue
            status = old.status
            if row.status == "unsubscribed" and old.status == "active":
                status = "unsubscribed"
                report.unsubscribed += 1
            elif row.status == "active" and old.status != "active":
                report.kept_unsubscribed += 1
            values = {
                "name": row.name or old.name,
                "language": row.language,
                "tags": ",".join(row.tags) if row.tags else old.tags,
                "status": status,
            }
            if all(values[k] == getattr(old, k) for k in values):
                report.unchanged += 1
                continue
            report.updated += 1
            updates.append({"id": old.id, **values})
        subscriber_rows.add_many(conn, inserts)
        subscriber_rows.update_many(conn, updates)
    return report


# -- export and list ----------------------------------------------------------------------


def _neutralise(cell: str) -> str:
    """Make a cell inert in a spreadsheet: a leading formula character gets a quote."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _export_rows(store: Store) -> Iterator[list[str]]:
    yield list(COLUMNS)
    for sub in subscriber_rows.listed(store):
        yield [
            _neutralise(v)
            for v in (sub.email, sub.name, sub.language, ";".join(sub.tags), sub.status)
        ]


def export_csv(store: Store, out: str | Path | IO[str]) -> int:
    """Write every subscriber as CSV (UTF-8, the import's columns); return the count.

    Cells starting with ``= + - @``, a tab or a carriage return are prefixed with
    ``'`` so a spreadsheet shows them instead of running them; ``import_csv``
    removes that quote again.
    """
    if isinstance(out, str | Path):
        with open(out, "w", encoding="utf-8", newline="") as handle:
            return export_csv(store, handle)
    writer = csv.writer(out)
    count = -1
    for row in _export_rows(store):
        writer.writerow(row)
        count += 1
    return count


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    if status is not None and status not in ("active", "unsubscribed", "bounced"):
        raise SubscriberError(
            f"unknown status {status!r}", hint="use active, unsubscribed or bounced"
        )
    return subscriber_rows.listed(store, status)


def _find(conn: Connection, address: str) -> Subscriber | None:
    return subscriber_rows.find(conn, _key(normalize_email(address)), _key)


def find_subscriber(store: Store, address: str) -> Subscriber | None:
    """The subscriber of ``address`` (spelt as the list has it or not), whatever their status."""
    with store.connect() as conn:
        return _find(conn, address)


def unsubscribe(store: Store, email: str) -> bool:
    """Unsubscribe ``email``; True if it was active. Unknown addresses raise."""
    with store.begin() as conn:
        found = _find(conn, email)
        if found is None or found.id is None:
            raise SubscriberError(f"no subscriber {email}")
        return subscriber_rows.unsubscribe(conn, found.id)


def delete(store: Store, email: str) -> bool:
    """Erase a subscriber (and their delivery rows); keep only the suppression hash.

    Returns False when there was nobody to erase (the hash is recorded anyway,
    so an address mentioned in a deletion request stays out of future imports).
    """
    digest = suppression_hash(store, email)
    with store.begin() as conn:
        found = _find(conn, email)
        subscriber_rows.erase(conn, None if found is None else found.id, digest)
    return found is not None


def sample_subscriber(settings: Settings, store: Store) -> tuple[Subscriber, str]:
    """The first active subscriber and their token, or a stand-in when the list is empty.

    For ``digest render --out``: the ``.eml`` shows what a real subscriber gets.
    """
    found = subscriber_rows.first_active(store)
    if found is None:
        return Subscriber(email="lectrice@example.org", name="Camille"), "exampletoken0000"
    return found


# -- signup (digest serve) ----------------------------------------------------------------


def confirm_signup(
    store: Store, email: str, name: str, language: str, consent: subscriber_rows.Consent
) -> tuple[Subscriber, str] | None:
    """Subscribe ``email`` after a confirmed link, with their token; None if the link was used.

    Whoever the address belonged to (nobody, someone who unsubscribed, bounced
    or was erased), a confirmed link is a new, explicit consent: the only way
    back onto the list from the web.
    """
    with store.begin() as conn:
        if subscriber_rows.consent_used(conn, consent.nonce):
            return None
        return subscriber_rows.confirm_signup(
            conn, normalize_email(email), clean_name(name), language, consent, _key
        )


def signup_link_used(store: Store, nonce: str) -> bool:
    """Whether the confirmation link carrying ``nonce`` has already subscribed someone."""
    with store.connect() as conn:
        return subscriber_rows.consent_used(conn, nonce)
