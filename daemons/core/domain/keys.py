"""Stream keys: shown once, stored only as a keyed-hash verifier, looked up by prefix.

A key reads `<prefix>_<secret>`: the prefix ("sk" + 10 hex) finds the row, the secret (192
random bits) is checked against HMAC-SHA-256(install secret, key) in constant time. Neither the
key nor its secret part is stored or logged anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from daemons.core.domain import streams
from daemons.core.domain.common import check_text, new_id, now_iso
from daemons.core.errors import NotFound
from daemons.core.store import Store

_KEY = re.compile(r"(sk[0-9a-f]{10})_([A-Za-z0-9_-]{32})")


def verifier(install_secret: bytes, key: str) -> str:
    return hmac.new(install_secret, key.encode(), hashlib.sha256).hexdigest()


def create(store: Store, install_secret: bytes, stream_ref: str, *, label: str = "") -> tuple[dict, str]:
    """A new key for the stream: (its row, the key itself — the only time it exists)."""
    check_text(label, "label", 100)
    with store.write() as db:
        stream = streams.get(store, stream_ref)
        prefix = "sk" + secrets.token_hex(5)
        key = f"{prefix}_{secrets.token_urlsafe(24)}"
        row = {
            "id": new_id("key"),
            "stream_id": stream["id"],
            "prefix": prefix,
            "verifier": verifier(install_secret, key),
            "label": label,
            "created_at": now_iso(),
            "last_used_at": None,
            "revoked_at": None,
        }
        db["stream_keys"].insert(row)
    return _public(row, stream), key


def _public(row: dict, stream: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "verifier"}
    out["stream"] = stream["slug"]
    return out


def list_(store: Store, stream_ref: str | None = None) -> list[dict]:
    sql = (
        "SELECT k.*, s.slug AS stream FROM stream_keys k JOIN streams s ON s.id = k.stream_id "
        "WHERE s.deleted_at IS NULL"
    )
    params: tuple = ()
    if stream_ref is not None:
        sql += " AND s.id = ?"
        params = (streams.get(store, stream_ref)["id"],)
    rows = store.query(sql + " ORDER BY s.slug, k.created_at", params)
    for r in rows:
        del r["verifier"]
    return rows


def revoke(store: Store, ref: str) -> dict:
    """Revoke by key id or prefix; revoking twice keeps the first revocation time."""
    with store.write() as db:
        row = store.one("SELECT * FROM stream_keys WHERE id = ? OR prefix = ?", (ref, ref))
        if row is None:
            raise NotFound(f"no stream key {ref!r}")
        if row["revoked_at"] is None:
            db["stream_keys"].update(row["id"], {"revoked_at": now_iso()})
    row = store.one(
        "SELECT k.*, s.slug AS stream FROM stream_keys k JOIN streams s ON s.id = k.stream_id WHERE k.id = ?",
        (row["id"],),
    )
    del row["verifier"]
    return row


def unrevoked(store: Store, key_ids: list[str]) -> set[str]:
    """Those of `key_ids` that exist and are not revoked."""
    if not key_ids:
        return set()
    marks = ",".join("?" * len(key_ids))
    rows = store.query(f"SELECT id FROM stream_keys WHERE id IN ({marks}) AND revoked_at IS NULL", tuple(key_ids))
    return {r["id"] for r in rows}


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of checking a presented key. `reason` is safe to log; the key is not."""

    ok: bool
    reason: str  # "ok" | "malformed" | "unknown" | "revoked" | "stream_deleted"
    stream: dict | None = None
    key_id: str | None = None
    prefix: str | None = None


_DUMMY_VERIFIER = "0" * 64


def verify(store: Store, install_secret: bytes, key: str, *, touch: bool = True) -> KeyCheck:
    """Check a presented stream key; on success stamp last_used_at (when `touch`)."""
    m = _KEY.fullmatch(key or "")
    if not m:
        return KeyCheck(False, "malformed")
    prefix = m.group(1)
    row = store.one("SELECT id, stream_id, verifier, revoked_at FROM stream_keys WHERE prefix = ?", (prefix,))
    expected = row["verifier"] if row else _DUMMY_VERIFIER
    # Always compute and compare, so an unknown prefix costs the same as a wrong secret.
    matches = hmac.compare_digest(verifier(install_secret, key), expected)
    if row is None or not matches:
        return KeyCheck(False, "unknown", prefix=prefix)
    key_id = row["id"]
    stream = streams.get(store, row["stream_id"], include_deleted=True)
    if row["revoked_at"]:
        return KeyCheck(False, "revoked", stream=stream, key_id=key_id, prefix=prefix)
    if stream["deleted_at"]:
        return KeyCheck(False, "stream_deleted", stream=stream, key_id=key_id, prefix=prefix)
    if touch:
        with store.write() as db:
            db["stream_keys"].update(key_id, {"last_used_at": now_iso()})
    return KeyCheck(True, "ok", stream=stream, key_id=key_id, prefix=prefix)
