"""Distribution between Sender nodes: what a source offers its edges, and what an edge mirrors.

* `listing(store, ...)` — a source node's answer to `GET /api/distribution` (its edges ask once a
  discovery interval): every stream it carries with the latest generation and the renditions
  that generation runs (its `generation.json` in the spool), so an edge can mirror the rows and
  follow the generation's playlists.
* `merge(listings)` — the edge side: one entry per stream from all its sources' listings, the
  newest generation winning (`started_at`, then id), never the source order.
* `mirror(store, source_endpoint_id, listing)` — the edge side: upsert the listed streams,
  generations and renditions with the same ids, so every node answers playback metadata (and
  serves the same URLs) for every stream it carries. Mirrored streams remember which source
  endpoint they came from; a mirrored stream that no source lists any more is soft-deleted. A
  generation never goes back: its status follows the source's by the transition table
  (`generations.follow`), so an ended one stays ended, and once a newer generation of a stream
  was seen an older one is never active again, whatever a stale source lists.
* `expired_mirrors(store, retention_s)` — the edge's mirrored generations over for longer than
  the retention: their spool directories may go.
* `plan(store, node_id)` — the local edge endpoints and their ordered sources (the graph).
* Node authentication: requests between nodes carry `Authorization: Bearer <node token>`, an
  HMAC of the shared distribution key; `node_authorized` checks it in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from daemons.core.domain import generations
from daemons.core.domain.common import new_id, now_iso
from daemons.core.domain.generations import ACTIVE_SQL, EndReason, Status
from daemons.core.errors import InvalidInput
from daemons.core.store import Store
from daemons.media import names

MIRROR_MODE = "edge_mirror"
LISTING_VERSION = 1
NODE_TOKEN_PREFIX = "snd_"
_STREAM_FIELDS = ("id", "slug", "title", "visibility")
# The publisher's presence travels too: an edge's playback API says "reconnecting" like its origin's.
_GENERATION_FIELDS = ("id", "status", "started_at", "live_at", "ended_at", "discontinuity_count",
                      "publisher_connected_at", "publisher_left_at")
_RENDITION_FIELDS = ("name", "kind", "width", "height", "video_bitrate", "audio_bitrate", "video_codec",
                     "audio_codec", "frame_rate", "measured_bandwidth", "measured_average_bandwidth")
# Names and ids become directories in the spool and parts of HLS URLs: the HLS route's alphabet.
RENDITION_NAME = names.RENDITION_RE
STREAM_ID = names.STREAM_ID_RE
GENERATION_ID = names.GENERATION_ID_RE
_RENDITION_INTS = ("width", "height", "video_bitrate", "audio_bitrate", "measured_bandwidth", "measured_average_bandwidth")


def node_token(key: bytes) -> str:
    return NODE_TOKEN_PREFIX + hmac.new(key, b"sender-node-to-node", hashlib.sha256).hexdigest()


def node_authorized(key: bytes | None, authorization: str | None) -> bool:
    """Whether an Authorization header carries this distribution's node token."""
    if key is None or not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), node_token(key).encode())


# --- the source side ---------------------------------------------------------------------------


def listing(store: Store, *, node_id: str, spool_root: Path, rendition_positions: dict[str, dict] | None = None) -> dict:
    """Every stream (not deleted) with its latest generation and the renditions it runs.

    A generation's renditions are the ones its producer runs, as its `generation.json` in the
    spool (`spool_root`) lists them — not the stream's renditions rows, which may change while it
    is live (a rendition added then is not produced by it, one deleted then still is). The rows
    give each rendition's details. `rendition_positions` ("<generation_id>/<rendition>" →
    {"last": [msn, part], "playlist_age_s": …}) is what the HTTP daemon knows of the spool: an
    edge compares sources with it (segment lag, playlist age). The load of this node comes from
    its own latest snapshot.
    """
    positions = rendition_positions or {}
    streams = []
    for s in store.query("SELECT * FROM streams WHERE deleted_at IS NULL ORDER BY id"):
        g = store.one(
            "SELECT * FROM stream_generations WHERE stream_id = ? "
            f"ORDER BY {ACTIVE_SQL} DESC, started_at DESC, rowid DESC LIMIT 1", (s["id"],)
        )
        entry = {k: s[k] for k in _STREAM_FIELDS}
        entry["generation"] = None
        if g is not None:
            gen = {k: g[k] for k in _GENERATION_FIELDS}
            rows = {r["name"]: r for r in store.query("SELECT * FROM renditions WHERE stream_id = ?", (s["id"],))}
            gen["renditions"] = []
            # Not (yet) run by anything — its publisher has not connected: nothing to follow.
            for name in sorted(generation_renditions(spool_root, s["id"], g["id"]) or ()):
                row = rows.get(name)
                rend = {k: row[k] for k in _RENDITION_FIELDS} if row else {
                    **dict.fromkeys(_RENDITION_FIELDS), "name": name, "kind": "source" if name == "source" else "transcode"}
                rend.update(positions.get(f"{g['id']}/{name}", {}))
                gen["renditions"].append(rend)
            entry["generation"] = gen
        streams.append(entry)
    snap = store.one(
        "SELECT status, viewers, egress_bps FROM endpoint_snapshots WHERE endpoint_id = ? AND generation_id = ''", (node_id,)
    )
    load = {"status": snap["status"], "viewers": snap["viewers"], "egress_bps": snap["egress_bps"]} if snap else None
    return {"version": LISTING_VERSION, "node_id": node_id, "load": load, "streams": streams}


