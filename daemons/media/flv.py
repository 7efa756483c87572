"""FLV, sans-IO: the file/stream framing, and the codec headers inside FLV tags.

Owns:

* writing: ``flv_header``, ``encode_tag``, ``encode_script_tag`` (and
  ``parse_script_tag`` to read one back) — what Sender
  pipes to ffmpeg is an FLV stream built from RTMP message bodies (an RTMP audio
  or video message body *is* an FLV tag body);
* reading: ``FLVReader``, fed bytes, yields ``FLVTag`` values, bounded by a
  maximum tag size;
* the tag headers: ``parse_video_tag``/``parse_audio_tag`` decode a tag's header, legacy or
  Enhanced RTMP (ExVideoTagHeader/ExAudioTagHeader: ModEx, FourCC, multitrack), into one
  typed value each, ``VideoTagHeader``/``AudioTagHeader`` (as gortmplib's ``VideoType``): the
  RTMP connection decodes each media message once and its events carry the header, which the
  ingest daemon's stats, backend and recorder use as it is;
* codec configuration records: ``parse_avc_decoder_config`` (avcC and its SPS: profile,
  level, coded size after cropping, RFC 6381 codec string) and
  ``parse_aac_audio_specific_config``.

Every malformed input raises ``FLVError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from . import amf0

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

TAG_HEADER_SIZE = 11
FILE_HEADER_SIZE = 9
DEFAULT_MAX_TAG_SIZE = 8 * 1024 * 1024

CODEC_AVC = 7
CODEC_HEVC = 12
SOUND_AAC = 10
SOUND_EX_HEADER = 9

_U32 = struct.Struct(">I")
_FLAG_AUDIO = 0x04
_FLAG_VIDEO = 0x01


class FLVError(Exception):
    """Malformed FLV framing or codec header."""


# -- writing -----------------------------------------------------------------


def flv_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte file header followed by PreviousTagSize0."""
    flags = (_FLAG_AUDIO if has_audio else 0) | (_FLAG_VIDEO if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + _U32.pack(FILE_HEADER_SIZE) + _U32.pack(0)


def encode_tag(tag_type: int, timestamp_ms: int, body: bytes) -> bytes:
    """One tag: 11-byte header, body, PreviousTagSize.

    FLV timestamps are 32-bit (lower 24 bits, then the upper 8 in the extended
    byte); a longer-running timestamp wraps as it does on the RTMP wire.
    """
    if tag_type not in (TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT):
        raise FLVError(f"FLV tag type {tag_type} is not audio (8), video (9) or script (18)")
    if timestamp_ms < 0:
        raise FLVError(f"negative FLV timestamp {timestamp_ms}")
    size = len(body)
    if size > 0xFFFFFF:
        raise FLVError(f"FLV tag body of {size} bytes exceeds the 24-bit size field")
    ts = timestamp_ms & 0xFFFFFFFF
    header = (
        bytes((tag_type,))
        + size.to_bytes(3, "big")
        + (ts & 0xFFFFFF).to_bytes(3, "big")
        + bytes((ts >> 24, 0, 0, 0))  # extended timestamp byte, then stream id 0
    )
    return header + body + _U32.pack(TAG_HEADER_SIZE + size)


def encode_script_tag(data: dict, timestamp_ms: int = 0, name: str = "onMetaData") -> bytes:
    """A script tag ``name(data)`` with ``data`` as an ECMA array, as muxers write onMetaData."""
    return encode_tag(TAG_SCRIPT, timestamp_ms, amf0.encode_values(name, amf0.ECMAArray(data)))


def parse_script_tag(body: bytes) -> tuple[str, object]:
    """A script tag's name and value, e.g. ("onMetaData", {...})."""
    try:
        values = amf0.decode_values(body)
    except amf0.AMF0Error as exc:
        raise FLVError(f"bad AMF0 in script tag: {exc}") from exc
    if len(values) < 2 or not isinstance(values[0], str):
        raise FLVError("script tag is not a name followed by a value")
    return values[0], values[1]


# -- reading -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FLVTag:
    type: int
    timestamp: int
    body: bytes


class FLVReader:
    """Incremental FLV reader: ``feed`` bytes, get the tags they complete."""

    def __init__(self, max_tag_size: int = DEFAULT_MAX_TAG_SIZE) -> None:
        self.max_tag_size = max_tag_size
        self._buf = bytearray()
        self._header_done = False
        self.has_audio = False
        self.has_video = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FLVTag]:
        self._buf += data
        buf = self._buf
        pos = 0
        tags: list[FLVTag] = []
        if not self._header_done:
            if len(buf) >= 3 and buf[:3] != b"FLV":
                raise FLVError("not an FLV stream (no 'FLV' signature)")
            if len(buf) < FILE_HEADER_SIZE:
                return tags
            if buf[3] != 1:
                raise FLVError(f"FLV version {buf[3]} is not 1")
            data_offset = _U32.unpack_from(buf, 5)[0]
            if data_offset < FILE_HEADER_SIZE or data_offset > 1024:
                raise FLVError(f"FLV header size {data_offset} is not plausible")
            if len(buf) < data_offset + 4:
                return tags
            if _U32.unpack_from(buf, data_offset)[0] != 0:
                raise FLVError("PreviousTagSize0 is not 0")
            self.has_audio = bool(buf[4] & _FLAG_AUDIO)
            self.has_video = bool(buf[4] & _FLAG_VIDEO)
            self._header_done = True
            pos = data_offset + 4
        # Type and size are judged from the first 4 bytes of a tag, before waiting for the rest.
        while len(buf) - pos >= 4:
            tag_type = buf[pos] & 0x1F
            if buf[pos] & 0xE0:
                raise FLVError(f"FLV tag byte 0x{buf[pos]:02x} has reserved or encryption bits set")
            if tag_type not in (TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT):
                raise FLVError(f"unknown FLV tag type {tag_type}")
            size = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if size > self.max_tag_size:
                raise FLVError(f"FLV tag of {size} bytes exceeds max_tag_size {self.max_tag_size}")
            if len(buf) - pos < TAG_HEADER_SIZE + size + 4:
                break
            timestamp = (
                (buf[pos + 7] << 24) | (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6]
            )
            body_start = pos + TAG_HEADER_SIZE
            previous = _U32.unpack_from(buf, body_start + size)[0]
            if previous != TAG_HEADER_SIZE + size:
                raise FLVError(
                    f"PreviousTagSize {previous} does not match tag size {TAG_HEADER_SIZE + size}"
                )
            tags.append(FLVTag(tag_type, timestamp, bytes(buf[body_start : body_start + size])))
            pos = body_start + size + 4
        del buf[:pos]
        return tags


