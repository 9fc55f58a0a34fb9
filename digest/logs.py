"""Log output for the long-running commands: plain lines with timestamps, or JSON lines.

The scheduler and ``digest serve`` run unattended; JSON lines let a log collector
index the run id, the period and the outcome without parsing messages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from .errors import ConfigError

__all__ = ["PLAIN_FORMAT", "JsonLogFormatter", "configure_logging"]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log collectors; run id and period as fields."""

    FIELDS = ("run_id", "period", "outcome")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(fmt: str = "plain", level: int = logging.INFO) -> None:
    """Plain lines with timestamps (the default), or JSON lines (``--log-format json``)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    elif fmt == "plain":
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        raise ConfigError(f"unknown log format {fmt!r}", hint="use plain or json")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
