"""Restream: while a stream has a publisher, its source media is pushed to each enabled target
(`domain.restream`) unchanged — one supervised `ffmpeg -f flv -i pipe:0 -c copy -f flv <url>` per
target, no re-encode.

* `RestreamSink` is one publish's `MediaSink`: it encodes each tag once and offers it to each
  target's `TargetPush`, without ever waiting on one (a target's backlog is bounded: past
  `MAX_BACKLOG_BYTES` it is dropped and that target goes on from the next keyframe). So a slow,
  refusing or dead target never slows the publisher, the packager or the other targets.
* `TargetPush` runs one ffmpeg at a time for its target: each new ffmpeg is fed the FLV header,
  metadata and sequence headers, then media from the next keyframe; when it exits while the
  publish goes on, it is started again after a backoff (`Backoff`: doubling up to
  `restream.backoff_max_s`, back to the start after a run that stayed live). Its state —
  connecting, live (ffmpeg reports bytes written to the target: `-progress`), failing with the
  last error — bytes and bitrate go into the ingest stats file.
* `Restreamer` is the daemon's: it makes the sinks, and its `refresh` (the ingest control loop,
  every half second) applies target changes to live publishers.

The URL is a secret: it appears only on ffmpeg's command line; logs, stats and errors carry the
masked URL, and ffmpeg's messages are redacted (`domain.restream.redact`) before they are kept.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import trio

from daemons.core.domain import restream as domain_restream
from daemons.core.domain.common import now_iso
from daemons.core.domain.restream import Target
from daemons.media import flv, rtmp
from daemons.runtime import children
from daemons.runtime import logging as slog

log = slog.get("ingest.restream")

BACKOFF_START_S = 1.0
STABLE_S = 10.0  # a run live this long was a success: the backoff starts over
MAX_BACKLOG_BYTES = 8 * 1024 * 1024  # per target, ~10 s at 6 Mb/s; past it the backlog is dropped
STOP_GRACE_S = 3.0  # for an ffmpeg whose stdin closed to flush and unpublish
IO_TIMEOUT_US = 10_000_000  # ffmpeg gives up on a target that takes no data for 10 s
BITRATE_WINDOW_S = 5.0
PROGRESS_MAX_LINE = 4096


def ffmpeg_command(ffmpeg: str, url: str) -> list[str]:
    """One target's ffmpeg: FLV in on stdin, the same FLV out to `url`, progress on stdout."""
    return [
        ffmpeg, "-hide_banner", "-loglevel", "warning", "-nostats",
        "-probesize", "32", "-analyzeduration", "0", "-f", "flv", "-i", "pipe:0",
        "-map", "0", "-c", "copy", "-progress", "pipe:1", "-stats_period", "1",
        "-rw_timeout", str(IO_TIMEOUT_US), "-f", "flv", "-flvflags", "no_duration_filesize", url,
    ]


class ProgressParser:
    """ffmpeg's `-progress` output (key=value lines, each block ending with `progress=…`): feed
    bytes, get the blocks they complete. Garbage gives empty or odd blocks, never an error."""

    def __init__(self) -> None:
        self._buf = b""
        self._block: dict[str, str] = {}

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > PROGRESS_MAX_LINE:  # no line is that long: not progress output
            self._buf = b""
        blocks = []
        for raw in lines:
            key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
            if not sep:
                continue
            self._block[key] = value
            if key == "progress":
                blocks.append(self._block)
                self._block = {}
            elif len(self._block) > 64:
                self._block = {}
        return blocks


def total_size(block: dict[str, str]) -> int:
    """Bytes written to the target, from a progress block (0 when it says nothing usable)."""
    try:
        return max(0, int(block.get("total_size", "0")))
    except ValueError:
        return 0


class Backoff:
    """Waits between a target's attempts: `start_s`, doubling after each failed run up to `max_s`;
    a run that stayed live `stable_s` or more starts it over."""

    def __init__(self, max_s: float, start_s: float = BACKOFF_START_S, stable_s: float = STABLE_S):
        self.start_s, self.max_s, self.stable_s = min(start_s, max_s), max_s, stable_s
        self.next_s = self.start_s

    def after_run(self, live_for_s: float | None) -> float:
        """The wait before the next attempt, after a run that was live `live_for_s` (None: never live)."""
        if live_for_s is not None and live_for_s >= self.stable_s:
            self.next_s = self.start_s
        wait = self.next_s
        self.next_s = min(self.next_s * 2, self.max_s)
        return wait