# -- the tag headers: decoded once, by the RTMP connection -------------------------
#
# A video tag body starts with a legacy VideoTagHeader (FLV 10.1: frame type, CodecID, and for
# AVC an AVCPacketType and composition time) or, when its top bit (IsExHeader) is set, with an
# Enhanced RTMP ExVideoTagHeader (Veovera 2023/2024: frame type, VideoPacketType, ModEx, FourCC,
# multitrack). Both decode into one `VideoTagHeader`; audio likewise into `AudioTagHeader`.


class FrameType(IntEnum):
    """A video tag's frame type."""

    KEY = 1  # a seekable frame
    INTER = 2
    DISPOSABLE_INTER = 3  # H.263 only
    GENERATED_KEY = 4  # reserved for server use
    COMMAND = 5  # video info/command frame: a one-byte command, no video data


class VideoPacketType(IntEnum):
    """What a video tag carries, in Enhanced RTMP's numbering. The legacy AVCPacketType (AVC,
    and HEVC as CodecID 12) is its first three values; other legacy codecs carry coded frames."""

    SEQUENCE_START = 0  # the decoder configuration record (avcC, hvcC, av1C, vpcC)
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    CODED_FRAMES_X = 3  # coded frames whose composition time is 0 (not on the wire)
    METADATA = 4  # AMF values, e.g. ["colorInfo", {...}] (HDR)
    MPEG2TS_SEQUENCE_START = 5  # AV1 video descriptor


