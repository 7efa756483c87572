"""sender-snapshot: every `snapshot.interval_s`, this node's endpoint snapshots into the store.

Each collection reads the local stats files (ingest, http-0..N-1), stats the active generations'
spool files and the spool's free space, builds the rows (`build.build`, sans-IO), records them as
this node's EndpointSnapshots and history, prunes ended generations' rows, writes its own stats
file (`stats/snapshot.json`) and queues a signed report for the control plane (`report.py`).

Ownership: the node's endpoint is the MediaEndpoint whose id is `node.id`; it is created at
start (type tribes_origin: this node runs ingest) with node_id = node.id, or claimed when its
node_id is empty. If it belongs to another node the daemon refuses to start, and every write
checks the owner again in its transaction: a node never writes another node's endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

import httpx
import trio

from daemons.core import domain
from daemons.core.domain.common import iso, now_iso, parse_time
from daemons.core.errors import Conflict, NotFound
from daemons.core.install import Install
from daemons.core.stats import read_stats, write_stats
from daemons.runtime.small_io import SmallIO
from daemons.runtime import logging as slog
from daemons.runtime.store import StoreWorker
from daemons.snapshot.build import Built, EgressMeter, SpoolFacts, Thresholds, build, edge_fill_as_producer
from daemons.snapshot.probe import probe
from daemons.snapshot.report import Reporter, read_key

log = slog.get("snapshot")

NODE_ENDPOINT_TYPE = "tribes_origin"  # the node that runs ingest is an origin; edges come with edge-fill


def ensure_node_endpoint(store, cfg) -> dict:
    """This node's endpoint, created or claimed; Conflict when another node owns the id."""
    node_id = cfg["node.id"]
    try:
        ep = domain.endpoints.get(store, node_id)
    except NotFound:
        return domain.endpoints.upsert(store, node_id, type=NODE_ENDPOINT_TYPE, name=cfg["node.name"], node_id=node_id,
                                       public_base_url=cfg["node.public_base_url"])
    if ep["node_id"] == "":
        return domain.endpoints.upsert(store, node_id, node_id=node_id)
    if ep["node_id"] != node_id:
        raise Conflict(f"endpoint {node_id!r} (node.id) belongs to node {ep['node_id']!r}: set node.id to this node's own endpoint")
    return ep


def spool_facts(spool_root: Path, stream_id: str, generation_id: str) -> SpoolFacts:
    gdir = spool_root / "streams" / stream_id / generation_id
    playlist = segment = None
    try:
        renditions = [d for d in gdir.iterdir() if d.is_dir() and d.name != "ingest"]
    except OSError:
        return SpoolFacts()
    for d in renditions:
        for name, which in (("index.m3u8", "p"), ("state.json", "s")):
            try:
                m = (d / name).stat().st_mtime
            except OSError:
                continue
            if which == "p":
                playlist = max(playlist or m, m)
            else:
                segment = max(segment or m, m)
    return SpoolFacts(playlist, segment)


