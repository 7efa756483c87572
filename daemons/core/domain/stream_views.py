"""What the CLI and the management API show about streams: each view is one function both call.

`list_with_generations` (`sender stream list`, `stream.list`), `status` (`sender stream status`,
`stream.status`: the latest generation, the publisher and pipeline as the ingest daemon reports
them, restream targets, advice) and `public_listing` (`/api/streams`, the index page). They read
several domain modules, so they live above them: `streams` keeps the rows and their moves.
"""

from __future__ import annotations

from daemons.core import advice
from daemons.core.domain import generations, restream
from daemons.core.domain.streams import get, list_
from daemons.core.store import Store


def list_with_generations(store: Store, *, include_deleted: bool = False) -> list[dict]:
    """Every stream with its active generation (`generation`, None when idle): what `sender stream
    list` and the management API's stream.list show."""
    rows = list_(store, include_deleted=include_deleted)
    active = {g["stream_id"]: g for g in generations.list_(store, active_only=True, limit=len(rows) + 1)}
    for r in rows:
        r["generation"] = active.get(r["id"])
    return rows


def public_listing(store: Store) -> list[dict]:
    """Public streams (not deleted) with their active generation's state: `/api/streams` and the
    index page."""
    rows = store.query(
        f"""SELECT s.slug, s.title, g.id AS generation_id, g.status, g.started_at,
                  g.publisher_connected_at, g.publisher_left_at
           FROM streams s LEFT JOIN stream_generations g
             ON g.stream_id = s.id AND g.{generations.ACTIVE_SQL}
           WHERE s.deleted_at IS NULL AND s.visibility = 'public' ORDER BY s.slug"""
    )
    return [
        {"slug": r["slug"], "title": r["title"], "status": generations.public_status(r if r["status"] else None),
         "generation_id": r["generation_id"], "started_at": r["started_at"],
         "publisher_connected": bool(r["status"]) and generations.publisher_connected(r)}
        for r in rows
    ]


def status(store: Store, ref: str, ingest: dict, config) -> dict:
    """Is it live? What `sender stream status` and the management API's stream.status answer:
    the latest generation and, from the ingest daemon's stats (`ingest`, {} when it is not
    running), the connected publisher, the packaging pipeline, each restream target's state, and
    advice for the broadcaster."""
    stream = get(store, ref)
    generation = generations.latest(store, stream["id"])
    active = generation is not None and generations.is_active(generation["status"])
    publisher = next((p for p in ingest.get("publishers", []) if p.get("stream_id") == stream["id"]), None)
    pipeline = next((g for g in ingest.get("generations", []) if generation and g.get("generation_id") == generation["id"]), None)
    default_grace = config["rtmp.reconnect_grace"]
    deadline = generations.reconnect_deadline(generation, stream["reconnect_grace"], default_grace) if active else None
    return {
        "stream": stream["slug"],
        "stream_id": stream["id"],
        "status": generations.public_status(generation),
        "active": active,
        "generation": generation,
        "publisher": publisher if active else None,
        "publisher_connected": active and generations.publisher_connected(generation),
        "publisher_left_at": generation["publisher_left_at"] if active else None,
        "reconnect_grace": stream["reconnect_grace"] or default_grace,
        "ends_at": deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z") if deadline else None,
        "pipeline": pipeline,
        "warnings": advice.stream_warnings(publisher, pipeline, segment_target_s=config["hls.segment_target_s"],
                                           spool_root=str(config["spool.root"])),
        "restream": restream.states(restream.list_(store, stream["id"]), ingest if active else {}),
        "ingest_running": bool(ingest),
        "stats_updated_at": ingest.get("updated_at"),
    }
