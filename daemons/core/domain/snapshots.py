"""Endpoint snapshots: the latest observation per (endpoint, generation) and a bounded history."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from daemons.core.domain import endpoints
from daemons.core.domain.common import check_choice, check_text, now_iso
from daemons.core.errors import Conflict, InvalidInput
from daemons.core.store import Store

STATUSES = ("healthy", "degraded", "stale", "offline", "overloaded")
_COUNTS = {"viewers": 10**9, "ingress_bps": 10**13, "egress_bps": 10**13, "segment_lag": 10**9}
MAX_REPORT_ROWS = 100
COLUMNS = (
    "endpoint_id", "generation_id", "observed_at", "reporter", "status", "viewers",
    "ingress_bps", "egress_bps", "playlist_age_s", "last_segment_at", "segment_lag",
)


def _check(snapshot: dict) -> dict:
    if not isinstance(snapshot, dict):
        raise InvalidInput("a snapshot must be an object")
    unknown = set(snapshot) - set(COLUMNS)
    if unknown:
        first = sorted(unknown, key=str)[0]
        raise InvalidInput(f"unknown snapshot field {first!r}", field=str(first))
    out = {c: snapshot.get(c) for c in COLUMNS}
    if not isinstance(out["endpoint_id"], str) or not out["endpoint_id"]:
        raise InvalidInput(f"endpoint_id {out['endpoint_id']!r} is not allowed: give the id of an endpoint", field="endpoint_id")
    out["generation_id"] = _field(check_text, out["generation_id"] or "", "generation_id", 100)
    out["reporter"] = _field(check_text, out["reporter"] or "", "reporter", 100)
    out["status"] = _field(check_choice, out["status"], "status", STATUSES)
    out["observed_at"] = _time(out["observed_at"], "observed_at") if out["observed_at"] else now_iso()
    for k, hi in _COUNTS.items():
        v = out[k] if out[k] is not None or k == "segment_lag" else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi):
            raise InvalidInput(f"{k} {v!r} is not allowed: use an integer from 0 to {hi}", field=k)
        out[k] = v
    age = out["playlist_age_s"]
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age) or not 0 <= age <= 10**7):
        raise InvalidInput(f"playlist_age_s {age!r} is not allowed: use seconds from 0 to 10000000", field="playlist_age_s")
    if out["last_segment_at"] is not None:
        out["last_segment_at"] = _time(out["last_segment_at"], "last_segment_at")
    return out


def _field(check, value, what: str, *args):
    try:
        return check(value, what, *args)
    except InvalidInput as e:
        e.field = e.field or what
        raise


def _time(value: object, what: str) -> str:
    """An ISO-8601 time with a zone, as the store writes times (UTC, milliseconds, Z)."""
    _field(check_text, value, what, 40)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise InvalidInput(f"{what} {value!r} is not allowed: use an ISO-8601 time with a zone, e.g. 2026-01-31T12:00:00Z",
                           field=what)
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(store: Store, snapshot: dict, *, history_limit: int, owner: str | None = None) -> dict:
    """Write the endpoint's latest snapshot and append it to its history, pruned to the limit.

    With `owner` (a node id), refused unless the endpoint belongs to that node (its node_id),
    checked in the same transaction: a node never writes another node's endpoint."""
    snap = _check(snapshot)
    with store.write() as db:
        endpoint = endpoints.get(store, snap["endpoint_id"])
        if owner is not None and endpoint["node_id"] != owner:
            raise Conflict(f"endpoint {snap['endpoint_id']!r} belongs to node {endpoint['node_id']!r}, not {owner!r}")
        db["endpoint_snapshots"].upsert(snap, pk=("endpoint_id", "generation_id"))
        db["endpoint_history"].insert(snap)
        db.execute(
            "DELETE FROM endpoint_history WHERE endpoint_id = ? AND id <= "
            "(SELECT id FROM endpoint_history WHERE endpoint_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (snap["endpoint_id"], snap["endpoint_id"], history_limit),
        )
    return snap


