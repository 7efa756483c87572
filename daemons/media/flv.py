"""FLV, sans-IO: the file/stream framing, and the codec headers inside FLV tags.

Owns:

* writing: ``flv_header``, ``encode_tag``, ``encode_script_tag`` (and
  ``parse_script_tag`` to read one back) — what Sender
  pipes to ffmpeg is an FLV stream built from RTMP message bodies (an RTMP audio
  or video message body *is* an FLV tag body);
* reading: ``FLVReader``, fed bytes, yields ``FLVTag`` values, bounded by a
  maximum tag size;
* codec headers: ``parse_video_tag``/``parse_audio_tag`` (legacy and Enhanced
  RTMP tag headers), ``parse_avc_decoder_config`` (avcC and its SPS: profile,
  level, coded size after cropping, RFC 6381 codec string) and
  ``parse_aac_audio_specific_config``.

Every malformed input raises ``FLVError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtmp import amf0
from .rtmp.errors import RTMPProtocolError

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
AVC_SEQUENCE_HEADER = 0
AVC_NALU = 1
AAC_SEQUENCE_HEADER = 0

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
    except RTMPProtocolError as exc:
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


# -- codec headers inside tags -------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoTagInfo:
    """The video tag header.

    ``codec_id`` is the legacy FLV CodecID (7 AVC, 12 HEVC), 0 for an Enhanced
    RTMP tag; ``fourcc`` names the codec either way where known ("avc1",
    "hvc1", "av01", "vp09"). ``packet_type`` is the AVC packet type (0 sequence
    header, 1 NALU, 2 end of sequence) or the Enhanced RTMP PacketType.
    ``data_offset`` is where the codec payload (avcC, NAL units) starts.
    """

    codec_id: int
    fourcc: str | None
    frame_type: int
    is_keyframe: bool
    packet_type: int | None
    is_sequence_header: bool
    composition_time: int
    data_offset: int


_LEGACY_FOURCC = {CODEC_AVC: "avc1", CODEC_HEVC: "hvc1"}
# Enhanced RTMP video PacketType values.
_EX_SEQUENCE_START = 0
_EX_CODED_FRAMES = 1
_EX_CODED_FRAMES_X = 3
_EX_MULTITRACK = 6


def _si24(b: bytes | bytearray, pos: int) -> int:
    value = (b[pos] << 16) | (b[pos + 1] << 8) | b[pos + 2]
    return value - (1 << 24) if value & 0x800000 else value


def parse_video_tag(body: bytes) -> VideoTagInfo:
    if not body:
        raise FLVError("empty video tag")
    b0 = body[0]
    if b0 & 0x80:
        frame_type = (b0 >> 4) & 0x07
        packet_type = b0 & 0x0F
        if packet_type == _EX_MULTITRACK:
            raise FLVError("Enhanced RTMP multitrack video is not supported")
        if len(body) < 5:
            raise FLVError("Enhanced RTMP video tag shorter than its FourCC")
        try:
            fourcc = body[1:5].decode("ascii")
        except UnicodeDecodeError as exc:
            raise FLVError("Enhanced RTMP video FourCC is not ASCII") from exc
        composition_time = 0
        offset = 5
        if packet_type == _EX_CODED_FRAMES and fourcc in ("avc1", "hvc1"):
            if len(body) < 8:
                raise FLVError("Enhanced RTMP coded frames without a composition time")
            composition_time = _si24(body, 5)
            offset = 8
        return VideoTagInfo(
            0,
            fourcc,
            frame_type,
            frame_type == 1,
            packet_type,
            packet_type == _EX_SEQUENCE_START,
            composition_time,
            offset,
        )
    frame_type = b0 >> 4
    codec_id = b0 & 0x0F
    if not 1 <= frame_type <= 5:
        raise FLVError(f"video frame type {frame_type} is not 1..5")
    if codec_id in (CODEC_AVC, CODEC_HEVC):
        if len(body) < 5:
            raise FLVError("AVC/HEVC video tag shorter than its 5-byte header")
        packet_type = body[1]
        if packet_type > 2:
            raise FLVError(f"AVC packet type {packet_type} is not 0..2")
        return VideoTagInfo(
            codec_id,
            _LEGACY_FOURCC[codec_id],
            frame_type,
            frame_type == 1,
            packet_type,
            packet_type == AVC_SEQUENCE_HEADER,
            _si24(body, 2),
            5,
        )
    return VideoTagInfo(codec_id, None, frame_type, frame_type == 1, None, False, 0, 1)


@dataclass(frozen=True, slots=True)
class AudioTagInfo:
    """The audio tag header. ``aac_packet_type``: 0 AudioSpecificConfig, 1 raw frame.

    For Enhanced RTMP audio (sound format 9), ``fourcc`` names the codec and
    ``packet_type`` is its AudioPacketType.
    """

    sound_format: int
    sound_rate: int
    sound_size: int
    sound_type: int
    aac_packet_type: int | None
    is_sequence_header: bool
    fourcc: str | None
    data_offset: int


def parse_audio_tag(body: bytes) -> AudioTagInfo:
    if not body:
        raise FLVError("empty audio tag")
    b0 = body[0]
    sound_format = b0 >> 4
    if sound_format == SOUND_EX_HEADER:
        packet_type = b0 & 0x0F
        if len(body) < 5:
            raise FLVError("Enhanced RTMP audio tag shorter than its FourCC")
        try:
            fourcc = body[1:5].decode("ascii")
        except UnicodeDecodeError as exc:
            raise FLVError("Enhanced RTMP audio FourCC is not ASCII") from exc
        return AudioTagInfo(sound_format, 0, 0, 0, packet_type, packet_type == 0, fourcc, 5)
    rate, size, channels = (b0 >> 2) & 0x03, (b0 >> 1) & 0x01, b0 & 0x01
    if sound_format == SOUND_AAC:
        if len(body) < 2:
            raise FLVError("AAC audio tag without a packet type")
        packet_type = body[1]
        if packet_type > 1:
            raise FLVError(f"AAC packet type {packet_type} is not 0 or 1")
        return AudioTagInfo(
            sound_format,
            rate,
            size,
            channels,
            packet_type,
            packet_type == AAC_SEQUENCE_HEADER,
            "mp4a",
            2,
        )
    return AudioTagInfo(sound_format, rate, size, channels, None, False, None, 1)


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
        bits.ue()  # bit_depth_chroma_minus8
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
