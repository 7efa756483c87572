"""The ingest daemon: a thin trio loop around the sans-IO RTMP connection.

For each TCP (or TLS) connection a `ConnectionHandler` feeds bytes to `rtmp.ServerConnection`,
acts on its events and sends what it queues. A publish request is decided by the domain
(`domain.publish.decide`, off the loop: application, lockout, key, the stream's one publisher
slot, takeover, its generation continued or begun) and the daemon applies the decision; then the
`MediaSink`s take the audio/video (the pipeline's `BackendSink`, the FLV recorder, the restream
pushes of `daemons/ingest/restream.py`, the keyframe tap of `daemons/ingest/thumbnails.py`). A
control loop applies the reconnect grace and admin changes from the store (stop, delete, revoke,
restream targets) within half a second; a stats loop writes per-publisher stats
(`daemons/ingest/stats.py`) for the other daemons; a retention loop removes ended generations
from the spool.

Once a publish is steady (live, its sinks able to take frames without trio), its connection is
leased to the media thread (daemons/ingest/media_thread.py), which reads, packages and writes its
coded frames outside the event loop; the first thing the thread cannot do itself (an event other
than a frame, a follow-up that needs the store, a kick) brings the connection back here.

Names: a *connection* is one RTMP connection (`ConnectionHandler`, around `rtmp.ServerConnection`);
a *publish* is an accepted publish on it, from `accept_publish` to unpublish (a `Publisher`, and
one `BackendSink` in the generation's pipeline); a *timeline* is what one media backend process
produces, which the packager continues after a discontinuity (`GenerationPackager.start_timeline`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone

import trio

from daemons.core import domain
from daemons.core.domain.common import now_iso
from daemons.core.domain.publish import APP
from daemons.core.install import Install
from daemons.core.stats import write_stats
from daemons.ingest import control
from daemons.ingest.admission import Admission, Refused
from daemons.ingest.control import ControlGate
from daemons.ingest.pipeline import (
    ENHANCED_FOURCCS,
    GenerationPipeline,
    last_write_time,
)
from daemons.ingest.sink import (
    FLVSpoolSink,
    MediaSink,
    UnsupportedMedia,
    generation_dir,
)
from daemons.ingest.media_thread import ArrivalClock, Lease, MediaThread
from daemons.ingest.native import refusal
from daemons.ingest.restream import Restreamer
from daemons.ingest.stats import PublisherStats
from daemons.ingest.thumbnails import Thumbnailer
from daemons.media import rtmp
from daemons.runtime import logging as slog
from daemons.runtime.ratelimit import WindowLimiter
from daemons.runtime.spool_events import SpoolEventSender
from daemons.runtime.small_io import SmallIO
from daemons.runtime.store import StoreChanges, StoreWorker

log = slog.get("ingest")

STATS_INTERVAL_S = 1.0
RECEIVE_SIZE = 65536
CLOSE_GRACE_S = 1.0
IDLE_SLACK_S = 1.0  # the idle timeout fires at most this much (or half the timeout) late
RETENTION_INTERVAL_S = 60.0


@dataclass
class Publisher:
    """The one connected publisher of a stream."""

    stream: dict
    generation_id: str
    key_id: str
    stats: PublisherStats
    scope: trio.CancelScope
    done: trio.Event = field(default_factory=trio.Event)
    kick_reason: str | None = None
    lease: Lease | None = None  # while its connection is in the media thread
    held: bool = False  # kept in trio (the control loop is changing its sinks)

    def kick(self, reason: str) -> None:
        self.kick_reason = reason
        self.scope.cancel()


class ConnectionOver(Exception):
    """Ends a connection on purpose (a refused publish), with the reason to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PublishRefused(Exception):
    def __init__(self, code: str, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


class IngestDaemon:
    def __init__(self, install: Install, store: StoreWorker):
        self.install = install
        self.config = install.config
        self.store = store
        self.secret = install.secret()
        c = self.config
        self.limits = rtmp.Limits(
            max_chunk_size=c["rtmp.limits.max_chunk_size"],
            max_message_size=c["rtmp.limits.max_message_size"],
            max_chunk_streams=c["rtmp.limits.max_chunk_streams"],
            handshake_timeout_s=c["rtmp.limits.handshake_timeout_s"],
            idle_timeout_s=c["rtmp.limits.idle_timeout_s"],
        )
        self.failures = WindowLimiter(c["rtmp.auth_failures_per_minute"], window_s=c["rtmp.auth_lockout_s"])
        self.admission = Admission(
            max_pending=c["rtmp.max_pending_connections"], max_pending_per_address=c["rtmp.max_pending_per_address"],
            max_publishers=c["rtmp.max_publishers"], deadline_s=c["rtmp.limits.handshake_timeout_s"],
        )
        self.publishers: dict[str, Publisher] = {}  # stream id → its publisher
        self.pipelines: dict[str, GenerationPipeline] = {}  # generation id → its pipeline
        self.nursery: trio.Nursery | None = None
        self.events = SpoolEventSender(install.state_dir)
        self.restream = Restreamer(self.config)  # pushes to other platforms (daemons/ingest/restream.py)
        self.thumbnails = Thumbnailer(self.config)  # a JPEG per live stream (daemons/ingest/thumbnails.py)
        # Steady publishes' frames, outside trio's loop (daemons/ingest/media_thread.py).
        self.media = MediaThread() if self.config["rtmp.media_thread"] else None
        self._reserved: set[str] = set()  # stream ids between their admission and accept
        self._deciding = trio.Lock()  # publish decisions one at a time: each sees the last one's slot
        self.connections = 0
        self.addresses: list[tuple[str, str, int]] = []  # (scheme, host, port) actually bound
        self.recordings: dict | None = None  # recordings in the spool, {count, bytes}: the retention loop's last look
        self.small_io = SmallIO()  # the stats file, written on the loop while the disk is quick

    # --- serving ---------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.media is not None:
            self.media.start()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = self.restream.nursery = self.thumbnails.nursery = nursery
                # Bind first: a port taken by another daemon of this node fails here, before this
                # one touches the spool or the store's generations.
                host, port = self.config.listen("rtmp.listen")
                listeners = await trio.open_tcp_listeners(port, host=host)
                self.addresses += [("rtmp", *_bound(l)) for l in listeners]
                tls_listeners = []
                if self.config["rtmp.rtmps_listen"]:
                    ctx = self._tls_context()
                    host, port = self.config.listen("rtmp.rtmps_listen")
                    tls_listeners = [
                        trio.SSLListener(l, ctx, https_compatible=False) for l in await trio.open_tcp_listeners(port, host=host)
                    ]
                    self.addresses += [("rtmps", *_bound(l.transport_listener)) for l in tls_listeners]
                await self._resume_generations()  # publishers wait in the listen backlog meanwhile
                nursery.start_soon(trio.serve_listeners, self._handle_tcp, listeners)
                if tls_listeners:
                    nursery.start_soon(trio.serve_listeners, self._handle_tls, tls_listeners)
                nursery.start_soon(self._control_loop)
                nursery.start_soon(self._stats_loop)
                nursery.start_soon(self._retention_loop)
                if self.config["thumbnails.enabled"]:
                    nursery.start_soon(self.thumbnails.run)
                for scheme, h, p in self.addresses:
                    slog.log(log, logging.INFO, "listening", url=f"{scheme}://{h}:{p}/{APP}")
                task_status.started(self.addresses)
        finally:
            if self.media is not None:
                self.media.stop()  # every connection has ended: no lease is left
            self.events.close()

    async def _resume_generations(self) -> None:
        """Continue every active generation of this node's ingest from the spool, and close the
        playlists of those that ended while the daemon was away."""
        for g in await self.store.run(domain.generations.list_, active_only=True, limit=10_000):
            if g["mode"] != domain.generations.ORIGIN_MODE:
                continue  # an edge's copy: sender-edge-fill owns it
            slog.log(log, logging.INFO, "resuming active generation", stream=g["stream"], generation=g["id"], status=g["status"])
            stream = await self.store.run(domain.streams.get, g["stream_id"], include_deleted=True)
            if g["publisher_connected_at"] and not g["publisher_left_at"]:
                # Its publisher went with the previous daemon: the reconnect grace counts from the
                # last media written (before resuming writes anything), not from this restart.
                left = await trio.to_thread.run_sync(last_write_time, generation_dir(self.install.spool_root, stream["id"], g["id"]))
                await self.store.run(domain.generations.publisher_left, g["id"], at=left)
                slog.log(log, logging.INFO, "publisher lost with the previous daemon", stream=g["stream"], generation=g["id"], since=left)
            await self.pipeline(stream, g["id"])
        for gid in await trio.to_thread.run_sync(_unfinished_generations, self.install.spool_root):
            if gid in self.pipelines:
                continue
            status = (await self.store.run(domain.generations.statuses, [gid]))[gid]
            if status == "gone" or domain.generations.is_active(status):
                continue
            g = await self.store.run(domain.generations.get, gid)
            if g["mode"] != domain.generations.ORIGIN_MODE:
                continue
            stream = await self.store.run(domain.streams.get, g["stream_id"], include_deleted=True)
            slog.log(log, logging.INFO, "closing the playlists of a generation that ended while ingest was down",
                     stream=stream["slug"], generation=gid)
            await (await self.pipeline(stream, gid)).finish()
            del self.pipelines[gid]

    def _tls_context(self) -> ssl.SSLContext:
        cert, key = self.config["rtmp.tls_cert"], self.config["rtmp.tls_key"]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise RuntimeError(f"RTMPS: cannot load rtmp.tls_cert={cert!r} / rtmp.tls_key={key!r}: {e}") from None
        return ctx

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        await self._handle(stream, _peer(stream.socket))

    async def _handle_tls(self, stream: trio.SSLStream) -> None:
        # The TLS handshake happens in the connection handler, within its pending deadline.
        await self._handle(stream, _peer(stream.transport_stream.socket))

    async def _handle(self, stream: trio.abc.Stream, remote: str) -> None:
        """Admit the connection to the pending pool (daemons/ingest/admission.py), then run it."""
        handler = ConnectionHandler(self, stream, remote)
        verdict = self.admission.connect(handler, _address(remote), trio.current_time())
        if isinstance(verdict, Refused):
            if verdict.first:
                slog.log(log, logging.WARNING, "connections refused: too many not yet publishing from this address",
                         limit="rtmp.max_pending_per_address", remote=remote)
            await trio.aclose_forcefully(stream)
            return
        if verdict.first_eviction:
            slog.log(log, logging.WARNING, "pending connections full: closing the oldest of the busiest addresses",
                     limit="rtmp.max_pending_connections", remote=remote)
        for victim in verdict.evicted:
            victim.end("evicted: rtmp.max_pending_connections reached")
        handler.scope.deadline = verdict.deadline
        self.connections += 1
        try:
            await handler.run()
        except Exception:  # a bug in one connection must not take the daemon down
            log.exception("connection failed", extra={"fields": {"remote": remote}})
        finally:
            self.connections -= 1
            self.admission.leave(handler)

    # --- publish decisions -----------------------------------------------------------------

    async def admit(self, request: rtmp.PublishRequest, app: str | None, remote: str) -> domain.publish.Admitted:
        """Have the domain decide a publish request, and apply the decision: count a failed
        attempt, hold the stream's slot (until `register` or `release`), disconnect a publisher
        taken over. Raises PublishRefused."""
        source = _address(remote)
        async with self._deciding:
            decision = await self.store.run(
                domain.publish.decide, self.secret, app=app, key=request.stream_name,
                locked_out=self.failures.blocked(source),
                publishers=domain.publish.Publishers(frozenset(self.publishers), frozenset(self._reserved)),
                allow_takeover=self.config["rtmp.allow_takeover"], record_default=self.config["recording.enabled"],
            )
            if isinstance(decision, domain.publish.Refused):
                if decision.failed_attempt:
                    self.failures.record(source)
                if decision.log:
                    slog.log(log, logging.WARNING, decision.log, **decision.fields, remote=remote)
                raise PublishRefused(decision.code, decision.description)
            sid, slug = decision.stream["id"], decision.stream["slug"]
            self._reserved.add(sid)
        current = self.publishers.get(sid) if decision.takes_over else None
        if current is not None:
            slog.log(log, logging.INFO, "publisher taken over by a newer one", stream=slug, remote=remote)
            current.kick("taken over by a newer publisher")
            try:
                with trio.move_on_after(CLOSE_GRACE_S * 2):
                    await current.done.wait()
            except BaseException:
                self._reserved.discard(sid)
                raise
        message = "generation started" if decision.generation_started else "publisher continues generation"
        slog.log(log, logging.INFO, message, stream=slug, generation=decision.generation["id"])
        return decision

    async def register(self, publisher: Publisher) -> None:
        sid = publisher.stream["id"]
        self._reserved.discard(sid)
        self.publishers[sid] = publisher
        await self.store.run(domain.generations.publisher_joined, publisher.generation_id)

    def release(self, stream_id: str) -> None:
        self._reserved.discard(stream_id)

    async def unregister(self, publisher: Publisher) -> None:
        """The publisher is gone: its generation's reconnect grace starts (an ended one stays ended)."""
        sid = publisher.stream["id"]
        if self.publishers.get(sid) is publisher:
            del self.publishers[sid]
        try:
            await self.store.run(domain.generations.publisher_left, publisher.generation_id)
        finally:
            publisher.done.set()

    async def pipeline(self, stream: dict, generation_id: str) -> GenerationPipeline:
        """The generation's pipeline, created (or resumed from the spool) on first use."""
        pipeline = self.pipelines.get(generation_id)
        if pipeline is None:
            renditions = await self.store.run(domain.renditions.list_, stream["id"])
            if not renditions:
                renditions = [{"name": "source", "kind": "source"}]
            pipeline = GenerationPipeline(
                stream=stream, generation_id=generation_id, renditions=renditions,
                directory=generation_dir(self.install.spool_root, stream["id"], generation_id),
                config=self.config, store=self.store, nursery=self.nursery, events=self.events,
                before_live=self.write_stats,
            )
            await pipeline.load()
            self.pipelines[generation_id] = pipeline
        return pipeline

    async def open_sinks(self, stream: dict, generation_id: str) -> list[MediaSink]:
        """The publish's sinks: the pipeline's media sink — the native backend and/or ffmpeg, as
        backend.kind and the ladder say (`GenerationPipeline.open_session`) — plus the FLV
        recorder when rtmp.record is on."""
        try:
            pipeline = await self.pipeline(stream, generation_id)
            sinks: list[MediaSink] = [pipeline.open_session()]
            if self.config["rtmp.record"]:
                sinks.append(FLVSpoolSink(pipeline.directory))
            # Last: their open() does no I/O, so a sink above that cannot open leaves none of them behind.
            sinks.append(await self.restream.sink(self.store, stream))
            if self.config["thumbnails.enabled"]:
                sinks.append(self.thumbnails.tap(stream, generation_id, pipeline.directory))
            for sink in sinks:
                await sink.open()
        except OSError as e:
            slog.log(log, logging.ERROR, "media backend cannot start", stream=stream["slug"], generation=generation_id, error=e)
            await self.store.run(domain.generations.mark_failed, generation_id, f"media backend cannot start: {e}")
            raise PublishRefused("NetStream.Publish.Failed", "media backend cannot start") from None
        return sinks

    # --- background loops ------------------------------------------------------------------

    async def _control_loop(self) -> None:
        """Apply the reconnect grace, and admin changes made in the store: ended generations,
        deleted streams, revoked keys, restream targets — asking the store only when it may
        have something new (daemons/ingest/control.py)."""
        default_grace = self.config["rtmp.reconnect_grace"]
        changes = StoreChanges(self.store.store.path)
        gate = ControlGate()
        while True:
            await trio.sleep(control.INTERVAL_S)
            pubs = list(self.publishers.values())
            questions = ([(p.generation_id, p.key_id) for p in pubs], self.restream.stream_ids(), list(self.pipelines))
            # What a step does with the answers depends on these too: a pipeline whose publisher
            # has gone is finished once its generation is no longer active.
            situation = (questions, [gid for gid, pl in self.pipelines.items() if pl.sink is None])
            if not gate.due(trio.current_time(), situation, changes.look()):
                continue
            ended, reasons, targets, statuses, deadline = await self.store.run(control.control_reads, default_grace, *questions)
            gate.answered(trio.current_time(), situation,
                          None if deadline is None else (deadline - datetime.now(timezone.utc)).total_seconds())
            for g in ended:
                slog.log(log, logging.INFO, "generation ended: its publisher did not come back within the reconnect grace",
                         stream=g["stream"], generation=g["id"], publisher_left_at=g["publisher_left_at"])
            for p, reason in zip(pubs, reasons):
                if reason and p.kick_reason is None:
                    slog.log(log, logging.INFO, "disconnecting publisher", reason=reason, stream=p.stream["slug"], generation=p.generation_id)
                    p.kick(reason)
            # A publish in the media thread comes back to trio before its sinks change (and stays).
            held = [p for p in pubs if p.lease is not None and targets.get(p.stream["id"])]
            for p in held:
                p.held = True
                await self.media.reclaim(p.lease)
            self.restream.apply(targets)  # restream targets added, removed, enabled, disabled
            for p in held:
                p.held = False
            for gid, status in statuses.items():
                pipeline = self.pipelines.get(gid)
                if pipeline is not None and not domain.generations.is_active(status) and pipeline.sink is None:
                    del self.pipelines[gid]
                    await pipeline.finish()

    async def _retention_loop(self) -> None:
        """Remove ended generations' spool directories: recordings by age (recording.keep) and by
        their total size (recording.max_bytes), oldest first, never an active one
        (`domain.recordings.to_remove`); the others after spool.ended_retention. What recordings
        remain is in this daemon's stats (`recordings`: count, bytes)."""
        retention = self.config.seconds("spool.ended_retention")
        keep, max_bytes = self.config.seconds("recording.keep"), self.config["recording.max_bytes"]
        root = self.install.spool_root / "streams"
        while True:
            dirs = await trio.to_thread.run_sync(_generation_dirs, root)
            plain, recorded = await self.store.run(domain.recordings.retention, list(dirs), ended_retention_s=retention)
            sizes = await trio.to_thread.run_sync(_sizes, {r["id"]: dirs[r["id"]] for r in recorded})
            recorded = [{**r, "bytes": sizes[r["id"]]} for r in recorded]
            removals = [(gid, "spool.ended_retention") for gid in sorted(plain)]
            removals += domain.recordings.to_remove(recorded, keep_s=keep, max_bytes=max_bytes, now=datetime.now(timezone.utc))
            for gid, reason in removals:
                if gid in self.pipelines:
                    continue  # still closing its playlists: next time
                message = "removing recording from the spool" if gid in sizes else "removing ended generation from the spool"
                slog.log(log, logging.INFO, message, generation=gid, reason=reason, bytes=sizes.get(gid, "-"))
                await trio.to_thread.run_sync(shutil.rmtree, dirs[gid], True)
                sizes.pop(gid, None)
            self.recordings = {"count": len(sizes), "bytes": sum(sizes.values())}
            await trio.sleep(min(RETENTION_INTERVAL_S, max(min(retention, keep) / 2, 0.5)))

    async def _stats_loop(self) -> None:
        while True:
            await self.write_stats()
            await trio.sleep(STATS_INTERVAL_S)

    async def write_stats(self) -> None:
        """Write `stats/ingest.json` now: each second, and right before a generation is marked
        live, so that `sender stream status` never shows a live generation with a stale publisher."""
        now = trio.current_time()
        payload = {
            "listening": [[scheme, host, port] for scheme, host, port in self.addresses],
            "recordings": self.recordings,
            "connections": self.connections,
            "generations": [
                {
                    "generation_id": gid,
                    "stream_id": pl.stream["id"],
                    "live": pl.live,
                    "backend_restarts": pl.restarts,
                    "spool_full": pl.spool.full,
                    "renditions": {
                        name: {"last_part": pk.last_part(), "target_duration": pk.target_duration,
                               "keyframe_interval_s": pk.keyframe_interval_s, "bandwidth": pk.bandwidth_peak}
                        for name, pk in pl.packagers.items()
                    },
                }
                for gid, pl in self.pipelines.items()
            ],
            "restream": self.restream.stats(now),
            "thumbnails": {"made": self.thumbnails.made, "failed": self.thumbnails.failed},
            "media_thread": self.media.stats() if self.media is not None else None,
            "publishers": [
                {"stream_id": p.stream["id"], "stream": p.stream["slug"], "generation_id": p.generation_id, **p.stats.to_json(now)}
                for p in self.publishers.values()
            ],
        }
        try:
            await self.small_io.run(write_stats, self.install.state_dir, "ingest", payload)
        except OSError as e:
            log.warning("cannot write stats: %s", e)


def _generation_dirs(root) -> dict:
    """Every generation directory under `<spool>/streams`, by generation id."""
    return {d.name: d for s in root.glob("*") if s.is_dir() for d in s.iterdir() if d.is_dir()}


def _sizes(dirs: dict) -> dict[str, int]:
    return {gid: domain.recordings.disk_usage(d) for gid, d in dirs.items()}


def _unfinished_generations(spool_root) -> list[str]:
    """Generation directories whose generation.json does not say ended yet."""
    out = []
    for doc in (spool_root / "streams").glob("*/*/generation.json"):
        try:
            if not json.loads(doc.read_bytes()).get("ended"):
                out.append(doc.parent.name)
        except (OSError, ValueError):
            continue
    return out


class Receiver:
    """A connection's bytes, with as little of trio's machinery per read as is safe.

    A publisher's socket is read about a hundred times a second, and `SocketStream.receive_some`
    pays for each read with a try-read, trio's checkpoints around it (a trip through the
    scheduler even when bytes were waiting) and its error translation: on this machine ~100 µs
    against ~20 µs for the read itself (bench/wakeup_cost.py), the largest share of a native
    stream's CPU. For a plain TCP connection this reads the file descriptor directly:

    * it waits for readability only when the last read drained the socket (it filled less than
      the buffer), and otherwise reads again at once, with a checkpoint every `CHECKPOINT_EVERY`
      reads without a wait, so that a flooding peer cannot starve other tasks or a cancellation;
    * after a read that ended inside a message (`expect_more`), it reads again before waiting:
      ffmpeg writes each chunk header apart from its payload, and with Nagle's algorithm on its
      side the payload leaves only when the header is acknowledged, which the kernel does
      during the read that took the header, so the payload is usually there the moment that read
      returns. One wake-up per message instead of two (strace: 137 → 66 epoll_wait a second for
      one ffmpeg publisher).

    TLS connections keep `receive_some` (the TLS object buffers bytes the socket no longer has).
    """

    CHECKPOINT_EVERY = 16

    def __init__(self, transport: trio.abc.Stream):
        self.transport = transport
        self.fd = transport.socket.fileno() if isinstance(transport, trio.SocketStream) else -1
        self._drained = True
        self._without_wait = 0

    def expect_more(self) -> None:
        """The bytes read so far end inside a message: the next `receive` reads before it waits."""
        self._drained = False

    async def receive(self) -> bytes:
        """Bytes from the peer; b"" at its end of stream. Raises trio.BrokenResourceError when the
        connection fails."""
        if self.fd < 0:
            return await self.transport.receive_some(RECEIVE_SIZE)
        if self._drained:
            await trio.lowlevel.wait_readable(self.fd)
            self._without_wait = 0
        else:
            self._without_wait += 1
            if self._without_wait >= self.CHECKPOINT_EVERY:
                await trio.lowlevel.checkpoint()
                self._without_wait = 0
        while True:
            try:
                data = os.read(self.fd, RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                self._without_wait = 0
                continue
            except OSError as e:
                raise trio.BrokenResourceError(f"connection failed: {e}") from e
            self._drained = len(data) < RECEIVE_SIZE
            return data


class LeasedPublish:
    """A leased publish's `Work` (daemons/ingest/media_thread.py): what `ConnectionHandler._on_event`
    does with a coded frame, without trio: the stats, then every sink's `take`."""

    def __init__(self, conn: rtmp.ServerConnection, stats: PublisherStats, sinks: list):
        self.conn = conn
        self.stats = stats
        self.native = sinks[0]  # the pipeline's session sink comes first; only a NativeSink leases
        self.others = sinks[1:]
        self._newest_video: float | None = None  # media time of the newest frame taken
        self._newest_audio: float | None = None

    def take(self, event: rtmp.AudioData | rtmp.VideoData, now: float) -> list | None:
        header = event.header
        if not header.is_coded_frame or header.track_id or refusal(event) is not None:
            return None  # sequence headers, commands, other tracks, a codec to refuse: trio's
        self.stats.sample(now, self.conn.bytes_received)
        if isinstance(event, rtmp.VideoData):
            self.stats.on_video(event)
            self._newest_video = event.timestamp / 1000
        else:
            self.stats.on_audio(event)
            self._newest_audio = event.timestamp / 1000
        for sink in self.others:
            sink.take(event, now)
        return self.native.take(event, now)

    def publish_at_s(self) -> float | None:
        newest = self._newest_video if self.native.remux.video is not None else self._newest_audio
        return None if newest is None else newest + self.native.publish_due_s()


class ConnectionHandler:
    """One RTMP connection, from accept to close: the trio task around its `rtmp.ServerConnection`.
    It may publish (one publish at a time, again after an unpublish)."""

    def __init__(self, daemon: IngestDaemon, transport: trio.abc.Stream, remote: str):
        self.daemon = daemon
        self.transport = transport  # the TCP (or TLS) byte stream; "stream" is a Sender stream
        self.remote = remote
        self.conn = rtmp.ServerConnection(limits=daemon.limits, fourccs=ENHANCED_FOURCCS[daemon.config["backend.kind"]])
        self.publisher: Publisher | None = None
        self.sinks: list[MediaSink] = []
        self.metadata: dict | None = None
        self.arrivals = ArrivalClock()  # when this publisher's frames come (the media thread's quiet spells)
        # The pending deadline (set by the daemon at accept) until a publish is accepted; kicks and
        # evictions cancel it too.
        self.scope = trio.CancelScope()
        self.end_reason: str | None = None

    def end(self, reason: str) -> None:
        self.end_reason = reason
        self.scope.cancel()

    async def run(self) -> None:
        reason = "closed"
        try:
            with self.scope:
                if isinstance(self.transport, trio.SSLStream):
                    await self.transport.do_handshake()
                reason = await self._loop(self.daemon.limits.idle_timeout_s)
            if self.scope.cancelled_caught:  # kicked, evicted, or no accepted publish before the deadline
                pub = self.publisher
                reason = (pub.kick_reason if pub is not None else None) or self.end_reason or "no publish within rtmp.limits.handshake_timeout_s"
                self.conn.close(reason)
        except ConnectionOver as over:
            reason = over.reason
        except rtmp.RTMPProtocolError as e:
            reason = f"protocol error: {e}"
            level = logging.DEBUG if self.publisher is None else logging.WARNING
            slog.log(log, level, "dropping connection", remote=self.remote, error=e)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            reason = "connection lost"
        except trio.Cancelled:
            reason = "server shutting down"
            self.conn.close(reason)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._finish(reason)

    async def _loop(self, idle_timeout: float) -> str:
        # One scope for the idle timeout, its deadline moved on at most once per `slack`, `slack`
        # past what the last bytes need: never early, at most `slack` late (a deadline moved on
        # every read was a sixth of the daemon's CPU; bench/ingest_load.py, py-spy).
        receiver = Receiver(self.transport)
        slack = min(IDLE_SLACK_S, idle_timeout / 2)
        idle = trio.CancelScope(deadline=trio.current_time() + idle_timeout)
        with idle:
            while True:
                events: list = []
                lease = self._lease(receiver, idle_timeout)
                if lease is None:
                    data = await receiver.receive()
                else:
                    idle.deadline = math.inf  # the media thread keeps the idle timeout meanwhile
                    events, data = await self._leased(lease)
                    if lease.idle:
                        break
                    idle.deadline = trio.current_time() + idle_timeout + slack
                now = trio.current_time()
                if idle.deadline < now + idle_timeout:
                    idle.deadline = now + idle_timeout + slack
                if data is not None:
                    self.conn.receive_data(data)
                while True:
                    event = events.pop(0) if events else self.conn.next_event()
                    if event is rtmp.NEED_DATA:
                        break
                    if isinstance(event, rtmp.ConnectionClosed):
                        await self._send()
                        return event.reason
                    await self._on_event(event)
                await self._send()
                if self.conn.buffered_bytes:
                    receiver.expect_more()
        self.conn.close("idle timeout")
        return "idle timeout"

    def _lease(self, receiver: Receiver, idle_timeout: float) -> Lease | None:
        """A lease of this connection to the media thread, if its publish can run there: a
        plain TCP connection (TLS buffers bytes of its own), every sink able to take frames
        without trio (`leasable`: the native backend alone on a live generation, no restream
        push, no FLV recording)."""
        pub = self.publisher
        if self.daemon.media is None or pub is None or pub.held or pub.kick_reason or receiver.fd < 0:
            return None
        if not self.sinks or not all(getattr(sink, "leasable", False) for sink in self.sinks):
            return None
        return Lease(receiver.fd, self.conn, LeasedPublish(self.conn, pub.stats, self.sinks), idle_timeout, self.arrivals)

    async def _leased(self, lease: Lease) -> tuple[list, bytes | None]:
        """Run the connection in the media thread until it comes back, and finish what it left:
        the events it did not take (returned, with the bytes it read last if the stream ended),
        the follow-ups of a frame it took, bytes for the peer."""
        pub = self.publisher
        pub.lease = lease
        try:
            await self.daemon.media.run(lease)
        except BaseException:
            # Taken back by a cancellation (a kick, a shutdown): what the thread left still
            # lands (a batch the spool refused must reach the packager before anything else).
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE_S):
                await self._follow_up(lease)
            raise
        finally:
            pub.lease = None
        await self._follow_up(lease)
        if lease.error is not None:
            raise lease.error  # the socket failed, a protocol error, or a bug (what trio's path raises)
        if lease.unsent:
            with trio.fail_after(self.daemon.limits.idle_timeout_s):
                await self.transport.send_all(lease.unsent)
        return lease.events, lease.data

    async def _follow_up(self, lease: Lease) -> None:
        follow_ups, lease.follow_ups = lease.follow_ups, []
        for follow_up in follow_ups:
            await follow_up()

    async def _send(self) -> None:
        out = self.conn.data_to_send()
        if out:
            with trio.fail_after(self.daemon.limits.idle_timeout_s):
                await self.transport.send_all(out)

    async def _on_event(self, event) -> None:
        if isinstance(event, (rtmp.VideoData, rtmp.AudioData)):
            if self.publisher is None:
                return
            stats = self.publisher.stats
            stats.sample(trio.current_time(), self.conn.bytes_received)
            if isinstance(event, rtmp.VideoData):
                stats.on_video(event)
            else:
                stats.on_audio(event)
            try:
                for sink in self.sinks:
                    await sink.write(event)
            except UnsupportedMedia as e:
                self._refuse_media(str(e))
        elif isinstance(event, rtmp.UnreadableMedia):
            if self.publisher is not None:
                slog.log(log, logging.DEBUG, "unreadable media dropped", media=event.media, error=event.reason,
                         stream=self.publisher.stream["slug"], remote=self.remote)
        elif isinstance(event, rtmp.PublishRequest):
            await self._on_publish(event)
        elif isinstance(event, rtmp.Metadata):
            self.metadata = event.data
            if self.publisher is not None:
                self.publisher.stats.on_metadata(event.data)
                for sink in self.sinks:
                    await sink.metadata(event.data)
        elif isinstance(event, rtmp.Unpublish):
            await self._end_publish("unpublished")

    async def _on_publish(self, request: rtmp.PublishRequest) -> None:
        d = self.daemon
        if not d.admission.publish(self):  # pending → a publisher slot, before the key check
            limit = d.admission.max_publishers
            slog.log(log, logging.WARNING, "publish refused: rtmp.max_publishers reached", limit=limit, remote=self.remote)
            self._refuse(PublishRefused("NetStream.Publish.Denied", f"this server has its most publishers ({limit}); try again later"))
        try:
            admitted = await d.admit(request, self.conn.app, self.remote)
        except PublishRefused as refused:
            self._refuse(refused)
        stream, generation_id = admitted.stream, admitted.generation["id"]
        self.scope.deadline = math.inf  # authenticated: the pending deadline ends with a valid key
        try:
            self.sinks = await d.open_sinks(stream, generation_id)
        except BaseException as e:
            d.release(stream["id"])
            if isinstance(e, PublishRefused):
                self._refuse(e)
            raise
        stats = PublisherStats(remote=self.remote, connected_since=now_iso())
        self.publisher = Publisher(stream, generation_id, admitted.key_id, stats, self.scope)
        await d.register(self.publisher)
        if self.metadata:
            stats.on_metadata(self.metadata)
            for sink in self.sinks:
                await sink.metadata(self.metadata)
        self.conn.accept_publish()
        slog.log(log, logging.INFO, "publishing", stream=stream["slug"], generation=generation_id, remote=self.remote)

    def _refuse(self, refused: PublishRefused) -> None:
        self.conn.reject_publish(code=refused.code, description=refused.description)
        raise ConnectionOver(f"publish refused: {refused.description}") from None

    def _refuse_media(self, reason: str) -> None:
        """The publisher sends what the media backend cannot package (an Enhanced RTMP codec):
        refused at its first such tag, not accepted and then silently broken."""
        pub = self.publisher
        slog.log(log, logging.WARNING, "publish refused: codec not supported", reason=reason,
                 stream=pub.stream["slug"], generation=pub.generation_id, remote=self.remote)
        self.conn.close(f"publish refused: {reason}")  # an onStatus error tells the publisher why
        raise ConnectionOver(f"publish refused: {reason}") from None

    async def _end_publish(self, reason: str) -> None:
        pub, sinks = self.publisher, self.sinks
        self.publisher, self.sinks = None, []
        for sink in sinks:
            await sink.aclose()
        if pub is not None:
            await self.daemon.unregister(pub)
            # Still connected (an unpublish): pending again, it may publish again before the deadline.
            self.scope.deadline = self.daemon.admission.unpublish(self, trio.current_time())
            s = pub.stats
            slog.log(
                log, logging.INFO, "publisher left", reason=reason, stream=pub.stream["slug"], generation=pub.generation_id,
                bytes_in=s.bytes_in, video_frames=s.video_frames, audio_frames=s.audio_frames,
            )

    async def _finish(self, reason: str) -> None:
        with trio.move_on_after(CLOSE_GRACE_S):
            try:
                await self._send()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass
        await self._end_publish(reason)
        await trio.aclose_forcefully(self.transport)


def _peer(sock) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(remote: str) -> str:
    """The source address of a `_peer` string (no port)."""
    return remote.rsplit(":", 1)[0]


def _bound(listener: trio.SocketListener) -> tuple[str, int]:
    host, port = listener.socket.getsockname()[:2]
    return host, port

