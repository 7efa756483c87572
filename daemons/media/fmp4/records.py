"""Codec configuration records as FLV/RTMP carries them, sans-IO: what a track needs to be
written to fMP4 and listed in a master playlist.

Owns:

* ``parse_video_config(fourcc, record)`` → ``VideoConfig``: the record kept as the sample
  entry's configuration box payload (avcC, hvcC and av1C are the same bytes in FLV and MP4),
  the RFC 6381 codec string and the picture size. AVC goes through ``flv.parse_avc_decoder_config``
  (its SPS parser); HEVC's SPS and AV1's sequence header OBU are parsed here;
* ``parse_audio_config(fourcc, record)`` → ``AudioConfig``: AAC from its AudioSpecificConfig
  (``flv.parse_aac_audio_specific_config``, plus the frame length it does not read), Opus from
  its ID header (RFC 7845 ``OpusHead``, what Enhanced RTMP's Opus SequenceStart carries),
  turned into the ``dOps`` box;
* per-frame checks and durations: ``check_length_prefixed`` (AVC/HEVC NAL units),
  ``check_obus`` and ``strip_temporal_delimiters`` (AV1), ``opus_packet_samples`` (RFC 6716 TOC), ``check_raw_aac``.

The HEVC SPS and AV1 sequence header parsers would sit beside flv.py's AVC SPS parser; they are
here, next to the codec strings, while flv.py is being reworked (Enhanced RTMP tag headers).
Every malformed input raises ``CodecConfigError``, an ``FMP4Error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from daemons.media import flv

from .codecs import av1_codec, hevc_codec
from .errors import FMP4Error


class CodecConfigError(FMP4Error):
    """A configuration record or coded frame that cannot be what it claims; says which and why."""


# -- bits ----------------------------------------------------------------------


class _Bits:
    """MSB-first fields and exp-Golomb codes over a few hundred bytes (one big int)."""

    __slots__ = ("left", "value", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = 8 * len(data)
        self.what = what

    def u(self, n: int, field: str = "") -> int:
        if n > self.left:
            raise CodecConfigError(f"{self.what}: truncated at {field or f'{n} bits'}")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def skip(self, n: int, field: str = "") -> None:
        self.u(n, field)

    def ue(self, field: str = "") -> int:
        rest = self.value & ((1 << self.left) - 1)
        if rest == 0:
            raise CodecConfigError(f"{self.what}: truncated at {field or 'an exp-Golomb code'}")
        zeros = self.left - rest.bit_length()
        if zeros > 31:
            raise CodecConfigError(f"{self.what}: exp-Golomb code longer than 32 bits at {field}")
        self.left -= zeros
        return self.u(zeros + 1, field) - 1

    def uvlc(self, field: str) -> int:
        """AV1's uvlc(): leading zeros, a one, then that many bits; 32+ zeros saturate."""
        zeros = 0
        while not self.u(1, field):
            zeros += 1
        if zeros >= 32:
            return (1 << 32) - 1
        return self.u(zeros, field) + (1 << zeros) - 1


def _unescape(nal_payload: bytes) -> bytes:
    """Drop H.264/H.265 emulation-prevention bytes (00 00 03 → 00 00)."""
    return nal_payload.replace(b"\x00\x00\x03", b"\x00\x00")


# -- video ---------------------------------------------------------------------

AVC, HEVC, AV1 = "avc1", "hvc1", "av01"
CONFIG_BOX = {AVC: b"avcC", HEVC: b"hvcC", AV1: b"av1C"}


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """One video track's configuration: ``fourcc`` is the sample entry (avc1, hvc1, av01),
    ``record`` the configuration box payload as FLV carried it."""

    fourcc: str
    record: bytes
    codec: str  # RFC 6381
    width: int
    height: int
    bit_depth: int
    nal_length_size: int | None  # AVC/HEVC: the bytes of each NAL unit's length prefix

    @property
    def config_box(self) -> bytes:
        return CONFIG_BOX[self.fourcc]


