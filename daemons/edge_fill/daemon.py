"""sender-edge-fill: an edge node's spool, filled from its sources ahead of its viewers.

For each local edge endpoint (`distribution.plan`), once a discovery interval:

1. ask every source what it carries — a Sender node's `GET /api/distribution` (with the node
   token), an external origin's master playlist (made into a listing by `external.py`) — and
   judge its health (`health.py`);
2. mirror the streams, generations and renditions into the local store (`distribution.merge`,
   then `distribution.mirror`): per stream the newest generation any source lists, and never
   back to an older or ended one, so this node answers the playback API for every stream it
   carries;
3. run a `GenerationMirror` for every live generation: one follower per rendition reloads the
   upstream media playlist (blocking reloads when the source offers them, and the preload-hinted
   part requested ahead), fetches what the local spool lacks, and publishes the playlist once
   every file it lists is on disk — same names and sequence numbers as the source, so players can
   move between nodes; rendition reports name the positions of this edge's own sibling
   playlists. The source is chosen per request: a failing or stalled source (or one that lists
   parts it does not give) is left at once, a preferred one taken back as soon as it is healthy;
   a switch between Sender sources of the same generation is seamless, because they serve the
   same files.

`generation.json` in the generation's spool directory lists its renditions (what this node's own
listing offers further edges) and names the source followed, so sender-http's pull-through
fetches a missing object from the same place. Stats go to `stats/edge-fill.json`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from urllib.parse import urljoin

import httpx
import trio

from daemons.core import domain
from daemons.core.domain import distribution
from daemons.core.errors import SenderError
from daemons.core.install import Install
from daemons.core.stats import write_stats
from daemons.edge_fill import external
from daemons.edge_fill.health import SourceHealth, choose
from daemons.edge_fill.mirror import OriginRestarted, RenditionMirror, Step, listed_names, sibling_reports
from daemons.media import hls
from daemons.media.hls.parse import parse_media_playlist
from daemons.media.packager import Delete
from daemons.runtime.small_io import SmallIO
from daemons.runtime import logging as slog
from daemons.runtime import spool_events
from daemons.core.files import atomic_write
from daemons.runtime.spool import SpoolWriter
from daemons.runtime.spool_events import SpoolEventSender
from daemons.runtime.store import StoreWorker

log = slog.get("edge-fill")

MAX_OBJECT_BYTES = 64 << 20
MAX_PLAYLIST_BYTES = 4 << 20
MASTER_REFRESH_S = 2.0
STATS_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 30.0
MAX_BACKOFF_S = 5.0
RETRY_S = 0.2  # before asking again for a playlist that does not exist yet, or when every source fails


class SourceError(Exception):
    def __init__(self, message: str, *, timeout: bool = False, status: int | None = None):
        super().__init__(message)
        self.timeout = timeout
        self.status = status


class Upstream:
    """One source endpoint as this edge sees it."""

    def __init__(self, source: distribution.Source, order: int, thresholds: dict):
        self.source = source
        self.health = SourceHealth(source.endpoint_id, order, thresholds)

    @property
    def external(self) -> bool:
        return self.source.type in domain.endpoints.EXTERNAL_TYPES

    def json(self, now: float) -> dict:
        h = self.health
        return {"endpoint_id": self.source.endpoint_id, "type": self.source.type, "base_url": self.source.base_url,
                "status": h.status(now), "error_rate": round(h.error_rate(), 3), "load": h.load}


class EdgeState:
    """One local edge endpoint: its sources, in order, each with its health."""

    def __init__(self, endpoint_id: str):
        self.endpoint_id = endpoint_id
        self.upstreams: list[Upstream] = []

    def update(self, plan: distribution.EdgePlan, defaults: dict) -> None:
        known = {u.source.endpoint_id: u for u in self.upstreams}
        fresh = []
        for order, source in enumerate(plan.sources):
            thresholds = {**defaults, **plan.thresholds, **source.thresholds}
            u = known.get(source.endpoint_id)
            if u is None or u.source != source:
                u = Upstream(source, order, thresholds)
            u.health.order, u.health.thresholds = order, thresholds
            fresh.append(u)
        self.upstreams = fresh

    def choose(self, generation_id: str, now: float) -> Upstream | None:
        picked = choose([u.health for u in self.upstreams], now, generation_id)
        return next((u for u in self.upstreams if u.health is picked), None)


class EdgeFillDaemon:
    def __init__(self, install: Install, store: StoreWorker):
        self.small_io = SmallIO()  # the stats file, written on the loop while the disk is quick
        self.install = install
        self.store = store
        self.cfg = install.config
        self.node_id = self.cfg["node.id"]
        self.root = install.spool_root / "streams"
        key = install.distribution_key()
        self.headers = {"Authorization": f"Bearer {distribution.node_token(key)}"} if key else {}
        self.health_defaults = {k.split(".", 1)[1]: self.cfg[k] for k in self.cfg.values if k.startswith("health.")}
        self.edges: dict[str, EdgeState] = {}
        self.mirrors: dict[str, GenerationMirror] = {}
        self.external_generations: dict[str, str] = {}  # external origin endpoint → the generation it feeds now
        self.events = SpoolEventSender(install.state_dir)
        self.counters = {"objects": 0, "bytes": 0, "playlists": 0, "errors": 0, "switches": 0, "listings": 0, "assembled": 0}
        self.client: httpx.AsyncClient | None = None
        self.nursery: trio.Nursery | None = None

    # --- running ------------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        try:
            # No default headers: the node token goes only to Sender sources (`authorized`), never
            # to an external origin or wherever its playlists point.
            async with httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False) as client, \
                    trio.open_nursery() as nursery:
                self.client, self.nursery = client, nursery
                await self._discover()
                await self._write_stats()
                nursery.start_soon(self._discovery_loop)
                nursery.start_soon(self._stats_loop)
                nursery.start_soon(self._retention_loop)
                task_status.started()
        finally:
            self.events.close()

    async def _discovery_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg["edge_fill.discovery_interval_s"])
            await self._discover()

    async def _discover(self) -> None:
        plans = await self.store.run(distribution.plan, self.node_id)
        for plan in plans:
            self.edges.setdefault(plan.endpoint_id, EdgeState(plan.endpoint_id)).update(plan, self.health_defaults)
        for gone in set(self.edges) - {p.endpoint_id for p in plans}:
            del self.edges[gone]
        for mirror in self.mirrors.values():
            if mirror.edge.endpoint_id not in self.edges:
                mirror.upstream_active = False  # its edge endpoint was removed or disabled: it winds down
        for edge in self.edges.values():
            try:
                await self._discover_edge(edge)
            except SenderError as e:
                slog.log(log, logging.WARNING, "a source's listing was refused", edge=edge.endpoint_id, error=e.message)
            except Exception:  # one edge's bad listing must not stop the others (or the daemon)
                log.exception("discovery failed", extra={"fields": {"edge": edge.endpoint_id}})

    async def _discover_edge(self, edge: EdgeState) -> None:
        docs: dict[str, dict] = {}

        async def ask(u: Upstream) -> None:
            try:
                doc = await (self._external_listing(u) if u.external else self._sender_listing(u))
            except SourceError as e:
                u.health.failed(trio.current_time())
                slog.log(log, logging.DEBUG, "source listing failed", source=u.source.endpoint_id, error=e)
                return
            self.counters["listings"] += 1
            u.health.listed(trio.current_time(), doc)
            docs[u.source.endpoint_id] = doc

        async with trio.open_nursery() as n:
            for u in edge.upstreams:
                n.start_soon(ask, u)
        if not docs:
            return  # nobody answered: keep what is mirrored, delete nothing
        now = trio.current_time()
        ranked = sorted(edge.upstreams, key=lambda u: (u.health.status(now) == "stale", u.health.order))
        # Per stream the newest generation any source lists (a stale source cannot bring back the
        # one before); the store keeps what ended ended (`distribution.mirror`).
        merged = distribution.merge(docs[u.source.endpoint_id] for u in ranked if u.source.endpoint_id in docs)
        listing = {"version": distribution.LISTING_VERSION, "node_id": self.node_id, "streams": merged}
        streams = await self.store.run(distribution.mirror, edge.endpoint_id, listing)
        active = {s["generation"]["id"] for s in streams if domain.generations.is_active(s["generation"]["status"])}
        for mirror in self.mirrors.values():
            if mirror.edge is edge:
                mirror.upstream_active = mirror.gid in active  # ended, failed, or its stream deleted upstream
        for s in streams:
            g = s["generation"]
            if g["id"] in active and g["id"] not in self.mirrors and g["renditions"]:
                mirror = self.mirrors[g["id"]] = GenerationMirror(self, edge, s)
                self.nursery.start_soon(mirror.run)

    # --- talking to sources -------------------------------------------------------------------

    async def get(self, url: str, *, timeout: float, limit: int = MAX_OBJECT_BYTES, authorized: bool = True,
                  headers: dict[str, str] | None = None) -> tuple[int, bytes, httpx.Headers]:
        """One GET; 2xx/4xx come back, transport failures, timeouts, 5xx and unusable URLs raise
        SourceError. `authorized`: with the node token (Sender sources only)."""
        assert self.client is not None
        headers = {**(self.headers if authorized else {}), **(headers or {})}
        try:
            with trio.fail_after(timeout):
                async with self.client.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout + 1)) as r:
                    if r.status_code >= 500:
                        raise SourceError(f"{url}: HTTP {r.status_code}", status=r.status_code)
                    length = r.headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) > limit:
                        raise SourceError(f"{url}: {length} bytes is over the {limit} limit")
                    body = bytearray()
                    async for chunk in r.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise SourceError(f"{url}: over the {limit} byte limit")
                    return r.status_code, bytes(body), r.headers
        except trio.TooSlowError:
            raise SourceError(f"{url}: no answer within {timeout:.1f} s", timeout=True) from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            raise SourceError(f"{url[:200]}: {type(e).__name__}: {e}") from None

    @property
    def listing_timeout(self) -> float:
        """A source that does not answer its listing within two discovery rounds holds up the
        others' (they are asked together): it counts as a failure instead."""
        return min(self.cfg["edge_fill.request_timeout_s"], max(1.0, 2 * self.cfg["edge_fill.discovery_interval_s"]))

    async def _sender_listing(self, u: Upstream) -> dict:
        url = f"{u.source.base_url}/api/distribution"
        status, body, _ = await self.get(url, timeout=self.listing_timeout, limit=MAX_PLAYLIST_BYTES)
        if status != 200:
            raise SourceError(f"{url}: HTTP {status} {body[:200].decode(errors='replace')}", status=status)
        try:
            return distribution.check_listing(json.loads(body))
        except (ValueError, SenderError) as e:
            raise SourceError(f"{url}: unusable listing: {e}") from None

    async def _external_listing(self, u: Upstream) -> dict:
        """An external origin (any HLS origin) as a listing (`external.py`): the generation it
        feeds now, else the one this edge carries already (after a restart of the daemon), else
        a new one."""
        url = u.source.base_url
        status, body, _ = await self.get(url, timeout=self.listing_timeout, limit=MAX_PLAYLIST_BYTES, authorized=False)
        if status != 200:
            raise SourceError(f"{url}: HTTP {status}", status=status)
        try:
            origin = external.read(url, body.decode(errors="replace"))
        except external.ExternalError as e:
            raise SourceError(str(e)) from None
        for reason in origin.skipped:
            slog.log(log, logging.WARNING, "variant skipped", source=u.source.endpoint_id, error=reason)
        gid = self.external_generations.get(u.source.endpoint_id)
        if gid is None:
            carried = await self.store.run(domain.generations.active, external.stream_id(u.source.endpoint_id, url))
            gid = carried["id"] if carried else external.new_generation_id(u.source.endpoint_id)
            self.external_generations[u.source.endpoint_id] = gid
        return external.listing(u.source.endpoint_id, origin, gid)

    # --- stats and retention ------------------------------------------------------------------

    async def _stats_loop(self) -> None:
        while True:
            await trio.sleep(STATS_INTERVAL_S)
            await self._write_stats()

    async def _write_stats(self) -> None:
        now = trio.current_time()
        payload = {
            "edges": {e.endpoint_id: {"sources": [u.json(now) for u in e.upstreams]} for e in self.edges.values()},
            "generations": [m.json() for m in self.mirrors.values()],
            "counters": dict(self.counters),
        }
        try:
            await self.small_io.run(write_stats, self.install.state_dir, "edge-fill", payload)
        except OSError as e:
            slog.log(log, logging.WARNING, "cannot write stats", error=e)

    async def _retention_loop(self) -> None:
        retention = self.cfg.seconds("spool.ended_retention")
        while True:
            await trio.sleep(min(RETENTION_INTERVAL_S, max(retention / 2, 0.5)))
            expired = await self.store.run(distribution.expired_mirrors, retention)
            for sid, gid in expired:
                if gid not in self.mirrors:
                    d = self.root / sid / gid
                    if d.exists():  # (every ended mirror is listed each round; most are gone already)
                        await trio.to_thread.run_sync(shutil.rmtree, d, True)

    def send_event(self, sid: str, gid: str, name: str, playlist: hls.MediaPlaylist) -> None:
        last = playlist.last_msn_part()
        if last is not None:
            self.events.send(spool_events.encode(f"{sid}/{gid}/{name}", *last))