class VideoCodec(StrEnum):
    """Video FourCCs as Enhanced RTMP names them (legacy AVC is ``avc1`` too)."""

    AVC = "avc1"
    HEVC = "hvc1"
    AV1 = "av01"
    VP9 = "vp09"
    VP8 = "vp08"
    VVC = "vvc1"


class AudioPacketType(IntEnum):
    """What an audio tag carries, in Enhanced RTMP's numbering (legacy AAC: 0 and 1)."""

    SEQUENCE_START = 0  # AudioSpecificConfig, dOps, ...
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4


class AudioCodec(StrEnum):
    """Audio FourCCs as Enhanced RTMP names them (legacy AAC is ``mp4a``, MP3 ``.mp3``)."""

    AAC = "mp4a"
    OPUS = "Opus"
    FLAC = "fLaC"
    AC3 = "ac-3"
    EAC3 = "ec-3"
    MP3 = ".mp3"


# Wire values that only steer the decode (they never reach a header).
_EX_MULTITRACK = 6  # video: VideoPacketType.Multitrack
_EX_AUDIO_MULTITRACK = 5  # audio: AudioPacketType.Multitrack
_EX_MODEX = 7  # both: ModEx data precedes the real packet type
_MODEX_TIMESTAMP_NANO = 0
_ONE_TRACK, _MANY_TRACKS, _MANY_TRACKS_MANY_CODECS = 0, 1, 2
_LEGACY_FOURCC = {CODEC_AVC: VideoCodec.AVC, CODEC_HEVC: VideoCodec.HEVC}
_LEGACY_AUDIO_FOURCC = {SOUND_AAC: AudioCodec.AAC, 2: AudioCodec.MP3, 14: AudioCodec.MP3}
_COMPOSITION_TIME_CODECS = (VideoCodec.AVC, VideoCodec.HEVC, VideoCodec.VVC)
_CODED_FRAMES = (VideoPacketType.CODED_FRAMES, VideoPacketType.CODED_FRAMES_X)
_AUDIO_PACKET_TYPES = frozenset(t.value for t in AudioPacketType)


@dataclass(frozen=True, slots=True)
class VideoTagHeader:
    """A video tag's header, legacy or Enhanced RTMP.

    ``fourcc`` names the codec (a `VideoCodec` value when known; an unknown FourCC is kept as it
    came, for the caller to refuse); None for legacy codecs that have none (H.263, VP6, screen
    video) and for command frames. ``codec_id`` is the legacy CodecID, 0 in an Enhanced RTMP tag.
    ``packet_type`` is None for a command frame (``command`` holds its command byte).
    ``frame_type`` is None for Metadata, whose frame type the spec says to ignore.
    The codec payload is ``body[data_offset:data_end]``; ``data_end`` is None (the end of the
    body) except in a multitrack message with several tracks, where this header describes the
    first. ``nano_offset`` is a ModEx TimestampOffsetNano (0 when absent).
    """

    frame_type: FrameType | None
    packet_type: VideoPacketType | None
    fourcc: str | None
    codec_id: int = 0
    enhanced: bool = False
    composition_time: int = 0
    data_offset: int = 1
    data_end: int | None = None
    track_id: int = 0
    multitrack: bool = False
    nano_offset: int = 0
    command: int | None = None  # 0 start of client-side seeking, 1 its end

    @property
    def is_keyframe(self) -> bool:
        """The frame type says key frame (encoders flag sequence headers and ends so too)."""
        return self.frame_type is FrameType.KEY

    @property
    def is_sequence_header(self) -> bool:
        return self.packet_type is VideoPacketType.SEQUENCE_START

    @property
    def is_end_of_sequence(self) -> bool:
        return self.packet_type is VideoPacketType.SEQUENCE_END

    @property
    def is_coded_frame(self) -> bool:
        """The tag carries a picture (not a configuration record, end, metadata or command)."""
        return self.packet_type in _CODED_FRAMES

    @property
    def is_random_access(self) -> bool:
        """A key frame's picture: where a decoder, a backend or a segment may start."""
        return self.frame_type is FrameType.KEY and self.packet_type in _CODED_FRAMES