def parse_video_config(fourcc: str, record: bytes) -> VideoConfig:
    """The configuration record of an AVC (``avc1``), HEVC (``hvc1``) or AV1 (``av01``) sequence
    start, as FLV carries it; CodecConfigError if malformed or another codec."""
    record = bytes(record)
    if fourcc == AVC:
        try:
            avc = flv.parse_avc_decoder_config(record)
            depth = flv.parse_sps(avc.sps[0]).bit_depth_luma
        except flv.FLVError as exc:
            raise CodecConfigError(f"AVCDecoderConfigurationRecord: {exc}") from exc
        return VideoConfig(AVC, record, avc.codec_string, avc.width, avc.height, depth,
                           avc.nal_length_size)
    if fourcc == HEVC:
        return parse_hevc_decoder_config(record)
    if fourcc == AV1:
        return parse_av1_codec_config(record)
    raise CodecConfigError(f"video codec {fourcc!r} is not avc1, hvc1 or av01")


# HEVC ------------------------------------------------------------------------

HEVC_NAL_VPS, HEVC_NAL_SPS, HEVC_NAL_PPS = 32, 33, 34
HVCC_HEADER_SIZE = 23
_CHROMA_SUBSAMPLING = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}  # chroma_format_idc → SubWidthC/SubHeightC


@dataclass(frozen=True, slots=True)
class HEVCPictureInfo:
    """What Sender needs from an H.265 SPS: the cropped picture size and bit depth."""

    width: int
    height: int
    chroma_format_idc: int
    bit_depth_luma: int


def parse_hevc_decoder_config(record: bytes) -> VideoConfig:
    """An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3): its arrays walked whole, its
    first SPS parsed for the picture size; the codec string per Annex E."""
    if len(record) < HVCC_HEADER_SIZE:
        raise CodecConfigError(f"hvcC of {len(record)} bytes is shorter than its 23-byte header")
    if record[0] != 1:
        raise CodecConfigError(f"hvcC configurationVersion {record[0]} is not 1")
    length_size = (record[21] & 0x03) + 1
    if length_size == 3:
        raise CodecConfigError("hvcC lengthSizeMinusOne 2 is not allowed")
    pos, sps = HVCC_HEADER_SIZE, None
    for index in range(record[22]):
        if len(record) - pos < 3:
            raise CodecConfigError(f"hvcC truncated in array {index} header")
        nal_type, count = record[pos] & 0x3F, int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            if len(record) - pos < 2:
                raise CodecConfigError(f"hvcC truncated in a NAL unit length of array {index}")
            length = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if length < 2 or len(record) - pos < length:
                raise CodecConfigError(f"hvcC NAL unit of {length} bytes does not fit")
            if nal_type == HEVC_NAL_SPS and sps is None:
                sps = record[pos : pos + length]
            pos += length
    if pos != len(record):
        raise CodecConfigError(f"hvcC has {len(record) - pos} bytes after its arrays")
    if sps is None:
        raise CodecConfigError("hvcC carries no SPS")
    info = parse_hevc_sps(sps)
    return VideoConfig(HEVC, record, hevc_codec(HEVC, record), info.width, info.height,
                       info.bit_depth_luma, length_size)