@dataclass(eq=False)
class Prefetch:
    """A preload-hinted part requested ahead: from which source, done when it ended (arrived or
    not), cancelled when the rendition leaves that source."""

    source: Upstream
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


def _range_total(content_range: str | None) -> int | None:
    """The complete length from `bytes a-b/N` or `bytes */N`."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GenerationMirror:
    """One generation copied from upstream: a follower per rendition, the master playlist,
    generation.json, delayed deletions."""

    def __init__(self, daemon: EdgeFillDaemon, edge: EdgeState, entry: dict):
        self.daemon = daemon
        self.edge = edge
        self.sid = entry["id"]
        self.gid = entry["generation"]["id"]
        self.names = [r["name"] for r in entry["generation"]["renditions"]]
        self.external = entry.get("external")
        self.dir = daemon.root / self.sid / self.gid
        self.writer = SpoolWriter(self.dir)
        self.renditions = {n: RenditionMirror(n, keep_names=self.external is None) for n in self.names}
        self.upstream_active = True
        self.source: Upstream | None = None
        self.switches = 0
        self.playable = trio.Event()
        self.ended = False
        self._hints: dict[str, Prefetch] = {}  # "<rendition>/<name>" → prefetch in flight
        self._fetch_limit = trio.CapacityLimiter(daemon.cfg["edge_fill.max_fetches"])
        self._locks = {n: trio.Lock() for n in self.names}
        self._master: bytes | None = None  # the master playlist last written  # one step at a time per rendition
        self._progress_at = {n: trio.current_time() for n in self.names}
        self.last_segment_at: float | None = None  # wall clock: when the newest closed segment reached the spool

    @property
    def fields(self) -> dict:
        return {"stream": self.sid, "generation": self.gid}

    def json(self) -> dict:
        return {
            "stream_id": self.sid, "generation_id": self.gid, "ended": self.ended, "switches": self.switches,
            "live": self.playable.is_set() and not self.ended, "segment_lag": self.segment_lag(),
            "source": self.source.source.endpoint_id if self.source else None,
            "last_segment_at": _iso(self.last_segment_at) if self.last_segment_at else None,
            "renditions": {n: {"last": m.local.last_msn_part() if m.local else None} for n, m in self.renditions.items()},
        }

    def segment_lag(self) -> int | None:
        """Segments this edge trails the newest position any source listed (per rendition, the worst)."""
        lags = []
        for name, m in self.renditions.items():
            newest = [u.health.positions.get(f"{self.gid}/{name}", {}).get("last") for u in self.edge.upstreams]
            newest = [p[0] for p in newest if p]
            mine = m.local.last_msn_part() if m.local else None
            if newest and mine:
                lags.append(max(0, max(newest) - mine[0]))
        return max(lags) if lags else None

    async def run(self) -> None:
        try:
            resumed = await trio.to_thread.run_sync(self._load)
            for name, (playlist, have) in resumed.items():
                m = self.renditions[name]
                m.local, m.have = playlist, have
            if resumed:
                slog.log(log, logging.INFO, "resumed from the spool", renditions=",".join(resumed), **self.fields)
            if all(m.local is not None for m in self.renditions.values()):
                self.playable.set()
            self.pick()
            await self._write_generation()
            async with trio.open_nursery() as n:
                n.start_soon(self.writer.run_deletions)
                n.start_soon(self._master_loop)
                async with trio.open_nursery() as followers:
                    for name in self.names:
                        followers.start_soon(self._follow, name, n)
                self.ended = True
                await self._write_master()
                await self._write_generation()
                slog.log(log, logging.INFO, "generation mirrored to its end", **self.fields)
                n.cancel_scope.cancel()
        except Exception:  # a bug here must not stop every other generation
            log.exception("generation mirror failed", extra={"fields": self.fields})
        finally:
            self.daemon.mirrors.pop(self.gid, None)

    def _load(self) -> dict[str, tuple[hls.MediaPlaylist, set[str]]]:
        """Create the directories; pick up what a previous run published (a restarted daemon
        continues from its last playlist instead of fetching the window again)."""
        out = {}
        for name in self.names:
            d = self.dir / name
            d.mkdir(parents=True, exist_ok=True)
            try:
                playlist = parse_media_playlist((d / "index.m3u8").read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if not playlist.ended:
                out[name] = (playlist, {n for n in listed_names(playlist) if (d / n).exists()})
                if playlist.segments:
                    try:
                        at = (d / playlist.segments[-1].uri).stat().st_mtime
                    except OSError:
                        continue
                    self.last_segment_at = max(self.last_segment_at or at, at)
        return out

    # --- choosing the source ----------------------------------------------------------------

    def pick(self) -> Upstream | None:
        u = self.edge.choose(self.gid, trio.current_time())
        if u is not self.source:
            old = self.source
            self.source = u
            if old is not None and u is not None:
                self.switches += 1
                self.daemon.counters["switches"] += 1
                slog.log(log, logging.WARNING, "source switched", old=old.source.endpoint_id, new=u.source.endpoint_id,
                         old_status=old.health.status(trio.current_time(), self.gid), **self.fields)
                self.daemon.nursery.start_soon(self._write_generation)
                for hint in self._hints.values():
                    if hint.source is not u:
                        hint.scope.cancel()  # a part held by the source we left would come late, if ever
        return u

    async def _get(self, url: str, **kw) -> tuple[int, bytes, httpx.Headers]:
        return await self.daemon.get(url, authorized=self.external is None, **kw)

    def _resolve(self, playlist_url: str, uri: str) -> str:
        if self.external is None:
            return urljoin(playlist_url, uri)  # a spool name (checked by the mirror)
        try:
            return external.same_origin(self.external["master_url"], urljoin(playlist_url, uri))
        except external.ForeignURL as e:
            raise SourceError(str(e)) from None

    def _playlist_url(self, u: Upstream, name: str) -> str:
        if self.external is not None:
            return self.external["variants"][name]
        return f"{u.source.base_url}/hls/{self.sid}/{self.gid}/{name}/index.m3u8"

    # --- one rendition ------------------------------------------------------------------------

    async def _follow(self, name: str, nursery: trio.Nursery) -> None:
        m = self.renditions[name]
        cfg = self.daemon.cfg
        blocking = False
        failures = 0  # steps in a row that could not be fetched or written
        while True:
            u = self.pick()
            if u is None:
                await trio.sleep(RETRY_S)
                continue
            url = self._playlist_url(u, name)
            td = m.local.target_duration if m.local else max(1, math.ceil(cfg["hls.segment_target_s"]))
            directive = m.next_directive() if blocking else None
            query = ""
            if directive is not None:
                query = f"?_HLS_msn={directive[0]}" + (f"&_HLS_part={directive[1]}" if directive[1] is not None else "")
            # A blocking reload answers within a part when the source is live; one that takes a
            # whole target duration means the source's playlist stopped: leave it (≤ 2 × TARGETDURATION).
            timeout = td + 0.5 if directive is not None else cfg["edge_fill.request_timeout_s"]
            now = trio.current_time()
            # The parts it lists must be here by then too (the hinted one included): a source
            # that lists parts and does not give them is left as fast as one whose playlist stopped.
            parts_by = now + timeout if directive is not None else None
            try:
                status, body, _ = await self._get(url + query, timeout=timeout, limit=MAX_PLAYLIST_BYTES)
            except SourceError as e:
                self.daemon.counters["errors"] += 1
                if e.timeout and directive is not None:
                    u.health.no_progress(self.gid, trio.current_time())
                else:
                    u.health.failed(trio.current_time())
                slog.log(log, logging.INFO, "source request failed", rendition=name, source=u.source.endpoint_id, error=e, **self.fields)
                if await self._given_up(name, m):
                    return
                if trio.current_time() - now < RETRY_S:
                    await trio.sleep(RETRY_S)
                continue
            if status != 200:
                # 404: not playable yet (or gone); 503: the source held the request to its limit.
                if status == 404:
                    u.health.succeeded(trio.current_time())
                else:
                    u.health.failed(trio.current_time())
                if await self._given_up(name, m):
                    return
                await trio.sleep(RETRY_S)
                continue
            try:
                upstream = parse_media_playlist(body.decode())
                step = await self._advance(u, url, name, upstream, parts_by=parts_by)
            except (UnicodeDecodeError, ValueError) as e:  # PlaylistError and MirrorError are ValueErrors
                u.health.failed(trio.current_time())
                self.daemon.counters["errors"] += 1
                slog.log(log, logging.WARNING, "unusable upstream playlist", rendition=name, source=u.source.endpoint_id,
                         error=e, **self.fields)
                if isinstance(e, OriginRestarted) and self.daemon.external_generations.get(u.source.endpoint_id) == self.gid:
                    # The next discovery lists the origin under a new generation; this one ends.
                    self.daemon.external_generations[u.source.endpoint_id] = external.new_generation_id(u.source.endpoint_id)
                if isinstance(e, OriginRestarted) and await self._given_up(name, m, force=True):
                    return
                await trio.sleep(RETRY_S)
                continue
            except (SourceError, OSError) as e:
                # A file the source lists but will not give (or the disk refused it): the source is
                # judged, another may be chosen at once; the same one again only after a pause
                # that grows while the failures go on.
                if isinstance(e, SourceError):
                    u.health.failed(trio.current_time())
                self.daemon.counters["errors"] += 1
                failures += 1
                slog.log(log, logging.INFO, "fetch failed", rendition=name, source=u.source.endpoint_id, error=e, **self.fields)
                if failures > 1:
                    await trio.sleep(min(MAX_BACKOFF_S, RETRY_S * 2 ** (failures - 2)))
                continue
            failures = 0
            u.health.succeeded(trio.current_time())
            self.daemon.counters["playlists"] += 1
            blocking = bool(upstream.server_control and upstream.server_control.can_block_reload)
            if step is None:
                if m.local is not None and m.local.ended:
                    return
                if not blocking or directive is None:
                    await trio.sleep(max(RETRY_S, upstream.target_duration / 2) if not blocking else RETRY_S)
                continue
            u.health.progressed(self.gid)
            if step.playlist.ended:
                return
            if blocking and step.hint is not None:
                nursery.start_soon(self._prefetch_hint, u, url, name, step.hint, nursery)
            if not blocking:
                await trio.sleep(max(RETRY_S, step.playlist.target_duration / 2))

    async def _advance(self, u: Upstream, playlist_url: str, name: str, upstream: hls.MediaPlaylist, *,
                       parts_by: float | None = None) -> Step | None:
        """Fetch what this upstream playlist adds and publish it (one at a time per rendition).
        `parts_by`: when the parts it lists must be on disk (see `_fetch_all`)."""
        m = self.renditions[name]
        async with self._locks[name]:
            step = m.step(upstream)
            if step is not None:
                await self._fetch_all(u, playlist_url, name, step, parts_by=parts_by)
                await self._publish(name, m, step)
            return step

    async def _nudge(self, u: Upstream, playlist_url: str, name: str, nursery: trio.Nursery) -> None:
        """The hinted part will not come (the source moved on: its segment closed on the part
        before). A plain reload now publishes the closed segment a part earlier than the blocking
        reload, which the source holds until the next segment's first part exists."""
        try:
            status, body, _ = await self._get(playlist_url, timeout=self.daemon.cfg["edge_fill.request_timeout_s"],
                                                    limit=MAX_PLAYLIST_BYTES)
            if status == 200:
                step = await self._advance(u, playlist_url, name, parse_media_playlist(body.decode()))
                if step is not None and step.hint is not None and not step.playlist.ended:
                    nursery.start_soon(self._prefetch_hint, u, playlist_url, name, step.hint, nursery)
        except (SourceError, OSError, UnicodeDecodeError, ValueError):
            pass  # the follower's own reload brings it a moment later

    async def _given_up(self, name: str, m: RenditionMirror, *, force: bool = False) -> bool:
        """The source ended the generation without us seeing ENDLIST (it went away): once nothing
        moved for 2 × TARGETDURATION, close our playlist ourselves."""
        td = m.local.target_duration if m.local else 2
        if not force and (self.upstream_active or trio.current_time() - self._progress_at[name] < 2 * td):
            return False
        async with self._locks[name]:
            closed = m.ended()
            if closed is not None:
                await self._publish(name, m, Step((), closed, None))
        slog.log(log, logging.WARNING, "rendition closed: its source no longer carries it", rendition=name, **self.fields)
        return True

    async def _fetch_all(self, u: Upstream, playlist_url: str, name: str, step: Step, *, parts_by: float | None = None) -> None:
        """Everything the step lacks, at once; the first failure stops the others (the source is
        judged and another may be taken at once). A part the source lists exists there: it must
        arrive by `parts_by` (the bound of the blocking reload that listed it, at least a part
        duration from now) — a hinted part in flight is waited for no longer than that either, so
        a source that holds parts cannot hold the rendition past the failover bound."""
        errors: list[Exception] = []
        part_names = {p.uri for seg in step.playlist.segments for p in seg.parts} | {p.uri for p in step.playlist.partial_parts}
        if parts_by is not None:
            parts_by = max(parts_by, trio.current_time() + (step.playlist.part_target or 0))

        async def one(fetch) -> None:
            key = f"{name}/{fetch.name}"
            deadline = parts_by if parts_by is not None and fetch.name in part_names else None
            try:
                pending = self._hints.get(key)
                if pending is not None and pending.source is u:
                    with trio.move_on_at(deadline if deadline is not None else math.inf):
                        await pending.done.wait()
                    if not pending.done.is_set():
                        pending.scope.cancel()
                        raise SourceError(f"{fetch.uri}: the hinted part it lists did not come", timeout=True)
                if fetch.name in self.renditions[name].have:
                    return  # the hinted part arrived meanwhile
                parts = segment_parts.get(fetch.name)
                async with self._fetch_limit:
                    if parts and all(p in self.renditions[name].have for p in parts):
                        await self._assemble_segment(playlist_url, name, fetch, parts)
                    else:
                        await self._fetch_into(playlist_url, name, fetch, deadline=deadline)
            except (SourceError, OSError) as e:
                errors.append(e)
                n.cancel_scope.cancel()

        # A Sender source's segment is its parts one after the other (plus, for the last segment
        # of a publisher's session, audio that came after its last video frame): when every part
        # is here already, only what is missing is fetched.
        segment_parts = {} if self.external is not None else {
            seg.uri: [p.uri for p in seg.parts] for seg in step.playlist.segments if seg.parts}
        async with trio.open_nursery() as n:
            for fetch in step.fetches:
                n.start_soon(one, fetch)
        if errors:
            raise errors[0]

    async def _fetch_into(self, playlist_url: str, name: str, fetch, *, deadline: float | None = None) -> None:
        url = self._resolve(playlist_url, fetch.uri)
        timeout = self.daemon.cfg["edge_fill.request_timeout_s"]
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - trio.current_time()))
        status, data, _ = await self._get(url, timeout=timeout)
        if status != 200:
            raise SourceError(f"{url}: HTTP {status}", status=status)
        await trio.to_thread.run_sync(atomic_write, self.dir / name / fetch.name, data)
        self.daemon.counters["objects"] += 1
        self.daemon.counters["bytes"] += len(data)

    async def _assemble_segment(self, playlist_url: str, name: str, fetch, parts: list[str]) -> None:
        """The segment from the parts on disk and a ranged request for whatever follows them; the
        answer's Content-Range says the segment's real size, so a segment that is not its parts'
        concatenation is never written (it is fetched whole instead)."""
        d = self.dir / name
        joined = await trio.to_thread.run_sync(lambda: b"".join((d / p).read_bytes() for p in parts))
        url = self._resolve(playlist_url, fetch.uri)
        status, tail, headers = await self._get(url, timeout=self.daemon.cfg["edge_fill.request_timeout_s"],
                                                      headers={"Range": f"bytes={len(joined)}-"})
        size = _range_total(headers.get("content-range"))
        if status == 416 and size == len(joined):
            data = joined
        elif status == 206 and size is not None and size == len(joined) + len(tail):
            data = joined + tail
        elif status == 200:
            data = tail  # the source ignored the range: the whole segment
        else:
            await self._fetch_into(playlist_url, name, fetch)
            return
        await trio.to_thread.run_sync(atomic_write, d / fetch.name, data)
        self.daemon.counters["objects"] += 1
        self.daemon.counters["bytes"] += len(tail)
        self.daemon.counters["assembled"] += 1

    async def _prefetch_hint(self, u: Upstream, playlist_url: str, name: str, fetch, nursery: trio.Nursery) -> None:
        """Ask for the hinted part now: the source answers the moment it exists, and the next
        playlist finds it on disk already."""
        key = f"{name}/{fetch.name}"
        if key in self._hints:
            return
        hint = self._hints[key] = Prefetch(u)
        done, scope = hint.done, hint.scope
        td = self.renditions[name].local.target_duration if self.renditions[name].local else 2
        try:
            url = self._resolve(playlist_url, fetch.uri)
            with scope:
                status, data, _ = await self._get(url, timeout=3 * td + 1)
            if not scope.cancelled_caught and status == 200:
                await trio.to_thread.run_sync(atomic_write, self.dir / name / fetch.name, data)
                self.renditions[name].fetched(fetch.name)
                self.daemon.counters["objects"] += 1
                self.daemon.counters["bytes"] += len(data)
            elif not scope.cancelled_caught and status == 404:
                nursery.start_soon(self._nudge, u, playlist_url, name, nursery)
        except (SourceError, OSError):
            pass  # the follower fetches it the normal way
        finally:
            del self._hints[key]
            done.set()

    async def _publish(self, name: str, m: RenditionMirror, step: Step) -> None:
        if step.playlist.part_target is not None:
            # Rendition reports (part of the low-latency profile) from the siblings this edge
            # published, never the source's: a player following one finds it here. (Each sibling's
            # `local` is set once its playlist is on disk, so it never runs ahead of the disk.)
            reports = sibling_reports(name, {n: r.local for n, r in self.renditions.items()})
            step = Step(step.fetches, replace(step.playlist, rendition_reports=reports), step.hint)
        data = step.playlist.render().encode()
        await trio.to_thread.run_sync(atomic_write, self.dir / name / "index.m3u8", data)
        closed_before = m.local.next_msn if m.local else None
        gone = m.published(step)
        if step.playlist.segments and (closed_before is None or step.playlist.next_msn > closed_before):
            self.last_segment_at = time.time()  # a newer closed segment is on this edge's disk
        self._progress_at[name] = trio.current_time()
        if gone:
            # Out of the playlist now, off the disk a little later (a player may hold the old one).
            await self.writer.apply(name, [Delete(g, 3 * step.playlist.target_duration + 1) for g in gone], {})
        self.daemon.send_event(self.sid, self.gid, name, step.playlist)
        if not self.playable.is_set() and all(r.local is not None for r in self.renditions.values()):
            self.playable.set()

    # --- generation files -------------------------------------------------------------------

    async def _master_loop(self) -> None:
        await self.playable.wait()
        while not self.ended:
            await self._write_master()
            await trio.sleep(MASTER_REFRESH_S)

    async def _write_master(self) -> None:
        if not self.playable.is_set():
            return
        if self.external is not None:
            data = external.local_master(self.external, self.names)
        else:
            u = self.source or self.pick()
            if u is None:
                return
            try:
                status, data, _ = await self._get(f"{u.source.base_url}/hls/{self.sid}/{self.gid}/master.m3u8",
                                                        timeout=self.daemon.cfg["edge_fill.request_timeout_s"], limit=MAX_PLAYLIST_BYTES)
            except SourceError:
                return
            if status != 200:
                return
        if data is not None and data != self._master:  # unchanged: its ETag stays
            if await self.writer.apply("", [], {"master.m3u8": data}):
                self._master = data

    async def _write_generation(self) -> None:
        u = self.source
        doc = {
            "stream_id": self.sid, "generation_id": self.gid, "renditions": self.names, "ended": self.ended,
            "upstream": None if (u is None or self.external is not None)
            else {"endpoint_id": u.source.endpoint_id, "base_url": u.source.base_url},
        }
        await self.writer.apply("", [], {"generation.json": json.dumps(doc).encode()})

