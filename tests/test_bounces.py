"""``digest bounces``: bounces, complaints and mailto unsubscribes clean the list.

Real mailboxes: Maildir and mbox folders on disk, and Dovecot serving IMAP on
loopback (skipped with a message when Debian's ``dovecot-imapd`` is missing).
The samples in ``bounce_samples/`` reproduce what Postfix, Exim, Gmail and
Microsoft 365 send, an out-of-office reply, an ARF complaint and a mailto
unsubscribe; each test says which subscriber changed and how.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import token_of

from digest import dsn
from digest.cli import main
from digest.compose import MessageFactory
from digest.config import load_settings
from digest.db import Store, schema
from digest.errors import ConfigError
from digest.subscribers import import_csv, list_subscribers

SAMPLES = Path(__file__).parent / "bounce_samples"
BASE_URL = "https://lettre.example.org"
RETURN_BASE = "bounces@lettre.example.org"
SENDER = "veille@lettre.example.org"

# sample file → the subscriber it is about
PEOPLE = {
    "postfix-hard": "paul.postfix@destination.example.net",
    "exim-hard": "emma.exim@destination.example.net",
    "gmail-delay": "gaston.gmail@gmail.example",
    "microsoft-hard": "mona.microsoft@destination.example.net",
    "out-of-office": "camille.absente@destination.example.net",
    "arf-complaint": "alice.complaint@mailbox.example",
    "mailto-unsubscribe": "marc.mailto@destination.example.net",
    "malformed-report": "bruno.broken@destination.example.net",
}
BYSTANDER = "zoe.bystander@destination.example.net"

EXPECTED = {
    "postfix-hard": "bounced",
    "exim-hard": "bounced",
    "microsoft-hard": "bounced",
    "gmail-delay": "active",  # one soft bounce of three
    "out-of-office": "active",
    "arf-complaint": "unsubscribed",
    "mailto-unsubscribe": "unsubscribed",
    "malformed-report": "active",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(
        f"""
[newsletter]
from_address = "{SENDER}"

[database]
url = "sqlite:///digest.db"

[web]
base_url = "{BASE_URL}"