@dataclass(frozen=True, slots=True)
class AudioTagHeader:
    """An audio tag's header, legacy or Enhanced RTMP (``sound_format`` 9, FourCC in ``fourcc``).

    ``sound_rate``/``sound_size``/``sound_type`` are the legacy 2/1/1-bit fields (0 when
    enhanced). ``packet_type`` is legacy AAC's AACPacketType or Enhanced RTMP's AudioPacketType;
    other legacy formats carry coded frames. ``data_offset``/``data_end``/``track_id`` as for
    video.
    """

    sound_format: int
    packet_type: AudioPacketType
    fourcc: str | None
    enhanced: bool = False
    sound_rate: int = 0
    sound_size: int = 0
    sound_type: int = 0
    data_offset: int = 1
    data_end: int | None = None
    track_id: int = 0
    multitrack: bool = False
    nano_offset: int = 0

    @property
    def is_sequence_header(self) -> bool:
        return self.packet_type is AudioPacketType.SEQUENCE_START

    @property
    def is_coded_frame(self) -> bool:
        return self.packet_type is AudioPacketType.CODED_FRAMES


def _si24(b: bytes | bytearray, pos: int) -> int:
    value = (b[pos] << 16) | (b[pos + 1] << 8) | b[pos + 2]
    return value - (1 << 24) if value & 0x800000 else value


def _fourcc(body: bytes, pos: int, what: str) -> str:
    if len(body) < pos + 4:
        raise FLVError(f"Enhanced RTMP {what} tag shorter than its FourCC")
    raw = body[pos : pos + 4]
    if not all(0x20 <= c < 0x7F for c in raw):
        raise FLVError(f"Enhanced RTMP {what} FourCC {bytes(raw)!r} is not ASCII")
    return raw.decode("ascii")


