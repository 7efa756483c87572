"""The snapshot rules on fixed inputs (sans-IO): freshness → healthy / degraded / stale, offline
generations, overload thresholds, egress from bytes_sent growth, distinct viewers across workers."""

from __future__ import annotations

from daemons.core.domain.common import iso
from daemons.snapshot.build import EgressMeter, SpoolFacts, Thresholds, build, edge_fill_as_producer

T0 = 1_700_000_000.0
ORIGIN = {"id": "node-1", "type": "tribes_origin"}
EDGE = {"id": "edge-1", "type": "tribes_edge"}
TH = Thresholds(stats_stale_after_s=10, max_playlist_age_s=6, max_viewers=0, max_egress_bps=0)


def ingest_doc(at: float, *, live=("g1",), bitrate=1_000_000) -> dict:
    return {
        "updated_at": iso(at),
        "generations": [{"generation_id": g, "stream_id": "s1", "live": True, "backend_restarts": 2} for g in live],
        "publishers": [{"stream_id": "s1", "generation_id": g, "bitrate_bps": bitrate} for g in live],
    }


def http_doc(at: float, sent: int, sessions: dict[str, list[str]], ages: dict[str, float] | None = None) -> dict:
    return {
        "updated_at": iso(at),
        "bytes_sent": {"segment": sent - 100, "playlist": 100},
        "viewers": [{"stream_id": "s1", "generation_id": g, "rendition": "source", "viewers": len(s), "sessions": s}
                    for g, s in sessions.items()],
        "playlists": [{"path": f"s1/{g}/source", "age_s": a} for g, a in (ages or {}).items()],
    }


def run(now, ingest, http, endpoint=ORIGIN, th=TH, meter=None, **kw):
    return build(endpoint=endpoint, reporter="node-1", ingest=ingest, http=http, now=now, thresholds=th,
                 egress=meter or EgressMeter(), **kw)


def test_fresh_stats_give_healthy_rows_with_distinct_viewers_and_egress():
    meter = EgressMeter()
    run(T0, ingest_doc(T0), {"http-0": http_doc(T0, 1000, {}), "http-1": http_doc(T0, 0, {})}, meter=meter)
    # One second later: worker 0 sent 125,000 bytes (1 Mbit), worker 1 250,000; "b" is on both workers.
    out = run(T0 + 1, ingest_doc(T0 + 1), {
        "http-0": http_doc(T0 + 1, 126_000, {"g1": ["a", "b"]}, {"g1": 0.4}),
        "http-1": http_doc(T0 + 1, 250_000, {"g1": ["b", "c"]}, {"g1": 0.2}),
    }, meter=meter, spool={"g1": SpoolFacts(playlist_mtime=T0 + 0.5, segment_mtime=T0 - 1)}, spool_free_bytes=123)
    top, gen = out.rows
    assert top["generation_id"] == "" and gen["generation_id"] == "g1"
    assert top["status"] == gen["status"] == "healthy"
    assert top["viewers"] == gen["viewers"] == 3
    assert top["egress_bps"] == gen["egress_bps"] == 3_000_000
    assert top["ingress_bps"] == gen["ingress_bps"] == 1_000_000
    assert gen["playlist_age_s"] == 0.2  # the youngest view of the playlist
    assert gen["last_segment_at"] == iso(T0 - 1)
    assert gen["segment_lag"] == 0  # an origin is its own source
    assert out.extra["spool_free_bytes"] == 123 and out.extra["backend_restarts"] == 2


def test_late_stats_degrade_then_nothing_fresh_is_stale_and_old_numbers_are_dropped():
    http = {"http-0": http_doc(T0, 1000, {"g1": ["a"]})}
    late_ingest = run(T0 + 11, ingest_doc(T0), {"http-0": http_doc(T0 + 11, 2000, {"g1": ["a"]})}, store_generations=["g1"])
    assert [r["status"] for r in late_ingest.rows] == ["degraded", "degraded"]
    assert late_ingest.rows[0]["ingress_bps"] == 0  # the late ingest's bitrate is not reported as fresh
    assert late_ingest.rows[0]["viewers"] == 1  # the fresh worker's viewers are
    nothing = run(T0 + 11, ingest_doc(T0), http, store_generations=["g1"])
    assert [r["status"] for r in nothing.rows] == ["stale", "stale"]
    assert nothing.rows[1]["viewers"] == 0 and nothing.rows[1]["ingress_bps"] == 0
    assert nothing.extra["sources"] == {"ingest": "late", "http-0": "late"}
    missing = run(T0, None, {"http-0": None})
    assert [r["status"] for r in missing.rows] == ["stale"]
    assert missing.extra["sources"] == {"ingest": "missing", "http-0": "missing"}


