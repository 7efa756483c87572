"""Renditions: the variants a stream is packaged in (`source` remux, transcoded ladder rungs)."""

from __future__ import annotations

from daemons.core.config import check_rendition
from daemons.core.domain.common import new_id, now_iso
from daemons.core.errors import InvalidInput, NotFound
from daemons.core.store import Store

FIELDS = ("kind", "width", "height", "video_bitrate", "audio_bitrate", "video_codec", "audio_codec", "frame_rate")


def upsert(store: Store, stream_id: str, rendition: dict) -> dict:
    """Create or replace the stream's rendition of that name; the same input twice changes nothing."""
    try:
        r = check_rendition(rendition)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    wanted = {f: r.get(f) for f in FIELDS}
    with store.write() as db:
        current = store.one("SELECT * FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, r["name"]))
        now = now_iso()
        if current is None:
            db["renditions"].insert(
                {"id": new_id("rd"), "stream_id": stream_id, "name": r["name"], **wanted, "created_at": now, "updated_at": now}
            )
        elif any(current[f] != wanted[f] for f in FIELDS):
            db["renditions"].update(current["id"], {**wanted, "updated_at": now})
    return store.one("SELECT * FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, r["name"]))


def list_(store: Store, stream_id: str) -> list[dict]:
    return store.query("SELECT * FROM renditions WHERE stream_id = ? ORDER BY kind DESC, height DESC, name", (stream_id,))


def delete(store: Store, stream_id: str, name: str) -> None:
    with store.write() as db:
        row = store.one("SELECT id FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, name))
        if row is None:
            raise NotFound(f"no rendition {name!r} on this stream")
        db["renditions"].delete(row["id"])
