"""Restream targets: where a stream's broadcast is pushed while it has a publisher (YouTube,
Twitch, another Sender, any RTMP/RTMPS server).

A target's URL carries the platform's stream key. The store keeps it as given (sender-ingest needs
it to push), and everything else sees it masked (`mask`: rtmp://a.rtmp.youtube.com/live2/ab…cd):
every function here answers masked rows, except `active_targets`, which is sender-ingest's. No
error message quotes a URL, and `redact` takes a target's secrets out of any text (ffmpeg's
messages name the URL it pushes to) before it is shown or logged.

The live state of a pushed target (connecting, live, failing + its last error, bytes, bitrate) is
sender-ingest's, in its stats file; `states` joins it to the stored targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from daemons.core.domain import streams
from daemons.core.domain.common import as_bool, check_text, new_id, now_iso
from daemons.core.errors import Conflict, InvalidInput, NotFound
from daemons.core.store import Store

SCHEMES = ("rtmp", "rtmps")
MAX_URL_LENGTH = 1000
MASK = "…"
# What a target is doing: sender-ingest's states while the stream has a publisher, else idle
# (enabled, nothing to push) or disabled.
STATES = ("idle", "disabled", "connecting", "live", "failing")


@dataclass(frozen=True)
class Target:
    """An enabled target as sender-ingest pushes to it: the URL unmasked."""

    id: str
    stream_id: str
    label: str
    url: str

    @property
    def masked(self) -> str:
        return mask(self.url)


def check_url(url: object) -> str:
    """An rtmp:// or rtmps:// URL naming a host, an application and a stream key. The messages
    never repeat the URL (it is a secret)."""
    if not isinstance(url, str):
        raise InvalidInput("url must be a string", field="url")
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be 1 to {MAX_URL_LENGTH} characters", field="url")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidInput("url is not a valid URL (check its host and port)", field="url") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidInput("url must start with rtmp:// or rtmps://", field="url")
    if not parts.hostname:
        raise InvalidInput("url must name a host: rtmp://host/app/key", field="url")
    if len([s for s in parts.path.split("/") if s]) < 2:
        raise InvalidInput("url must name the application and the stream key: rtmp://host/app/key", field="url")
    return url


def _secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: the stream key (its last path segment), the query,
    a password."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return [url]
    out = [s for s in (parts.path.rstrip("/").rsplit("/", 1)[-1], parts.query, password) if s]
    return sorted(out, key=len, reverse=True)


def mask_key(key: str) -> str:
    """ab…cd for a key of at least 8 characters; only the mark for a shorter one."""
    return f"{key[:2]}{MASK}{key[-2:]}" if len(key) >= 8 else MASK


def mask(url: str) -> str:
    """The URL as anyone may see it: scheme, host, port and application; the key masked
    (rtmp://a.rtmp.youtube.com/live2/ab…cd), a query or credentials replaced by the mark."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return MASK
    netloc = (f"{MASK}@" if "@" in parts.netloc else "") + (f"[{host}]" if ":" in host else host)
    if port is not None:
        netloc += f":{port}"
    *app, key = parts.path.rstrip("/").split("/") or [""]
    path = "/".join([*app, mask_key(key)]) if key else "/".join(app)
    return f"{parts.scheme}://{netloc}{path}" + (f"?{MASK}" if parts.query else "")


def redact(text: str, url: str) -> str:
    """`text` (an ffmpeg message) with the target's URL masked and its secrets taken out."""
    text = text.replace(url, mask(url))
    for secret in _secrets(url):
        text = text.replace(secret, mask_key(secret))
    return text


def _public(row: dict, slug: str) -> dict:
    out = as_bool(dict(row), "enabled")
    out["url"] = mask(row["url"])
    out["stream"] = slug
    return out


def _row(store: Store, target_id: str) -> tuple[dict, dict]:
    if not isinstance(target_id, str) or not target_id:
        raise InvalidInput("a restream target id is required", field="target")
    row = store.one("SELECT * FROM restream_targets WHERE id = ? AND deleted_at IS NULL", (target_id,))
    if row is None:
        raise NotFound(f"no restream target {target_id[:40]!r}")
    return row, streams.get(store, row["stream_id"], include_deleted=True)


def add(store: Store, stream_ref: str, url: str, *, label: str = "", max_targets: int) -> dict:
    """A new target of the stream (enabled): pushed from its next keyframe if the stream has a
    publisher now. At most `max_targets` per stream (restream.max_targets); a URL once per stream."""
    check_url(url)
    check_text(label, "label", 100)
    with store.write() as db:
        stream = streams.get(store, stream_ref)
        existing = store.query("SELECT id, url FROM restream_targets WHERE stream_id = ? AND deleted_at IS NULL",
                               (stream["id"],))
        same = next((r["id"] for r in existing if r["url"] == url), None)
        if same is not None:
            raise Conflict(f"stream {stream['slug']!r} already pushes to that URL (target {same})", field="url")
        if len(existing) >= max_targets:
            raise Conflict(f"stream {stream['slug']!r} has {len(existing)} restream targets, the most allowed "
                           f"(restream.max_targets = {max_targets})", field="stream")
        now = now_iso()
        row = {"id": new_id("rt"), "stream_id": stream["id"], "label": label, "url": url, "enabled": 1,
               "created_at": now, "updated_at": now, "deleted_at": None}
        db["restream_targets"].insert(row)
    return _public(row, stream["slug"])


def get(store: Store, target_id: str) -> dict:
    row, stream = _row(store, target_id)
    return _public(row, stream["slug"])


def list_(store: Store, stream_ref: str | None = None) -> list[dict]:
    """Targets (masked) of one stream, or of every stream that is not deleted."""
    sql = ("SELECT t.*, s.slug AS slug FROM restream_targets t JOIN streams s ON s.id = t.stream_id "
           "WHERE t.deleted_at IS NULL AND s.deleted_at IS NULL")
    params: tuple = ()
    if stream_ref is not None:
        sql += " AND s.id = ?"
        params = (streams.get(store, stream_ref)["id"],)
    rows = store.query(sql + " ORDER BY s.slug, t.created_at, t.id", params)
    return [_public({k: v for k, v in r.items() if k != "slug"}, r["slug"]) for r in rows]


def set_enabled(store: Store, target_id: str, enabled: bool) -> dict:
    """Enable or disable a target: a live publisher starts or stops pushing to it within a second."""
    with store.write() as db:
        row, stream = _row(store, target_id)
        if bool(row["enabled"]) != enabled:
            row.update(enabled=int(enabled), updated_at=now_iso())
            db["restream_targets"].update(row["id"], {"enabled": row["enabled"], "updated_at": row["updated_at"]})
    return _public(row, stream["slug"])


def remove(store: Store, target_id: str) -> dict:
    """Remove a target (the row stays, deleted, for history; its URL is still only masked)."""
    with store.write() as db:
        row, stream = _row(store, target_id)
        now = now_iso()
        row.update(deleted_at=now, updated_at=now)
        db["restream_targets"].update(row["id"], {"deleted_at": now, "updated_at": now})
    return _public(row, stream["slug"])


def active_targets(store: Store, stream_ids: list[str]) -> dict[str, list[Target]]:
    """sender-ingest's question: the enabled targets of these streams, URLs unmasked."""
    out: dict[str, list[Target]] = {sid: [] for sid in stream_ids}
    if not stream_ids:
        return out
    marks = ",".join("?" * len(stream_ids))
    rows = store.query(f"SELECT id, stream_id, label, url FROM restream_targets WHERE stream_id IN ({marks}) "
                       "AND enabled = 1 AND deleted_at IS NULL ORDER BY created_at, id", tuple(stream_ids))
    for r in rows:
        out[r["stream_id"]].append(Target(r["id"], r["stream_id"], r["label"], r["url"]))
    return out


def states(targets: list[dict], ingest: dict) -> list[dict]:
    """The stream's targets (masked rows) with what sender-ingest reports of each (its stats, {}
    when it is not running): `state`, `state_since`, `last_error`, `bytes`, `bitrate_bps`, `attempts`."""
    pushed = {t.get("target_id"): t for t in ingest.get("restream", ())}
    out = []
    for t in targets:
        now = pushed.get(t["id"])
        state = now["state"] if now and now.get("state") in STATES else "idle" if t["enabled"] else "disabled"
        out.append({
            "id": t["id"], "label": t["label"], "url": t["url"], "enabled": t["enabled"], "state": state,
            "state_since": now.get("state_since") if now else None,
            "last_error": now.get("last_error") if now else None,
            "bytes": int(now.get("bytes") or 0) if now else 0,
            "bitrate_bps": int(now.get("bitrate_bps") or 0) if now else 0,
            "attempts": int(now.get("attempts") or 0) if now else 0,
        })
    return out
