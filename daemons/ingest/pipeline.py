"""A generation's media pipeline in the ingest daemon: the media backend, packagers, the spool.

`GenerationPipeline` lives while its generation is active in this daemon. It owns one
`RenditionPackager` per rendition (resumed from the spool's state files after a daemon restart)
and hands each publish its media sink (`open_session`), which the connection handler feeds;
each rendition is fed by exactly one backend:

* `backend.kind = "native"`: the `source` rendition is written by Sender itself
  (`daemons.ingest.native.NativeSink`: RTMP packets to CMAF fragments, no process), and a
  `BackendSink` runs ffmpeg for the transcoded renditions only, if the ladder has any (both
  behind one `LadderSink`);
* `backend.kind = "ffmpeg"`: one `BackendSink` runs ffmpeg for every rendition (the source as a
  remux).

A `BackendSink` runs one supervised ffmpeg at a time; if ffmpeg dies while the publisher is still
there, it is restarted with backoff. Each backend's output is one *timeline* of its renditions'
packagers (`start_timeline`/`end_timeline`): a new one (an ffmpeg restart, a packet the native
backend dropped) follows a discontinuity and numbering goes on. Each sink checks each tag's
decoded header: a codec its backend cannot package refuses the publish (`UnsupportedMedia`).

Spool layout (the contract with the HTTP daemon, see docs/arch.md):

    <spool>/streams/<stream_id>/<generation_id>/
        generation.json          renditions, status (written atomically)
        master.m3u8
        <rendition>/init.mp4, <msn>.m4s, <msn>.<part>.m4s
        <rendition>/index.m3u8   the full live playlist
        <rendition>/state.json   packager state (closed segments; rewritten once per segment): what a restarted daemon reads

Every file is written to a temporary name and renamed; media files are on disk before the
playlist that lists them, and a name once listed never names other bytes: when the spool refuses a
write, the pipeline keeps what it could not write (the same bytes are retried until they land), closes
each rendition's open segment as it stands, drops media until the backlog is written, and goes on
with a new segment after a discontinuity. A restarted daemon closes the segment whose parts the last
playlist listed (from those files) before it goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import trio

from daemons.core import domain
from daemons.core.errors import SenderError
from daemons.ingest import backend, native
from daemons.ingest.native import NativeSink
from daemons.ingest.sink import MediaSink, UnsupportedMedia
from daemons.media import flv, hls, rtmp
from daemons.media.fmp4 import FMP4Error, FMP4Reader, Fragment, InitSegment
from daemons.media.generation import Batch, GenerationPackager
from daemons.media.names import DVR_PLAYLIST, MASTER, MASTER_DVR, MASTER_VOD, PLAYLIST, VOD_PLAYLIST
from daemons.media.packager import PackagerConfig, RenditionPackager, utc_now
from daemons.media.recording import Recording
from daemons.runtime import logging as slog
from daemons.runtime import spool_events
from daemons.runtime.spool import SpoolWriter
from daemons.runtime.spool_events import SpoolEventSender
from daemons.runtime.store import StoreWorker

log = slog.get("ingest.pipeline")

RESTART_BACKOFF_START_S = 0.25
STOP_GRACE_S = 5.0
MAX_FAILED_STARTS = 5
BANDWIDTH_RECORD_INTERVAL_S = 10.0  # measured bandwidth into the store, at most this often
AVERAGE_BANDWIDTH_STEP = 0.05  # the masters follow the average bandwidth in steps of 5 %
SPOOL_RETRY_S = 0.5  # while the spool refuses writes, the backlog is tried again this often

# What connect's fourCcList answers (among the peer's list), by backend.kind: the Enhanced RTMP
# codecs Sender takes. Debian's ffmpeg 5.1 demuxes legacy FLV only: no Enhanced RTMP tag, nor HEVC
# as the unofficial CodecID 12. The native backend writes HEVC and AV1 (and Opus) itself; a stream
# whose ladder has transcoded renditions still needs ffmpeg to decode, and refuses them at their
# first tag.
ENHANCED_FOURCCS: dict[str, tuple[str, ...]] = {"ffmpeg": (), "native": native.ENHANCED_FOURCCS}


def carries_no_media(media: rtmp.AudioData | rtmp.VideoData) -> bool:
    """A video command or metadata tag (HDR colorInfo): nothing a backend packages."""
    return isinstance(media, rtmp.VideoData) and media.header.packet_type in (None, flv.VideoPacketType.METADATA)


def unsupported(media: rtmp.AudioData | rtmp.VideoData) -> str | None:
    """Why ffmpeg cannot take this media (None if it can): the codec, for a refusal."""
    h = media.header
    if isinstance(media, rtmp.VideoData):
        if h.enhanced:
            return f"video codec {h.fourcc} (Enhanced RTMP)"
        if h.codec_id == flv.CODEC_HEVC:
            return "video codec hvc1 (FLV CodecID 12)"
    elif h.enhanced:
        return f"audio codec {h.fourcc} (Enhanced RTMP)"
    return None


class GenerationPipeline:
    """The I/O shell around a `GenerationPackager` (daemons/media/generation.py): it writes the
    batches, wakes readers, and tells the store what happened."""

    def __init__(self, *, stream: dict, generation_id: str, renditions: list[dict], directory: Path,
                 config, store: StoreWorker, nursery: trio.Nursery, events: SpoolEventSender | None = None,
                 before_live: Callable[[], Awaitable[None]] | None = None):
        self.stream = stream
        self.generation_id = generation_id
        self.renditions = renditions
        self.directory = directory
        self.config = config
        self.store = store
        self.nursery = nursery
        self.packager_config = PackagerConfig(
            part_target_s=config["hls.part_target_s"],
            segment_target_s=config["hls.segment_target_s"],
            live_window_segments=config["spool.live_window_segments"],
            low_latency=config["hls.low_latency"],
        )
        self.spool = SpoolWriter(directory)
        self.events = events
        self.before_live = before_live  # the daemon's stats, written before the store says live
        self.media = GenerationPackager.new(self.packager_config, [r["name"] for r in renditions])
        self.inits: dict[str, InitSegment] = {}
        self.live = False
        self._going_live = False
        self.restarts = 0
        self.frame_rate: float | None = None
        self.sink: MediaSink | None = None  # the media sink of the publish being fed, if any
        self._master: bytes | None = None
        self._master_inputs: tuple | None = None  # what the masters were last written from
        self._discontinuities = 0  # as recorded in the store and generation.json
        self._replay_masters: dict[str, bytes] = {}  # master-dvr/master-vod as last written
        self._bandwidth_recorded_at = -math.inf
        self._cancel = trio.CancelScope()

    @property
    def packagers(self) -> dict[str, RenditionPackager]:
        return self.media.packagers

    @property
    def fields(self) -> dict:
        return {"stream": self.stream["slug"], "generation": self.generation_id}

    async def load(self) -> None:
        """Create the directories; continue from the packagers' state files if a daemon left them,
        closing the segments whose parts the last playlists listed. A recorded generation (the
        store's `recorded`, decided when it began) keeps every segment, and a resumed one goes on
        with the recording its `dvr.m3u8` lists."""
        generation = await self.store.run(domain.generations.get, self.generation_id)
        if generation["recorded"] and not self.packager_config.record:
            self.packager_config = dataclasses.replace(self.packager_config, record=True)
            self.media = GenerationPackager.new(self.packager_config, [r["name"] for r in self.renditions])

        def work() -> tuple[int, dict[str, dict], dict[str, tuple], dict[str, str]]:
            restarts = 0
            try:
                restarts = int(json.loads((self.directory / "generation.json").read_text()).get("restarts", 0))
            except (OSError, ValueError, AttributeError):
                pass
            states, listed, recorded = {}, {}, {}
            for r in self.renditions:
                d = self.directory / r["name"]
                d.mkdir(parents=True, exist_ok=True)
                try:
                    states[r["name"]] = json.loads((d / "state.json").read_text())
                except FileNotFoundError:
                    continue
                found = _listed_open_parts(d)
                if found is not None:
                    listed[r["name"]] = found
                if self.packager_config.record:
                    try:
                        recorded[r["name"]] = (d / DVR_PLAYLIST).read_text()
                    except (FileNotFoundError, UnicodeDecodeError):
                        pass
            return restarts, states, listed, recorded

        self.restarts, states, listed, recorded = await trio.to_thread.run_sync(work)
        if states:
            packagers = {
                r["name"]: RenditionPackager.from_state(states[r["name"]], self.packager_config) if r["name"] in states
                else RenditionPackager(r["name"], self.packager_config)
                for r in self.renditions
            }
            for name, p in packagers.items():
                if name in states:
                    p.resume_recording(self._recording_of(name, recorded.get(name)))
            self.media = GenerationPackager(self.packager_config, packagers)
            self._discontinuities = self.media.discontinuities
            sealed = self.media.seal_listed(listed)
            self.live = self.media.playable
            slog.log(log, logging.INFO, "resumed packager state from the spool", sealed=",".join(listed) or "-", **self.fields)
            if sealed is not None:
                await self._write(sealed)
        self.nursery.start_soon(self._run_deletions)
        await self._publish_generation(ended=False)

    def _recording_of(self, name: str, text: str | None) -> Recording | None:
        """The recording a rendition's `dvr.m3u8` lists (None: none, or unreadable — then it
        restarts from the segments the state still has)."""
        if text is None:
            return None
        try:
            return Recording.from_text(text)
        except ValueError as e:
            slog.log(log, logging.WARNING, "unreadable DVR playlist: the recording goes on from the packager state",
                     rendition=name, error=e, **self.fields)
            return None

    async def _run_deletions(self) -> None:
        with self._cancel:
            await self.spool.run_deletions()

    def open_session(self) -> MediaSink:
        """A publish's media sink: each rendition fed by one backend (see the module docstring)."""
        kind = self.config["backend.kind"]
        own = [r for r in self.renditions if kind == "native" and r["kind"] == "source"]
        sinks: list = [NativeSink(self, r["name"]) for r in own]
        rest = [r for r in self.renditions if r not in own]
        if rest:
            sinks.append(BackendSink(self, rest))
        self.sink = sinks[0] if len(sinks) == 1 else LadderSink(self, sinks)
        return self.sink

    async def finish(self) -> None:
        """The generation ended: close the playlists with ENDLIST (once the spool takes them, if
        it refuses writes now)."""
        await self._write(self.media.end())
        if self.media.outage:
            self.nursery.start_soon(self._finish_when_written)
        else:
            await self._close()

    async def _finish_when_written(self) -> None:
        while self.media.outage:
            await trio.sleep(SPOOL_RETRY_S)
        await self._close()

    async def _close(self) -> None:
        await self._publish_generation(ended=True)
        if self.live:
            await self._publish_master(final=True)
        self._cancel.cancel()
        slog.log(log, logging.INFO, "generation playlists ended", **self.fields)

    # --- packaging -------------------------------------------------------------------------

    async def on_output(self, name: str, items: list) -> None:
        now = utc_now()
        for item in items:
            if isinstance(item, InitSegment):
                self.inits[name] = item
                await self._write(self.media.on_init(name, item))
                await self.store.run(_record_rendition, self.stream["id"], name, item, self.frame_rate)
            else:
                await self._write(self.media.on_fragment(name, item, now))

    async def _write(self, batch: Batch | None) -> None:
        """Write a batch; on refusal the packager keeps it and a task retries until it lands."""
        if batch is None:
            return
        retry = self.media.outage
        if not await self.spool.write(batch.actions, batch.published):
            self._refused(batch, retry)
            return
        if retry:
            self.media.recovered(batch)
        else:
            self.media.written(batch)
        self._announce(batch, trio.current_time())
        await self._after(batch)

    def _refused(self, batch: Batch, retry: bool) -> None:
        self.media.refused(batch)
        if not retry:
            slog.log(log, logging.WARNING, "spool refused a write: media is dropped until it is written", **self.fields)
            self.nursery.start_soon(self._recover)

    async def _recover(self) -> None:
        while self.media.outage:
            await trio.sleep(SPOOL_RETRY_S)
            if self.media.outage:
                await self._write(self.media.retry())
        slog.log(log, logging.INFO, "spool writes again: the backlog is written, media goes on", **self.fields)

    # --- the media thread's share (daemons/ingest/media_thread.py) -------------------------------

    @property
    def leasable(self) -> bool:
        """Whether a publish of this generation may run in the media thread: live, the spool
        writing on the loop (not after a slow batch, not in an outage)."""
        return self.live and not self.media.outage and not self.spool.threaded

    def fragment_now(self, name: str, fragment: Fragment, now: float) -> Callable[[], Awaitable[None]] | None:
        """(The media thread, while the publish is leased) `on_output` of one fragment, as far as
        it goes without trio: package it, write the batch, wake the readers. Returns what trio
        must finish (the lease then ends), or None."""
        batch = self.media.on_fragment(name, fragment, utc_now())
        if batch is None:
            return None
        if not self.spool.write_now(batch.actions, batch.published, now):
            return functools.partial(self._refused_later, batch)
        self.media.written(batch)
        self._announce(batch, now)
        if self._after_needed():
            return functools.partial(self._after, batch)
        if self.spool.threaded_at(now):
            return _nothing  # a slow disk: the publish goes back to trio, which writes from a worker thread
        return None

    async def _refused_later(self, batch: Batch) -> None:
        self._refused(batch, retry=False)

    def _after_needed(self) -> bool:
        """Whether `_after` has something to do besides the readers' wake-ups (done already).
        Only while leased, so the generation is live already."""
        return self._master_key(final=False) != self._master_inputs or self.media.discontinuities != self._discontinuities

    # --- after a batch -------------------------------------------------------------------------

    def _announce(self, batch: Batch, now: float) -> None:
        """Wake the readers of the playlists a batch published (spool events)."""
        if self.events is not None:
            for name, p in self.packagers.items():
                last = p.last_part()
                if last is not None and batch.playlist_of(name) is not None:
                    self.events.send(spool_events.encode(f"{self.stream['id']}/{self.generation_id}/{name}", *last), now)

    async def _after(self, batch: Batch) -> None:
        """A batch landed (and its readers were woken): the store and the master follow."""
        if not self.live and not self._going_live and self.media.playable:
            self._going_live = True  # once, though a ladder's backends land batches side by side
            if self.before_live is not None:
                await self.before_live()
            try:
                await self.store.run(domain.generations.mark_live, self.generation_id)
                slog.log(log, logging.INFO, "generation is live", **self.fields)
            except SenderError as e:  # stopped by an admin meanwhile: the playlists still close properly
                slog.log(log, logging.INFO, "generation not marked live", reason=e.message, **self.fields)
            self.live = True  # after the store: whoever sees `live` finds the store saying so
        if self.live:
            await self._publish_master()
        if self.media.discontinuities != self._discontinuities:
            self._discontinuities = self.media.discontinuities
            await self.store.run(domain.generations.record_discontinuities, self.generation_id, self._discontinuities)
            await self._publish_generation(ended=False)

    async def _publish_master(self, *, final: bool = False) -> None:
        # What the masters are made of changes once per segment, not once per part: skip the
        # rest (variants, renders, compares) while it is the same as the last written.
        inputs = self._master_key(final)
        if inputs == self._master_inputs:
            return
        variants = []
        for r in self.renditions:
            init = self.inits.get(r["name"])
            p = self.packagers[r["name"]]
            codecs = ",".join(t.codec for t in (init.video, init.audio) if t is not None) if init else None
            video = init.video if init else None
            estimate = (r.get("video_bitrate") or 0) + (r.get("audio_bitrate") or 0)
            variants.append(
                hls.Variant(
                    uri=f"{r['name']}/{PLAYLIST}",
                    bandwidth=max(p.bandwidth_peak, estimate, 1),
                    average_bandwidth=p.average_bandwidth or None,
                    codecs=codecs,
                    resolution=(video.width, video.height) if video and video.width else None,
                    frame_rate=r.get("frame_rate") or self.frame_rate,
                )
            )
        data = hls.MasterPlaylist(tuple(variants)).render().encode()
        written = True
        if data != self._master:
            if await self.spool.apply("", [], {MASTER: data}):
                self._master = data
            else:
                written = False
        replays = {name: _replay_master(name, [dataclasses.replace(v, uri=f"{v.uri.split('/', 1)[0]}/{playlist}")
                                               for v in variants])
                   for name, playlist in self._replay_masters_due(final)}
        replays = {name: data for name, data in replays.items() if self._replay_masters.get(name) != data}
        if replays:
            if await self.spool.apply("", [], replays):
                self._replay_masters.update(replays)
            else:
                written = False
        await self._record_bandwidth(variants, final=final)
        if written:
            self._master_inputs = inputs

    def _master_key(self, final: bool) -> tuple:
        """What the masters are made of. The average bandwidth counts in steps of
        `AVERAGE_BANDWIDTH_STEP`: it moves a little with every segment, and rewriting the masters
        (and ending a media-thread lease for it) each time would serve no player; the peak, which
        BANDWIDTH must cover, counts exactly. A recording counts once it has a segment: the DVR
        master is due from then on (`_replay_masters_due`)."""
        return (final, self.frame_rate, tuple(
            (id(self.inits.get(name)), p.bandwidth_peak, _step(p.average_bandwidth), p.ended,
             bool(p.recording.segments) if p.recording is not None else None)
            for name, p in self.packagers.items()))

    def _replay_masters_due(self, final: bool) -> list[tuple[str, str]]:
        """A recording's masters, (file, the variants' playlist): the DVR one once every rendition
        has its DVR playlist; the VOD one once the generation ended (written once: immutable)."""
        recordings = [p.recording for p in self.packagers.values()]
        if not recordings or any(r is None or not r.segments for r in recordings):
            return []
        due = [(MASTER_DVR, DVR_PLAYLIST)]
        if final and all(p.ended for p in self.packagers.values()) and MASTER_VOD not in self._replay_masters:
            due.append((MASTER_VOD, VOD_PLAYLIST))
        return due

    async def _record_bandwidth(self, variants: list[hls.Variant], *, final: bool = False) -> None:
        """Into the store once every rendition has a measured average, then at most every 10 s."""
        now = trio.current_time()
        if not all(v.average_bandwidth for v in variants):
            return
        if final or now - self._bandwidth_recorded_at >= BANDWIDTH_RECORD_INTERVAL_S:
            self._bandwidth_recorded_at = now
            measured = {v.uri.split("/", 1)[0]: (v.bandwidth, v.average_bandwidth) for v in variants}
            await self.store.run(domain.renditions.record_bandwidth, self.stream["id"], measured)

    async def _publish_generation(self, *, ended: bool) -> None:
        doc = {
            "stream_id": self.stream["id"],
            "generation_id": self.generation_id,
            "renditions": [r["name"] for r in self.renditions],
            "ended": ended,
            "restarts": self.restarts,
            "discontinuities": self._discontinuities,
        }
        await self.spool.apply("", [], {"generation.json": json.dumps(doc).encode()})

    async def start_timeline(self, names: tuple[str, ...] | None = None) -> None:
        self.media.start_timeline(names)

    async def backend_restarted(self) -> None:
        self.restarts += 1
        await self._publish_generation(ended=False)

    async def end_timeline(self, names: tuple[str, ...] | None = None) -> None:
        await self._write(self.media.end_timeline(names))


