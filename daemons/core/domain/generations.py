"""Stream generations: one continuous broadcast of a stream, from start to end.

starting → live (playable) → ended (admin stop), or failed (the backend could not start). A
generation stays active across publisher reconnects and backend restarts; at most one is active
per stream (enforced by a partial unique index).
"""

from __future__ import annotations

from daemons.core.domain import streams
from daemons.core.domain.common import new_id, now_iso
from daemons.core.errors import Conflict, NotFound
from daemons.core.store import Store

ACTIVE = ("starting", "live")


def active(store: Store, stream_id: str) -> dict | None:
    return store.one(
        "SELECT * FROM stream_generations WHERE stream_id = ? AND status IN ('starting', 'live')",
        (stream_id,),
    )


def get(store: Store, generation_id: str) -> dict:
    row = store.one("SELECT * FROM stream_generations WHERE id = ?", (generation_id,))
    if row is None:
        raise NotFound(f"no generation {generation_id!r}")
    return row


def start(store: Store, stream_ref: str, *, mode: str = "origin_ingest") -> tuple[dict, bool]:
    """The stream's active generation, starting one if none is: (generation, created)."""
    with store.write() as db:
        stream = streams.get(store, stream_ref)
        current = active(store, stream["id"])
        if current:
            return current, False
        now = now_iso()
        row = {
            "id": new_id("gen"),
            "stream_id": stream["id"],
            "status": "starting",
            "mode": mode,
            "started_at": now,
            "live_at": None,
            "ended_at": None,
            "failure_reason": None,
            "discontinuity_count": 0,
            "updated_at": now,
        }
        db["stream_generations"].insert(row)
    return row, True


def stop(store: Store, stream_ref: str) -> dict | None:
    """End the stream's active generation; None when nothing was active."""
    with store.write() as db:
        stream = streams.get(store, stream_ref, include_deleted=True)
        current = active(store, stream["id"])
        if current is None:
            return None
        now = now_iso()
        db["stream_generations"].update(current["id"], {"status": "ended", "ended_at": now, "updated_at": now})
    return get(store, current["id"])


def mark_live(store: Store, generation_id: str) -> dict:
    with store.write() as db:
        gen = get(store, generation_id)
        if gen["status"] == "starting":
            now = now_iso()
            db["stream_generations"].update(generation_id, {"status": "live", "live_at": now, "updated_at": now})
        elif gen["status"] != "live":
            raise Conflict(f"generation {generation_id} is {gen['status']}, it cannot go live")
    return get(store, generation_id)


def mark_failed(store: Store, generation_id: str, reason: str) -> dict:
    with store.write() as db:
        gen = get(store, generation_id)
        if gen["status"] in ACTIVE:
            now = now_iso()
            db["stream_generations"].update(
                generation_id, {"status": "failed", "failure_reason": reason[:500], "ended_at": now, "updated_at": now}
            )
    return get(store, generation_id)


def add_discontinuity(store: Store, generation_id: str) -> dict:
    with store.write() as db:
        db.execute(
            "UPDATE stream_generations SET discontinuity_count = discontinuity_count + 1, updated_at = ? WHERE id = ?",
            (now_iso(), generation_id),
        )
    return get(store, generation_id)


def list_(store: Store, stream_ref: str | None = None, *, active_only: bool = False, limit: int = 100) -> list[dict]:
    sql = "SELECT g.*, s.slug AS stream FROM stream_generations g JOIN streams s ON s.id = g.stream_id WHERE 1=1"
    params: list = []
    if stream_ref is not None:
        sql += " AND g.stream_id = ?"
        params.append(streams.get(store, stream_ref, include_deleted=True)["id"])
    if active_only:
        sql += " AND g.status IN ('starting', 'live')"
    sql += " ORDER BY g.started_at DESC LIMIT ?"
    params.append(int(limit))
    return store.query(sql, tuple(params))
