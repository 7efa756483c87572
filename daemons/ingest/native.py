"""The native media backend: Sender writes the `source` rendition's CMAF itself, from the RTMP
packets, with no process in between.

`SourceRemux` (sans-IO) takes one publish's `rtmp.VideoData`/`rtmp.AudioData` as the connection
decoded them — legacy FLV (AVC, AAC, and HEVC as CodecID 12) and Enhanced RTMP (`hvc1`, `av01`,
`avc1`, `Opus`, `mp4a`; ModEx timestamps; the first track of a multitrack message) — and gives,
in stream order, what the packager takes: the `InitSegment` and one `Fragment` per frame from
`daemons.media.fmp4.Remuxer`, written the moment the frame arrives (no frame held back: its
duration is estimated, and the next frame's decode time is exact). Between them it puts
`Dropped` (a packet it could not take, to log) and `TimelineBreak` (the open segment must close
here; what follows starts at the next keyframe after a discontinuity):

* it starts at the publisher's first keyframe (an audio-only publisher at its first audio frame)
  with the configuration records seen so far;
* a video packet the writer refuses (NAL units or OBUs that do not fill it, a timestamp going
  back) is dropped and breaks the timeline: the frames after it until the next keyframe could not
  be decoded. A refused audio frame is dropped alone (the audio re-anchors on the next one);
  `AUDIO_DROPS_BEFORE_BREAK` in a row break the timeline too (a publisher whose audio clock jumped
  back would otherwise lose its audio for good);
* a configuration record that changes (another codec, picture size, sample rate) breaks the
  timeline and gives a new init at the next keyframe; one repeated as it was changes nothing;
  one that does not parse is dropped and the configuration in use stays;
* a codec it cannot write raises `UnsupportedMedia` at its first tag (`refusal`), and the
  publish is refused.

`NativeSink` is the trio shell: the `MediaSink` of a publish's source rendition. It hands the
values to `GenerationPipeline.on_output` as they come (on the connection's task: a part is
written the moment its last frame arrived), turns a `TimelineBreak` into the pipeline's
`end_timeline`/`start_timeline` for its rendition, and logs drops (the first of a publish, then
at most one line every `DROP_LOG_INTERVAL_S` with a count). A failure it did not expect is logged
and breaks the timeline: never the connection.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple, Protocol

import trio

from daemons.ingest.sink import UnsupportedMedia
from daemons.media import flv, rtmp
from daemons.media.fmp4 import (
    AudioConfig,
    FMP4Error,
    Fragment,
    InitSegment,
    Remuxer,
    VideoConfig,
    parse_audio_config,
    parse_video_config,
)
from daemons.media.fmp4.writer import DEFAULT_FRAME_DURATION_MS
from daemons.runtime import logging as slog



class Pipeline(Protocol):
    """What the native sink needs of its generation's pipeline (daemons/ingest/pipeline.py)."""

    fields: dict
    frame_rate: float | None
    sink: object

    async def start_timeline(self, names: tuple[str, ...] | None = None) -> None: ...
    async def end_timeline(self, names: tuple[str, ...] | None = None) -> None: ...
    async def on_output(self, name: str, items: list) -> None: ...
    @property
    def leasable(self) -> bool: ...
    def fragment_now(self, name: str, fragment: Fragment, now: float): ...
    @property
    def packagers(self) -> dict: ...

log = slog.get("ingest.native")

VIDEO_CODECS = frozenset({"avc1", "hvc1", "av01"})
AUDIO_CODECS = frozenset({"mp4a", "Opus"})
# What connect's fourCcList answers with this backend (among the peer's list): the codecs it
# takes in Enhanced RTMP form. VP9 (vp09) is not among them: OBS sends none over RTMP, and its
# sample entry needs the picture size from the first keyframe (vpcC has none).
ENHANCED_FOURCCS = ("hvc1", "av01", "avc1", "Opus", "mp4a")
AUDIO_DROPS_BEFORE_BREAK = 25  # about half a second of AAC: the audio clock jumped, start again
DROP_LOG_INTERVAL_S = 10.0


class Dropped(NamedTuple):
    """A packet the remux could not take (dropped; the caller logs it)."""

    media: str  # "video" | "audio"
    timestamp: int
    reason: str


class TimelineBreak(NamedTuple):
    """The timeline ends here: the open segment closes as it is, and what follows starts at the
    next keyframe after a discontinuity."""

    reason: str


Output = InitSegment | Fragment | Dropped | TimelineBreak


