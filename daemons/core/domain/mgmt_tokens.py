"""Management API tokens: shown once, kept only as keyed-hash verifiers in the config.

A token reads `mt<10 hex>_<32 urlsafe>` (like a stream key: the prefix names it, the rest is 192
random bits). The install keeps `management.token_verifiers`, one string per token:

    "<prefix>:<HMAC-SHA-256(install secret, token), hex>[:<created unix>:<label>]"

The token itself is never stored or logged; a presented token is checked against the verifier of
its prefix in constant time (an unknown prefix costs the same as a wrong secret). These are pure
functions over the list: the CLI writes the list to the config file, the HTTP daemon reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from daemons.core.domain.common import check_text
from daemons.core.errors import InvalidInput, NotFound

TOKEN = re.compile(r"(mt[0-9a-f]{10})_([A-Za-z0-9_-]{32})")
PREFIX = re.compile(r"mt[0-9a-f]{10}")
_VERIFIER = re.compile(r"(mt[0-9a-f]{10}):([0-9a-f]{64})(?::(\d{1,12}):(.*))?", re.DOTALL)
_DUMMY_DIGEST = "0" * 64


def digest(install_secret: bytes, token: str) -> str:
    return hmac.new(install_secret, token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """One verifier entry, parsed. Never holds the token."""

    prefix: str
    digest: str
    created_at: int | None = None  # unix seconds
    label: str = ""

    def public(self) -> dict:
        return {"prefix": self.prefix, "label": self.label, "created_at": self.created_at}


def parse_verifier(entry: str) -> TokenInfo | None:
    """A verifier entry from the config; None for one that is not a verifier (ignored)."""
    m = _VERIFIER.fullmatch(entry) if isinstance(entry, str) else None
    if not m:
        return None
    created = int(m.group(3)) if m.group(3) else None
    return TokenInfo(m.group(1), m.group(2), created, m.group(4) or "")


def create(install_secret: bytes, *, label: str = "", now: float | None = None) -> tuple[str, str, TokenInfo]:
    """A new token: (the token — the only time it exists, its verifier entry, its info)."""
    check_text(label, "label", 100)
    prefix = "mt" + secrets.token_hex(5)
    token = f"{prefix}_{secrets.token_urlsafe(24)}"
    info = TokenInfo(prefix, digest(install_secret, token), int(now if now is not None else time.time()), label)
    entry = f"{info.prefix}:{info.digest}:{info.created_at}:{label}"
    return token, entry, info


def list_(verifiers: list[str]) -> list[dict]:
    """What is safe to show about the configured tokens: prefix, label, creation time."""
    return [info.public() for info in map(parse_verifier, verifiers) if info is not None]


def revoke(verifiers: list[str], prefix: str) -> tuple[list[str], TokenInfo]:
    """The list without the token of that prefix (a whole token is accepted too)."""
    if isinstance(prefix, str) and (m := TOKEN.fullmatch(prefix)):
        prefix = m.group(1)
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
        raise InvalidInput(f"{prefix!r} is not a management token prefix (mt + 10 hex digits)", field="prefix")
    kept, gone = [], None
    for entry in verifiers:
        info = parse_verifier(entry)
        if info is not None and info.prefix == prefix:
            gone = info
        else:
            kept.append(entry)
    if gone is None:
        raise NotFound(f"no management token {prefix!r}", field="prefix")
    return kept, gone


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of checking a presented token. `reason` and `prefix` are safe to log."""

    ok: bool
    reason: str  # "ok" | "malformed" | "unknown"
    prefix: str | None = None


def verify(install_secret: bytes, token: str | None, verifiers: list[str]) -> TokenCheck:
    m = TOKEN.fullmatch(token or "")
    if not m:
        return TokenCheck(False, "malformed")
    prefix = m.group(1)
    expected = next((i.digest for i in map(parse_verifier, verifiers) if i is not None and i.prefix == prefix), None)
    # Always compute and compare, so an unknown prefix costs the same as a wrong secret.
    matches = hmac.compare_digest(digest(install_secret, token), expected or _DUMMY_DIGEST)
    if expected is None or not matches:
        return TokenCheck(False, "unknown", prefix)
    return TokenCheck(True, "ok", prefix)
