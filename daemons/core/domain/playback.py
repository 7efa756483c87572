"""Playback: who may watch a stream, and what a player needs to start.

Visibility: `public` streams are listed and playable by anyone; `unlisted` ones are playable by
anyone with the URL but never listed; `private` ones need a playback token on the playback API
and on every HLS request. A token is `<expiry unix seconds>.<signature>`, the signature an
HMAC-SHA-256 (install secret) over the stream id and the expiry: stateless (any node holding the
secret checks it), bound to one stream, expiring; revoking all tokens = rotating the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime, timezone

from daemons.core.domain import generations, renditions, streams
from daemons.core.errors import InvalidInput
from daemons.core.store import Store

DEFAULT_TTL_S = 6 * 3600
MAX_TTL_S = 30 * 24 * 3600
_SIG_CHARS = 32  # 192 bits of the HMAC, urlsafe base64


def _signature(secret: bytes, stream_id: str, expiry: int) -> str:
    digest = hmac.new(secret, f"sender-playback:{stream_id}:{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_SIG_CHARS]


def mint_token(secret: bytes, stream_id: str, ttl_s: int = DEFAULT_TTL_S, *, now: float | None = None) -> dict:
    """A playback token for one stream: {"token", "expires_at" (unix), "ttl_s"}."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"ttl_s must be a whole number of seconds from 1 to {MAX_TTL_S}", field="ttl_s")
    expiry = int(now if now is not None else time.time()) + ttl_s
    return {"token": f"{expiry}.{_signature(secret, stream_id, expiry)}", "expires_at": expiry, "ttl_s": ttl_s}


def token_valid(secret: bytes, stream_id: str, token: str | None, *, now: float | None = None) -> bool:
    """Whether `token` lets its holder watch `stream_id` now (constant time in the signature)."""
    if not token or len(token) > 64:
        return False
    expiry_text, _, signature = token.partition(".")
    if not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    if expiry < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature.encode(), _signature(secret, stream_id, expiry).encode())


def info(store: Store, stream_ref: str, *, default_grace) -> dict:
    """What the playback API answers (without URLs, which the HTTP layer adds).

    While a broadcast is active, `publisher_connected` says whether its publisher is here, and
    `publisher_left_at` since when it is away (the watch page shows "reconnecting"), with
    `ends_at` when the reconnect grace will end it (null: it waits until stopped);
    `default_grace` is the config's rtmp.reconnect_grace.
    """
    stream = streams.get(store, stream_ref)
    generation = generations.latest(store, stream["id"])
    status = generations.public_status(generation)
    current = generation if generation and status != "offline" else None
    active = current is not None and generations.is_active(current["status"])
    deadline = generations.reconnect_deadline(current, stream["reconnect_grace"], default_grace) if active else None
    return {
        "stream": {"id": stream["id"], "slug": stream["slug"], "title": stream["title"], "visibility": stream["visibility"]},
        "status": status,
        "generation_id": current["id"] if current else None,
        "started_at": current["started_at"] if current else None,
        "live_at": current["live_at"] if current else None,
        "ended_at": current["ended_at"] if current and status == "ended" else None,
        "end_reason": current["end_reason"] if current and status == "ended" else None,
        "publisher_connected": generations.publisher_connected(current) if active else False,
        "publisher_left_at": current["publisher_left_at"] if active else None,
        "ends_at": deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z") if deadline else None,
        "renditions": [
            {k: r[k] for k in ("name", "kind", "width", "height", "frame_rate", "video_codec", "audio_codec",
                               "measured_bandwidth", "measured_average_bandwidth")}
            for r in renditions.list_(store, stream["id"])
        ],
    }


def record_events(store: Store, stream_id: str, batch: dict, keep: int) -> None:
    """Store a player's telemetry batch (validated by the caller) and keep the newest `keep`
    events of all streams."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    rows = [
        {"received_at": now, "stream_id": stream_id, "generation_id": batch["generation_id"],
         "session_id": batch["session_id"], "kind": e["kind"], "value": e["value"], "detail": e["detail"]}
        for e in batch["events"]
    ]
    with store.write() as db:
        db["player_events"].insert_all(rows)
        db.execute("DELETE FROM player_events WHERE id <= (SELECT MAX(id) FROM player_events) - ?", (keep,))
