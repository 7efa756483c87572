"""Endpoint snapshots: the latest observation per (endpoint, generation) and a bounded history."""

from __future__ import annotations

import math

from daemons.core.domain import endpoints
from daemons.core.domain.common import check_choice, check_text, now_iso
from daemons.core.errors import Conflict, InvalidInput
from daemons.core.store import Store

STATUSES = ("healthy", "degraded", "stale", "offline", "overloaded")
_COUNTS = {"viewers": 10**9, "ingress_bps": 10**13, "egress_bps": 10**13, "segment_lag": 10**9}
COLUMNS = (
    "endpoint_id", "generation_id", "observed_at", "reporter", "status", "viewers",
    "ingress_bps", "egress_bps", "playlist_age_s", "last_segment_at", "segment_lag",
)


def _check(snapshot: dict) -> dict:
    if not isinstance(snapshot, dict):
        raise InvalidInput("a snapshot must be an object")
    unknown = set(snapshot) - set(COLUMNS)
    if unknown:
        raise InvalidInput(f"unknown snapshot field {sorted(unknown, key=str)[0]!r}")
    out = {c: snapshot.get(c) for c in COLUMNS}
    if not isinstance(out["endpoint_id"], str) or not out["endpoint_id"]:
        raise InvalidInput(f"endpoint_id {out['endpoint_id']!r} is not allowed: give the id of an endpoint")
    out["generation_id"] = check_text(out["generation_id"] or "", "generation_id", 100)
    out["reporter"] = check_text(out["reporter"] or "", "reporter", 100)
    out["status"] = check_choice(out["status"], "status", STATUSES)
    out["observed_at"] = check_text(out["observed_at"] or now_iso(), "observed_at", 40)
    for k, hi in _COUNTS.items():
        v = out[k] if out[k] is not None or k == "segment_lag" else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi):
            raise InvalidInput(f"{k} {v!r} is not allowed: use an integer from 0 to {hi}")
        out[k] = v
    age = out["playlist_age_s"]
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age) or not 0 <= age <= 10**7):
        raise InvalidInput(f"playlist_age_s {age!r} is not allowed: use seconds from 0 to 10000000")
    if out["last_segment_at"] is not None:
        check_text(out["last_segment_at"], "last_segment_at", 40)
    return out


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


def list_(store: Store, endpoint_id: str | None = None) -> list[dict]:
    if endpoint_id is None:
        return store.query("SELECT * FROM endpoint_snapshots ORDER BY endpoint_id, generation_id")
    return store.query("SELECT * FROM endpoint_snapshots WHERE endpoint_id = ? ORDER BY generation_id", (endpoint_id,))


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
