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
        if store.one("SELECT id FROM streams WHERE id = ?", (stream_id,)) is None:
            raise NotFound(f"no stream {stream_id!r}")
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


def record_observed(
    store: Store,
    stream_id: str,
    name: str,
    *,
    video_codec: str | None,
    audio_codec: str | None,
    width: int | None,
    height: int | None,
    frame_rate: float | None,
) -> None:
    """Record what the packager really produced for a rendition (codec strings, resolution)."""
    observed = {"video_codec": video_codec, "audio_codec": audio_codec, "width": width, "height": height, "frame_rate": frame_rate}
    observed = {k: v for k, v in observed.items() if v is not None}
    with store.write() as db:
        row = store.one("SELECT * FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, name))
        if row is not None and any(row[k] != v for k, v in observed.items()):
            db["renditions"].update(row["id"], {**observed, "updated_at": now_iso()})


def record_bandwidth(store: Store, stream_id: str, measured: dict[str, tuple[int, int | None]]) -> None:
    """Record each rendition's measured bandwidth: name → (peak segment bits/s, average bits/s)."""
    with store.write() as db:
        for name, (peak, average) in measured.items():
            row = store.one("SELECT id FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, name))
            if row is not None:
                db["renditions"].update(row["id"], {"measured_bandwidth": peak, "measured_average_bandwidth": average})