def generation_renditions(spool_root: Path, stream_id: str, generation_id: str) -> list[str] | None:
    """The renditions a generation runs, from the `generation.json` its producer writes in the
    spool (the ingest pipeline on an origin, sender-edge-fill on an edge); None when there is
    none (yet) or it is not what a producer writes."""
    try:
        doc = json.loads((spool_root / "streams" / stream_id / generation_id / "generation.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    names = doc.get("renditions") if isinstance(doc, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and RENDITION_NAME.fullmatch(n) for n in names):
        return None
    return list(dict.fromkeys(names))


# --- the edge side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    endpoint_id: str
    type: str
    base_url: str  # a Sender node's public base URL, or an external origin's master playlist URL
    thresholds: dict


@dataclass(frozen=True, slots=True)
class EdgePlan:
    endpoint_id: str
    sources: tuple[Source, ...]
    thresholds: dict


def plan(store: Store, node_id: str) -> list[EdgePlan]:
    """This node's edge endpoints (`node.id` itself, or endpoints whose node_id is this node)
    with their enabled sources in order."""
    out = []
    rows = store.query(
        "SELECT * FROM media_endpoints WHERE deleted_at IS NULL AND enabled = 1 AND type = 'tribes_edge' "
        "AND (id = ? OR node_id = ?) ORDER BY id",
        (node_id, node_id),
    )
    for e in rows:
        sources = []
        for s in store.query(
            "SELECT m.* FROM endpoint_sources l JOIN media_endpoints m ON m.id = l.source_id "
            "WHERE l.endpoint_id = ? AND m.deleted_at IS NULL AND m.enabled = 1 ORDER BY l.position",
            (e["id"],),
        ):
            if s["public_base_url"]:
                sources.append(Source(s["id"], s["type"], s["public_base_url"].rstrip("/"), json.loads(s["health_thresholds"] or "{}")))
        out.append(EdgePlan(e["id"], tuple(sources), json.loads(e["health_thresholds"] or "{}")))
    return out


def check_listing(doc: object) -> dict:
    """A source's listing, validated field by field before any of it reaches the store."""
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise InvalidInput("a distribution listing is an object with a streams array")
    if doc.get("version") != LISTING_VERSION:
        raise InvalidInput(f"distribution listing version {doc.get('version')!r} is not {LISTING_VERSION}")
    for s in doc["streams"]:
        if not isinstance(s, dict):
            raise InvalidInput("a listed stream must be an object")
        for k in _STREAM_FIELDS:
            if not isinstance(s.get(k), str) or not s[k] or len(s[k]) > 500:
                raise InvalidInput(f"listed stream field {k!r} must be a non-empty string", field=k)
        if not STREAM_ID.fullmatch(s["id"]) or s["visibility"] not in ("public", "unlisted", "private"):
            raise InvalidInput(f"listed stream {s['id']!r} is malformed", field="id")
        g = s.get("generation")
        if g is None:
            continue
        if not isinstance(g, dict) or not isinstance(g.get("id"), str) or not GENERATION_ID.fullmatch(g["id"]):
            raise InvalidInput("a listed generation needs an id gen_ + 16 hex digits", field="generation")
        if g.get("status") not in tuple(Status):
            raise InvalidInput(f"listed generation status {g.get('status')!r} is unknown", field="status")
        for k in ("started_at", "live_at", "ended_at", "publisher_connected_at", "publisher_left_at"):
            if g.get(k) is not None and (not isinstance(g[k], str) or len(g[k]) > 40):
                raise InvalidInput(f"listed generation field {k!r} must be a time or null", field=k)
        count = g.get("discontinuity_count")
        if count is not None and (type(count) is not int or not 0 <= count <= 10**9):
            raise InvalidInput(f"listed discontinuity_count {count!r} is not a count", field="discontinuity_count")
        if not isinstance(g.get("renditions"), list) or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str) and r.get("kind") in ("source", "transcode")
            for r in g["renditions"]
        ):
            raise InvalidInput("listed renditions must be objects with a name and a kind", field="renditions")
        for r in g["renditions"]:
            if not _rendition_ok(r):
                raise InvalidInput(f"listed rendition {str(r['name'])[:40]!r} is malformed", field="renditions")
    return doc