def _mod_ex(body: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """Skip ModEx blocks (each: size, data, then ModEx type and the next packet type);
    returns (position after them, the real packet type, TimestampOffsetNano or 0)."""
    nano = 0
    while True:
        if len(body) < pos + 1:
            raise FLVError(f"Enhanced RTMP {what} ModEx truncated")
        size = body[pos] + 1
        pos += 1
        if size == 256:
            if len(body) < pos + 2:
                raise FLVError(f"Enhanced RTMP {what} ModEx truncated")
            size = ((body[pos] << 8) | body[pos + 1]) + 1
            pos += 2
        if len(body) < pos + size + 1:
            raise FLVError(f"Enhanced RTMP {what} ModEx data of {size} bytes does not fit")
        data = body[pos : pos + size]
        pos += size
        mod_ex_type, packet_type = body[pos] >> 4, body[pos] & 0x0F
        pos += 1
        if mod_ex_type == _MODEX_TIMESTAMP_NANO:
            if size < 3:
                raise FLVError(f"Enhanced RTMP {what} TimestampOffsetNano shorter than 3 bytes")
            nano = (data[0] << 16) | (data[1] << 8) | data[2]
            if nano > 999_999:
                raise FLVError(f"Enhanced RTMP {what} TimestampOffsetNano {nano} is not below 1 ms")
        if packet_type != _EX_MODEX:
            return pos, packet_type, nano


def _track(body: bytes, pos: int, multitrack_type: int, what: str) -> tuple[int, int, int | None]:
    """A multitrack message's first track: (position of its data, track id, where it ends)."""
    if len(body) < pos + 1:
        raise FLVError(f"Enhanced RTMP {what} multitrack message without a track id")
    track_id = body[pos]
    pos += 1
    if multitrack_type == _ONE_TRACK:
        return pos, track_id, None
    if len(body) < pos + 3:
        raise FLVError(f"Enhanced RTMP {what} multitrack message without its track size")
    size = (body[pos] << 16) | (body[pos + 1] << 8) | body[pos + 2]
    pos += 3
    if len(body) < pos + size:
        raise FLVError(f"Enhanced RTMP {what} track of {size} bytes does not fit")
    return pos, track_id, pos + size


# A legacy header is all in a tag's first bytes (5 for video, 2 for audio), and a stream repeats
# a handful of them: decoded headers are kept by those bytes (values are immutable; the caches
# are bounded), which makes the decode of a legacy tag a dictionary lookup.
_CACHE_LIMIT = 1024
_legacy_video: dict[bytes, VideoTagHeader] = {}
_legacy_audio: dict[bytes, AudioTagHeader] = {}


def parse_video_tag(body: bytes) -> VideoTagHeader:
    """Decode a video tag's header (legacy or Enhanced RTMP); FLVError if malformed."""
    if not body:
        raise FLVError("empty video tag")
    if body[0] & 0x80:
        return _parse_ex_video_tag(body)
    key = bytes(body[:5])
    header = _legacy_video.get(key)
    if header is None:
        header = _parse_legacy_video_tag(key)
        if len(_legacy_video) >= _CACHE_LIMIT:
            _legacy_video.clear()
        _legacy_video[key] = header
    return header


def _parse_legacy_video_tag(body: bytes) -> VideoTagHeader:
    b0 = body[0]
    frame_type, codec_id = b0 >> 4, b0 & 0x0F
    if not 1 <= frame_type <= 5:
        raise FLVError(f"video frame type {frame_type} is not 1..5")
    if frame_type == FrameType.COMMAND:
        if len(body) < 2:
            raise FLVError("video command frame without its command byte")
        return VideoTagHeader(FrameType.COMMAND, None, None, codec_id, data_offset=2, command=body[1])
    if codec_id in (CODEC_AVC, CODEC_HEVC):
        if len(body) < 5:
            raise FLVError("AVC/HEVC video tag shorter than its 5-byte header")
        packet_type = body[1]
        if packet_type > 2:
            raise FLVError(f"AVC packet type {packet_type} is not 0..2")
        return VideoTagHeader(
            FrameType(frame_type),
            VideoPacketType(packet_type),
            _LEGACY_FOURCC[codec_id],
            codec_id,
            composition_time=_si24(body, 2),
            data_offset=5,
        )
    return VideoTagHeader(FrameType(frame_type), VideoPacketType.CODED_FRAMES, None, codec_id)


def _parse_ex_video_tag(body: bytes) -> VideoTagHeader:
    b0 = body[0]
    raw_frame_type, packet_type = (b0 >> 4) & 0x07, b0 & 0x0F
    pos, nano = 1, 0
    if packet_type == _EX_MODEX:
        pos, packet_type, nano = _mod_ex(body, pos, "video")
    if packet_type == VideoPacketType.METADATA:
        frame_type = None
    elif 1 <= raw_frame_type <= 5:
        frame_type = FrameType(raw_frame_type)
    else:
        raise FLVError(f"video frame type {raw_frame_type} is not 1..5")
    if frame_type is FrameType.COMMAND:
        if len(body) < pos + 1:
            raise FLVError("video command frame without its command byte")
        return VideoTagHeader(frame_type, None, None, enhanced=True, data_offset=pos + 1,
                              nano_offset=nano, command=body[pos])
    multitrack_type = None
    if packet_type == _EX_MULTITRACK:
        if len(body) < pos + 1:
            raise FLVError("Enhanced RTMP multitrack video without its multitrack type")
        multitrack_type, packet_type = body[pos] >> 4, body[pos] & 0x0F
        pos += 1
        if multitrack_type > _MANY_TRACKS_MANY_CODECS:
            raise FLVError(f"Enhanced RTMP video multitrack type {multitrack_type} is reserved")
        if packet_type in (_EX_MULTITRACK, _EX_MODEX):
            raise FLVError(f"Enhanced RTMP multitrack video with packet type {packet_type}")
    if packet_type > VideoPacketType.MPEG2TS_SEQUENCE_START:
        raise FLVError(f"Enhanced RTMP video packet type {packet_type} is reserved")
    fourcc = None
    if multitrack_type != _MANY_TRACKS_MANY_CODECS:
        fourcc = _fourcc(body, pos, "video")
        pos += 4
    track_id, end = 0, None
    if multitrack_type is not None:
        if multitrack_type == _MANY_TRACKS_MANY_CODECS:
            fourcc = _fourcc(body, pos, "video")
            pos += 4
        pos, track_id, end = _track(body, pos, multitrack_type, "video")
    limit = len(body) if end is None else end
    composition_time = 0
    if packet_type == VideoPacketType.CODED_FRAMES and fourcc in _COMPOSITION_TIME_CODECS:
        if limit < pos + 3:
            raise FLVError("Enhanced RTMP coded frames without a composition time")
        composition_time = _si24(body, pos)
        pos += 3
    return VideoTagHeader(
        frame_type, VideoPacketType(packet_type), _known(VideoCodec, fourcc), enhanced=True,
        composition_time=composition_time, data_offset=pos, data_end=end, track_id=track_id,
        multitrack=multitrack_type is not None, nano_offset=nano,
    )


def _known(codecs: type[StrEnum], fourcc: str | None) -> str | None:
    """The enum member for a known FourCC (so it reads as one), else the FourCC as it came."""
    try:
        return codecs(fourcc) if fourcc is not None else None
    except ValueError:
        return fourcc


def parse_audio_tag(body: bytes) -> AudioTagHeader:
    """Decode an audio tag's header (legacy or Enhanced RTMP); FLVError if malformed."""
    if not body:
        raise FLVError("empty audio tag")
    if body[0] >> 4 == SOUND_EX_HEADER:
        return _parse_ex_audio_tag(body)
    key = bytes(body[:2])
    header = _legacy_audio.get(key)
    if header is None:
        header = _parse_legacy_audio_tag(key)
        if len(_legacy_audio) >= _CACHE_LIMIT:
            _legacy_audio.clear()
        _legacy_audio[key] = header
    return header


def _parse_legacy_audio_tag(body: bytes) -> AudioTagHeader:
    b0 = body[0]
    sound_format = b0 >> 4
    rate, size, channels = (b0 >> 2) & 0x03, (b0 >> 1) & 0x01, b0 & 0x01
    if sound_format == SOUND_AAC:
        if len(body) < 2:
            raise FLVError("AAC audio tag without a packet type")
        packet_type = body[1]
        if packet_type > 1:
            raise FLVError(f"AAC packet type {packet_type} is not 0 or 1")
        return AudioTagHeader(sound_format, AudioPacketType(packet_type), AudioCodec.AAC,
                              sound_rate=rate, sound_size=size, sound_type=channels, data_offset=2)
    return AudioTagHeader(sound_format, AudioPacketType.CODED_FRAMES, _LEGACY_AUDIO_FOURCC.get(sound_format),
                          sound_rate=rate, sound_size=size, sound_type=channels)


def _parse_ex_audio_tag(body: bytes) -> AudioTagHeader:
    packet_type = body[0] & 0x0F
    pos, nano = 1, 0
    if packet_type == _EX_MODEX:
        pos, packet_type, nano = _mod_ex(body, pos, "audio")
    multitrack_type = None
    if packet_type == _EX_AUDIO_MULTITRACK:
        if len(body) < pos + 1:
            raise FLVError("Enhanced RTMP multitrack audio without its multitrack type")
        multitrack_type, packet_type = body[pos] >> 4, body[pos] & 0x0F
        pos += 1
        if multitrack_type > _MANY_TRACKS_MANY_CODECS:
            raise FLVError(f"Enhanced RTMP audio multitrack type {multitrack_type} is reserved")
    if packet_type not in _AUDIO_PACKET_TYPES:
        raise FLVError(f"Enhanced RTMP audio packet type {packet_type} is reserved")
    fourcc = None
    if multitrack_type != _MANY_TRACKS_MANY_CODECS:
        fourcc = _fourcc(body, pos, "audio")
        pos += 4
    track_id, end = 0, None
    if multitrack_type is not None:
        if multitrack_type == _MANY_TRACKS_MANY_CODECS:
            fourcc = _fourcc(body, pos, "audio")
            pos += 4
        pos, track_id, end = _track(body, pos, multitrack_type, "audio")
    return AudioTagHeader(
        SOUND_EX_HEADER, AudioPacketType(packet_type), _known(AudioCodec, fourcc), enhanced=True,
        data_offset=pos, data_end=end, track_id=track_id, multitrack=multitrack_type is not None,
        nano_offset=nano,
    )


class _BitReader:
    """MSB-first bit reader with exp-Golomb codes, over an RBSP (no emulation bytes)."""

    __slots__ = ("data", "bit", "end")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.bit = 0
        self.end = len(data) * 8

    def u(self, n: int) -> int:
        if self.bit + n > self.end:
            raise FLVError("bitstream truncated")
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.bit >> 3] >> (7 - (self.bit & 7))) & 1)
            self.bit += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise FLVError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 → 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@dataclass(frozen=True, slots=True)