def refusal(media: rtmp.AudioData | rtmp.VideoData) -> str | None:
    """The codec, if the native backend cannot write it (None if it can, or if the tag carries
    no media: a command, metadata, another track of a multitrack message)."""
    h = media.header
    if h.track_id:
        return None
    if isinstance(media, rtmp.VideoData):
        if h.packet_type is None or h.packet_type is flv.VideoPacketType.METADATA or h.fourcc in VIDEO_CODECS:
            return None
        if h.enhanced:
            return f"video codec {h.fourcc} (Enhanced RTMP)"
        return f"video codec {h.fourcc or f'id {h.codec_id}'} (FLV)"
    if h.fourcc in AUDIO_CODECS:
        return None
    if h.enhanced:
        return f"audio codec {h.fourcc} (Enhanced RTMP)"
    return f"audio codec {h.fourcc or f'id {h.sound_format}'} (FLV)"


class SourceRemux:
    """One publish's packets in, the source rendition's init and fragments out (see the module
    docstring). `push` raises only `UnsupportedMedia`."""

    def __init__(self, frame_duration_ms: float = DEFAULT_FRAME_DURATION_MS) -> None:
        self.frame_duration_ms = frame_duration_ms
        self.video: VideoConfig | None = None
        self.audio: AudioConfig | None = None
        self.remuxer: Remuxer | None = None  # None: waiting for a place to start
        self._sequence_number = 1  # carried to the next remuxer: fragment numbers go on
        self._audio_drops = 0

    def set_frame_rate(self, fps: object) -> None:
        """The publisher's metadata frame rate: the first frame's duration estimate."""
        if isinstance(fps, (int, float)) and 1 <= fps <= 1000:
            self.frame_duration_ms = 1000.0 / fps

    def push(self, media: rtmp.AudioData | rtmp.VideoData) -> list[Output]:
        reason = refusal(media)
        if reason is not None:
            raise UnsupportedMedia(f"{reason}: the native backend cannot package it")
        h = media.header
        if h.track_id:
            return []  # multitrack: the source rendition is track 0
        if isinstance(media, rtmp.VideoData):
            if h.is_coded_frame:
                return self._video(media, h)
            if h.is_sequence_header:
                return self._configure(media, "video")
            return []  # end of sequence, metadata, commands, AV1's MPEG-2 TS descriptor
        if h.is_coded_frame:
            return self._audio(media, h)
        if h.is_sequence_header:
            return self._configure(media, "audio")
        return []

    def _configure(self, media: rtmp.AudioData | rtmp.VideoData, kind: str) -> list[Output]:
        h = media.header
        record = media.payload[h.data_offset : h.data_end]
        try:
            if kind == "video":
                config = parse_video_config(h.fourcc, record)
            else:
                config = parse_audio_config(h.fourcc, record)
        except FMP4Error as e:
            return [Dropped(kind, media.timestamp, f"{kind} configuration record: {e}")]
        if config == getattr(self, kind):
            return []  # repeated as it was
        setattr(self, kind, config)
        if self.remuxer is None:
            return []
        self._stop()
        return [TimelineBreak(f"new {kind} configuration ({config.codec})")]

    def _start(self) -> list[Output]:
        self.remuxer = Remuxer(self.video, self.audio, frame_duration_ms=self.frame_duration_ms,
                               sequence_number=self._sequence_number)
        self._audio_drops = 0
        return [self.remuxer.init]

    def _stop(self) -> None:
        if self.remuxer is not None:
            self._sequence_number = self.remuxer.writer.sequence_number
        self.remuxer = None

    def _video(self, media: rtmp.VideoData, h: flv.VideoTagHeader) -> list[Output]:
        out: list[Output] = []
        if self.remuxer is None:
            if self.video is None or not h.is_keyframe:
                return []  # a timeline starts at a keyframe, with its configuration
            out = self._start()
        data = media.payload[h.data_offset : h.data_end]
        try:
            out += self.remuxer.video(media.timestamp, h.composition_time, h.is_keyframe, data, h.nano_offset)
        except FMP4Error as e:
            self._stop()
            out += [Dropped("video", media.timestamp, str(e)), TimelineBreak("video packet dropped")]
        return out

    def _audio(self, media: rtmp.AudioData, h: flv.AudioTagHeader) -> list[Output]:
        if self.audio is None:
            return []  # frames before their configuration: nothing to write them with
        out: list[Output] = []
        if self.remuxer is None:
            if self.video is not None:
                return []  # the timeline starts at the next video keyframe
            out = self._start()  # an audio-only publish starts anywhere
        data = media.payload[h.data_offset : h.data_end]
        try:
            out += self.remuxer.audio(media.timestamp, data, h.nano_offset)
        except FMP4Error as e:
            out.append(Dropped("audio", media.timestamp, str(e)))
            self._audio_drops += 1
            if self._audio_drops >= AUDIO_DROPS_BEFORE_BREAK:
                self._stop()
                out.append(TimelineBreak(f"{AUDIO_DROPS_BEFORE_BREAK} audio packets dropped in a row"))
            return out
        self._audio_drops = 0
        return out