def _replay_master(name: str, variants: list[hls.Variant]) -> bytes:
    """A recording's master playlist. The DVR one says where to start: at the start of the
    broadcast (EXT-X-START), not at the live edge where players start an EVENT playlist."""
    text = hls.MasterPlaylist(tuple(variants)).render()
    if name == MASTER_DVR:
        head, _, rest = text.partition("\n")
        text = f"{head}\n#EXT-X-START:TIME-OFFSET=0\n{rest}"
    return text.encode()


def last_write_time(directory: Path) -> str:
    """When a generation's playlists last changed (UTC ISO-8601; now if none exists): for a
    publisher lost with a killed daemon, when it was last heard of. Blocking: call from a thread."""
    mtimes = []
    for playlist in directory.glob(f"*/{PLAYLIST}"):
        try:
            mtimes.append(playlist.stat().st_mtime)
        except OSError:
            continue
    when = datetime.fromtimestamp(max(mtimes), timezone.utc) if mtimes else datetime.now(timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _nothing() -> None:
    pass


def _listed_open_parts(directory: Path) -> tuple[hls.MediaPlaylist, list[bytes]] | None:
    """The rendition's published playlist and the bytes of the parts it lists for the segment in
    progress, if any (all on disk: a part is written before any playlist lists it)."""
    try:
        listed = hls.parse_media_playlist((directory / PLAYLIST).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not listed.partial_parts or listed.ended:
        return None
    try:
        return listed, [(directory / part.uri).read_bytes() for part in listed.partial_parts]
    except OSError:
        return None


def _record_rendition(store, stream_id: str, name: str, init: InitSegment, frame_rate: float | None) -> None:
    v, a = init.video, init.audio
    domain.renditions.record_observed(
        store, stream_id, name,
        video_codec=v.codec if v else None, audio_codec=a.codec if a else None,
        width=v.width if v else None, height=v.height if v else None, frame_rate=frame_rate,
    )


class LadderSink:
    """A publish whose renditions two backends make (the native source, ffmpeg's transcodes):
    each tag goes to both once both take its codec; if either cannot, the publish is refused
    before any of them saw it."""

    def __init__(self, pipeline: GenerationPipeline, sinks: list):
        self.pipeline = pipeline
        self.sinks = sinks

    async def open(self) -> None:
        for sink in self.sinks:
            await sink.open()

    async def metadata(self, data: dict) -> None:
        for sink in self.sinks:
            await sink.metadata(data)

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        for sink in self.sinks:
            reason = sink.refuses(media)
            if reason is not None:
                raise UnsupportedMedia(reason)
        for sink in self.sinks:
            await sink.write(media)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for sink in self.sinks:
                await sink.aclose()
            if self.pipeline.sink is self:
                self.pipeline.sink = None


class BackendSink:
    """One publish's ffmpeg backend for `renditions` (all of them, or the transcoded ones when the
    native backend writes the source): the `MediaSink` its connection handler feeds, running (and
    restarting) ffmpeg for it."""

    def __init__(self, pipeline: GenerationPipeline, renditions: list[dict]):
        self.pipeline = pipeline
        self.renditions = renditions
        self.names = tuple(r["name"] for r in renditions)
        self.config = pipeline.config
        self._metadata: dict | None = None
        self.video_header: bytes | None = None
        self.audio_header: bytes | None = None
        self.process: backend.BackendProcess | None = None
        self.need_keyframe = True
        self.closing = False
        self.failed_starts = 0
        self._scope = trio.CancelScope()
        self._ready = trio.Event()  # the first ffmpeg takes input (or could not start)
        self._stopped = trio.Event()
        self._started = False

    async def open(self) -> None:
        await self.pipeline.start_timeline(self.names)

    def refuses(self, media: rtmp.AudioData | rtmp.VideoData) -> str | None:
        if carries_no_media(media):
            return None
        reason = unsupported(media)
        if reason is None:
            return None
        if all(r["kind"] != "source" for r in self.renditions):
            return f"{reason}: the transcoded renditions' backend (ffmpeg) cannot decode it"
        return f"{reason}: the media backend (ffmpeg) cannot package it"

    async def metadata(self, data: dict) -> None:
        self._metadata = data
        fps = data.get("framerate")
        if isinstance(fps, (int, float)) and 0 < fps < 1000:
            self.pipeline.frame_rate = float(fps)

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        if carries_no_media(media):
            return
        reason = self.refuses(media)
        if reason is not None:
            raise UnsupportedMedia(reason)
        start_point = self._note(media)
        if not self._started:
            if not start_point:
                return
            self._started = True
            self.pipeline.nursery.start_soon(self._supervise)
            await self._ready.wait()
        proc = self.process
        if proc is None:
            return  # (re)starting: the new ffmpeg will begin at a keyframe
        if self.need_keyframe:
            if not start_point:
                return
            self.need_keyframe = False
        try:
            await proc.stdin.send_all(flv.encode_tag(media.tag_type, media.timestamp, media.payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # ffmpeg died; the supervisor restarts it

    def _note(self, media: rtmp.AudioData | rtmp.VideoData) -> bool:
        """Remember sequence headers; say whether this tag is where a backend may start."""
        if media.header.is_sequence_header:
            if isinstance(media, rtmp.VideoData):
                self.video_header = media.payload
            else:
                self.audio_header = media.payload
            return False
        if isinstance(media, rtmp.VideoData):
            return media.header.is_random_access  # a key frame's picture (not an end of sequence)
        return self.video_header is None  # an audio-only publisher starts anywhere

    def _prelude(self) -> bytes:
        """What a fresh ffmpeg needs before media: the FLV header, metadata, sequence headers."""
        out = bytearray(flv.flv_header(has_audio=self.audio_header is not None or self.video_header is None,
                                       has_video=self.video_header is not None))
        if self._metadata:
            out += flv.encode_script_tag(self._metadata)
        for tag_type, header in ((flv.TAG_VIDEO, self.video_header), (flv.TAG_AUDIO, self.audio_header)):
            if header is not None:
                out += flv.encode_tag(tag_type, 0, header)
        return bytes(out)

    async def _supervise(self) -> None:
        """Run ffmpeg; restart it with backoff if it dies while the publisher is still here."""
        try:
            with self._scope:
                await self._supervise_loop()
        except Exception:  # a bug here must not take the daemon (and every other stream) down
            log.exception("media backend supervisor failed", extra={"fields": self.pipeline.fields})
        finally:
            self._ready.set()
            self._stopped.set()

    async def _supervise_loop(self) -> None:
        p = self.pipeline
        backoff = RESTART_BACKOFF_START_S
        while not self.closing:
            renditions = self.renditions
            cmd_builder = lambda fds: backend.ffmpeg_command(  # noqa: E731
                self.config["backend.ffmpeg"], renditions, fds,
                segment_target_s=self.config["hls.segment_target_s"], extra_args=self.config["backend.extra_args"],
            )
            try:
                proc = backend.spawn(cmd_builder, len(renditions))
            except OSError as e:
                slog.log(log, logging.ERROR, "media backend cannot start", error=e, **p.fields)
                await p.store.run(domain.generations.mark_failed, p.generation_id, f"ffmpeg cannot start: {e}")
                break
            produced = await self._run_process(proc)
            if self.closing:
                break
            await p.backend_restarted()
            self.failed_starts = 0 if produced else self.failed_starts + 1
            if self.failed_starts >= MAX_FAILED_STARTS:
                slog.log(log, logging.ERROR, "media backend keeps failing; generation failed", **p.fields)
                await p.store.run(domain.generations.mark_failed, p.generation_id, "ffmpeg exits without output")
                break
            await p.end_timeline(self.names)
            await p.start_timeline(self.names)
            backoff = RESTART_BACKOFF_START_S if produced else min(backoff * 2, self.config["backend.restart_backoff_max_s"])
            slog.log(log, logging.WARNING, "media backend exited; restarting", backoff_s=round(backoff, 2), restarts=p.restarts, **p.fields)
            await trio.sleep(backoff)

    async def _run_process(self, proc: backend.BackendProcess) -> bool:
        """Feed and read one ffmpeg until it exits; True if it produced any fragment."""
        p = self.pipeline
        produced = [False]
        slog.log(log, logging.INFO, "media backend started", pid=proc.pid, renditions=",".join(self.names), **p.fields)
        try:
            async with trio.open_nursery() as n:
                for r, out in zip(self.renditions, proc.outputs):
                    n.start_soon(self._read_output, r["name"], out, produced)
                n.start_soon(self._log_stderr, proc)
                try:
                    await proc.stdin.send_all(self._prelude())
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                self.process = proc
                self.need_keyframe = True
                self._ready.set()
                code = await proc.wait()
                self.process = None
                if not self.closing:
                    slog.log(log, logging.WARNING, "ffmpeg exited", code=code, **p.fields)
        finally:
            self.process = None
            with trio.CancelScope(shield=True):
                await proc.aclose()
        return produced[0]

    async def _read_output(self, name: str, stream: trio.lowlevel.FdStream, produced: list) -> None:
        reader = FMP4Reader()
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                return
            try:
                items = reader.feed(data)
            except FMP4Error as e:
                slog.log(log, logging.ERROR, "unreadable backend output", rendition=name, error=e, **self.pipeline.fields)
                return
            if items:
                produced[0] = True
                await self.pipeline.on_output(name, items)

    async def _log_stderr(self, proc: backend.BackendProcess) -> None:
        buf = b""
        while chunk := await proc.stderr.receive_some(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    slog.log(log, logging.WARNING, "ffmpeg: " + line.decode(errors="replace").strip()[:500], **self.pipeline.fields)

    async def aclose(self) -> None:
        """The publisher left: let ffmpeg flush (stdin EOF), close the open segments."""
        self.closing = True
        with trio.CancelScope(shield=True):
            proc = self.process
            if proc is not None:
                await trio.aclose_forcefully(proc.stdin)
                with trio.move_on_after(STOP_GRACE_S):
                    await self._stopped.wait()
            self._scope.cancel()
            if self._started:
                with trio.move_on_after(STOP_GRACE_S):
                    await self._stopped.wait()
            await self.pipeline.end_timeline(self.names)
            if self.pipeline.sink is self:
                self.pipeline.sink = None


def _step(bandwidth: int) -> int:
    """The step of `AVERAGE_BANDWIDTH_STEP` a bandwidth is in (0 for none)."""
    return round(math.log(bandwidth) / math.log1p(AVERAGE_BANDWIDTH_STEP)) if bandwidth > 0 else 0