class SPSInfo:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    width: int
    height: int


def _skip_scaling_list(bits: _BitReader, size: int) -> None:
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta = bits.se()
            if not -128 <= delta <= 127:
                raise FLVError(f"SPS scaling list delta {delta} out of range")
            next_scale = (last_scale + delta + 256) % 256
        last_scale = next_scale if next_scale != 0 else last_scale


def parse_sps(nal: bytes) -> SPSInfo:
    """Parse an H.264 sequence parameter set NAL unit (with its 1-byte NAL header)."""
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        raise FLVError("not an H.264 SPS NAL unit")
    bits = _BitReader(_rbsp(nal[1:]))
    profile_idc = bits.u(8)
    constraint_flags = bits.u(8)
    level_idc = bits.u(8)
    if bits.ue() > 31:
        raise FLVError("SPS id out of range")
    chroma_format_idc = 1
    separate_colour_plane = 0
    bit_depth_luma = 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise FLVError(f"SPS chroma_format_idc {chroma_format_idc} out of range")
        if chroma_format_idc == 3:
            separate_colour_plane = bits.u(1)
        bit_depth_luma = 8 + bits.ue()
        bit_depth_chroma = 8 + bits.ue()
        if bit_depth_luma > 14 or bit_depth_chroma > 14:  # H.264 7.4.2.1.1: bit_depth_*_minus8 in 0..6
            raise FLVError(f"SPS bit depth {bit_depth_luma}/{bit_depth_chroma} out of range (8..14)")
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = bits.ue()
    if pic_order_cnt_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > 255:
            raise FLVError(f"SPS num_ref_frames_in_pic_order_cnt_cycle {cycle} out of range")
        for _ in range(cycle):
            bits.se()
    elif pic_order_cnt_type != 2:
        raise FLVError(f"SPS pic_order_cnt_type {pic_order_cnt_type} out of range")
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if bits.u(1):  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()

    # Cropping is in chroma sample units (H.264 7.4.2.1.1, CropUnitX/CropUnitY).
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        crop_unit_x, crop_unit_y = 1, 2 - frame_mbs_only
    else:
        sub_width = 2 if chroma_array_type in (1, 2) else 1
        sub_height = 2 if chroma_array_type == 1 else 1
        crop_unit_x, crop_unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise FLVError(f"SPS cropping leaves no picture ({width}x{height})")
    return SPSInfo(
        profile_idc, constraint_flags, level_idc, chroma_format_idc, bit_depth_luma, width, height
    )