def _number(v: object, *, integer: bool) -> bool:
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        return False
    return math.isfinite(v) and 0 <= v <= 10**13


def _rendition_ok(r: dict) -> bool:
    """A name that is safe as a spool directory, numbers that are numbers, codecs that are strings,
    and a position ([msn, part]) and playlist age an edge can compare."""
    if not RENDITION_NAME.fullmatch(r["name"]):
        return False
    if any(r.get(k) is not None and not _number(r[k], integer=True) for k in _RENDITION_INTS):
        return False
    if r.get("frame_rate") is not None and not _number(r["frame_rate"], integer=False):
        return False
    if any(r.get(k) is not None and (not isinstance(r[k], str) or len(r[k]) > 200) for k in ("video_codec", "audio_codec")):
        return False
    last = r.get("last")
    if last is not None and not (
        isinstance(last, list) and len(last) == 2 and _number(last[0], integer=True)
        and (last[1] is None or (type(last[1]) is int and -1 <= last[1] <= 10**6))
    ):
        return False
    age = r.get("playlist_age_s")
    return age is None or _number(age, integer=False)


def _generation_order(g: dict) -> tuple[str, str]:
    """Which of two generations of a stream is newer: the later start, then the larger id (an
    arbitrary but fixed tie-break, so every edge and every round decides the same)."""
    return (g.get("started_at") or "", g["id"])


# How far along a status is (the table's order): of two listings of one generation, the further wins.
_FINAL = {Status.STARTING: 0, Status.LIVE: 1, Status.ENDED: 2, Status.FAILED: 2}


def merge(listings: Iterable[dict]) -> list[dict]:
    """One entry per stream from several sources' listings, given in preference order: the entry
    with the newest generation wins, whichever source lists it (a stale source still listing the
    previous generation as live never beats one that lists its successor); of entries with the
    same generation, one that says it ended (or failed) wins — an end is final — else the first."""
    merged: dict[str, dict] = {}
    for doc in listings:
        for s in doc.get("streams", ()):
            have = merged.get(s["id"])
            if have is None or _better(s, have):
                merged[s["id"]] = s
    return list(merged.values())


def _better(s: dict, than: dict) -> bool:
    g, h = s.get("generation"), than.get("generation")
    if g is None or h is None:
        return h is None and g is not None
    if g["id"] != h["id"]:
        return _generation_order(g) > _generation_order(h)
    return _FINAL[g["status"]] > _FINAL[h["status"]]


def mirror(store: Store, source_endpoint_id: str, doc: dict, *, carried: set[str] | None = None) -> list[dict]:
    """Make the local store carry what the source listed; returns the streams with a generation
    (the listing's entries, validated), each generation with the status it has here now: a
    listed generation this node knows to be over (ended, or older than one already seen) comes
    back ended whatever the listing says. Streams of this node's own (not mirrored) are never
    touched; a slug taken by a local stream keeps the source's stream out. `carried` are stream
    ids some other source of this node still lists: they are not deleted when this source drops
    them."""
    check_listing(doc)
    now = now_iso()
    listed = {s["id"] for s in doc["streams"]}
    out = []
    with store.write() as db:
        for s in doc["streams"]:
            local = store.one("SELECT * FROM streams WHERE id = ?", (s["id"],))
            if local is not None and local["source_endpoint_id"] is None:
                continue  # our own stream: the source is confused, not us
            clash = store.one("SELECT id FROM streams WHERE slug = ? AND deleted_at IS NULL AND id != ?", (s["slug"], s["id"]))
            if clash is not None:
                continue
            fields = {"slug": s["slug"], "title": s["title"], "visibility": s["visibility"]}
            if local is None:
                db["streams"].insert({"id": s["id"], **fields, "auto_start": 1, "created_at": now, "updated_at": now,
                                      "source_endpoint_id": source_endpoint_id})
            elif any(local[k] != v for k, v in fields.items()) or local["deleted_at"] or local["source_endpoint_id"] != source_endpoint_id:
                db["streams"].update(s["id"], {**fields, "updated_at": now, "deleted_at": None, "source_endpoint_id": source_endpoint_id})
            g = s.get("generation")
            if g is None:
                continue
            # Ends this node inferred when every source had dropped the stream (stamped with the
            # stream's deletion) are undone by a source listing it again; any other end is final.
            revived = local["deleted_at"] if local is not None else None
            status = _mirror_generation(store, db, s["id"], g, now, revived=revived)
            if status is not None:
                out.append(s if status == g["status"] else {**s, "generation": {**g, "status": status}})
        for row in store.query(
            "SELECT id FROM streams WHERE source_endpoint_id = ? AND deleted_at IS NULL", (source_endpoint_id,)
        ):
            if row["id"] not in listed and row["id"] not in (carried or set()):
                db["streams"].update(row["id"], {"deleted_at": now, "updated_at": now})
                # As streams.delete: a deleted stream has no active generation. Ended at the
                # deletion's time: the mark of an end this node inferred (see `_mirror_generation`).
                generations.end_active(store, row["id"], EndReason.SOURCE_ENDED, at=now)
    return out