def test_generation_not_run_by_a_fresh_ingest_is_offline_and_old_playlist_is_stale():
    out = run(T0, ingest_doc(T0, live=()), {"http-0": http_doc(T0, 0, {})}, store_generations=["g1"])
    assert [r["status"] for r in out.rows] == ["healthy", "offline"]
    old = run(T0, ingest_doc(T0), {"http-0": http_doc(T0, 0, {})}, spool={"g1": SpoolFacts(playlist_mtime=T0 - 7)})
    assert old.rows[1]["status"] == "stale" and old.rows[1]["playlist_age_s"] == 7.0


def test_overloaded_past_thresholds_and_edges_have_no_lag_yet():
    th = Thresholds(stats_stale_after_s=10, max_playlist_age_s=6, max_viewers=1, max_egress_bps=0)
    out = run(T0, ingest_doc(T0), {"http-0": http_doc(T0, 0, {"g1": ["a", "b"]})}, th=th)
    assert [r["status"] for r in out.rows] == ["overloaded", "overloaded"]
    edge = run(T0, ingest_doc(T0), {"http-0": http_doc(T0, 0, {})}, endpoint=EDGE)
    assert edge.rows[0]["segment_lag"] is None


def test_egress_meter_survives_a_worker_restart():
    m = EgressMeter()
    m.update("http-0", {"updated_at": iso(T0), "bytes_sent": {"x": 10_000}})
    assert m.update("http-0", {"updated_at": iso(T0 + 2), "bytes_sent": {"x": 20_000}}) == 40_000
    assert m.update("http-0", {"updated_at": iso(T0 + 3), "bytes_sent": {"x": 500}}) == 0  # restarted
    assert m.update("http-0", {"updated_at": iso(T0 + 4), "bytes_sent": {"x": 1500}}) == 8000
    assert m.update("http-0", {"updated_at": iso(T0 + 4), "bytes_sent": {"x": 1500}}) == 8000  # same document again


def edge_fill_doc(at: float, *, last_segment_at: float | None, lag: int | None = 0) -> dict:
    """sender-edge-fill's stats: the generations it mirrors (no publishers, no state.json)."""
    return {
        "updated_at": iso(at), "counters": {}, "edges": {},
        "generations": [{"stream_id": "s1", "generation_id": "g1", "live": True, "ended": False, "segment_lag": lag,
                         "source": "origin", "switches": 0, "renditions": {"source": {"last": [12, 3]}},
                         "last_segment_at": iso(last_segment_at) if last_segment_at else None}],
    }


def test_an_edge_reports_when_its_newest_segment_arrived():
    # An edge's spool has no packager state.json: the segment time is what sender-edge-fill says.
    producer, lags = edge_fill_as_producer(edge_fill_doc(T0, last_segment_at=T0 - 0.7, lag=1))
    out = run(T0, producer, {"http-0": http_doc(T0, 0, {})}, endpoint=EDGE, store_generations=["g1"],
              spool={"g1": SpoolFacts(playlist_mtime=T0 - 0.1)}, segment_lags=lags)
    top, gen = out.rows
    assert gen["last_segment_at"] == top["last_segment_at"] == iso(T0 - 0.7)
    assert gen["status"] == top["status"] == "healthy" and gen["segment_lag"] == 1
    # Before its first closed segment: unknown, as on an origin.
    producer, lags = edge_fill_as_producer(edge_fill_doc(T0, last_segment_at=None))
    out = run(T0, producer, {"http-0": http_doc(T0, 0, {})}, endpoint=EDGE, store_generations=["g1"], segment_lags=lags)
    assert out.rows[1]["last_segment_at"] is None and out.rows[0]["last_segment_at"] is None
    # Late stats: the numbers are dropped, but when the last segment came is still a fact.
    producer, lags = edge_fill_as_producer(edge_fill_doc(T0, last_segment_at=T0 - 0.7))
    late = run(T0 + 11, producer, {"http-0": http_doc(T0 + 11, 0, {})}, endpoint=EDGE, store_generations=["g1"], segment_lags=lags)
    assert late.rows[1]["status"] == "degraded" and late.rows[1]["last_segment_at"] == iso(T0 - 0.7)
    # An origin's packager state.json stays what counts where there is one.
    assert run(T0, ingest_doc(T0), {"http-0": http_doc(T0, 0, {})},
               spool={"g1": SpoolFacts(segment_mtime=T0 - 2)}).rows[1]["last_segment_at"] == iso(T0 - 2)
