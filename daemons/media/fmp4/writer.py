"""The fMP4 writer, sans-IO: FLV/RTMP-level media in, the reader's ``InitSegment`` and
``Fragment`` values out — bytes plus the fields the packager reads — so a native backend hands
them to the packager with no parse round trip (``FMP4Reader().feed(value.data)`` gives back an
equal value; the tests hold it to that).

Three layers, each usable alone:

* ``FMP4Writer``: the movie. ``init`` is ``ftyp`` + ``moov`` (``avc1``/``avcC``, ``hvc1``/``hvcC``,
  ``av01``/``av1C``, ``mp4a``/``esds``, ``Opus``/``dOps``, and ``mvex``); ``fragment(track_id,
  samples)`` is one ``moof`` (``mfhd``, one ``traf``: ``tfhd`` default-base-is-moof, ``tfdt`` v1,
  ``trun`` with per-sample durations and sizes, keyframe flags, and signed composition offsets in
  a version 1 trun) + ``mdat``: one per frame, or one per part. One track per fragment, as CMAF
  has it: the packager's parts take audio fragments between video ones.
* ``VideoTiming`` / ``AudioTiming``: FLV timestamps (ms, plus Enhanced RTMP's nanosecond offset)
  to samples in the track's timescale.
* ``Remuxer``: both, for one rendition: configuration records and frames in, the values out in
  stream order (a new init when a configuration changes), as ``FMP4Reader.feed`` gives them.

Timescales. Video: 90 kHz. FLV's milliseconds map exactly (x90), Enhanced RTMP's
TimestampOffsetNano keeps 11 µs of its precision instead of being rounded away, and NTSC frame
durations are whole (3003 ticks at 29.97 fps) when the duration comes from the frame rate. Audio:
the sample rate (48 kHz for Opus, whose packets count 48 kHz samples), so every AAC frame lasts
exactly its 1024 (or 960/512/480) samples and decode times count samples.

The last frame's duration. A video frame's duration is the gap to the next frame's timestamp,
unknown when the frame arrives on a live stream. ``VideoTiming`` offers the two answers:

* immediate (default): the frame is written at once with an estimated duration: the caller's
  nominal frame duration (the publisher's frame rate) while the recent frame intervals agree
  with it within FLV's millisecond, else the mean of those intervals that lie within a
  millisecond of their median (a dropped frame's long interval left out). The next frame's
  ``tfdt`` is its own exact timestamp, so an estimate that is off (FLV's 33/34 ms rounding, a
  dropped frame) becomes a gap or overlap of that much between two samples and never
  accumulates; and the durations' sum — a part's, a segment's EXTINF — keeps to the timestamps
  (a median of 33 and 34 ms intervals says 33 ms at 30 fps: every segment 1 % short; the mean of
  a few says 33.4: six frames no longer fit a 200 ms part). No latency added: a part can be
  published the moment its last frame came;
* ``hold=True``: each frame is written when the next one arrives, with its exact duration. That
  costs one frame interval of latency (33 ms at 30 fps, 67 ms at 15 fps): what ffmpeg's mp4
  muxer does today. ``flush()`` writes the held frame (estimated) at the end of the stream.

Audio needs neither: a frame's duration is in its codec (AAC's frame length, Opus's TOC), so
audio is always written at once. Its decode time runs on from the previous frame and is
re-anchored to the FLV timestamp only when the two drift apart by more than half a frame (a gap
in the audio); a timestamp that far behind what was written is refused.

Garbage in (a frame that is not length-prefixed NAL units or OBUs, a timestamp going back, a
value that does not fit its field) raises ``FMP4Error`` naming it and changes no state, so the
caller can drop that frame and go on; nothing is ever written for it.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .boxes import box, full_box
from .codecs import mp4a_channels, opus_channels
from .errors import FMP4Error
from .fragment import (
    TFHD_DEFAULT_BASE_IS_MOOF,
    TFHD_DEFAULT_SAMPLE_FLAGS,
    TRUN_COMPOSITION_OFFSET,
    TRUN_DATA_OFFSET,
    TRUN_FIRST_SAMPLE_FLAGS,
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_FLAGS,
    TRUN_SAMPLE_SIZE,
    Fragment,
    TrackFragment,
)
from .init import InitSegment, Track
from .records import (
    AAC,
    AV1,
    OPUS,
    AudioConfig,
    VideoConfig,
    check_length_prefixed,
    check_obus,
    check_raw_aac,
    opus_packet_samples,
    strip_temporal_delimiters,
)

VIDEO_TIMESCALE = 90_000
DEFAULT_FRAME_DURATION_MS = 1000 / 30  # before a stream's first interval and without a frame rate
DURATION_WINDOW = 30  # recent frame intervals the estimate is taken from

# ISO/IEC 14496-12 8.8.3.1 sample_flags: sample_depends_on (bits 24-25) and
# sample_is_non_sync_sample (bit 16). A keyframe depends on no other sample.
SYNC_SAMPLE_FLAGS = 0x02000000
NON_SYNC_SAMPLE_FLAGS = 0x01010000

U32_MAX = 0xFFFFFFFF
U64_MAX = (1 << 64) - 1
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
MAX_PICTURE_SIDE = 0xFFFF  # the sample entry's u16 width and height

_U32 = struct.Struct(">I")
# moof, mfhd, traf, tfhd (track_ID + default_sample_flags), tfdt v1, trun head (data_offset)
_MOOF_HEAD = struct.Struct(">I4s" + "I4sII" + "I4s" + "I4sIII" + "I4sIQ" + "I4sIIi")
_MFHD_SIZE = 16
_TFHD_SIZE = 20
_TFDT_SIZE = 20
_TRUN_HEAD_SIZE = 20
_TFHD_FLAGS = TFHD_DEFAULT_BASE_IS_MOOF | TFHD_DEFAULT_SAMPLE_FLAGS
_TFDT_V1 = 1 << 24
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2/T "und", 5 bits a letter


class Sample(NamedTuple):
    """One sample in its track's timescale: what one trun entry and its mdat bytes say. (A
    named tuple: made for every frame, and four times cheaper than a frozen dataclass.)"""

    data: bytes
    decode_time: int
    duration: int
    sync: bool
    composition_offset: int = 0


# -- the movie -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TrackState:
    track: Track
    default_flags: int


class FMP4Writer:
    """One fMP4 stream: its init segment, then fragments of one track each.

    Tracks are numbered from 1 in the order given. ``sequence_number`` is the first fragment's
    mfhd number (a writer replacing another for a new init continues its numbering).
    """

    def __init__(
        self,
        configs: Sequence[VideoConfig | AudioConfig],
        *,
        video_timescale: int = VIDEO_TIMESCALE,
        sequence_number: int = 1,
    ) -> None:
        if not configs:
            raise FMP4Error("an fMP4 stream needs at least one track")
        if not 0 < video_timescale <= U32_MAX:
            raise FMP4Error(f"video timescale {video_timescale} does not fit mdhd")
        self.sequence_number = sequence_number & U32_MAX
        self.configs = tuple(configs)
        traks, trexes = [], []
        self._tracks: dict[int, _TrackState] = {}
        for track_id, config in enumerate(self.configs, start=1):
            trak, track = _trak(track_id, config, video_timescale)
            traks.append(trak)
            trexes.append(full_box(b"trex", 0, 0, struct.pack(">5I", track_id, 1, 0, 0, 0)))
            default = NON_SYNC_SAMPLE_FLAGS if track.kind == "video" else SYNC_SAMPLE_FLAGS
            self._tracks[track_id] = _TrackState(track, default)
        moov = box(
            b"moov",
            _mvhd(len(self.configs) + 1) + b"".join(traks) + box(b"mvex", b"".join(trexes)),
        )
        data = _ftyp(self.configs) + moov
        self.init = InitSegment(data, {tid: state.track for tid, state in self._tracks.items()})

    def track_id(self, kind: str) -> int | None:
        """The id of the first track of ``kind`` ("video" or "audio")."""
        return next((tid for tid, s in self._tracks.items() if s.track.kind == kind), None)

    def fragment(self, track_id: int, samples: Sequence[Sample]) -> Fragment:
        """One moof+mdat carrying ``samples`` of one track, contiguous in decode time (a trun
        has one base time: each sample starts where the one before it ends)."""
        state = self._tracks.get(track_id)
        if state is None:
            raise FMP4Error(f"fragment for track {track_id}, which the init does not have")
        count = len(samples)
        if count == 0:
            raise FMP4Error(f"fragment for track {track_id} with no samples")
        first = samples[0]
        base = first.decode_time
        if not 0 <= base <= U64_MAX:
            raise FMP4Error(f"track {track_id}: decode time {base} does not fit tfdt")
        default_sync = state.default_flags == SYNC_SAMPLE_FLAGS
        expected = base
        total_bytes = 0
        sizes = []
        composition = False
        others_differ = False  # a sample after the first whose sync flag is not the default
        for index, sample in enumerate(samples):
            size = len(sample.data)
            duration = sample.duration
            if sample.decode_time != expected:
                raise FMP4Error(
                    f"track {track_id}: sample {index} starts at {sample.decode_time}, not where "
                    f"the one before it ends ({expected})"
                )
            if size == 0:
                raise FMP4Error(f"track {track_id}: sample {index} is empty")
            if not 0 <= duration <= U32_MAX:
                raise FMP4Error(f"track {track_id}: sample duration {duration} does not fit trun")
            if not I32_MIN <= sample.composition_offset <= I32_MAX:
                raise FMP4Error(
                    f"track {track_id}: composition offset {sample.composition_offset} "
                    "does not fit trun"
                )
            if sample.composition_offset:
                composition = True
            if index and sample.sync != default_sync:
                others_differ = True
            expected += duration
            total_bytes += size
            sizes.append(size)

        first_flags = not others_differ and first.sync != default_sync
        trun_flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE
        fields = "II"
        if others_differ:
            trun_flags |= TRUN_SAMPLE_FLAGS
            fields += "I"
        if composition:
            trun_flags |= TRUN_COMPOSITION_OFFSET
            fields += "i"  # signed: version 1
        if first_flags:
            trun_flags |= TRUN_FIRST_SAMPLE_FLAGS
        entries = []
        for sample in samples:
            entries += (sample.duration, len(sample.data))
            if others_differ:
                entries.append(SYNC_SAMPLE_FLAGS if sample.sync else NON_SYNC_SAMPLE_FLAGS)
            if composition:
                entries.append(sample.composition_offset)
        trun_size = _TRUN_HEAD_SIZE + 4 * first_flags + 4 * len(entries)
        traf_size = 8 + _TFHD_SIZE + _TFDT_SIZE + trun_size
        moof_size = 8 + _MFHD_SIZE + traf_size
        mdat_size = 8 + total_bytes
        if mdat_size > U32_MAX:
            raise FMP4Error(f"track {track_id}: fragment of {total_bytes} bytes is over 4 GiB")
        sequence = self.sequence_number
        head = _MOOF_HEAD.pack(
            moof_size, b"moof",
            _MFHD_SIZE, b"mfhd", 0, sequence,
            traf_size, b"traf",
            _TFHD_SIZE, b"tfhd", _TFHD_FLAGS, track_id, state.default_flags,
            _TFDT_SIZE, b"tfdt", _TFDT_V1, base,
            trun_size, b"trun", (int(composition) << 24) | trun_flags, count, moof_size + 8,
        )
        parts = [head]
        if first_flags:
            parts.append(_U32.pack(SYNC_SAMPLE_FLAGS if first.sync else NON_SYNC_SAMPLE_FLAGS))
        parts.append(struct.pack(">" + fields * count, *entries))
        parts.append(_U32.pack(mdat_size) + b"mdat")
        parts += [sample.data for sample in samples]
        self.sequence_number = (sequence + 1) & U32_MAX
        track_fragment = TrackFragment(
            track_id=track_id,
            base_decode_time=base,
            sample_count=count,
            duration=expected - base,
            sample_sizes=tuple(sizes),
            first_sample_sync=first.sync,
            composition_offsets_present=composition,
        )
        return Fragment(b"".join(parts), sequence, {track_id: track_fragment})


def _ftyp(configs: Sequence[VideoConfig | AudioConfig]) -> bytes:
    # iso6: tfdt, trun v1 and default-base-is-moof; cmfc only where the init is one track, as a
    # CMAF header is; av01 as AV1-ISOBMFF asks of files with AV1 tracks.
    brands = [b"iso6", b"mp41"]
    if len(configs) == 1:
        brands.append(b"cmfc")
    if any(c.fourcc == AV1 for c in configs):
        brands.append(b"av01")
    return box(b"ftyp", b"iso6" + _U32.pack(0) + b"".join(brands))


def _mvhd(next_track_id: int) -> bytes:
    return full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIIIiH10x", 0, 0, 1000, 0, 0x00010000, 0x0100)
        + _MATRIX + bytes(24) + _U32.pack(next_track_id),
    )


def _trak(track_id: int, config: VideoConfig | AudioConfig, video_timescale: int) -> tuple[bytes, Track]:
    if isinstance(config, VideoConfig):
        if not (0 < config.width <= MAX_PICTURE_SIDE and 0 < config.height <= MAX_PICTURE_SIDE):
            raise FMP4Error(f"picture {config.width}x{config.height} does not fit a sample entry")
        entry = _visual_entry(config)
        kind, handler, timescale = "video", b"vide", video_timescale
        media_header = full_box(b"vmhd", 0, 1, bytes(8))
        width, height, volume = config.width, config.height, 0
        track = Track(track_id, kind, timescale, config.codec, config.width, config.height, None,
                      None, 0, 0, 0)
    else:
        if not 0 < config.sample_rate <= U32_MAX:
            raise FMP4Error(f"sample rate {config.sample_rate} does not fit mdhd")
        entry, channels = _audio_entry(config)
        kind, handler, timescale = "audio", b"soun", config.sample_rate
        media_header = full_box(b"smhd", 0, 0, bytes(4))
        width = height = 0
        volume = 0x0100
        track = Track(track_id, kind, timescale, config.codec, None, None, config.sample_rate,
                      channels, 0, 0, 0)
    tkhd = full_box(
        b"tkhd", 0, 0x3,  # enabled, in movie
        struct.pack(">IIIIIQhhhH", 0, 0, track_id, 0, 0, 0, 0, 0, volume, 0)
        + _MATRIX + struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    name = b"VideoHandler\x00" if kind == "video" else b"SoundHandler\x00"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4) + handler + bytes(12) + name)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, _U32.pack(1) + full_box(b"url ", 0, 1, b"")))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, _U32.pack(1) + entry)
        + full_box(b"stts", 0, 0, bytes(4))
        + full_box(b"stsc", 0, 0, bytes(4))
        + full_box(b"stsz", 0, 0, bytes(8))
        + full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", media_header + dinf + stbl)
    return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + minf)), track


def _visual_entry(config: VideoConfig) -> bytes:
    """VisualSampleEntry (ISO/IEC 14496-12 12.1.3) with the configuration box."""
    return box(
        config.fourcc.encode("ascii"),
        bytes(6) + struct.pack(">H", 1)  # reserved, data_reference_index
        + bytes(16)  # pre_defined, reserved
        + struct.pack(">HHIII", config.width, config.height, 0x00480000, 0x00480000, 0)
        + struct.pack(">H", 1)  # frame_count
        + bytes(32)  # compressorname
        + struct.pack(">Hh", 0x0018, -1)  # depth, pre_defined
        + box(config.config_box, config.record),
    )


def _audio_entry(config: AudioConfig) -> tuple[bytes, int]:
    """AudioSampleEntry (ISO/IEC 14496-12 12.2.3) with esds or dOps; and the channel count a
    reader takes from it (the configuration's, else channelcount)."""
    channels = config.channels or 2  # 0: a program config element says; 2 is the template
    if config.fourcc == AAC:
        config_box = box(b"esds", _esds(config.record))
        stated = mp4a_channels(config_box[8:])
    else:
        config_box = box(b"dOps", config.record)
        stated = opus_channels(config.record)
    rate = config.sample_rate << 16 if config.sample_rate <= 0xFFFF else 0  # 16.16; else mdhd says
    entry = box(
        config.fourcc.encode("ascii"),
        bytes(6) + struct.pack(">H", 1)
        + bytes(8)  # entry version, revision, vendor
        + struct.pack(">HHHHI", min(channels, 0xFFFF), 16, 0, 0, rate)
        + config_box,
    )
    return entry, stated or min(channels, 0xFFFF)


def _descriptor(tag: int, body: bytes) -> bytes:
    """An ISO/IEC 14496-1 descriptor: tag, expandable size (7 bits a byte), body."""
    size = len(body)
    if size >= 1 << 28:
        raise FMP4Error(f"descriptor of {size} bytes is too large")
    length = [size & 0x7F]
    size >>= 7
    while size:
        length.append(0x80 | (size & 0x7F))
        size >>= 7
    return bytes([tag, *reversed(length)]) + body


def _esds(audio_specific_config: bytes) -> bytes:
    """esds payload: ES_Descriptor > DecoderConfigDescriptor (MPEG-4 audio, stream type audio)
    > DecoderSpecificInfo (the AudioSpecificConfig), and the MP4 SLConfigDescriptor."""
    decoder_config = _descriptor(
        0x04,
        struct.pack(">BB3sII", 0x40, (0x05 << 2) | 1, bytes(3), 0, 0)
        + _descriptor(0x05, audio_specific_config),
    )
    es = _descriptor(0x03, struct.pack(">HB", 0, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return _U32.pack(0) + es  # FullBox version/flags


# -- timing ----------------------------------------------------------------------


def _ticks(timestamp_ms: int, nano_offset: int, timescale: int) -> int:
    """An FLV timestamp (ms, plus an Enhanced RTMP TimestampOffsetNano) in ``timescale`` ticks,
    rounded to the nearest."""
    if not nano_offset and timescale % 1000 == 0:
        return timestamp_ms * (timescale // 1000)
    return ((timestamp_ms * 1_000_000 + nano_offset) * timescale + 500_000_000) // 1_000_000_000


def _check_time(timestamp_ms: object, nano_offset: object, what: str) -> None:
    if type(timestamp_ms) is not int or timestamp_ms < 0:
        raise FMP4Error(f"{what} timestamp {timestamp_ms!r} is not a non-negative whole ms")
    if type(nano_offset) is not int or not 0 <= nano_offset < 1_000_000:
        raise FMP4Error(f"{what} nanosecond offset {nano_offset!r} is not 0..999999")


class VideoTiming:
    """FLV video timestamps to samples of one track: immediate (estimated duration) or, with
    ``hold``, one frame late with the exact duration (see the module docstring)."""

    def __init__(
        self,
        timescale: int = VIDEO_TIMESCALE,
        *,
        hold: bool = False,
        frame_duration_ms: float = DEFAULT_FRAME_DURATION_MS,
    ) -> None:
        if not 0 < frame_duration_ms <= 10_000:
            raise FMP4Error(f"nominal frame duration {frame_duration_ms} ms is not 0..10 s")
        self.timescale = timescale
        self.hold = hold
        self.default_duration = max(1, round(frame_duration_ms * timescale / 1000))
        self._last_dts: int | None = None
        self._intervals: deque[int] = deque(maxlen=DURATION_WINDOW)
        self._held: Sample | None = None

    @property
    def held(self) -> bool:
        return self._held is not None

    def estimate(self) -> int:
        """The duration given to a frame whose successor has not arrived: the nominal one while
        the recent intervals agree with it, else their mean within a millisecond (and a tick) of
        their median — FLV's rounding of one frame rate, without the gaps of dropped frames."""
        intervals = self._intervals
        if not intervals:
            return self.default_duration
        ordered = sorted(intervals)
        median = ordered[(len(ordered) - 1) // 2]
        near = self.timescale // 1000 + 1
        close = [i for i in ordered if abs(i - median) <= near]
        mean = (sum(close) * 2 + len(close)) // (2 * len(close))  # rounded
        return self.default_duration if abs(mean - self.default_duration) <= near else mean

    def push(
        self,
        timestamp_ms: int,
        composition_ms: int,
        keyframe: bool,
        data: bytes,
        nano_offset: int = 0,
    ) -> Sample | None:
        """The sample ready to be written now: this frame's (immediate), the previous frame's
        (hold), or None (hold, first frame)."""
        _check_time(timestamp_ms, nano_offset, "video")
        if type(composition_ms) is not int:
            raise FMP4Error(f"composition time {composition_ms!r} is not a whole ms")
        timescale = self.timescale
        dts = _ticks(timestamp_ms, nano_offset, timescale)
        offset = composition_ms * timescale // 1000 if timescale % 1000 == 0 else round(
            composition_ms * timescale / 1000)
        if dts > U64_MAX or not I32_MIN <= offset <= I32_MAX:
            raise FMP4Error(f"video timestamp {timestamp_ms} ms + {composition_ms} ms out of range")
        last = self._last_dts
        if last is not None:
            interval = dts - last
            if interval <= 0:
                raise FMP4Error(
                    f"video timestamp {timestamp_ms} ms does not advance past the previous frame's"
                )
            if interval > U32_MAX:
                raise FMP4Error(f"video timestamp {timestamp_ms} ms jumps too far for a duration")
            self._intervals.append(interval)
        self._last_dts = dts
        if not self.hold:
            return Sample(bytes(data), dts, self.estimate(), bool(keyframe), offset)
        ready = self._held
        if ready is not None:
            ready = Sample(ready.data, ready.decode_time, dts - ready.decode_time, ready.sync,
                           ready.composition_offset)
        self._held = Sample(bytes(data), dts, 0, bool(keyframe), offset)
        return ready

    def flush(self) -> Sample | None:
        """The held frame (hold mode), with an estimated duration; the stream ends or breaks."""
        held, self._held = self._held, None
        if held is None:
            return None
        return Sample(held.data, held.decode_time, self.estimate(), held.sync,
                      held.composition_offset)


class AudioTiming:
    """FLV audio timestamps to samples: durations from the codec, decode times counting samples
    from the first frame, re-anchored to the timestamp when it is half a frame away."""

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.timescale = config.sample_rate
        self._next: int | None = None  # where the next frame continues the audio

    def duration(self, data: bytes) -> int:
        """The frame's samples; FMP4Error if it is not a frame of this codec."""
        if self.config.fourcc == OPUS:
            return opus_packet_samples(data)
        check_raw_aac(data)
        assert self.config.frame_samples is not None
        return self.config.frame_samples

    def push(self, timestamp_ms: int, data: bytes, nano_offset: int = 0) -> Sample:
        _check_time(timestamp_ms, nano_offset, "audio")
        duration = self.duration(data)
        stamped = _ticks(timestamp_ms, nano_offset, self.timescale)
        decode_time = self._next
        if decode_time is None or stamped - decode_time > duration // 2:
            decode_time = stamped  # the first frame, or a gap in the audio
        elif decode_time - stamped > duration // 2:
            raise FMP4Error(
                f"audio timestamp {timestamp_ms} ms is "
                f"{(decode_time - stamped) * 1000 / self.timescale:.1f} ms behind the audio written"
            )
        if decode_time + duration > U64_MAX:
            raise FMP4Error(f"audio timestamp {timestamp_ms} ms out of range")
        self._next = decode_time + duration
        return Sample(bytes(data), decode_time, duration, True)


# -- one rendition ---------------------------------------------------------------


class Remuxer:
    """One rendition from FLV-level media: configuration records and frames in; the
    ``InitSegment`` and ``Fragment`` values out, in stream order, one fragment per frame.

    ``hold_video`` and ``frame_duration_ms`` are ``VideoTiming``'s; ``sequence_number`` the first
    fragment's (a remuxer replacing another on a new timeline continues its numbering). Timing
    carries across a ``configure`` (a new init for a changed configuration), so the timeline does
    not break. AV1 frames lose their leading temporal delimiters (AV1-ISOBMFF 2.4).
    """

    def __init__(
        self,
        video: VideoConfig | None = None,
        audio: AudioConfig | None = None,
        *,
        hold_video: bool = False,
        frame_duration_ms: float = DEFAULT_FRAME_DURATION_MS,
        sequence_number: int = 1,
    ) -> None:
        self._video_timing = VideoTiming(hold=hold_video, frame_duration_ms=frame_duration_ms)
        self._audio_timing: AudioTiming | None = None
        self.writer = self._writer(video, audio, sequence_number)

    @property
    def init(self) -> InitSegment:
        return self.writer.init

    def _writer(self, video: VideoConfig | None, audio: AudioConfig | None,
                sequence_number: int) -> FMP4Writer:
        if video is None and audio is None:
            raise FMP4Error("a rendition needs a video or an audio configuration")
        writer = FMP4Writer([c for c in (video, audio) if c is not None],
                            sequence_number=sequence_number)
        self.video_config, self.audio_config = video, audio
        self._video_id = writer.track_id("video")
        self._audio_id = writer.track_id("audio")
        if audio is not None and (self._audio_timing is None
                                  or self._audio_timing.timescale != audio.sample_rate):
            self._audio_timing = AudioTiming(audio)
        elif audio is not None:
            self._audio_timing.config = audio
        return writer

    def configure(self, video: VideoConfig | None, audio: AudioConfig | None) -> list[InitSegment | Fragment]:
        """New configurations (a sequence start): nothing if they are the ones in use, else the
        held frame under the old init, then the new init."""
        if (video, audio) == (self.video_config, self.audio_config):
            return []
        events: list[InitSegment | Fragment] = []
        if self._video_timing.held and self._video_id is not None:
            events += self.flush()
        self.writer = self._writer(video, audio, self.writer.sequence_number)
        events.append(self.writer.init)
        return events

    def video(
        self,
        timestamp_ms: int,
        composition_ms: int,
        keyframe: bool,
        data: bytes,
        nano_offset: int = 0,
    ) -> list[Fragment]:
        """One coded video frame (FLV timestamp = DTS, composition time = PTS - DTS)."""
        config = self.video_config
        if config is None or self._video_id is None:
            raise FMP4Error("a video frame, but the rendition has no video configuration")
        if config.nal_length_size is not None:
            check_length_prefixed(data, config.nal_length_size)
        else:
            data = strip_temporal_delimiters(data)
            check_obus(data)
        sample = self._video_timing.push(timestamp_ms, composition_ms, keyframe, data, nano_offset)
        return [] if sample is None else [self.writer.fragment(self._video_id, (sample,))]

    def audio(self, timestamp_ms: int, data: bytes, nano_offset: int = 0) -> list[Fragment]:
        """One coded audio frame (an AAC raw frame, or Opus packets)."""
        if self._audio_timing is None or self._audio_id is None:
            raise FMP4Error("an audio frame, but the rendition has no audio configuration")
        sample = self._audio_timing.push(timestamp_ms, data, nano_offset)
        return [self.writer.fragment(self._audio_id, (sample,))]

    def flush(self) -> list[Fragment]:
        """The stream ends or breaks: the held video frame, if any, with an estimated duration."""
        sample = self._video_timing.flush()
        if sample is None or self._video_id is None:
            return []
        return [self.writer.fragment(self._video_id, (sample,))]
