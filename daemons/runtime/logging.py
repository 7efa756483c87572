"""Daemon logging to stderr in a journald-friendly form.

Under systemd (JOURNAL_STREAM set) each line starts with a syslog priority prefix (`<6>`), which
journald turns into the entry's priority; elsewhere a timestamp and level. Context such as the
stream and generation is appended as `key=value` fields, so `journalctl | grep generation=…`
finds one broadcast. Secrets are never passed here.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class FieldsFormatter(logging.Formatter):
    def __init__(self, journald: bool):
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        text = record.getMessage()
        if fields:
            text += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {text}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<7} {record.name}: {text}"


def _quote(v: object) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger("sender")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"sender.{name}")


def log(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    """Log with `key=value` fields (stream=…, generation=…, remote=…)."""
    logger.log(level, message, extra={"fields": fields})