class NativeSink:
    """The `MediaSink` of one publish's source rendition with the native backend (see the module
    docstring)."""

    def __init__(self, pipeline: Pipeline, rendition: str):
        self.pipeline = pipeline
        self.rendition = rendition
        self.names = (rendition,)
        self.remux = SourceRemux()
        self.dropped = 0  # packets dropped in this publish
        self._unlogged = 0  # dropped since the last log line
        self._logged_at = -DROP_LOG_INTERVAL_S

    def refuses(self, media: rtmp.AudioData | rtmp.VideoData) -> str | None:
        reason = refusal(media)
        return None if reason is None else f"{reason}: the native backend cannot package it"

    async def open(self) -> None:
        await self.pipeline.start_timeline(self.names)

    async def metadata(self, data: dict) -> None:
        fps = data.get("framerate")
        self.remux.set_frame_rate(fps)
        if isinstance(fps, (int, float)) and 0 < fps < 1000:
            self.pipeline.frame_rate = float(fps)

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        out = self._push(media)
        if out:
            await self.deliver(out)

    def _push(self, media: rtmp.AudioData | rtmp.VideoData) -> list[Output]:
        try:
            return self.remux.push(media)
        except UnsupportedMedia:
            raise
        except Exception:  # a bug here must not end the publish (nor the connection)
            log.exception("native backend failed on a packet", extra={"fields": self.pipeline.fields})
            self.remux = SourceRemux(self.remux.frame_duration_ms)
            return [TimelineBreak("native backend failure")]

    async def deliver(self, out: list[Output]) -> None:
        """What the remux made of a packet, to the pipeline (in trio)."""
        items: list[InitSegment | Fragment] = []
        for item in out:
            if isinstance(item, (InitSegment, Fragment)):
                items.append(item)
            elif isinstance(item, Dropped):
                self._log_drop(item)
            else:
                if items:
                    await self.pipeline.on_output(self.rendition, items)
                    items = []
                await self.pipeline.end_timeline(self.names)
                await self.pipeline.start_timeline(self.names)
        if items:
            await self.pipeline.on_output(self.rendition, items)

    # --- in the media thread (daemons/ingest/media_thread.py) ----------------------------------

    @property
    def leasable(self) -> bool:
        """Whether this publish's frames may go through the media thread: the only sink of its
        generation's pipeline (not a ladder's), once the pipeline is live."""
        return self.pipeline.sink is self and self.remux.remuxer is not None and self.pipeline.leasable

    def publish_due_s(self) -> float:
        """(The media thread) Media seconds from the newest frame to the next that may publish
        something (its packager's `publish_due_s`)."""
        return self.pipeline.packagers[self.rendition].publish_due_s()

    def take(self, media: rtmp.AudioData | rtmp.VideoData, now: float) -> list:
        """(The media thread) `write` for a coded frame the backend takes (`refusal` is None):
        fragments packaged and written now; anything else (an init, a break, a drop) and what
        the pipeline cannot finish alone are returned for trio, as coroutine functions."""
        out = self._push(media)
        for i, item in enumerate(out):
            if not isinstance(item, Fragment):
                return [functools.partial(self.deliver, out[i:])]
            follow_up = self.pipeline.fragment_now(self.rendition, item, now)
            if follow_up is not None:
                rest = out[i + 1:]
                return [follow_up, functools.partial(self.deliver, rest)] if rest else [follow_up]
        return []

    def _log_drop(self, drop: Dropped) -> None:
        self.dropped += 1
        self._unlogged += 1
        now = trio.current_time()
        if now - self._logged_at < DROP_LOG_INTERVAL_S:
            return
        slog.log(log, logging.WARNING, "packet dropped", media=drop.media, timestamp_ms=drop.timestamp,
                 reason=drop.reason, dropped_since_last_line=self._unlogged, rendition=self.rendition,
                 **self.pipeline.fields)
        self._logged_at = now
        self._unlogged = 0

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.pipeline.end_timeline(self.names)
            if self.pipeline.sink is self:
                self.pipeline.sink = None
