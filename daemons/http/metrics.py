"""`/metrics`: Prometheus text exposition of every worker's counters and the ingest daemon's stats.

Each HTTP worker writes its counters and viewers to `<state_dir>/stats/http-<n>.json` once a
second; a scrape, whichever worker answers it, adds up the fresh files of its siblings and its own
live numbers, so `http.workers` > 1 is one set of series. Endpoint gauges and their 1-minute
rollups come from the store's latest snapshots (`EndpointSnapshots`, re-read at most once a
second by `refresh`), the same rows the control plane gets. prometheus-client does the exposition
format (escaping, types, HELP); the collector below only reads state.
"""

from __future__ import annotations

import time
from collections import Counter

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from daemons.core.domain.common import parse_time
from daemons.core.domain.snapshots import STATUSES
from daemons.core.stats import read_fresh_stats, viewers_per_stream
from daemons.http.state import EndpointSnapshots

STATS_FRESH_S = 5.0
RESTREAM_PUSH_STATES = ("connecting", "live", "failing")  # of domain.restream.STATES, while pushed


def worker_stats(ctx) -> dict:
    """This worker's numbers, as written to its stats file and added up by scrapes."""
    now = trio.current_time()
    return {
        "worker": ctx.worker,
        **ctx.counters.to_json(),
        "viewers": ctx.viewers.snapshot(),
        "playlists": [
            {"path": path, "age_s": round(now - v.changed_at, 3)}
            for path, v in ctx.spool.views.items()
            if v.playlist is not None and not v.playlist.ended
        ],
    }


def all_worker_stats(ctx) -> list[dict]:
    """Fresh stats of every worker, this one's live."""
    out = [worker_stats(ctx)]
    stats_dir = ctx.install.state_dir / "stats"
    for path in sorted(stats_dir.glob("http-*.json")):
        name = path.stem
        if name == ctx.stats_name:
            continue
        doc = read_fresh_stats(ctx.install.state_dir, name, STATS_FRESH_S)
        if doc is not None:
            out.append(doc)
    return out


# (column, metric suffix, help) of the per-endpoint gauges and their rollups
ENDPOINT_GAUGES = (
    ("viewers", "viewers", "Viewers (distinct player sessions)"),
    ("ingress_bps", "ingress_bits", "Bits per second received"),
    ("egress_bps", "egress_bits", "Bits per second sent"),
    ("playlist_age_s", "playlist_age_seconds", "Seconds since the playlist last changed"),
    ("segment_lag", "segment_lag", "Segments behind its source"),
)


def endpoint_snapshots(ctx) -> EndpointSnapshots:
    cache = getattr(ctx, "_endpoint_snapshots", None)
    if cache is None:
        cache = ctx._endpoint_snapshots = EndpointSnapshots(ctx.store)
    return cache


async def refresh(ctx) -> None:
    """Before a scrape: re-read the endpoint snapshots if older than a second."""
    await endpoint_snapshots(ctx).refresh()


def endpoint_families(cache: EndpointSnapshots, now: float, snapshot_stats: dict | None):
    """Per-endpoint gauges (latest snapshot), 1-minute min/avg/max rollups, report counters."""
    for col, name, text in ENDPOINT_GAUGES:
        m = GaugeMetricFamily(f"sender_endpoint_{name}", f"{text}, per endpoint (its latest snapshot).", labels=["endpoint"])
        for r in cache.latest:
            if r[col] is not None:
                m.add_metric([r["endpoint_id"]], r[col])
        yield m
    m = GaugeMetricFamily("sender_endpoint_status", "1 for the endpoint's current status (healthy, degraded, stale, offline, overloaded).",
                          labels=["endpoint", "status"])
    for r in cache.latest:
        for status in STATUSES:
            m.add_metric([r["endpoint_id"], status], 1 if r["status"] == status else 0)
    yield m
    m = GaugeMetricFamily("sender_endpoint_snapshot_age_seconds", "Seconds since the endpoint's latest snapshot was observed.", labels=["endpoint"])
    for r in cache.latest:
        m.add_metric([r["endpoint_id"]], round(max(0.0, now - parse_time(r["observed_at"])), 3))
    yield m
    for col, name, text in ENDPOINT_GAUGES:
        m = GaugeMetricFamily(f"sender_endpoint_{name}_1m", f"{text}, per endpoint: min, avg and max of its snapshots of the last minute.",
                              labels=["endpoint", "stat"])
        for r in cache.rollups:
            if r[f"{col}_avg"] is not None:
                for stat in ("min", "avg", "max"):
                    m.add_metric([r["endpoint_id"], stat], round(r[f"{col}_{stat}"], 3))
        yield m
    report = (snapshot_stats or {}).get("report") or {}
    yield CounterMetricFamily("sender_reports_sent", "Snapshot reports delivered to the control plane.", value=report.get("sent", 0))
    yield CounterMetricFamily("sender_reports_dropped", "Snapshot reports dropped from a full queue.", value=report.get("dropped", 0))
    yield CounterMetricFamily("sender_reports_rejected", "Snapshot reports refused by the control plane (4xx).", value=report.get("rejected", 0))
    yield GaugeMetricFamily("sender_reports_queued", "Snapshot reports waiting to be sent.", value=report.get("queued", 0))