def _mirror_generation(store: Store, db, stream_id: str, g: dict, now: str, *, revived: str | None = None) -> str | None:
    """Upsert one listed generation and its renditions; the generation's status here afterwards,
    or None when the id is not the source's to change. `revived`: the deletion time of the
    stream, listed again now.

    The status follows the source's by the transition table (`generations.follow`), from what
    this node has (a generation seen for the first time starts as any other): so an ended
    generation stays ended, and a source that trails moves nothing."""
    fields = {k: g.get(k) for k in _GENERATION_FIELDS if k != "id"}
    fields["discontinuity_count"] = int(fields.get("discontinuity_count") or 0)
    local = store.one("SELECT * FROM stream_generations WHERE id = ?", (g["id"],))
    if local is not None and (local["stream_id"] != stream_id or local["mode"] != MIRROR_MODE):
        return None  # that id is another stream's (or this node's own) generation: not the source's to change
    started = fields["started_at"] or (local["started_at"] if local else now)
    newer = store.one(
        "SELECT id FROM stream_generations WHERE stream_id = ? AND id != ? AND (started_at > ? OR (started_at = ? AND id > ?)) LIMIT 1",
        (stream_id, g["id"], started, started, g["id"]),
    )
    target = g["status"]
    if newer is not None and generations.is_active(target):
        target = Status.ENDED  # a newer generation of this stream was seen: this one is over, whatever this source says
    # The one end undone: the one this node inferred when every source had dropped the stream
    # (ended at the stream's deletion); any other end is final.
    inferred_end = (local is not None and revived is not None and local["status"] == Status.ENDED
                    and local["ended_at"] == revived)
    status = generations.follow(local["status"] if local else Status.STARTING, target, revive=inferred_end)
    fields["status"] = status.value
    if local is not None and (status != target or not (generations.is_active(local["status"]) or inferred_end)):
        # The source's move was refused (or there was none from an end): this node's times stay.
        # Its other fields (a late ended_at, the count of discontinuities) may still arrive.
        fields["live_at"] = local["live_at"] or fields["live_at"]
        fields["ended_at"] = local["ended_at"] or fields["ended_at"]
    elif status == Status.ENDED and target != g["status"]:
        fields["ended_at"] = fields["ended_at"] or now
    if newer is None:
        # The newest generation of the stream (active or not): any other still active here is older, so over.
        current = generations.active(store, stream_id)
        if current is not None and current["id"] != g["id"]:
            generations.end(store, current["id"], EndReason.SOURCE_ENDED, at=now)
    # Every end an edge sees is its source's (the listing does not say why the source's ended).
    fields["end_reason"] = ((local and local["end_reason"]) or EndReason.SOURCE_ENDED.value) if status == Status.ENDED else None
    if local is None:
        db["stream_generations"].insert({"id": g["id"], "stream_id": stream_id, "mode": MIRROR_MODE, **fields,
                                         "started_at": fields["started_at"] or now, "updated_at": now})
    elif any(local[k] != v for k, v in fields.items() if k != "started_at"):
        db["stream_generations"].update(g["id"], {k: v for k, v in fields.items() if k != "started_at"} | {"updated_at": now})
    for r in g["renditions"]:
        row = {k: r.get(k) for k in _RENDITION_FIELDS}
        existing = store.one("SELECT * FROM renditions WHERE stream_id = ? AND name = ?", (stream_id, r["name"]))
        if existing is None:
            rid = new_id("rd")
            db["renditions"].insert({"id": rid, "stream_id": stream_id, **row, "created_at": now, "updated_at": now})
        elif any(existing[k] != v for k, v in row.items()):
            db["renditions"].update(existing["id"], {**row, "updated_at": now})
    return fields["status"]


# --- an edge's spool ---------------------------------------------------------------------------


def expired_mirrors(store: Store, retention_s: float, *, now: datetime | None = None) -> list[tuple[str, str]]:
    """(stream id, generation id) of every mirrored generation over for longer than `retention_s`:
    its directory in this edge's spool may go (as `spool.ended_retention` does on an origin)."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=retention_s)
    rows = store.query(
        f"SELECT id, stream_id FROM stream_generations WHERE mode = ? AND NOT ({ACTIVE_SQL}) "
        "AND COALESCE(ended_at, updated_at) <= ?",
        (MIRROR_MODE, cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")),
    )
    return [(r["stream_id"], r["id"]) for r in rows]
