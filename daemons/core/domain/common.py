"""Small rules every domain module shares: ids, timestamps, names."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from daemons.core.errors import InvalidInput
from daemons.media import names

_NAME = names.NAME_RE


def now_iso() -> str:
    """UTC ISO-8601 with milliseconds, the one time format of the store and the APIs."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso(ts: float) -> str:
    """A POSIX time in the store's format (UTC ISO-8601 with milliseconds and Z)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(stamp: str) -> float:
    """The store's time format back to a POSIX time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') for values starting with `prefix`, taken literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def check_name(value: object, what: str) -> str:
    """A URL-safe name: 1-64 of a-z, 0-9 and '-', not starting or ending with '-'."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(
            f"{what} {value!r} is not allowed: use 1-64 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            field=what,
        )
    return value


def check_text(value: object, what: str, max_len: int = 200) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string", field=what)
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{what} must be at most {max_len} printable characters", field=what)
    return value


def check_choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"{what} {value!r} is not allowed: use one of {', '.join(choices)}", field=what)
    return value  # type: ignore[return-value]


def as_bool(row: dict, *keys: str) -> dict:
    for k in keys:
        if k in row and row[k] is not None:
            row[k] = bool(row[k])
    return row
