"""The scripted SMTP server and the send helpers ``test_send`` and its neighbours share.

``ScriptedServer`` is aiosmtpd with a handler whose answers a test sets per
address: 4xx/5xx at RCPT or at the end of DATA, a dropped connection before or
after the final dot, a slow answer, being down and coming back. Every accepted
message is kept with its envelope.

Imported by the test modules as ``from send_helpers import ...``, and by
``test_send``'s crash script (a separate process) as ``tests.send_helpers``, so it
imports nothing from ``tests/`` itself.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.capture import free_port
from digest.config import NewsletterSettings, SendSettings, Settings, SmtpSettings
from digest.db import Store, issues
from digest.models import NAME_MARKER, UNSUBSCRIBE_MARKER, Issue, RenderedIssue
from digest.subscribers import import_csv

RENDERED = RenderedIssue(
    subject="La veille — semaine 48",
    preheader="Cette semaine",
    html=f"<p>Bonjour {NAME_MARKER},</p><p>{'Texte. ' * 200}</p>"
    f'<a href="{UNSUBSCRIBE_MARKER}">Se désabonner</a>',
    text=f"Bonjour {NAME_MARKER},\n\nTexte.\n\nSe désabonner : {UNSUBSCRIBE_MARKER}\n",
)
PERIOD = "2026-W48"


# -- the scripted server ----------------------------------------------------------------


class Script:
    """What the server answers, per recipient; each list of answers is used up in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rcpt: dict[str, list[str]] = collections.defaultdict(list)
        self.data: dict[str, list[str]] = collections.defaultdict(list)
        self.accepted: list[tuple[list[str], bytes]] = []
        self.all_rcpt: list[str] = []
        self.data_delay = 0.0
        self.pipelining = False
        self.mail_answer = ""
        self.sessions = 0
        self.open_now = 0
        self.most_open = 0
        """SMTP sessions open at this moment, and the most ever open at once."""

    def next(self, table: dict[str, list[str]], address: str) -> str | None:
        with self.lock:
            answers = table.get(address)
            return answers.pop(0) if answers else None

    def received(self) -> collections.Counter[str]:
        return collections.Counter(r for rcpts, _ in self.accepted for r in rcpts)


class ScriptedHandler:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        session.host_name = hostname
        self.script.sessions += 1
        if self.script.pipelining:  # aiosmtpd reads commands in order: pipelining just works
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.script.mail_answer:
            return self.script.mail_answer
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.script.all_rcpt.append(address)
        answer = self.script.next(self.script.rcpt, address)
        if answer == "drop":
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.script.data_delay:
            await asyncio.sleep(self.script.data_delay)
        answer = None
        for address in envelope.rcpt_tos:
            answer = answer or self.script.next(self.script.data, address)
        if answer == "drop-after-dot":
            assert server.transport is not None
            server.transport.abort()
            return "250 never delivered to the client"
        if answer:
            return answer
        with self.script.lock:
            self.script.accepted.append((list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 OK queued"


class DroppingSMTP(SMTP):
    """Closes the connection in the middle of DATA for recipients scripted "drop-in-data"."""

    def __init__(self, handler: ScriptedHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.script = handler.script

    def connection_made(self, transport: Any) -> None:
        with self.script.lock:
            self.script.open_now += 1
            self.script.most_open = max(self.script.most_open, self.script.open_now)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        with self.script.lock:
            self.script.open_now -= 1
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        assert self.envelope is not None
        if any(self.script.next(self.script.data, f"{r}#mid") for r in self.envelope.rcpt_tos):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # some of the message, then gone
            assert self.transport is not None
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class ScriptedController(Controller):
    def factory(self) -> SMTP:
        return DroppingSMTP(self.handler, **self.SMTP_kwargs)


class ScriptedServer:
    def __init__(self, port: int | None = None, **kwargs: Any) -> None:
        self.script = Script()
        self.port = port or free_port()
        self.kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = ScriptedController(
            ScriptedHandler(self.script),
            hostname="127.0.0.1",
            port=self.port,
            data_size_limit=100_000_000,
            **self.kwargs,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# -- helpers ----------------------------------------------------------------------------


def make_settings(tmp_path: Path, port: int, **send: Any) -> Settings:
    return Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(from_address="veille@ecole.example"),
        smtp=SmtpSettings(host="127.0.0.1", port=port, timeout=5.0),
        send=SendSettings(**send),
    )


def make_store(tmp_path: Path, count: int, *, extra: str = "") -> tuple[Store, Issue]:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    rows = "".join(f"r{i:03d}@exemple.fr,Lecteur {i},fr\n" for i in range(count))
    csv_path = tmp_path / "subscribers.csv"
    csv_path.write_text("email,name,language\n" + rows + extra, encoding="utf-8")
    report = import_csv(store, csv_path)
    assert not report.errors
    issue = issues.save(
        store, Issue(period=PERIOD, title="La veille", intro="", items=(), status="sending")
    )
    return store, issue