def parse_hevc_sps(nal: bytes) -> HEVCPictureInfo:
    """An H.265 sequence parameter set NAL unit (with its 2-byte header), up to the bit depths."""
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != HEVC_NAL_SPS:
        raise CodecConfigError("not an H.265 SPS NAL unit")
    bits = _Bits(_unescape(nal[2:]), "H.265 SPS")
    bits.skip(4, "sps_video_parameter_set_id")
    sub_layers = bits.u(3, "sps_max_sub_layers_minus1")
    if sub_layers > 6:
        raise CodecConfigError(f"H.265 SPS sps_max_sub_layers_minus1 {sub_layers} is over 6")
    bits.skip(1, "sps_temporal_id_nesting_flag")
    _skip_profile_tier_level(bits, sub_layers)
    if bits.ue("sps_seq_parameter_set_id") > 15:
        raise CodecConfigError("H.265 SPS sps_seq_parameter_set_id is over 15")
    chroma = bits.ue("chroma_format_idc")
    if chroma > 3:
        raise CodecConfigError(f"H.265 SPS chroma_format_idc {chroma} is over 3")
    separate_planes = bits.u(1, "separate_colour_plane_flag") if chroma == 3 else 0
    width = bits.ue("pic_width_in_luma_samples")
    height = bits.ue("pic_height_in_luma_samples")
    left = right = top = bottom = 0
    if bits.u(1, "conformance_window_flag"):
        left, right = bits.ue("conf_win_left_offset"), bits.ue("conf_win_right_offset")
        top, bottom = bits.ue("conf_win_top_offset"), bits.ue("conf_win_bottom_offset")
    depth = 8 + bits.ue("bit_depth_luma_minus8")
    # The window counts chroma samples (H.265 7.4.3.2.1, SubWidthC/SubHeightC, table 6-1).
    sub_width, sub_height = (1, 1) if separate_planes else _CHROMA_SUBSAMPLING[chroma]
    width -= sub_width * (left + right)
    height -= sub_height * (top + bottom)
    if width <= 0 or height <= 0 or depth > 16:
        raise CodecConfigError(f"H.265 SPS describes no picture ({width}x{height}, {depth} bits)")
    return HEVCPictureInfo(width, height, chroma, depth)


def _skip_profile_tier_level(bits: _Bits, sub_layers: int) -> None:
    """profile_tier_level(1, sps_max_sub_layers_minus1) (H.265 7.3.3)."""
    bits.skip(88, "general profile")
    bits.skip(8, "general_level_idc")
    present = [(bits.u(1, "sub_layer_profile_present_flag"), bits.u(1, "sub_layer_level_present_flag"))
               for _ in range(sub_layers)]
    if sub_layers:
        bits.skip(2 * (8 - sub_layers), "reserved_zero_2bits")
    for profile, level in present:
        bits.skip(88 * profile + 8 * level, "sub-layer profile and level")


# AV1 -------------------------------------------------------------------------

OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
OBU_PADDING = 15
OBU_RESERVED = frozenset({0, 9, 10, 11, 12, 13, 14})
AV1C_HEADER_SIZE = 4


@dataclass(frozen=True, slots=True)
class AV1SequenceInfo:
    profile: int
    level: int  # seq_level_idx of operating point 0
    tier: int
    max_width: int
    max_height: int
    bit_depth: int


def parse_av1_codec_config(record: bytes) -> VideoConfig:
    """An AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3): its four header bytes give the codec
    string, the sequence header OBU among its configOBUs the picture size (which must agree)."""
    if len(record) < AV1C_HEADER_SIZE:
        raise CodecConfigError(f"av1C of {len(record)} bytes is shorter than its 4-byte header")
    if record[0] != 0x81:
        raise CodecConfigError(f"av1C marker/version byte {record[0]:#04x} is not 0x81")
    profile, level, tier = record[1] >> 5, record[1] & 0x1F, record[2] >> 7
    sequence = None
    for obu_type, payload in iter_obus(record[AV1C_HEADER_SIZE:], "av1C configOBUs"):
        if obu_type == OBU_SEQUENCE_HEADER:
            sequence = parse_av1_sequence_header(payload)
            break
    if sequence is None:
        raise CodecConfigError("av1C carries no sequence header OBU")
    if (sequence.profile, sequence.level, sequence.tier) != (profile, level, tier):
        raise CodecConfigError(
            f"av1C says profile {profile} level {level} tier {tier}, its sequence header "
            f"profile {sequence.profile} level {sequence.level} tier {sequence.tier}"
        )
    return VideoConfig(AV1, record, av1_codec(AV1, record), sequence.max_width,
                       sequence.max_height, sequence.bit_depth, None)


def _leb128(data: bytes, pos: int, what: str) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise CodecConfigError(f"{what}: truncated in an OBU size")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise CodecConfigError(f"{what}: OBU size longer than 8 bytes")