class TargetPush:
    """One target of one publish: runs (and restarts) its ffmpeg, feeds it, keeps its state."""

    def __init__(self, sink: "RestreamSink", target: Target):
        self.sink = sink
        self.target = target
        self.backoff = Backoff(sink.restreamer.backoff_max_s)
        self.state = "connecting"
        self.state_since = now_iso()
        self.last_error: str | None = None
        self.attempts = 0
        self.failures = 0
        self.dropped = 0  # backlogs dropped because the target took too long
        self.bytes_done = 0  # written by earlier ffmpegs
        self.bytes_now = 0  # written by the running one
        self._samples: deque = deque()  # (trio time, bytes)
        self._child: children.Child | None = None
        self._buffer = bytearray()
        self._wake = trio.Event()
        self._need_keyframe = True
        self._live_at: float | None = None
        self._scope = trio.CancelScope()
        self._closing = False
        self.done = trio.Event()

    @property
    def fields(self) -> dict:
        return {"stream": self.sink.stream["slug"], "target": self.target.id, "label": self.target.label,
                "url": self.target.masked}

    def _set_state(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.state, self.state_since = state, now_iso()
        if error is not None:
            self.last_error = error

    # --- fed by the sink: never waits ----------------------------------------------------

    def offer(self, tag: bytes, start_point: bool) -> None:
        if self._child is None:
            return  # (re)starting: the next ffmpeg begins at a keyframe
        if self._need_keyframe:
            if not start_point:
                return
            self._need_keyframe = False
        if len(self._buffer) + len(tag) > MAX_BACKLOG_BYTES:
            self._buffer.clear()
            self.dropped += 1
            self._need_keyframe = True
            slog.log(log, logging.WARNING, "restream target too slow: backlog dropped, going on from the next keyframe",
                     limit_bytes=MAX_BACKLOG_BYTES, **self.fields)
            return
        self._buffer += tag
        self._wake.set()

    # --- the supervisor ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop pushing: ffmpeg gets EOF (it flushes and unpublishes), the supervisor ends."""
        self.sink.restreamer.finishing[self.target.id] = self.done
        self._closing = True
        self._wake.set()
        if self._child is None:
            self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                # A previous push to this target (the publisher's last connection, or a target
                # disabled and enabled again) first unpublishes, so the two do not meet there.
                previous = self.sink.restreamer.finishing.get(self.target.id)
                if previous is not None:
                    with trio.move_on_after(STOP_GRACE_S + 1):
                        await previous.wait()
                await self.sink.started.wait()
                while not self._closing:
                    await self._attempt()
                    if self._closing:
                        break
                    wait = self.backoff.after_run(None if self._live_at is None else trio.current_time() - self._live_at)
                    slog.log(log, logging.WARNING, "restream target failed; retrying", error=self.last_error,
                             backoff_s=round(wait, 2), attempts=self.attempts, **self.fields)
                    await trio.sleep(wait)
        except Exception:  # a bug here must not touch ingest or the other targets
            log.exception("restream supervisor failed", extra={"fields": self.fields})
            self._set_state("failing", "internal error (see the sender-ingest log)")
        finally:
            self.done.set()
            if self.sink.restreamer.finishing.get(self.target.id) is self.done:
                del self.sink.restreamer.finishing[self.target.id]

    async def _attempt(self) -> None:
        if self.sink.unsupported:
            self._set_state("failing", self.sink.unsupported)
            self._live_at = None
            return
        self.attempts += 1
        self._set_state("connecting")
        self._live_at = None
        try:
            child = children.spawn(ffmpeg_command(self.sink.restreamer.ffmpeg, self.target.url),
                                   stdin=children.PIPE, stdout=children.PIPE, stderr=children.PIPE)
        except OSError as e:
            self.failures += 1
            self._set_state("failing", f"ffmpeg cannot start: {e.strerror or e}")
            return
        slog.log(log, logging.INFO, "restream target connecting", pid=child.pid, attempt=self.attempts, **self.fields)
        self._buffer[:] = self.sink.prelude()
        self._need_keyframe = True
        self._child = child
        errors: deque[str] = deque(maxlen=5)
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._feed, child)
                n.start_soon(self._read_progress, child)
                n.start_soon(self._read_errors, child, errors)
                code = await child.wait()
                n.cancel_scope.cancel()
        finally:
            self._child = None
            self._buffer.clear()
            self.bytes_done += self.bytes_now
            self.bytes_now = 0
            await child.aclose()
        if not self._closing:
            self.failures += 1
            reason = errors[-1] if errors else f"ffmpeg exited with code {code}"
            self._set_state("failing", reason)

    async def _feed(self, child: children.Child) -> None:
        try:
            while True:
                while not self._buffer and not self._closing:
                    self._wake = trio.Event()
                    await self._wake.wait()
                if self._buffer:
                    data = bytes(self._buffer)
                    self._buffer.clear()
                    await child.stdin.send_all(data)
                if self._closing and not self._buffer:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # ffmpeg is gone: the supervisor sees it exit
        await trio.aclose_forcefully(child.stdin)  # EOF: ffmpeg flushes, unpublishes and exits
        with trio.move_on_after(STOP_GRACE_S):
            await child.wait()
        child.kill()

    async def _read_progress(self, child: children.Child) -> None:
        parser = ProgressParser()
        while data := await child.stdout.receive_some(4096):
            for block in parser.feed(data):
                self.bytes_now = total_size(block)
                now = trio.current_time()
                self._samples.append((now, self.bytes_done + self.bytes_now))
                while len(self._samples) > 2 and self._samples[1][0] <= now - BITRATE_WINDOW_S:
                    self._samples.popleft()
                if self.bytes_now > 0 and self.state != "live":
                    self._live_at = now
                    self._set_state("live")
                    slog.log(log, logging.INFO, "restream target live", **self.fields)

    async def _read_errors(self, child: children.Child, errors: deque) -> None:
        buf = b""
        while chunk := await child.stderr.receive_some(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            buf = buf[-PROGRESS_MAX_LINE:]
            for line in lines:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    errors.append(domain_restream.redact(text, self.target.url)[:300])
                    slog.log(log, logging.DEBUG, "ffmpeg: " + errors[-1], **self.fields)

    def bitrate_bps(self, now: float) -> int:
        if self.state != "live" or len(self._samples) < 2:
            return 0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        span = max(now - t0, t1 - t0)
        return int((b1 - b0) * 8 / span) if span > 0 else 0

    def to_json(self, now: float) -> dict:
        return {
            "stream_id": self.sink.stream["id"], "stream": self.sink.stream["slug"], "target_id": self.target.id,
            "label": self.target.label, "url": self.target.masked, "state": self.state, "state_since": self.state_since,
            "last_error": self.last_error, "bytes": self.bytes_done + self.bytes_now, "bitrate_bps": self.bitrate_bps(now),
            "attempts": self.attempts, "failures": self.failures, "dropped_backlogs": self.dropped,
        }


class RestreamSink:
    """One publish's pushes: a `MediaSink` that hands each tag to every enabled target."""

    def __init__(self, restreamer: "Restreamer", stream: dict, targets: list[Target]):
        self.restreamer = restreamer
        self.stream = stream
        self.pushes: dict[str, TargetPush] = {}
        self._targets = targets
        self._metadata: dict | None = None
        self.video_header: bytes | None = None
        self.audio_header: bytes | None = None
        self.started = trio.Event()  # the publisher sent a start point: ffmpegs may begin
        self.closed = False
        self.unsupported: str | None = None  # why ffmpeg cannot take this publish, once known

    async def open(self) -> None:
        self.restreamer.sinks[self.stream["id"]] = self
        self.update(self._targets)

    def update(self, targets: list[Target]) -> None:
        """Push to exactly these targets from now on (a changed URL is a new push)."""
        if self.closed:
            return
        wanted = {t.id: t for t in targets}
        for tid, push in list(self.pushes.items()):
            if tid not in wanted or wanted[tid].url != push.target.url:
                slog.log(log, logging.INFO, "restream target stopped: disabled or removed", **push.fields)
                push.stop()
                del self.pushes[tid]
        for tid, target in wanted.items():
            if tid not in self.pushes:
                push = self.pushes[tid] = TargetPush(self, target)
                self.restreamer.nursery.start_soon(push.run)

    async def metadata(self, data: dict) -> None:
        self._metadata = data

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        header = media.header
        self._note_codec(header)
        if isinstance(media, rtmp.VideoData):
            if header.packet_type is None or header.packet_type is flv.VideoPacketType.METADATA:
                return  # a command or HDR metadata: not media to pass on
            start_point = header.is_random_access
        else:
            start_point = self.video_header is None  # an audio-only publish starts anywhere
        if header.is_sequence_header:
            if isinstance(media, rtmp.VideoData):
                self.video_header = media.payload
            else:
                self.audio_header = media.payload
            start_point = False
        if start_point and not self.started.is_set():
            self.started.set()
        if self.pushes:
            tag = flv.encode_tag(media.tag_type, media.timestamp, media.payload)
            for push in self.pushes.values():
                push.offer(tag, start_point)

    def _note_codec(self, header) -> None:
        if self.unsupported is None and (header.enhanced or getattr(header, "codec_id", 0) == flv.CODEC_HEVC):
            # ffmpeg 5.1's FLV demuxer reads legacy FLV only (the native backend takes more).
            self.unsupported = f"codec {header.fourcc or 'hvc1'} cannot be pushed: ffmpeg reads legacy FLV codecs only"

    @property
    def leasable(self) -> bool:
        """Whether the media thread may take this publish's coded frames: nothing to push, and
        the start point seen (what `write` then does with a coded frame is `take`). The control
        loop takes a leased publish back before it gives it targets (server.py)."""
        return not self.pushes and self.started.is_set() and not self.closed

    def take(self, media: rtmp.AudioData | rtmp.VideoData, now: float = 0.0) -> None:
        self._note_codec(media.header)

    def prelude(self) -> bytes:
        """What a fresh ffmpeg needs before media: the FLV header, metadata, sequence headers."""
        out = bytearray(flv.flv_header(has_audio=self.audio_header is not None or self.video_header is None,
                                       has_video=self.video_header is not None))
        if self._metadata:
            out += flv.encode_script_tag(self._metadata)
        for tag_type, header in ((flv.TAG_VIDEO, self.video_header), (flv.TAG_AUDIO, self.audio_header)):
            if header is not None:
                out += flv.encode_tag(tag_type, 0, header)
        return bytes(out)

    async def aclose(self) -> None:
        """The publisher left: every ffmpeg gets EOF and unpublishes in the background (a
        reconnecting publisher's push to the same target waits for that, not the publisher)."""
        self.closed = True
        if self.restreamer.sinks.get(self.stream["id"]) is self:
            del self.restreamer.sinks[self.stream["id"]]
        for push in self.pushes.values():
            push.stop()
        self.pushes.clear()


class Restreamer:
    """sender-ingest's restream: a sink per publish, target changes applied within a second."""

    def __init__(self, config, nursery: trio.Nursery | None = None):
        self.ffmpeg = config["backend.ffmpeg"]
        self.backoff_max_s = config["restream.backoff_max_s"]
        self.nursery = nursery
        self.sinks: dict[str, RestreamSink] = {}  # stream id → its publish's sink
        self.finishing: dict[str, trio.Event] = {}  # target id → a stopped push's end, while it unpublishes

    async def sink(self, store, stream: dict) -> RestreamSink:
        targets = (await store.run(domain_restream.active_targets, [stream["id"]]))[stream["id"]]
        return RestreamSink(self, stream, targets)

    def stream_ids(self) -> list[str]:
        """The publishing streams whose targets the control loop reads (`domain.restream.active_targets`)."""
        return list(self.sinks)

    def apply(self, current: dict) -> None:
        """The control loop's step: the enabled targets of every publishing stream, applied."""
        for sid, targets in current.items():
            sink = self.sinks.get(sid)
            if sink is not None:
                sink.update(targets)

    def stats(self, now: float = math.nan) -> list[dict]:
        now = trio.current_time() if math.isnan(now) else now
        return [push.to_json(now) for sink in self.sinks.values() for push in sink.pushes.values()]
