"""The error family of Sender's core.

Every error a user can cause (bad config, bad input, a missing or conflicting
thing) is a `SenderError` with a message that names what was wrong. The CLI
prints the message on one line and exits 1; the HTTP API answers
`{"error": {"code", "message"}}` with `http_status`.
"""

from __future__ import annotations


class SenderError(Exception):
    """Base of every user-facing error raised by the core."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field  # the offending input field, where one is to blame

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class ConfigError(SenderError):
    """The TOML config is missing, unreadable, or breaks the schema."""

    code = "config_invalid"
    http_status = 500


class InvalidInput(SenderError):
    """A value given by the user (CLI argument, API payload) is not allowed."""

    code = "invalid_input"
    http_status = 400


class NotFound(SenderError):
    code = "not_found"
    http_status = 404


class Conflict(SenderError):
    """The change would break a rule of the current state (duplicate slug, cycle, …)."""

    code = "conflict"
    http_status = 409


class StoreError(SenderError):
    """The SQLite store cannot be opened, migrated or written."""

    code = "store_error"
    http_status = 503


class Unauthorized(SenderError):
    code = "unauthorized"
    http_status = 401