def pull_through_families(fetches: Counter, errors: Counter, totals: Counter):
    """Edge pull-through (pull_through.py): upstream requests, bytes, coalesced waits, errors."""
    m = CounterMetricFamily("sender_pull_through_fetches", "Upstream requests made by pull-through, by kind of file.", labels=["kind"])
    for kind, n in sorted(fetches.items()):
        m.add_metric([kind], n)
    yield m
    yield CounterMetricFamily("sender_pull_through_bytes", "Body bytes received from upstreams by pull-through.", value=totals["bytes"])
    yield CounterMetricFamily("sender_pull_through_coalesced", "Requests that waited on a pull-through fetch already in flight.",
                              value=totals["coalesced"])
    m = CounterMetricFamily("sender_pull_through_errors", "Failed pull-through upstream requests, by reason.", labels=["reason"])
    for reason, n in sorted(errors.items()):
        m.add_metric([reason], n)
    yield m


def restream_families(pushes: list[dict], slug: dict[str, str]):
    """Restream targets being pushed (sender-ingest's stats): state, bytes, bitrate, failures."""
    labels = ["stream", "target", "label"]
    rows = [([slug.get(p["stream_id"], p["stream_id"]), p["target_id"], p.get("label") or ""], p) for p in pushes]
    m = GaugeMetricFamily("sender_restream_target_state", "1 for a pushed restream target's current state (connecting, live, failing).",
                          labels=[*labels, "state"])
    for key, p in rows:
        for state in RESTREAM_PUSH_STATES:
            m.add_metric([*key, state], 1 if p.get("state") == state else 0)
    yield m
    m = CounterMetricFamily("sender_restream_sent_bytes", "Bytes pushed to a restream target during the current publish.", labels=labels)
    for key, p in rows:
        m.add_metric(key, p.get("bytes") or 0)
    yield m
    m = GaugeMetricFamily("sender_restream_bitrate_bits", "Bits per second pushed to a restream target.", labels=labels)
    for key, p in rows:
        m.add_metric(key, p.get("bitrate_bps") or 0)
    yield m
    m = CounterMetricFamily("sender_restream_failures", "Pushes to a restream target that failed during the current publish.", labels=labels)
    for key, p in rows:
        m.add_metric(key, p.get("failures") or 0)
    yield m


