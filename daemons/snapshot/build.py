"""Snapshots from local stats, sans-IO: stats documents and a clock in, snapshot rows out.

The snapshot daemon reads the ingest daemon's and every HTTP worker's stats files and stats a few
spool files; everything it learns goes through `build()` here, which decides the numbers and the
status. No files, no store, no trio: tests feed documents and times directly.

Status rules (per row):
* every expected source (ingest, http-0..N-1) wrote within `health.stats_stale_after_s`:
  the numbers are fresh → `healthy` (or `overloaded` past max_viewers / max_egress_bps, or
  `stale` when a live generation's playlist is older than max_playlist_age_s);
* some sources are late: their numbers are dropped (never reported as fresh) → `degraded`;
* nothing fresh at all → `stale` (numbers 0 / unknown);
* a generation the store calls active that the (fresh) ingest daemon does not run → `offline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemons.core.domain.common import iso, parse_time


@dataclass(frozen=True)
class Thresholds:
    stats_stale_after_s: float = 15.0
    max_playlist_age_s: float = 6.0
    max_viewers: int = 0  # 0 = no limit
    max_egress_bps: int = 0  # 0 = no limit

    @classmethod
    def from_config(cls, cfg, overrides: dict | None = None) -> "Thresholds":
        """Config `health.*`, overridden by the endpoint's own health_thresholds."""
        o = overrides or {}
        get = lambda k: o.get(k, cfg[f"health.{k}"])  # noqa: E731
        return cls(get("stats_stale_after_s"), get("max_playlist_age_s"), get("max_viewers"), get("max_egress_bps"))


@dataclass
class EgressMeter:
    """Bits/s sent by the HTTP workers: the growth of each worker's bytes_sent between two of its
    stats documents, over the time between their stamps (exact, whatever the collection rhythm)."""

    last: dict[str, tuple[float, int]] = field(default_factory=dict)  # worker → (updated_at, bytes)
    rate: dict[str, float] = field(default_factory=dict)  # worker → last measured bits/s

    def update(self, name: str, doc: dict) -> float:
        t, total = parse_time(doc["updated_at"]), sum(doc.get("bytes_sent", {}).values())
        prev = self.last.get(name)
        if prev is not None and t > prev[0]:
            if total >= prev[1]:
                self.rate[name] = (total - prev[1]) * 8 / (t - prev[0])
            else:  # the worker restarted: counting again from zero
                self.rate[name] = 0.0
        if prev is None or t > prev[0]:
            self.last[name] = (t, total)
        return self.rate.get(name, 0.0)


@dataclass(frozen=True)
class SpoolFacts:
    """What the collector stat()ed in a generation's spool directory (unix times, or None)."""

    playlist_mtime: float | None = None  # newest index.m3u8 of its renditions
    segment_mtime: float | None = None  # newest state.json (rewritten once per closed segment)


@dataclass
class Built:
    rows: list[dict]  # snapshot rows for daemons.core.domain.snapshots.record
    extra: dict  # what the store has no column for: per generation backend restarts, sources, spool free


def _fresh(doc: dict | None, now: float, limit: float) -> bool:
    return doc is not None and "updated_at" in doc and now - parse_time(doc["updated_at"]) <= limit


def _status(fresh: int, expected: int) -> str:
    if fresh == expected:
        return "healthy"
    return "degraded" if fresh else "stale"


def _overloaded(row: dict, th: Thresholds) -> bool:
    return bool((th.max_viewers and row["viewers"] > th.max_viewers) or (th.max_egress_bps and row["egress_bps"] > th.max_egress_bps))