def iter_obus(data: bytes, what: str):
    """(obu_type, payload) of each OBU in the low-overhead bitstream format; an OBU without a
    size field runs to the end."""
    pos = 0
    while pos < len(data):
        header = data[pos]
        if header & 0x80:
            raise CodecConfigError(f"{what}: OBU forbidden bit set")
        obu_type = (header >> 3) & 0x0F
        pos += 2 if header & 0x04 else 1  # obu_extension_flag: one more header byte
        if pos > len(data):
            raise CodecConfigError(f"{what}: truncated OBU header")
        if header & 0x02:  # obu_has_size_field
            size, pos = _leb128(data, pos, what)
        else:
            size = len(data) - pos
        if len(data) - pos < size:
            raise CodecConfigError(f"{what}: OBU of {size} bytes does not fit")
        yield obu_type, data[pos : pos + size]
        pos += size


def parse_av1_sequence_header(payload: bytes) -> AV1SequenceInfo:
    """A sequence_header_obu() payload (AV1 5.5), read up to the colour config's bit depth."""
    bits = _Bits(payload, "AV1 sequence header")
    profile = bits.u(3, "seq_profile")
    if profile > 2:
        raise CodecConfigError(f"AV1 seq_profile {profile} is reserved")
    bits.skip(1, "still_picture")
    reduced = bits.u(1, "reduced_still_picture_header")
    tier = 0
    decoder_model = False
    if reduced:
        level = bits.u(5, "seq_level_idx")
    else:
        if bits.u(1, "timing_info_present_flag"):
            bits.skip(64, "num_units_in_display_tick/time_scale")
            if bits.u(1, "equal_picture_interval"):
                bits.uvlc("num_ticks_per_picture_minus_1")
            decoder_model = bool(bits.u(1, "decoder_model_info_present_flag"))
            if decoder_model:
                delay_length = bits.u(5, "buffer_delay_length_minus_1") + 1
                bits.skip(32 + 5 + 5, "decoder_model_info")
        initial_delay = bits.u(1, "initial_display_delay_present_flag")
        level = -1
        for _ in range(bits.u(5, "operating_points_cnt_minus_1") + 1):
            bits.skip(12, "operating_point_idc")
            point_level = bits.u(5, "seq_level_idx")
            point_tier = bits.u(1, "seq_tier") if point_level > 7 else 0
            if level < 0:
                level, tier = point_level, point_tier
            if decoder_model and bits.u(1, "decoder_model_present_for_this_op"):
                bits.skip(2 * delay_length + 1, "operating_parameters_info")
            if initial_delay and bits.u(1, "initial_display_delay_present_for_this_op"):
                bits.skip(4, "initial_display_delay_minus_1")
    width_bits = bits.u(4, "frame_width_bits_minus_1") + 1
    height_bits = bits.u(4, "frame_height_bits_minus_1") + 1
    width = bits.u(width_bits, "max_frame_width_minus_1") + 1
    height = bits.u(height_bits, "max_frame_height_minus_1") + 1
    if not reduced and bits.u(1, "frame_id_numbers_present_flag"):
        bits.skip(7, "frame id lengths")
    bits.skip(3, "use_128x128_superblock/enable_filter_intra/enable_intra_edge_filter")
    order_hint = 0
    if not reduced:
        bits.skip(4, "interintra/masked compound, warped motion, dual filter")
        order_hint = bits.u(1, "enable_order_hint")
        if order_hint:
            bits.skip(2, "enable_jnt_comp/enable_ref_frame_mvs")
        force_tools = 2 if bits.u(1, "seq_choose_screen_content_tools") else bits.u(
            1, "seq_force_screen_content_tools")
        if force_tools > 0 and not bits.u(1, "seq_choose_integer_mv"):
            bits.skip(1, "seq_force_integer_mv")
        if order_hint:
            bits.skip(3, "order_hint_bits_minus_1")
    bits.skip(3, "enable_superres/enable_cdef/enable_restoration")
    high_bitdepth = bits.u(1, "high_bitdepth")
    depth = 8
    if profile == 2 and high_bitdepth:
        depth = 12 if bits.u(1, "twelve_bit") else 10
    elif high_bitdepth:
        depth = 10
    return AV1SequenceInfo(profile, level, tier, width, height, depth)


# -- audio ---------------------------------------------------------------------