class SenderCollector:
    def __init__(self, ctx):
        self.ctx = ctx

    def collect(self):
        ctx = self.ctx
        workers = all_worker_stats(ctx)
        slug = {sid: e.slug for sid, e in ctx.directory.by_id.items()}

        requests, sent, events = Counter(), Counter(), Counter()
        pull_fetches, pull_errors, pull = Counter(), Counter(), Counter()
        blocked = 0
        renditions: list[dict] = []
        for w in workers:
            for kind, code, n in w.get("requests", ()):
                requests[(kind, str(code))] += n
            sent.update(w.get("bytes_sent", {}))
            events.update(w.get("player_events", {}))
            blocked += w.get("blocked_now", 0)
            renditions += w.get("viewers", ())
            p = w.get("pull_through") or {}
            pull_fetches.update(p.get("fetches", {}))
            pull_errors.update(p.get("errors", {}))
            pull.update({"bytes": p.get("bytes", 0), "coalesced": p.get("coalesced", 0)})

        m = CounterMetricFamily("sender_http_requests", "HTTP responses by kind of request and status code.", labels=["kind", "code"])
        for (kind, code), n in sorted(requests.items()):
            m.add_metric([kind, code], n)
        yield m
        m = CounterMetricFamily("sender_http_bytes_sent", "Response body bytes sent, by kind of request.", labels=["kind"])
        for kind, n in sorted(sent.items()):
            m.add_metric([kind], n)
        yield m
        yield GaugeMetricFamily("sender_hls_blocked_requests", "Blocking playlist reloads and preload-hint requests being held.", value=blocked)
        m = CounterMetricFamily("sender_player_events", "Player telemetry events received, by kind.", labels=["kind"])
        for kind, n in sorted(events.items()):
            m.add_metric([kind], n)
        yield m

        yield from pull_through_families(pull_fetches, pull_errors, pull)

        m = GaugeMetricFamily("sender_viewers", "Active viewers (distinct player sessions) per stream.", labels=["stream"])
        for sid, n in sorted(viewers_per_stream(renditions).items()):
            m.add_metric([slug.get(sid, sid)], n)
        yield m
        per_rendition: Counter = Counter()
        for r in renditions:
            per_rendition[(r["stream_id"], r["rendition"])] += r["viewers"]
        m = GaugeMetricFamily("sender_rendition_viewers", "Active viewers per stream and rendition (per worker, summed).", labels=["stream", "rendition"])
        for (sid, rendition), n in sorted(per_rendition.items()):
            m.add_metric([slug.get(sid, sid), rendition], n)
        yield m

        m = GaugeMetricFamily("sender_playlist_age_seconds", "Seconds since a live rendition's playlist last changed.", labels=["stream", "generation", "rendition"])
        ages: dict[str, float] = {}
        for w in workers:
            for p in w.get("playlists", ()):
                ages[p["path"]] = min(p["age_s"], ages.get(p["path"], p["age_s"]))
        for path, age in sorted(ages.items()):
            sid, gid, rendition = path.split("/")
            m.add_metric([slug.get(sid, sid), gid, rendition], age)
        yield m

        ingest = read_fresh_stats(ctx.install.state_dir, "ingest", STATS_FRESH_S) or {}
        publishers = ingest.get("publishers", [])
        yield GaugeMetricFamily("sender_ingest_publishers", "Publishers connected to the ingest daemon.", value=len(publishers))
        recordings = ingest.get("recordings")  # sender-ingest's retention loop: at most a minute old
        if recordings is not None:
            yield GaugeMetricFamily("sender_recordings", "Recordings (recorded generations) in the spool.", value=recordings["count"])
            yield GaugeMetricFamily("sender_recordings_bytes", "Bytes the recordings take in the spool.", value=recordings["bytes"])
        m = GaugeMetricFamily("sender_ingest_bitrate_bits", "Bits per second received from each stream's publisher.", labels=["stream"])
        for p in publishers:
            m.add_metric([slug.get(p["stream_id"], p["stream_id"])], p.get("bitrate_bps") or 0)
        yield m
        m = GaugeMetricFamily("sender_spool_full", "1 while the packager cannot write a generation's files (disk full).", labels=["stream"])
        for g in ingest.get("generations", ()):
            m.add_metric([slug.get(g["stream_id"], g["stream_id"])], 1 if g.get("spool_full") else 0)
        yield m
        yield from restream_families(ingest.get("restream", ()), slug)
        pictures = ingest.get("thumbnails") or {}
        yield CounterMetricFamily("sender_thumbnails_made", "Stream thumbnails made by the ingest daemon.", value=pictures.get("made", 0))
        yield CounterMetricFamily("sender_thumbnails_failed", "Stream thumbnails that failed (the decoder is started again).",
                                  value=pictures.get("failed", 0))

        fresh = max(STATS_FRESH_S, 3 * ctx.config["snapshot.interval_s"])
        snapshot_stats = read_fresh_stats(ctx.install.state_dir, "snapshot", fresh)
        yield from endpoint_families(endpoint_snapshots(ctx), time.time(), snapshot_stats)


def render(ctx) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SenderCollector(ctx))
    return generate_latest(registry)
