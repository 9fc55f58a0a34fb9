"""Errors that reach the user.

Every error the user can fix is a ``DigestError``: its message says what is wrong
and, where there is one, how to fix it. The CLI turns it into one line on stderr
and the exit code it carries; anything else escaping is a bug.

    DigestError                 exit 1: the user's input is wrong
    ├── ConfigError             the config file or environment (names file and key)
    ├── StoreError              the database cannot be opened or is too new
    ├── SubscriberError         a subscriber CSV or address
    ├── TemplateError           a template that cannot be compiled (names file and line)
    ├── IssueError              no such issue, not approved, already sent
    ├── LockedError             another process holds the lock
    ├── SummarizerError         an unknown backend or unusable input
    └── DeliveryError           the SMTP server cannot be reached or refuses us
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DigestError",
    "IssueError",
    "LockedError",
    "StoreError",
    "SubscriberError",
    "SummarizerError",
    "TemplateError",
]


class DigestError(Exception):
    """An error the user can act on; ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(DigestError):
    pass


class StoreError(DigestError):
    pass


class SubscriberError(DigestError):
    pass


class TemplateError(DigestError):
    pass


class IssueError(DigestError):
    pass


class LockedError(DigestError):
    pass


class SummarizerError(DigestError):
    pass


class DeliveryError(DigestError):
    pass