AAC, OPUS = "mp4a", "Opus"
OPUS_RATE = 48000  # Opus timestamps count 48 kHz samples whatever the input rate (RFC 7845 4)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """One audio track's configuration. ``fourcc`` is the sample entry (mp4a, Opus); ``record``
    the AudioSpecificConfig (mp4a) or the dOps payload (Opus); ``frame_samples`` the samples of
    every AAC frame (None for Opus, whose packets say their own)."""

    fourcc: str
    record: bytes
    codec: str
    sample_rate: int
    channels: int  # 0: an AAC program config element decides
    frame_samples: int | None


# GASpecificConfig's frameLengthFlag picks 960 over 1024 (AAC-LD: 480 over 512).
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
_AOT_SBR, _AOT_PS, _AOT_ER_BSAC, _AOT_LD, _AOT_ELD = 5, 29, 22, 23, 39


def parse_audio_config(fourcc: str, record: bytes) -> AudioConfig:
    """The configuration of an AAC (``mp4a``: AudioSpecificConfig) or Opus (``Opus``: OpusHead)
    sequence start; CodecConfigError if malformed or another codec."""
    record = bytes(record)
    if fourcc == AAC:
        try:
            aac = flv.parse_aac_audio_specific_config(record)
        except flv.FLVError as exc:
            raise CodecConfigError(f"AudioSpecificConfig: {exc}") from exc
        return AudioConfig(AAC, record, aac.codec_string, aac.sample_rate, aac.channels,
                           aac_frame_samples(record))
    if fourcc == OPUS:
        return parse_opus_head(record)
    raise CodecConfigError(f"audio codec {fourcc!r} is not mp4a or Opus")


def aac_frame_samples(config: bytes) -> int:
    """Samples per AAC frame at the AudioSpecificConfig's (core) sampling rate (ISO/IEC 14496-3
    1.6.2.1): 1024 or 960 for the general audio types, 512 or 480 for LD and ELD."""
    bits = _Bits(config, "AudioSpecificConfig")

    def object_type() -> int:
        aot = bits.u(5, "audioObjectType")
        return 32 + bits.u(6, "audioObjectTypeExt") if aot == 31 else aot

    def frequency() -> None:
        if bits.u(4, "samplingFrequencyIndex") == 15:
            bits.skip(24, "samplingFrequency")

    aot = object_type()
    frequency()
    bits.skip(4, "channelConfiguration")
    if aot in (_AOT_SBR, _AOT_PS):  # explicit SBR/PS: the core's object type follows
        frequency()
        aot = object_type()
        if aot == _AOT_ER_BSAC:
            bits.skip(4, "extensionChannelConfiguration")
    if aot in _GA_OBJECT_TYPES or aot == _AOT_ELD:
        short = bits.u(1, "frameLengthFlag")
        if aot in (_AOT_LD, _AOT_ELD):
            return 480 if short else 512
        return 960 if short else 1024
    raise CodecConfigError(f"AAC audio object type {aot} is not supported (general audio, LD, ELD)")


def check_raw_aac(frame: bytes) -> None:
    """FLV carries raw AAC frames; an ADTS header in front means the publisher framed it twice."""
    if not frame:
        raise CodecConfigError("empty AAC frame")
    if len(frame) >= 2 and frame[0] == 0xFF and frame[1] & 0xF6 == 0xF0:
        raise CodecConfigError("AAC frame starts with an ADTS header; FLV carries raw frames")


OPUS_HEAD = b"OpusHead"
_OPUS_HEAD = struct.Struct("<8sBBHIhB")  # magic, version, channels, pre-skip, rate, gain, family


def parse_opus_head(head: bytes) -> AudioConfig:
    """RFC 7845 5.1's ID header (little-endian) into the ``dOps`` payload (big-endian, Version 0;
    Opus in ISOBMFF 4.3.2)."""
    if len(head) < _OPUS_HEAD.size:
        raise CodecConfigError(f"Opus ID header of {len(head)} bytes is shorter than 19")
    magic, version, channels, pre_skip, rate, gain, family = _OPUS_HEAD.unpack_from(head)
    if magic != OPUS_HEAD:
        raise CodecConfigError(f"Opus ID header starts with {magic!r}, not b'OpusHead'")
    if version >> 4:
        raise CodecConfigError(f"Opus ID header version {version} is not 0.x")
    if channels == 0:
        raise CodecConfigError("Opus ID header with 0 channels")
    dops = struct.pack(">BBHIhB", 0, channels, pre_skip, rate, gain, family)
    if family == 0:
        if channels > 2:
            raise CodecConfigError(f"Opus mapping family 0 with {channels} channels")
    else:
        table = head[_OPUS_HEAD.size : _OPUS_HEAD.size + 2 + channels]
        if len(table) < 2 + channels:
            raise CodecConfigError("Opus ID header truncated in its channel mapping table")
        streams, coupled = table[0], table[1]
        if streams == 0 or coupled > streams or any(c >= streams + coupled and c != 255
                                                    for c in table[2:]):
            raise CodecConfigError("Opus channel mapping table is inconsistent")
        dops += table
    return AudioConfig(OPUS, dops, "opus", OPUS_RATE, channels, None)


# RFC 6716 3.1: the TOC's config gives the frame size (SILK 10/20/40/60 ms, Hybrid 10/20 ms,
# CELT 2.5/5/10/20 ms), in 48 kHz samples.
_OPUS_FRAME = tuple([480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4)
OPUS_MAX_PACKET_SAMPLES = 5760  # 120 ms


def opus_packet_samples(packet: bytes) -> int:
    """The 48 kHz samples an Opus packet holds, from its TOC byte (and frame count byte)."""
    if not packet:
        raise CodecConfigError("empty Opus packet")
    toc = packet[0]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    else:
        if len(packet) < 2:
            raise CodecConfigError("Opus code 3 packet without its frame count")
        frames = packet[1] & 0x3F
    samples = frames * _OPUS_FRAME[toc >> 3]
    if not 0 < samples <= OPUS_MAX_PACKET_SAMPLES:
        raise CodecConfigError(f"Opus packet of {frames} frames ({samples} samples) is not 1..120 ms")
    return samples


# -- video frames --------------------------------------------------------------


def check_length_prefixed(frame: bytes, length_size: int) -> None:
    """An AVC/HEVC sample: NAL units each behind a ``length_size``-byte length, filling it exactly
    (Annex B start codes in an FLV frame fail here)."""
    pos, end = 0, len(frame)
    if end == 0:
        raise CodecConfigError("empty video frame")
    while pos < end:
        if end - pos < length_size:
            raise CodecConfigError(f"video frame truncated in a NAL unit length at byte {pos}")
        length = int.from_bytes(frame[pos : pos + length_size], "big")
        pos += length_size
        if length == 0 or end - pos < length:
            raise CodecConfigError(
                f"video frame NAL unit of {length} bytes at byte {pos} does not fit its "
                f"{end - pos} remaining bytes (Annex B start codes instead of lengths?)"
            )
        pos += length


def strip_temporal_delimiters(frame: bytes) -> bytes:
    """An AV1 temporal unit without its leading temporal delimiter OBUs, which AV1-ISOBMFF 2.4
    says samples should not hold (raw encoders and some publishers send them; a TD is the
    two-byte OBU ``0x12 0x00``, or ``0x16 ext 0x00`` with an extension header)."""
    pos, end = 0, len(frame)
    while pos < end and frame[pos] & 0xFB == (OBU_TEMPORAL_DELIMITER << 3) | 0x02:  # with a size field
        size_at = pos + (2 if frame[pos] & 0x04 else 1)
        if size_at >= end or frame[size_at] != 0:
            break  # a TD carries no payload: anything else is left for check_obus to judge
        pos = size_at + 1
    return frame[pos:] if pos else frame


def check_obus(frame: bytes) -> None:
    """An AV1 sample: a temporal unit of OBUs that fill it exactly, none of a reserved type."""
    if not frame:
        raise CodecConfigError("empty AV1 frame")
    for obu_type, _ in iter_obus(frame, "AV1 frame"):
        if obu_type in OBU_RESERVED:
            raise CodecConfigError(f"AV1 frame holds an OBU of reserved type {obu_type}")