def spool_free_bytes(spool_root: Path) -> int | None:
    try:
        st = os.statvfs(spool_root)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class SnapshotDaemon:
    def __init__(self, install: Install, store: StoreWorker, *, wall_clock=time.time):
        self.small_io = SmallIO()  # the stats file, written on the loop while the disk is quick
        self.install = install
        self.cfg = install.config
        self.store = store
        self.wall_clock = wall_clock
        self.node_id = self.cfg["node.id"]
        self.egress = EgressMeter()
        self.reporter: Reporter | None = None
        self.collections = 0
        self.last: Built | None = None
        self._last_status: str | None = None
        url = self.cfg["control_plane.report_url"]
        if url:
            key_file = self.cfg["control_plane.signing_key_file"]
            if not key_file:
                raise RuntimeError("control_plane.report_url is set but control_plane.signing_key_file is not: reports must be signed")
            self.reporter = Reporter(url, read_key(key_file), wall_clock=wall_clock)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        endpoint = await self.store.run(ensure_node_endpoint, self.cfg)
        slog.log(log, logging.INFO, "collecting", endpoint=endpoint["id"], interval_s=self.cfg["snapshot.interval_s"],
                 report_url=self.cfg["control_plane.report_url"] or "-")
        async with trio.open_nursery() as nursery:
            if self.reporter is not None:
                nursery.start_soon(self.reporter.run)
            await self.collect()
            task_status.started()
            while True:
                await trio.sleep(self.cfg["snapshot.interval_s"])
                try:
                    await self.collect()
                    await self.probe_external()
                except Exception:  # one bad collection must not stop the next
                    log.exception("collection failed")

    async def probe_external(self) -> list[dict]:
        """Snapshots for external endpoints that report nothing, from their playlists (probe.py)."""
        cfg = self.cfg
        targets = await self.store.run(_silent_external_endpoints, cfg["health.stats_stale_after_s"], self.wall_clock())
        rows = []
        if not targets:
            return rows
        async with httpx.AsyncClient() as client:
            for ep in targets:
                thresholds = Thresholds.from_config(cfg, ep["health_thresholds"])
                now = self.wall_clock()
                result = await probe(client, ep["public_base_url"], now=now, max_age_s=thresholds.max_playlist_age_s)
                row = {"endpoint_id": ep["id"], "generation_id": "", "reporter": f"probe:{self.node_id}",
                       "status": result["status"], "playlist_age_s": result["playlist_age_s"], "observed_at": iso(now)}
                await self.store.run(domain.snapshots.record, row, history_limit=cfg["snapshot.history_limit"])
                rows.append(row)
        return rows

    async def collect(self) -> Built | None:
        cfg, state_dir = self.cfg, self.install.state_dir
        workers = [f"http-{i}" for i in range(cfg["http.workers"])]

        endpoint, store_gens = await self.store.run(_endpoint_and_generations, self.node_id)
        edge = endpoint["type"] == "tribes_edge"  # its media comes from sender-edge-fill, not from ingest

        def read_all():
            return read_stats(state_dir, "edge-fill" if edge else "ingest"), {w: read_stats(state_dir, w) for w in workers}

        producer, http = await trio.to_thread.run_sync(read_all)
        ingest, lags = edge_fill_as_producer(producer) if edge else (producer, {})
        if endpoint["node_id"] != self.node_id:
            slog.log(log, logging.ERROR, "endpoint now belongs to another node: not writing its snapshots",
                     endpoint=self.node_id, owner=endpoint["node_id"])
            return None
        streams = {g["id"]: g["stream_id"] for g in store_gens}
        for g in (ingest or {}).get("generations", ()):
            streams.setdefault(g["generation_id"], g["stream_id"])
        root = self.install.spool_root

        def stat_spool():
            return {gid: spool_facts(root, sid, gid) for gid, sid in streams.items()}, spool_free_bytes(root)

        spool, free = await trio.to_thread.run_sync(stat_spool)
        now = self.wall_clock()
        built = build(
            endpoint=endpoint, reporter=self.node_id, ingest=ingest, http=http, now=now,
            thresholds=Thresholds.from_config(cfg, endpoint["health_thresholds"]), egress=self.egress,
            store_generations=[g["id"] for g in store_gens], spool=spool, spool_free_bytes=free, segment_lags=lags,
        )
        try:
            await self.store.run(_record_all, built.rows, self.node_id, cfg["snapshot.history_limit"])
        except Conflict as e:
            slog.log(log, logging.ERROR, "not writing snapshots", reason=str(e))
            return None
        self.collections += 1
        self.last = built
        top = built.rows[0]
        if top["status"] != self._last_status:
            late = [n for n, s in built.extra["sources"].items() if s != "fresh"]
            slog.log(log, logging.INFO if top["status"] == "healthy" else logging.WARNING, "endpoint status",
                     endpoint=self.node_id, status=top["status"], late_stats=",".join(late) or "-")
            self._last_status = top["status"]
        if self.reporter is not None:
            self.reporter.put(self.report_body(built))
        payload = {
            "endpoint_id": self.node_id, "collections": self.collections, "last_collection": iso(now),
            "status": top["status"], "spool_free_bytes": free, "backend_restarts": built.extra["backend_restarts"],
            "report": self.reporter.stats() if self.reporter else None,
        }
        try:
            await self.small_io.run(write_stats, state_dir, "snapshot", payload)
        except OSError as e:
            log.warning("cannot write stats: %s", e)
        return built

    def report_body(self, built: Built) -> bytes:
        return json.dumps({
            "report_id": uuid.uuid4().hex, "node_id": self.node_id, "created_at": now_iso(),
            "snapshots": built.rows, **built.extra,
        }, separators=(",", ":")).encode()


def _silent_external_endpoints(store, stale_after_s: float, now: float) -> list[dict]:
    """External endpoints with a playlist URL and no fresh snapshot of their own."""
    out = []
    for ep in domain.endpoints.list_(store):
        if ep["type"] not in domain.endpoints.EXTERNAL_TYPES or ".m3u8" not in (ep["public_base_url"] or ""):
            continue
        own = domain.snapshots.own_observed_at(store, ep["id"])
        if own is not None:
            try:
                if now - parse_time(own) <= stale_after_s:
                    continue  # it reports for itself
            except ValueError:
                pass
        out.append(ep)
    return out


def _endpoint_and_generations(store, node_id: str):
    return domain.endpoints.get(store, node_id), domain.generations.list_(store, active_only=True, limit=10_000)


def _record_all(store, rows: list[dict], owner: str, history_limit: int) -> None:
    """The rows, and the latest-snapshot rows of generations no longer active dropped (their
    history stays, bounded), all in one transaction."""
    with store.write():
        for row in rows:
            domain.snapshots.record(store, row, history_limit=history_limit, owner=owner)
        domain.snapshots.prune(store, rows[0]["endpoint_id"], keep_generations=[r["generation_id"] for r in rows[1:]],
                               observed_before=rows[0]["observed_at"])