[bounces]
return_path = "{RETURN_BASE}"
soft_limit = 3
""",
        encoding="utf-8",
    )
    csv = tmp_path / "list.csv"
    rows = [*PEOPLE.values(), BYSTANDER]
    csv.write_text("email,name,language\n" + "".join(f"{a},,fr\n" for a in rows), "utf-8")
    store = Store(load_settings(path).database.url)
    import_csv(store, csv)
    store.close()
    return path


@pytest.fixture
def store(config: Path) -> Iterator[Store]:
    store = Store(load_settings(config).database.url)
    yield store
    store.close()


def statuses(store: Store) -> dict[str, str]:
    return {s.email: s.status for s in list_subscribers(store)}


def sample(
    name: str, store: Store, *, address: str = "", token: str = "", verp: bool = True
) -> bytes:
    """A sample filled in for its subscriber (or the ``address``/``token`` given)."""
    address = address or PEOPLE[name]
    token = token or token_of(store, address)
    original = (SAMPLES / "original-headers.txt").read_text(encoding="utf-8")
    text = (SAMPLES / f"{name}.eml").read_text(encoding="utf-8").replace("@ORIGINAL@", original)
    envelope = dsn.return_path(RETURN_BASE, token) if verp else SENDER
    for marker, value in (
        ("@ADDRESS@", address),
        ("@TOKEN@", token),
        ("@RETURN@", envelope),
        ("@BASE@", BASE_URL),
    ):
        text = text.replace(marker, value)
    return text.encode("utf-8")


def maildir_with(path: Path, messages: dict[str, bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for data in messages.values():
        box.add(data)
    box.close()
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "bounces", *args])


def events(store: Store) -> list[tuple[str, str]]:
    table = schema.bounce_events
    with store.connect() as conn:
        rows = conn.execute(sa.select(table.c.kind, table.c.action).order_by(table.c.id))
        return [(str(k), str(a)) for k, a in rows]


# -- every kind, from a Maildir -------------------------------------------------------------


def test_each_sample_changes_its_subscriber_and_no_one_else(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = maildir_with(tmp_path / "Maildir", {n: sample(n, store) for n in PEOPLE})
    assert run(config, "--maildir", str(folder)) == 0
    out = capsys.readouterr().out

    found = statuses(store)
    assert {name: found[PEOPLE[name]] for name in PEOPLE} == EXPECTED
    assert found[BYSTANDER] == "active"
    assert "p***@destination.example.net" in out  # masked in the report
    assert PEOPLE["postfix-hard"] not in out
    assert "soft bounce 1 of 3" in out
    assert "left untouched: an automatic reply" in out
    assert "left untouched: a malformed delivery report" in out
    assert sorted(k for k, _ in events(store)) == [
        "complaint",
        "hard_bounce",
        "hard_bounce",
        "hard_bounce",
        "soft_bounce",
        "unsubscribe",
    ]
    # processed messages moved aside; the two not understood stay where they were
    box = mailbox.Maildir(folder, create=False)
    assert len(box) == 2
    assert len(box.get_folder("processed")) == 6
    left = {box.get_bytes(k) for k in box.iterkeys()}
    assert left == {sample("out-of-office", store), sample("malformed-report", store)}


def test_a_second_run_counts_nothing_twice(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delay = sample("gmail-delay", store)
    mbox_path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(mbox_path)
    box.add(delay)
    box.add(delay.replace(b"Date: Mon, 23 Nov", b"Date: Tue, 24 Nov"))
    box.close()
    assert run(config, "--mbox", str(mbox_path)) == 0
    assert run(config, "--mbox", str(mbox_path)) == 0  # the mbox is not rewritten
    out = capsys.readouterr().out
    assert "processed by an earlier run" in out
    assert [k for k, _ in events(store)] == ["soft_bounce", "soft_bounce"]
    assert statuses(store)[PEOPLE["gmail-delay"]] == "active"

    box = mailbox.mbox(mbox_path)
    box.add(delay.replace(b"Date: Mon, 23 Nov", b"Date: Wed, 25 Nov"))
    box.close()
    assert run(config, "--mbox", str(mbox_path)) == 0
    assert "suppressed after 3 soft bounces" in capsys.readouterr().out
    assert statuses(store)[PEOPLE["gmail-delay"]] == "bounced"


def test_dry_run_changes_nothing(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = maildir_with(tmp_path / "Maildir", {n: sample(n, store) for n in PEOPLE})
    before = statuses(store)
    files = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert run(config, "--maildir", str(folder), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would be suppressed" in out and "would be unsubscribed" in out
    assert out.rstrip().splitlines()[-1].startswith("Dry run, nothing changed")
    assert statuses(store) == before
    assert events(store) == []
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == files


# -- bad input --------------------------------------------------------------------------------


def test_a_bounce_for_an_unknown_recipient_changes_nobody(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = statuses(store)
    stranger = sample(
        "postfix-hard", store, address="nobody@else.example", token=secrets.token_urlsafe(16)
    )
    folder = maildir_with(tmp_path / "Maildir", {"stranger": stranger})
    assert run(config, "--maildir", str(folder)) == 0
    assert "unknown recipient: nothing changed" in capsys.readouterr().out
    assert statuses(store) == before


def test_the_address_finds_the_subscriber_when_the_token_does_not(
    config: Path, store: Store, tmp_path: Path
) -> None:
    address = PEOPLE["microsoft-hard"]
    shouted = address.upper().replace("@DESTINATION.EXAMPLE.NET", "@destination.example.net")
    bounce = sample("microsoft-hard", store, address=shouted, token=secrets.token_urlsafe(16))
    folder = maildir_with(tmp_path / "Maildir", {"ms": bounce})
    assert run(config, "--maildir", str(folder)) == 0
    assert statuses(store)[address] == "bounced"


def test_an_oversized_message_and_a_malformed_report_are_left_alone(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = statuses(store)
    folder = maildir_with(tmp_path / "Maildir", {"broken": sample("malformed-report", store)})
    big = folder / "new" / "1795000000.M1P1.huge"
    with big.open("wb") as handle:  # 50 MB: a bounce carrying a huge attachment
        handle.write(sample("postfix-hard", store).replace(b"\n\n", b"\nX-Pad: 1\n\n", 1))
        line = b"A" * 76 + b"\n"
        for _ in range(50 * 1024 * 1024 // len(line)):
            handle.write(line)
    assert run(config, "--maildir", str(folder)) == 0
    out = capsys.readouterr().out
    assert "over the 10000000-byte cap" in out
    assert "a malformed delivery report" in out
    assert statuses(store) == before
    assert big.exists() and len(list((folder / "new").iterdir())) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--maildir", "nowhere"], "not a Maildir folder"),
        (["--mbox", "missing.mbox"], "no such mbox file"),
        (["--maildir", ".", "--mbox", "x"], "give one mailbox"),
        (["--imap", "imap://user@mail.example.org/INBOX"], "would send the password in clear"),
        (["--imap", "imaps://user@127.0.0.1:1/INBOX"], "no IMAP password"),
        (["--imap", "imaps://user:hunter2@mail.example.org/"], "carries a password"),
        ([], "no bounce mailbox given"),
    ],
)
def test_a_wrong_mailbox_is_one_clear_line(
    config: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chdir(config.parent)
    assert run(config, *args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "hunter2" not in err


# -- the return path ---------------------------------------------------------------------------


def test_each_recipient_gets_its_own_return_path(config: Path, store: Store) -> None:
    from digest.models import RenderedIssue

    settings = load_settings(config)
    rendered = RenderedIssue(subject="s", preheader="p", html="<p>x</p>", text="x")
    factory = MessageFactory(rendered, settings)
    token = token_of(store, BYSTANDER)
    envelope = factory.envelope_sender(token)
    assert envelope == f"bounces+{token}@lettre.example.org"
    assert dsn.verp_token(f"<{envelope}>", RETURN_BASE) == token
    assert dsn.verp_token(f"other+{token}@lettre.example.org", RETURN_BASE) is None


def test_a_return_path_with_a_plus_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[bounces]\nreturn_path = "bounces+x@example.org"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="return_path"):
        load_settings(path)


# -- a real IMAP server -----------------------------------------------------------------------

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dovecot() -> Iterator[int]:
    """Dovecot on loopback with a throwaway config; user ``digest``, password ``secret``."""
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    import grp
    import pwd

    # Dovecot refuses to give mail access to root: as root, it runs as nobody.
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    home = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    home.chmod(0o755)
    port = _free_port()
    (home / "passwd").write_text("digest:{PLAIN}secret\n", encoding="utf-8")
    (home / "dovecot.conf").write_text(
        f"""
