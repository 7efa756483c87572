"""FLV: tag writing and reading, tag headers, avcC/SPS and AudioSpecificConfig,
and that garbage only ever raises FLVError."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.media import flv
from daemons.media.flv import FLVError


class BitWriter:
    """Builds H.264/AAC bitstreams field by field for the parser tests."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> "BitWriter":
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> "BitWriter":
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> "BitWriter":
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp trailing bits
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes as an encoder must."""
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def sps(
    profile=66,
    level=31,
    chroma=1,
    separate_planes=0,
    scaling_lists=(),
    poc_type=0,
    poc_offsets=(),
    width_mbs=20,
    height_units=15,
    frame_mbs_only=1,
    crop=None,
) -> bytes:
    w = BitWriter().u(8, profile).u(8, 0).u(8, level).ue(0)
    if profile in (100, 110, 122, 244):
        w.ue(chroma)
        if chroma == 3:
            w.u(1, separate_planes)
        w.ue(0).ue(0).u(1, 0)
        w.u(1, 1 if scaling_lists else 0)
        if scaling_lists:
            for i in range(12 if chroma == 3 else 8):
                deltas = scaling_lists[i] if i < len(scaling_lists) else None
                w.u(1, deltas is not None)
                for d in deltas or ():
                    w.se(d)
    w.ue(0).ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(poc_offsets[0]).se(0).ue(len(poc_offsets) - 1)
        for offset in poc_offsets[1:]:
            w.se(offset)
    w.ue(1).u(1, 0).ue(width_mbs - 1).ue(height_units - 1).u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1)
    w.u(1, crop is not None)
    for value in crop or ():
        w.ue(value)
    return b"\x67" + escape(w.bytes())


def avcc(sps_nal: bytes, pps=(b"\x68\xee\x3c\x80",)) -> bytes:
    out = bytes([1, sps_nal[1], sps_nal[2], sps_nal[3], 0xFF, 0xE1])
    out += len(sps_nal).to_bytes(2, "big") + sps_nal + bytes([len(pps)])
    for p in pps:
        out += len(p).to_bytes(2, "big") + p
    return out


# A scaling list that ends early (delta making nextScale 0) and one that runs full length.
EARLY_END = (-8,)
FULL_16 = (1,) * 16

SPS_CASES = [
    pytest.param(sps(), (320, 240), id="baseline-no-crop"),
    pytest.param(
        sps(width_mbs=120, height_units=68, crop=(0, 0, 0, 4)), (1920, 1080), id="crop-420"
    ),
    pytest.param(
        sps(
            profile=100,
            scaling_lists=(EARLY_END, FULL_16, None, None, None, None, (2,) * 64),
            width_mbs=80,
            height_units=45,
        ),
        (1280, 720),
        id="high-scaling-lists",
    ),
    pytest.param(
        sps(
            profile=244,
            chroma=3,
            scaling_lists=(FULL_16,) * 6 + (EARLY_END,) * 6,
            crop=(1, 1, 2, 2),
        ),
        (318, 236),
        id="high444-crop-units-1",
    ),
    pytest.param(
        sps(profile=244, chroma=3, separate_planes=1, crop=(1, 1, 1, 1)),
        (318, 238),
        id="separate-colour-planes",
    ),
    pytest.param(sps(profile=100, chroma=0, crop=(2, 0, 0, 1)), (318, 239), id="monochrome"),
    pytest.param(sps(profile=122, chroma=2, crop=(1, 0, 1, 0)), (318, 239), id="422"),
    pytest.param(
        sps(width_mbs=120, height_units=34, frame_mbs_only=0, crop=(0, 0, 0, 2)),
        (1920, 1080),
        id="interlaced",
    ),
    pytest.param(
        sps(poc_type=1, poc_offsets=(-(1 << 30), 3, -3)),
        (320, 240),
        id="poc-type-1-with-emulation-prevention",
    ),
    pytest.param(sps(poc_type=2), (320, 240), id="poc-type-2"),
]


@pytest.mark.parametrize(("nal", "size"), SPS_CASES)
def test_sps_dimensions(nal, size):
    info = flv.parse_sps(nal)
    assert (info.width, info.height) == size
    config = flv.parse_avc_decoder_config(avcc(nal))
    assert (config.width, config.height) == size
    assert config.sps == (nal,)


def test_emulation_prevention_is_exercised():
    nal = SPS_CASES[8].values[0]
    assert b"\x00\x00\x03" in nal


def test_avcc_fields_and_codec_string():
    config = flv.parse_avc_decoder_config(avcc(sps(profile=100, level=31)))
    assert (config.profile, config.level, config.nal_length_size) == (100, 31, 4)
    assert config.codec_string == "avc1.64001f"
    assert config.pps == (b"\x68\xee\x3c\x80",)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x64\x00", "too short"),
        (b"\x02" + avcc(sps())[1:], "configurationVersion"),
        (avcc(sps())[:5] + b"\xe0\x00", "no SPS"),
        (avcc(sps())[:6] + b"\x00\x40" + sps(), "does not fit"),
        (avcc(sps())[:-7], "before the PPS count"),
        (avcc(sps())[:-5], "PPS length"),
        (bytes([1, 66, 0, 31, 0xFE, 0xE1]) + avcc(sps())[6:], "length size 3"),
        (avcc(b"\x68\x42\x00\x1f\xff"), "not an H.264 SPS"),
        (avcc(sps()[:5]), "truncated"),
        (avcc(b"\x67\x42\x00\x1f" + b"\x00" * 6), "exp-Golomb"),
        (avcc(sps(crop=(80, 80, 0, 0))), "cropping leaves no picture"),
        (avcc(sps(profile=100, chroma=4)), "chroma_format_idc"),
        (avcc(sps(profile=100, scaling_lists=((200,),))), "scaling list delta"),
        (avcc(sps(poc_type=3)), "pic_order_cnt_type"),
        (avcc(sps(poc_type=1, poc_offsets=(0,) * 258)), "cycle 257 out of range"),
    ],
)
def test_avcc_malformed(data, match):
    with pytest.raises(FLVError, match=match):
        flv.parse_avc_decoder_config(data)


def asc(object_type: int, rate_index: int, channels: int, explicit_rate: int = 0) -> bytes:
    w = BitWriter()
    if object_type >= 31:
        w.u(5, 31).u(6, object_type - 32)
    else:
        w.u(5, object_type)
    w.u(4, rate_index)
    if rate_index == 15:
        w.u(24, explicit_rate)
    w.u(4, channels)
    return bytes(
        int("".join(map(str, (w.bits + [0] * 7)[i : i + 8])), 2) for i in range(0, len(w.bits), 8)
    )


@pytest.mark.parametrize(
    ("config", "expected", "codec"),
    [
        (b"\x12\x10", (2, 44100, 2), "mp4a.40.2"),
        (b"\x11\x90", (2, 48000, 2), "mp4a.40.2"),
        (b"\x13\x88", (2, 22050, 1), "mp4a.40.2"),
        (b"\x2b\x10", (5, 24000, 2), "mp4a.40.5"),
        (asc(42, 4, 2), (42, 44100, 2), "mp4a.40.42"),
        (asc(2, 15, 1, explicit_rate=44056), (2, 44056, 1), "mp4a.40.2"),
        (asc(2, 3, 7), (2, 48000, 8), "mp4a.40.2"),
    ],
)
def test_audio_specific_config(config, expected, codec):
    parsed = flv.parse_aac_audio_specific_config(config)
    assert (parsed.object_type, parsed.sample_rate, parsed.channels) == expected
    assert parsed.codec_string == codec


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b"", "truncated"),
        (b"\x12", "truncated"),
        (asc(0, 4, 2), "object type 0"),
        (asc(2, 13, 2), "reserved"),
        (asc(2, 15, 2, explicit_rate=0), "sample rate 0"),
        (asc(2, 4, 8), "channel configuration 8"),
    ],
)
def test_audio_specific_config_malformed(config, match):
    with pytest.raises(FLVError, match=match):
        flv.parse_aac_audio_specific_config(config)


V = flv.VideoPacketType
A = flv.AudioPacketType
F = flv.FrameType


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Legacy AVC: frame type, CodecID 7, AVCPacketType, composition time.
        (
            b"\x17\x00\x00\x00\x00\x01",
            dict(
                codec_id=7,
                fourcc="avc1",
                frame_type=F.KEY,
                is_keyframe=True,
                packet_type=V.SEQUENCE_START,
                is_sequence_header=True,
                is_random_access=False,
                enhanced=False,
                composition_time=0,
                data_offset=5,
            ),
        ),
        (
            b"\x27\x01\xff\xff\xd8\x00",
            dict(frame_type=F.INTER, is_keyframe=False, packet_type=V.CODED_FRAMES, composition_time=-40),
        ),
        (
            b"\x17\x01\x00\x00\x50",
            dict(composition_time=80, is_sequence_header=False, is_coded_frame=True, is_random_access=True),
        ),
        (
            b"\x17\x02\x00\x00\x00",  # end of sequence: flagged key, carries no picture
            dict(is_keyframe=True, is_end_of_sequence=True, is_coded_frame=False, is_random_access=False),
        ),
        (b"\x1c\x00\x00\x00\x00", dict(codec_id=12, fourcc="hvc1", is_sequence_header=True)),
        (
            b"\x22\xab",  # Sorenson H.263: no FourCC, the frame follows the first byte
            dict(codec_id=2, fourcc=None, packet_type=V.CODED_FRAMES, data_offset=1),
        ),
        (
            b"\x57\x01",  # a command frame (end of client-side seek): no video data
            dict(frame_type=F.COMMAND, packet_type=None, command=1, fourcc=None, data_offset=2),
        ),
        # Enhanced RTMP: IsExHeader, frame type, VideoPacketType, FourCC.
        (
            b"\x90hvc1\x01",
            dict(
                codec_id=0,
                enhanced=True,
                fourcc=flv.VideoCodec.HEVC,
                is_keyframe=True,
                packet_type=V.SEQUENCE_START,
                is_sequence_header=True,
                data_offset=5,
            ),
        ),
        (
            b"\x91hvc1\x00\x00\x28",
            dict(packet_type=V.CODED_FRAMES, composition_time=40, data_offset=8, is_random_access=True),
        ),
        (
            b"\x91avc1\xff\xff\xec\x65",
            dict(fourcc="avc1", composition_time=-20, data_offset=8),
        ),
        (b"\x91av01\x12\x00", dict(fourcc="av01", composition_time=0, data_offset=5)),
        (
            b"\xa3av01",
            dict(fourcc="av01", frame_type=F.INTER, is_keyframe=False, packet_type=V.CODED_FRAMES_X),
        ),
        (b"\x93hvc1\x26\x01", dict(packet_type=V.CODED_FRAMES_X, composition_time=0, data_offset=5)),
        (b"\x92vp09", dict(fourcc="vp09", is_end_of_sequence=True, is_random_access=False)),
        (
            b"\x84hvc1\x02\x00\x09colorInfo",  # Metadata: its frame type is ignored (here 0)
            dict(packet_type=V.METADATA, frame_type=None, is_keyframe=False, data_offset=5),
        ),
        (b"\x95av01\x80", dict(packet_type=V.MPEG2TS_SEQUENCE_START, is_sequence_header=False)),
        (b"\xd0\x00", dict(frame_type=F.COMMAND, packet_type=None, command=0, enhanced=True, fourcc=None)),
        (b"\x91xyz1\x00", dict(fourcc="xyz1", composition_time=0, data_offset=5)),  # unknown: kept
        # ModEx (TimestampOffsetNano 0x0186a0 = 100 us) before the real packet type.
        (
            b"\x97\x02\x01\x86\xa0\x01hvc1\x00\x00\x00",
            dict(packet_type=V.CODED_FRAMES, fourcc="hvc1", nano_offset=100_000, data_offset=13),
        ),
        # Multitrack: OneTrack (FourCC, track id), ManyTracks (FourCC, then track id + size per
        # track), ManyTracksManyCodecs (FourCC per track).
        (
            b"\x96\x00hvc1\x02",
            dict(multitrack=True, track_id=2, packet_type=V.SEQUENCE_START, data_offset=7, data_end=None),
        ),
        (
            b"\x96\x13av01\x00\x00\x00\x02AB\x01\x00\x00\x01C",
            dict(packet_type=V.CODED_FRAMES_X, fourcc="av01", track_id=0, data_offset=10, data_end=12),
        ),
        (
            b"\x96\x21hvc1\x00\x00\x00\x05\x00\x00\x28XY",
            dict(fourcc="hvc1", track_id=0, composition_time=40, data_offset=13, data_end=15),
        ),
    ],
)
def test_video_tag_header(body, expected):
    header = flv.parse_video_tag(body)
    assert {k: getattr(header, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"\x07\x00", "frame type 0"),
        (b"\x67\x00", "frame type 6"),
        (b"\x52", "command byte"),
        (b"\x17\x00\x00", "shorter than its 5-byte header"),
        (b"\x17\x03\x00\x00\x00", "packet type 3"),
        (b"\x90hv", "shorter than its FourCC"),
        (b"\x90\xff\xfe\xfd\xfc", "not ASCII"),
        (b"\x91avc1\x00", "composition time"),
        (b"\x98hvc1", "packet type 8 is reserved"),
        (b"\xf1hvc1", "frame type 7"),
        (b"\xd0", "command byte"),
        (b"\x96", "multitrack type"),
        (b"\x96\x30hvc1\x00", "multitrack type 3"),
        (b"\x96\x06hvc1\x00", "packet type 6"),
        (b"\x96\x00hvc1", "track id"),
        (b"\x96\x10hvc1\x00\x00\x00", "track size"),
        (b"\x96\x10hvc1\x00\x00\x00\x09ab", "does not fit"),
        (b"\x96\x21hvc1\x00\x00\x00\x02\x00\x00\x28", "composition time"),
        (b"\x97", "ModEx truncated"),
        (b"\x97\xff", "ModEx truncated"),
        (b"\x97\x05\x00", "does not fit"),
        (b"\x97\x01\x00\x00\x01hvc1", "shorter than 3 bytes"),
        (b"\x97\x02\x0f\x42\x40\x01hvc1\x00\x00\x00", "not below 1 ms"),
    ],
)
def test_video_tag_malformed(body, match):
    with pytest.raises(FLVError, match=match):
        flv.parse_video_tag(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"\xaf\x00\x12\x10",
            dict(
                sound_format=10,
                sound_rate=3,
                sound_size=1,
                sound_type=1,
                fourcc="mp4a",
                packet_type=A.SEQUENCE_START,
                is_sequence_header=True,
                enhanced=False,
                data_offset=2,
            ),
        ),
        (b"\xaf\x01\x21", dict(packet_type=A.CODED_FRAMES, is_sequence_header=False, is_coded_frame=True)),
        (
            b"\x2e\xff",  # MP3: coded frames right after the first byte
            dict(sound_format=2, sound_type=0, fourcc=".mp3", packet_type=A.CODED_FRAMES, data_offset=1),
        ),
        (b"\x90Opus", dict(sound_format=9, enhanced=True, fourcc=flv.AudioCodec.OPUS, is_sequence_header=True, data_offset=5)),
        (b"\x91fLaC\x00", dict(fourcc="fLaC", packet_type=A.CODED_FRAMES, data_offset=5)),
        (b"\x92mp4a", dict(packet_type=A.SEQUENCE_END, is_coded_frame=False)),
        (b"\x94Opus\x00\x02", dict(packet_type=A.MULTICHANNEL_CONFIG)),
        (b"\x97\x02\x00\x00\x10\x01ac-3", dict(packet_type=A.CODED_FRAMES, fourcc="ac-3", nano_offset=16, data_offset=10)),
        (b"\x95\x00Opus\x01", dict(multitrack=True, track_id=1, packet_type=A.SEQUENCE_START, data_offset=7)),
        (
            b"\x95\x21Opus\x03\x00\x00\x01Z",
            dict(fourcc="Opus", track_id=3, packet_type=A.CODED_FRAMES, data_offset=10, data_end=11),
        ),
    ],
)
def test_audio_tag_header(body, expected):
    header = flv.parse_audio_tag(body)
    assert {k: getattr(header, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"\xaf", "without a packet type"),
        (b"\xaf\x02", "packet type 2"),
        (b"\x91Op", "FourCC"),
        (b"\x91\xff\xff\xff\xff", "not ASCII"),
        (b"\x93Opus", "packet type 3 is reserved"),
        (b"\x96Opus", "packet type 6 is reserved"),
        (b"\x95", "multitrack type"),
        (b"\x95\x31Opus", "multitrack type 3"),
        (b"\x95\x11Opus\x00\x00", "track size"),
        (b"\x97\x00", "ModEx"),
    ],
)
def test_audio_tag_malformed(body, match):
    with pytest.raises(FLVError, match=match):
        flv.parse_audio_tag(body)


# What an Enhanced RTMP publisher writes, built from the spec's fields (independent of the parser).
def ex_video_header(frame_type, packet_type, fourcc, *, composition_time=None, nano=None,
                    multitrack=None, track_id=0, track_size=0) -> bytes:
    out = bytearray()
    wire_type = 6 if multitrack is not None else packet_type
    if nano is not None:
        out += bytes([0x80 | frame_type << 4 | 7, 2]) + nano.to_bytes(3, "big") + bytes([wire_type])
    else:
        out += bytes([0x80 | frame_type << 4 | wire_type])
    if multitrack is not None:
        out += bytes([multitrack << 4 | packet_type])
    out += fourcc.encode()
    if multitrack is not None:
        out += bytes([track_id]) + (track_size.to_bytes(3, "big") if multitrack else b"")
    if composition_time is not None:
        out += (composition_time & 0xFFFFFF).to_bytes(3, "big")
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([F.KEY, F.INTER, F.DISPOSABLE_INTER, F.GENERATED_KEY]),
    st.sampled_from([V.SEQUENCE_START, V.CODED_FRAMES, V.SEQUENCE_END, V.CODED_FRAMES_X, V.MPEG2TS_SEQUENCE_START]),
    st.sampled_from(list(flv.VideoCodec)),
    st.integers(-(1 << 23), (1 << 23) - 1),
    st.one_of(st.none(), st.integers(0, 999_999)),
    st.one_of(st.none(), st.integers(0, 1)),
    st.integers(0, 255),
    st.binary(max_size=20),
)
def test_enhanced_video_header_decodes_what_was_encoded(
    frame_type, packet_type, fourcc, composition_time, nano, multitrack, track_id, payload
):
    has_ct = packet_type == V.CODED_FRAMES and fourcc in ("avc1", "hvc1", "vvc1")
    track_size = len(payload) + (3 if has_ct else 0)
    body = ex_video_header(
        frame_type, packet_type, fourcc, composition_time=composition_time if has_ct else None,
        nano=nano, multitrack=multitrack, track_id=track_id, track_size=track_size,
    ) + payload
    header = flv.parse_video_tag(body)
    assert (header.frame_type, header.packet_type, header.fourcc) == (frame_type, packet_type, fourcc)
    assert header.enhanced and header.codec_id == 0
    assert header.composition_time == (composition_time if has_ct else 0)
    assert header.nano_offset == (nano or 0)
    assert header.multitrack is (multitrack is not None)
    assert header.track_id == (track_id if multitrack is not None else 0)
    assert body[header.data_offset : header.data_end] == payload
    assert header.is_random_access == (frame_type == F.KEY and packet_type in (V.CODED_FRAMES, V.CODED_FRAMES_X))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.sampled_from([2, 3, 4, 5, 6, 7, 12]), st.binary(min_size=4, max_size=12))
def test_legacy_video_header_fields(frame_type, codec_id, rest):
    body = bytes([frame_type << 4 | codec_id]) + rest
    if codec_id in (7, 12) and frame_type != 5:
        rest = bytes([rest[0] % 3]) + rest[1:]
        body = bytes([frame_type << 4 | codec_id]) + rest
    header = flv.parse_video_tag(body)
    assert header.frame_type == frame_type and not header.enhanced
    if frame_type == 5:
        assert header.packet_type is None and header.command == rest[0]
    elif codec_id in (7, 12):
        assert header.packet_type == rest[0] and header.data_offset == 5
        assert header.fourcc == ("avc1" if codec_id == 7 else "hvc1")
    else:
        assert header.packet_type is V.CODED_FRAMES and header.data_offset == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_tag_headers_on_garbage_raise_only_flv_error_and_stay_in_the_body(data):
    for parse in (flv.parse_video_tag, flv.parse_audio_tag):
        try:
            header = parse(data)
        except FLVError:
            continue
        end = len(data) if header.data_end is None else header.data_end
        assert 1 <= header.data_offset <= end <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x80, 0x90, 0x97, 0x96, 0x95]), st.binary(max_size=40))
def test_enhanced_prefixes_with_garbage_raise_only_flv_error(first, rest):
    for parse in (flv.parse_video_tag, flv.parse_audio_tag):
        with contextlib.suppress(FLVError):
            parse(bytes([first]) + rest)


@pytest.mark.parametrize(
    ("has_audio", "has_video", "flags"),
    [
        (True, True, 5),
        (True, False, 4),
        (False, True, 1),
        (False, False, 0),
    ],
)
def test_flv_header(has_audio, has_video, flags):
    assert flv.flv_header(has_audio, has_video) == (
        b"FLV\x01" + bytes([flags]) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"
    )


@pytest.mark.parametrize(
    ("tag", "encoded"),
    [
        ((9, 0, b"ab"), b"\x09\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00ab\x00\x00\x00\x0d"),
        ((8, 0x12345678, b"a"), b"\x08\x00\x00\x01\x34\x56\x78\x12\x00\x00\x00a\x00\x00\x00\x0c"),
        ((18, 0x1_0000_0010, b""), b"\x12\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x0b"),
    ],
)
def test_encode_tag(tag, encoded):
    assert flv.encode_tag(*tag) == encoded


@pytest.mark.parametrize(
    ("tag", "match"),
    [
        ((7, 0, b""), "tag type 7"),
        ((9, -1, b""), "negative"),
        ((9, 0, bytes(0x1000000)), "24-bit size"),
    ],
)
def test_encode_tag_invalid(tag, match):
    with pytest.raises(FLVError, match=match):
        flv.encode_tag(*tag)


def test_script_tag_round_trip():
    tag = flv.encode_script_tag({"width": 320.0, "encoder": "Sender"})
    (read,) = flv.FLVReader().feed(flv.flv_header() + tag)
    assert read.type == flv.TAG_SCRIPT
    assert flv.parse_script_tag(read.body) == ("onMetaData", {"width": 320.0, "encoder": "Sender"})


@pytest.mark.parametrize("body", [b"\x09", b"\x05\x05", b"\x02\x00\x01a"])
def test_script_tag_malformed(body):
    with pytest.raises(FLVError):
        flv.parse_script_tag(body)


def test_reader_in_pieces():
    stream = flv.flv_header(True, False) + b"".join(
        flv.encode_tag(8, ts, bytes([ts & 0xFF]) * ts) for ts in range(0, 300, 7)
    )
    for piece in (1, 5, 64, len(stream)):
        reader = flv.FLVReader()
        tags = []
        for i in range(0, len(stream), piece):
            tags += reader.feed(stream[i : i + piece])
        assert [(t.type, t.timestamp, len(t.body)) for t in tags] == [
            (8, ts, ts) for ts in range(0, 300, 7)
        ]
        assert (reader.has_audio, reader.has_video) == (True, False)


HEADER = flv.flv_header()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"GET", "signature"),
        (b"FLV\x02" + HEADER[4:], "version 2"),
        (HEADER[:5] + b"\x00\x00\x00\x05" + bytes(4), "header size 5"),
        (HEADER[:9] + b"\x00\x00\x00\x01", "PreviousTagSize0"),
        (HEADER + b"\x07" + bytes(14), "tag type 7"),
        (HEADER + b"\x29" + bytes(14), "encryption"),
        (HEADER + b"\x09\xff\xff\xff", "exceeds max_tag_size"),
        (HEADER + flv.encode_tag(9, 0, b"ab")[:-1] + b"\x0c", "does not match"),
    ],
)
def test_reader_malformed(data, match):
    with pytest.raises(FLVError, match=match):
        flv.FLVReader(max_tag_size=1 << 20).feed(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_reader_garbage_raises_only_flv_error(data, with_header):
    reader = flv.FLVReader(max_tag_size=4096)
    with contextlib.suppress(FLVError):
        reader.feed(HEADER + data if with_header else data)
    assert reader.buffered_bytes <= 9 + 4 + 11 + 4096 + 4 + len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_codec_parsers_raise_only_flv_error(data):
    for parse in (
        flv.parse_video_tag,
        flv.parse_audio_tag,
        flv.parse_avc_decoder_config,
        flv.parse_aac_audio_specific_config,
        flv.parse_script_tag,
    ):
        with contextlib.suppress(FLVError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_sps_garbage_raises_only_flv_error(data):
    try:
        info = flv.parse_sps(b"\x67" + data)
    except FLVError:
        return
    assert info.width > 0 and info.height > 0