def build(
    *,
    endpoint: dict,
    reporter: str,
    ingest: dict | None,
    http: dict[str, dict | None],
    now: float,
    thresholds: Thresholds,
    egress: EgressMeter,
    store_generations: list[str] = (),
    spool: dict[str, SpoolFacts] | None = None,
    spool_free_bytes: int | None = None,
    segment_lags: dict[str, int | None] | None = None,
) -> Built:
    """One endpoint row (generation_id "") and one row per active generation.

    `http` maps each expected worker's stats name (http-0 …) to its document or None;
    `store_generations` are the generations the store holds active (so a generation still gets a
    row — stale or offline — when the ingest daemon's stats stop). On an edge, `ingest` is what
    sender-edge-fill reports in the same shape (`edge_fill_as_producer`) and `segment_lags` how
    many segments each generation trails its sources."""
    spool = spool or {}
    limit = thresholds.stats_stale_after_s
    ingest_fresh = _fresh(ingest, now, limit)
    fresh_http = {n: d for n, d in http.items() if _fresh(d, now, limit)}
    expected = 1 + len(http)
    fresh_count = int(ingest_fresh) + len(fresh_http)
    sources = {"ingest": "fresh" if ingest_fresh else ("late" if ingest else "missing")}
    sources.update({n: "fresh" if n in fresh_http else ("late" if d else "missing") for n, d in http.items()})

    # Viewers: distinct sessions per generation, across workers and renditions.
    sessions: dict[str, set[str]] = {}
    http_age: dict[str, float] = {}
    egress_total = 0.0
    for name, doc in fresh_http.items():
        egress_total += egress.update(name, doc)
        for r in doc.get("viewers", ()):
            sessions.setdefault(r["generation_id"], set()).update(r.get("sessions", ()))
        for p in doc.get("playlists", ()):
            gid = p["path"].split("/")[1]
            http_age[gid] = min(p["age_s"], http_age.get(gid, p["age_s"]))
    all_sessions = set().union(*sessions.values()) if sessions else set()

    live = {g["generation_id"]: g for g in (ingest or {}).get("generations", ()) if g.get("live")} if ingest_fresh else {}
    # When a producer says its newest segment arrived (an edge: no packager state.json there). A
    # time, not a rate: still true when the document is late.
    produced_at = {g["generation_id"]: g["last_segment_at"] for g in (ingest or {}).get("generations", ())
                   if isinstance(g.get("last_segment_at"), str)}
    ingress: dict[str, int] = {}
    if ingest_fresh:
        for p in ingest.get("publishers", ()):
            ingress[p["generation_id"]] = ingress.get(p["generation_id"], 0) + int(p.get("bitrate_bps") or 0)

    origin = endpoint["type"] in ("tribes_origin", "external_origin")
    observed = iso(now)
    base = {"endpoint_id": endpoint["id"], "reporter": reporter, "observed_at": observed}
    rows, extra = [], {"sources": sources, "spool_free_bytes": spool_free_bytes, "generations": {}}
    for gid in sorted(set(live) | set(store_generations)):
        facts = spool.get(gid, SpoolFacts())
        ages = [a for a in (http_age.get(gid), now - facts.playlist_mtime if facts.playlist_mtime else None) if a is not None]
        viewers = len(sessions.get(gid, ()))
        row = {
            **base,
            "generation_id": gid,
            "viewers": viewers,
            "ingress_bps": ingress.get(gid, 0),
            # Workers count bytes per kind, not per stream: a generation's share is its viewers' share.
            "egress_bps": int(egress_total * viewers / len(all_sessions)) if all_sessions else 0,
            "playlist_age_s": round(max(0.0, min(ages)), 3) if ages else None,
            "last_segment_at": iso(facts.segment_mtime) if facts.segment_mtime else produced_at.get(gid),
            "segment_lag": 0 if origin else (segment_lags or {}).get(gid),  # an origin is its own source
        }
        if ingest_fresh and gid not in live:
            row["status"] = "offline"
        else:
            row["status"] = _status(fresh_count, expected)
            if row["status"] != "stale" and row["playlist_age_s"] is not None and row["playlist_age_s"] > thresholds.max_playlist_age_s:
                row["status"] = "stale"
            elif row["status"] == "healthy" and _overloaded(row, thresholds):
                row["status"] = "overloaded"
        rows.append(row)
        extra["generations"][gid] = {"backend_restarts": live.get(gid, {}).get("backend_restarts")}

    live_rows = [r for r in rows if r["status"] != "offline"]
    ages = [r["playlist_age_s"] for r in live_rows if r["playlist_age_s"] is not None]
    segs = [r["last_segment_at"] for r in live_rows if r["last_segment_at"]]
    top = {
        **base,
        "generation_id": "",
        "viewers": len(all_sessions),
        "ingress_bps": sum(ingress.values()),
        "egress_bps": int(egress_total),
        "playlist_age_s": max(ages) if ages else None,
        "last_segment_at": max(segs) if segs else None,
        "segment_lag": 0 if origin else max((r["segment_lag"] for r in live_rows if r["segment_lag"] is not None), default=None),
        "status": _status(fresh_count, expected),
    }
    if top["status"] == "healthy" and _overloaded(top, thresholds):
        top["status"] = "overloaded"
    extra["backend_restarts"] = sum(g["backend_restarts"] or 0 for g in extra["generations"].values())
    return Built([top, *rows], extra)


def edge_fill_as_producer(doc: dict | None) -> tuple[dict | None, dict[str, int | None]]:
    """sender-edge-fill's stats in the shape `build` reads from the ingest daemon (an edge's
    producer of media), and each generation's segment lag. Each generation carries when its
    newest closed segment reached the edge's spool (`last_segment_at`)."""
    if doc is None:
        return None, {}
    gens = doc.get("generations", ())
    producer = {
        "updated_at": doc.get("updated_at"),
        "generations": [{"generation_id": g["generation_id"], "stream_id": g["stream_id"], "live": g.get("live", False),
                         "backend_restarts": 0, "last_segment_at": g.get("last_segment_at")} for g in gens],
        "publishers": [],
    }
    return producer, {g["generation_id"]: g.get("segment_lag") for g in gens}