base_dir = {home}/run
state_dir = {home}/state
log_path = {home}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:{home}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {home}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={home}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""",
        encoding="utf-8",
    )
    if os.geteuid() == 0:
        shutil.chown(home, user, group)
        for path in home.iterdir():
            shutil.chown(path, user, group)
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(home / "dovecot.conf")],
        user=user if os.geteuid() == 0 else None,
        group=group if os.geteuid() == 0 else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # waits for readiness; no assertion on how long it took
            if process.poll() is not None:
                log = home / "dovecot.log"
                pytest.fail("dovecot did not start: " + (log.read_text() if log.exists() else ""))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def imap_client(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login("digest", "secret")
    client.select("INBOX")
    return client


def flags(client: imaplib.IMAP4) -> list[bytes]:
    _, data = client.uid("FETCH", "1:*", "(FLAGS)")
    return [d for d in data if isinstance(d, bytes)]


def test_imap_mailbox_on_a_real_server(
    config: Path,
    store: Store,
    dovecot: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = imap_client(dovecot)
    for name in PEOPLE:
        client.append("INBOX", None, None, sample(name, store))
    big = sample("exim-hard", store, address=BYSTANDER) + b"\n" + b"B" * 76 * 20_000
    client.append("INBOX", None, None, big)
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", "secret")
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "soft_limit = 3", "soft_limit = 3\nmax_message_bytes = 1000000"
        ),
        encoding="utf-8",
    )
    url = f"imap://digest@127.0.0.1:{dovecot}/INBOX"

    assert run(config, "--imap", url) == 0
    out = capsys.readouterr().out
    found = statuses(store)
    assert {name: found[PEOPLE[name]] for name in PEOPLE} == EXPECTED
    assert found[BYSTANDER] == "active"  # its bounce was over the size cap
    assert "over the 1000000-byte cap" in out

    client.logout()
    client = imap_client(dovecot)  # a fresh session: no unsolicited FETCH replies mixed in
    listed = flags(client)
    done = [f for f in listed if b"$DigestProcessed" in f]
    untouched = [f for f in listed if b"$DigestProcessed" not in f]
    assert len(done) == 6 and len(untouched) == 3
    assert all(b"\\Seen" not in f for f in untouched)  # read with PEEK: still unread

    assert run(config, "--imap", url) == 0
    second = capsys.readouterr().out
    assert "3 message(s)" in second  # only those left untouched are read again
    assert [k for k, _ in events(store)].count("soft_bounce") == 1
    client.logout()


def test_imap_wrong_password_is_one_clear_line(
    config: Path, dovecot: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", "not-the-password")
    assert run(config, "--imap", f"imap://digest@127.0.0.1:{dovecot}/INBOX") == 1
    err = capsys.readouterr().err
    assert "refused the login of digest" in err and "not-the-password" not in err


# -- classifying one message --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "status"),
    [
        ("postfix-hard", "hard_bounce", "5.1.1"),
        ("exim-hard", "hard_bounce", "5.0.0"),
        ("gmail-delay", "soft_bounce", "4.2.2"),
        ("microsoft-hard", "hard_bounce", "5.1.10"),
        ("arf-complaint", "complaint", ""),
        ("mailto-unsubscribe", "unsubscribe", ""),
        ("out-of-office", "not_understood", ""),
        ("malformed-report", "not_understood", ""),
    ],
)
def test_each_sample_is_classified_and_names_its_recipient(
    store: Store, name: str, kind: str, status: str
) -> None:
    import email

    token = token_of(store, PEOPLE[name])
    message = email.message_from_bytes(sample(name, store, verp=False))
    verdict = dsn.classify(
        message, return_base=RETURN_BASE, unsubscribe_address=SENDER, base_url=BASE_URL
    )
    assert (verdict.kind, verdict.status) == (kind, status)
    if kind in ("hard_bounce", "soft_bounce", "complaint"):
        # without VERP, the token comes back in the returned List-Unsubscribe header
        assert verdict.tokens == (token,)
    if kind in ("hard_bounce", "soft_bounce", "unsubscribe"):
        assert PEOPLE[name] in verdict.addresses


def test_another_sites_unsubscribe_link_is_no_token_of_ours(store: Store) -> None:
    import email

    raw = sample("postfix-hard", store, verp=False).replace(
        BASE_URL.encode(), b"https://other.example.com"
    )
    verdict = dsn.classify(email.message_from_bytes(raw), base_url=BASE_URL)
    assert verdict.kind == "hard_bounce" and verdict.tokens == ()


# -- on the schedule ---------------------------------------------------------------------------


def test_the_scheduler_hook_processes_the_configured_mailbox(
    config: Path, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.bounces import process_on_schedule

    maildir_with(tmp_path / "bounces", {"p": sample("postfix-hard", store)})
    assert process_on_schedule(load_settings(config), store) is None  # off by default
    assert statuses(store)[PEOPLE["postfix-hard"]] == "active"

    text = config.read_text(encoding="utf-8")
    config.write_text(text + 'maildir = "bounces"\non_schedule = true\n', encoding="utf-8")
    report = process_on_schedule(load_settings(config), store)
    assert report is not None and [o.kind for o in report.outcomes] == ["hard_bounce"]
    assert statuses(store)[PEOPLE["postfix-hard"]] == "bounced"

    config.write_text(text + 'maildir = "gone"\non_schedule = true\n', encoding="utf-8")
    assert process_on_schedule(load_settings(config), store) is None  # logged, not raised
    assert "not a Maildir folder" in caplog.text


def test_hostile_messages_are_left_untouched_without_a_traceback(
    config: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = b"".join(
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=A%d\n\n--A%d\n"
        % (i, i)
        for i in range(1200)
    )
    odd_complaint = (
        b"From: x@fbl.example\nContent-Type: multipart/report; report-type=feedback-report;"
        b" boundary=B\n\n--B\nContent-Type: message/feedback-report\n\n"
        b"Feedback-Type: abus\xc3\xa9\xff\nOriginal-Rcpt-To: caf\xe9@nowhere.example\n\n--B--\n"
    )
    junk = {"binary": bytes(range(256)) * 4, "nested": nested, "odd": odd_complaint, "empty": b""}
    before = statuses(store)
    folder = maildir_with(tmp_path / "Maildir", junk)
    assert run(config, "--maildir", str(folder)) == 0
    out = capsys.readouterr().out
    assert "more than 50 multipart sections" in out and "unknown recipient" in out
    assert statuses(store) == before


def test_an_older_database_gains_the_bounce_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.begin() as conn:  # as a database made before bounces existed
        conn.execute(sa.text("DROP TABLE bounce_events"))
        conn.execute(
            sa.update(schema.meta).where(schema.meta.c.key == "schema_version").values(value="1")
        )
    store.close()
    upgraded = Store(url)
    assert upgraded.schema_version() == schema.SCHEMA_VERSION
    assert events(upgraded) == []
    upgraded.close()


# -- the whole loop: send with VERP, the bounce comes back -------------------------------------


def test_a_send_uses_each_recipients_return_path_and_its_bounce_finds_them(
    config: Path, store: Store, smtp_capture: Any, tmp_path: Path
) -> None:
    import dataclasses

    from digest.config import SmtpSettings
    from digest.db import issues
    from digest.models import NAME_MARKER, UNSUBSCRIBE_MARKER, Issue, RenderedIssue
    from digest.send import send_issue

    settings = dataclasses.replace(
        load_settings(config), smtp=SmtpSettings(host="127.0.0.1", port=smtp_capture.port)
    )
    rendered = RenderedIssue(
        subject="La veille",
        preheader="Cette semaine",
        html=f"<p>Bonjour {NAME_MARKER}</p><a href='{UNSUBSCRIBE_MARKER}'>Se désabonner</a>",
        text=f"Bonjour {NAME_MARKER}\n{UNSUBSCRIBE_MARKER}\n",
    )
    issue = issues.save(
        store, Issue(period="2026-W48", title="La veille", intro="", items=(), status="sending")
    )
    assert send_issue(settings, store, issue, rendered).complete

    envelopes = {}
    for path in (tmp_path / "mailbox").glob("*.eml"):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0].decode()
        fields = dict(line.split(": ", 1) for line in head.split("\r\n") if ": " in line)
        envelopes[fields["X-Digest-Envelope-To"]] = fields["X-Digest-Envelope-From"]
    address = PEOPLE["postfix-hard"]
    assert envelopes[address] == f"bounces+{token_of(store, address)}@lettre.example.org"
    assert len(set(envelopes.values())) == len(envelopes)  # one return path each

    # a bounce that names no one but comes back to that address finds them
    bounce = sample(
        "postfix-hard", store, address="somebody@else.example", token="unknownunknown"
    ).replace(dsn.return_path(RETURN_BASE, "unknownunknown").encode(), envelopes[address].encode())
    folder = maildir_with(tmp_path / "Maildir", {"b": bounce})
    assert run(config, "--maildir", str(folder)) == 0
    assert statuses(store)[address] == "bounced"