def record_external(store: Store, endpoint_id: str, rows: list, *, history_limit: int, now: datetime | None = None,
                    max_age_s: float = 86400.0, max_ahead_s: float = 300.0) -> list[dict]:
    """An external endpoint's own report: every row checked (endpoint_id and reporter are the
    endpoint, observed_at within [now - max_age_s, now + max_ahead_s]) before any is written, then
    all recorded in one transaction. NotFound for an unknown endpoint; Conflict for a Sender one."""
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_REPORT_ROWS:
        raise InvalidInput(f"snapshots must be a list of 1 to {MAX_REPORT_ROWS} snapshots", field="snapshots")
    now = now or datetime.now(timezone.utc)
    checked, seen = [], set()
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            for k in ("endpoint_id", "reporter"):
                if row.get(k) not in (None, endpoint_id):
                    raise InvalidInput(f"snapshots[{i}].{k} {row[k]!r} is not allowed: a report is about its endpoint "
                                       f"{endpoint_id!r}, and made by it", field=k)
            row = {**row, "endpoint_id": endpoint_id, "reporter": endpoint_id}
        snap = _check(row)
        at = datetime.fromisoformat(snap["observed_at"])
        if not now - timedelta(seconds=max_age_s) <= at <= now + timedelta(seconds=max_ahead_s):
            raise InvalidInput(f"observed_at {snap['observed_at']} is not allowed: it must be within the last "
                               f"{max_age_s:g} s and at most {max_ahead_s:g} s ahead of this server's clock", field="observed_at")
        if snap["generation_id"] in seen:
            raise InvalidInput(f"generation_id {snap['generation_id']!r} is reported twice", field="generation_id")
        seen.add(snap["generation_id"])
        checked.append(snap)
    with store.write():
        endpoint = endpoints.get(store, endpoint_id)
        if endpoint["type"] not in endpoints.EXTERNAL_TYPES:
            raise Conflict(f"endpoint {endpoint_id!r} is {endpoint['type']}: its own node's sender-snapshot reports it, "
                           f"not an external process")
        return [record(store, snap, history_limit=history_limit) for snap in checked]


def rollups(store: Store, since: str) -> list[dict]:
    """min/avg/max of each endpoint's own rows (generation "") observed since `since`."""
    cols = ("viewers", "ingress_bps", "egress_bps", "playlist_age_s", "segment_lag")
    agg = ", ".join(f"MIN({c}) AS {c}_min, AVG({c}) AS {c}_avg, MAX({c}) AS {c}_max" for c in cols)
    return store.query(
        f"SELECT endpoint_id, COUNT(*) AS samples, {agg} FROM endpoint_history "
        "WHERE generation_id = '' AND observed_at >= ? GROUP BY endpoint_id ORDER BY endpoint_id", (since,))


def list_(store: Store, endpoint_id: str | None = None) -> list[dict]:
    if endpoint_id is None:
        return store.query("SELECT * FROM endpoint_snapshots ORDER BY endpoint_id, generation_id")
    return store.query("SELECT * FROM endpoint_snapshots WHERE endpoint_id = ? ORDER BY generation_id", (endpoint_id,))


def own_observed_at(store: Store, endpoint_id: str) -> str | None:
    """When an endpoint last reported for itself (its own node-level snapshot), if ever."""
    row = store.one("SELECT observed_at FROM endpoint_snapshots WHERE endpoint_id = ? AND generation_id = '' AND reporter = ?",
                    (endpoint_id, endpoint_id))
    return row["observed_at"] if row else None


def history(store: Store, endpoint_id: str, *, limit: int = 100) -> list[dict]:
    return store.query(
        "SELECT * FROM endpoint_history WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?", (endpoint_id, int(limit))
    )


def prune(store: Store, endpoint_id: str, *, keep_generations: list[str], observed_before: str) -> int:
    """Drop the endpoint's latest-snapshot rows of generations no longer kept, last seen before
    `observed_before` (ended broadcasts leave the table; the endpoint's own row stays)."""
    marks = ",".join("?" * len(keep_generations))
    keep = f"AND generation_id NOT IN ({marks})" if keep_generations else ""
    with store.write() as db:
        cur = db.execute(
            f"DELETE FROM endpoint_snapshots WHERE endpoint_id = ? AND generation_id != '' {keep} AND observed_at < ?",
            (endpoint_id, *keep_generations, observed_before),
        )
        return cur.rowcount


def stream_series(store: Store, since: str, *, bucket_s: int = 60) -> dict[str, list[dict]]:
    """Per stream, its broadcasts' history since `since` in buckets of `bucket_s` seconds, oldest
    first: `{"t": bucket start (unix s), "viewers": summed over endpoints, "ingress_bps": the
    highest endpoint's}` (each endpoint's samples averaged within a bucket first, so a bucket
    counts viewers once however often its endpoints reported)."""
    rows = store.query(
        "SELECT g.stream_id, h.endpoint_id, CAST(strftime('%s', h.observed_at) AS INTEGER) / ? AS bucket, "
        "AVG(h.viewers) AS viewers, AVG(h.ingress_bps) AS ingress_bps "
        "FROM endpoint_history h JOIN stream_generations g ON g.id = h.generation_id "
        "WHERE h.generation_id != '' AND h.observed_at >= ? "
        "GROUP BY g.stream_id, h.endpoint_id, bucket",
        (int(bucket_s), _time(since, "since")),  # as the rows store times, so text order is time order
    )
    buckets: dict[str, dict[int, dict]] = {}
    for r in rows:
        b = buckets.setdefault(r["stream_id"], {}).setdefault(r["bucket"], {"viewers": 0.0, "ingress_bps": 0.0})
        b["viewers"] += r["viewers"]
        b["ingress_bps"] = max(b["ingress_bps"], r["ingress_bps"])
    return {
        stream_id: [{"t": bucket * bucket_s, "viewers": round(v["viewers"]), "ingress_bps": int(v["ingress_bps"])}
                    for bucket, v in sorted(per.items())]
        for stream_id, per in buckets.items()
    }
