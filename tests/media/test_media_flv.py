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


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"\x17\x00\x00\x00\x00\x01",
            dict(
                codec_id=7,
                fourcc="avc1",
                frame_type=1,
                is_keyframe=True,
                packet_type=0,
                is_sequence_header=True,
                composition_time=0,
                data_offset=5,
            ),
        ),
        (
            b"\x27\x01\xff\xff\xd8\x00",
            dict(codec_id=7, frame_type=2, is_keyframe=False, packet_type=1, composition_time=-40),
        ),
        (b"\x17\x01\x00\x00\x50", dict(composition_time=80, is_sequence_header=False)),
        (b"\x1c\x00\x00\x00\x00", dict(codec_id=12, fourcc="hvc1", is_sequence_header=True)),
        (b"\x22\xab", dict(codec_id=2, fourcc=None, packet_type=None, data_offset=1)),
        (
            b"\x90hvc1\x01",
            dict(
                codec_id=0,
                fourcc="hvc1",
                is_keyframe=True,
                packet_type=0,
                is_sequence_header=True,
                data_offset=5,
            ),
        ),
        (b"\x91hvc1\x00\x00\x28", dict(packet_type=1, composition_time=40, data_offset=8)),
        (b"\xa3av01", dict(fourcc="av01", frame_type=2, is_keyframe=False, packet_type=3)),
    ],
)
def test_video_tag_header(body, expected):
    info = flv.parse_video_tag(body)
    assert {k: getattr(info, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"\x07\x00", "frame type 0"),
        (b"\x67\x00", "frame type 6"),
        (b"\x17\x00\x00", "shorter than its 5-byte header"),
        (b"\x17\x03\x00\x00\x00", "packet type 3"),
        (b"\x90hv", "shorter than its FourCC"),
        (b"\x90\xff\xfe\xfd\xfc", "not ASCII"),
        (b"\x96hvc1", "multitrack"),
        (b"\x91avc1\x00", "composition time"),
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
                aac_packet_type=0,
                is_sequence_header=True,
                data_offset=2,
            ),
        ),
        (b"\xaf\x01\x21", dict(aac_packet_type=1, is_sequence_header=False)),
        (b"\x2e\xff", dict(sound_format=2, sound_type=0, aac_packet_type=None, data_offset=1)),
        (b"\x90Opus", dict(sound_format=9, fourcc="Opus", is_sequence_header=True, data_offset=5)),
    ],
)
def test_audio_tag_header(body, expected):
    info = flv.parse_audio_tag(body)
    assert {k: getattr(info, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"\xaf", "without a packet type"),
        (b"\xaf\x02", "packet type 2"),
        (b"\x91Op", "FourCC"),
        (b"\x91\xff\xff\xff\xff", "not ASCII"),
    ],
)
def test_audio_tag_malformed(body, match):
    with pytest.raises(FLVError, match=match):
        flv.parse_audio_tag(body)


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
