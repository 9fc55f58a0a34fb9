"""The one message ``digest serve`` sends itself: the signup confirmation.

It goes out through the one SMTP client (``digest.smtp``) and its policy (TLS verified, no
password in cleartext to a remote host), one connection per message: signups
are rare, and a connection held open by a web process would go stale.
``send_one`` is the only place the web pages send mail from.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from ..config import Settings
from ..errors import DeliveryError

__all__ = ["confirmation_message", "send_one"]


def confirmation_message(
    settings: Settings, to: str, subject: str, text: str, language: str
) -> EmailMessage:
    """A plain-text message from the newsletter's sender to ``to``."""
    news = settings.newsletter
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((news.from_name, news.from_address))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    domain = news.from_address.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders stay quiet
    if news.reply_to:
        message["Reply-To"] = news.reply_to
    message.set_content(text)
    message["Content-Language"] = language  # after set_content, which drops Content-* headers
    return message


def send_one(settings: Settings, message: EmailMessage) -> None:
    """Send one message to its ``To`` address; ``DeliveryError`` if it was not accepted."""
    from .. import smtp

    recipient = str(message["To"])
    try:
        refused = smtp.send_one(
            settings.smtp, settings.newsletter.from_address, [recipient], message.as_bytes()
        )
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"confirmation to {recipient} not sent: {exc}") from None
    if refused:
        raise DeliveryError(f"confirmation to {recipient} not sent: {refused[recipient]}")