@dataclass(frozen=True, slots=True)
class AVCDecoderConfig:
    profile: int
    profile_compatibility: int
    level: int
    nal_length_size: int
    width: int
    height: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @property
    def codec_string(self) -> str:
        """RFC 6381 ``avc1.PPCCLL`` (profile, constraint flags, level in hex)."""
        return f"avc1.{self.profile:02x}{self.profile_compatibility:02x}{self.level:02x}"


def _parameter_sets(data: bytes, pos: int, count: int, what: str) -> tuple[tuple[bytes, ...], int]:
    sets = []
    for _ in range(count):
        if len(data) - pos < 2:
            raise FLVError(f"avcC truncated in {what} length")
        length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if length == 0 or len(data) - pos < length:
            raise FLVError(f"avcC {what} of {length} bytes does not fit")
        sets.append(bytes(data[pos : pos + length]))
        pos += length
    return tuple(sets), pos


def parse_avc_decoder_config(avcc: bytes) -> AVCDecoderConfig:
    """Parse an AVCDecoderConfigurationRecord (the body of an AVC sequence header after 5 bytes)."""
    if len(avcc) < 7:
        raise FLVError(f"avcC of {len(avcc)} bytes is too short")
    if avcc[0] != 1:
        raise FLVError(f"avcC configurationVersion {avcc[0]} is not 1")
    nal_length_size = (avcc[4] & 0x03) + 1
    if nal_length_size == 3:
        raise FLVError("avcC NAL length size 3 is not allowed")
    sps, pos = _parameter_sets(avcc, 6, avcc[5] & 0x1F, "SPS")
    if not sps:
        raise FLVError("avcC carries no SPS")
    if pos >= len(avcc):
        raise FLVError("avcC truncated before the PPS count")
    pps, _ = _parameter_sets(avcc, pos + 1, avcc[pos], "PPS")
    info = parse_sps(sps[0])
    return AVCDecoderConfig(
        avcc[1], avcc[2], avcc[3], nal_length_size, info.width, info.height, sps, pps
    )


_AAC_SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


@dataclass(frozen=True, slots=True)
class AACConfig:
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codec_string(self) -> str:
        """RFC 6381 ``mp4a.40.<audio object type>``."""
        return f"mp4a.40.{self.object_type}"


def parse_aac_audio_specific_config(config: bytes) -> AACConfig:
    """Parse an MPEG-4 AudioSpecificConfig (the body of an AAC sequence header after 2 bytes)."""
    bits = _BitReader(config)
    object_type = bits.u(5)
    if object_type == 31:
        object_type = 32 + bits.u(6)
    if object_type == 0:
        raise FLVError("AAC audio object type 0 is not valid")
    index = bits.u(4)
    if index == 15:
        sample_rate = bits.u(24)
    elif index < len(_AAC_SAMPLE_RATES):
        sample_rate = _AAC_SAMPLE_RATES[index]
    else:
        raise FLVError(f"AAC sampling frequency index {index} is reserved")
    if sample_rate == 0:
        raise FLVError("AAC sample rate 0")
    channel_config = bits.u(4)
    if channel_config > 7:
        raise FLVError(f"AAC channel configuration {channel_config} is reserved")
    channels = 8 if channel_config == 7 else channel_config
    return AACConfig(object_type, sample_rate, channels)
