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


def status_of(generation: dict | None) -> str:
    """offline | starting | live | ended, as the playback API reports it."""
    if generation is None:
        return "offline"
    return {"starting": "starting", "live": "live", "ended": "ended", "failed": "offline"}[generation["status"]]


def latest_generation(store: Store, stream_id: str) -> dict | None:
    """The active generation, else the most recent one (to report `ended`)."""
    current = generations.active(store, stream_id)
    if current is not None:
        return current
    return store.one(
        "SELECT * FROM stream_generations WHERE stream_id = ? ORDER BY started_at DESC, rowid DESC LIMIT 1",
        (stream_id,),
    )


def info(store: Store, stream_ref: str) -> dict:
    """What the playback API answers (without URLs, which the HTTP layer adds)."""
    stream = streams.get(store, stream_ref)
    generation = latest_generation(store, stream["id"])
    status = status_of(generation)
    return {
        "stream": {"id": stream["id"], "slug": stream["slug"], "title": stream["title"], "visibility": stream["visibility"]},
        "status": status,
        "generation_id": generation["id"] if generation and status != "offline" else None,
        "started_at": generation["started_at"] if generation and status != "offline" else None,
        "live_at": generation["live_at"] if generation and status != "offline" else None,
        "ended_at": generation["ended_at"] if generation and status == "ended" else None,
        "renditions": [
            {k: r[k] for k in ("name", "kind", "width", "height", "frame_rate", "video_codec", "audio_codec",
                               "measured_bandwidth", "measured_average_bandwidth")}
            for r in renditions.list_(store, stream["id"])
        ],
    }
