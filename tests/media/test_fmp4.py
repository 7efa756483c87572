"""Fragmented MP4: real ffmpeg 5.1 output (tests/media/data/fmp4/, made by make.sh) read whole and
cut anywhere, checked against ffprobe; then hand-built streams for the corners ffmpeg does not
reach (trex/tfhd fallbacks, explicit offsets, largesize, side boxes, a second init) and for
every malformed input naming its box."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import time
from functools import cache
from itertools import cycle
from pathlib import Path

import pytest

from daemons.media.fmp4 import (
    FMP4Error,
    FMP4Reader,
    Fragment,
    InitSegment,
    box,
    full_box,
    is_sync_sample,
)
from daemons.media.fmp4.codecs import avc_codec, hevc_codec, mp4a_codec

DATA = Path(__file__).parent / "data" / "fmp4"
needs_ffprobe = pytest.mark.skipif(
    shutil.which("ffprobe") is None, reason="ffprobe is not installed"
)

# What each fixture holds (2 s of testsrc2 320x240 at 25 fps, -g 25, and/or a 440 Hz sine).
FIXTURES = {
    "av_frag_every_frame": {"codecs": ["avc1.64000d", "mp4a.40.2"], "fragments": 136},
    "av_frag_200ms": {"codecs": ["avc1.64000d", "mp4a.40.2"], "fragments": 11},
    "av_separate_moof": {"codecs": ["avc1.64000d", "mp4a.40.2"], "fragments": 21},
    "video_only_frag_200ms": {"codecs": ["avc1.64000d"], "fragments": 10},
    "hevc_frag_every_frame": {"codecs": ["hvc1.1.6.L60.90"], "fragments": 50},
    "opus_frag_200ms": {"codecs": ["opus"], "fragments": 11},
}
H264_PROFILES = {"Baseline": 0x42, "Constrained Baseline": 0x42, "Main": 0x4D, "High": 0x64}
HEVC_PROFILES = {"Main": 1, "Main 10": 2}
AAC_PROFILES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29}


def read_all(data: bytes, sizes=None, **limits) -> list[InitSegment | Fragment]:
    """Feed ``data`` whole or in pieces of the given sizes (cycled), then end the stream."""
    reader = FMP4Reader(**limits)
    if sizes is None:
        events = reader.feed(data)
    else:
        events, pos, sizes = [], 0, cycle(sizes)
        while pos < len(data):
            size = next(sizes)
            events += reader.feed(data[pos : pos + size])
            pos += size
    reader.end()
    assert reader.buffered_bytes == 0
    return events


@cache
def fixture_bytes(name: str) -> bytes:
    return (DATA / f"{name}.mp4").read_bytes()


@cache
def fixture_events(name: str) -> tuple[InitSegment, list[Fragment]]:
    init, *fragments = read_all(fixture_bytes(name))
    assert isinstance(init, InitSegment)
    assert all(isinstance(f, Fragment) for f in fragments)
    return init, fragments


def ffprobe(path: Path, *entries: str) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", ",".join(entries), "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


@cache
def probed_packets(path: Path) -> dict[int, list[dict]]:
    """ffprobe's packets per stream index, in decode order."""
    packets: dict[int, list[dict]] = {}
    for packet in ffprobe(path, "packet=stream_index,size,flags,dts")["packets"]:
        packets.setdefault(packet["stream_index"], []).append(packet)
    return packets


def samples_by_track(fragments: list[Fragment]) -> dict[int, list[tuple[int, bool]]]:
    """(size, starts-a-fragment-and-is-sync) for every sample, per track, in decode order."""
    samples: dict[int, list[tuple[int, bool]]] = {}
    for fragment in fragments:
        for track_id, traf in fragment.tracks.items():
            track = samples.setdefault(track_id, [])
            track += [
                (size, i == 0 and traf.first_sample_sync)
                for i, size in enumerate(traf.sample_sizes)
            ]
    return samples


# -- real ffmpeg output ----------------------------------------------------------


@pytest.fixture(params=list(FIXTURES))
def name(request) -> str:
    return request.param


def test_every_fixture_is_small():
    for fixture in FIXTURES:
        assert (DATA / f"{fixture}.mp4").stat().st_size < 300 * 1024


def test_init_segment_tracks(name):
    init, fragments = fixture_events(name)
    assert [t.codec for t in init.tracks.values()] == FIXTURES[name]["codecs"]
    assert list(init.tracks) == list(range(1, len(init.tracks) + 1))
    assert len(fragments) == FIXTURES[name]["fragments"]
    if "opus" in name:
        assert init.video is None
    else:
        video = init.video
        assert (video.kind, video.width, video.height, video.timescale) == (
            "video",
            320,
            240,
            12800,
        )
        assert video.sample_rate is video.channels is None
    if name.startswith(("av_", "opus")):
        audio = init.audio
        rate = 48000 if "opus" in name else 44100
        assert (audio.kind, audio.sample_rate, audio.channels, audio.timescale) == (
            "audio",
            rate,
            1,
            rate,
        )
        assert audio.width is audio.height is None
    # ffmpeg's trex carries no real defaults: every traf brings its own in tfhd.
    assert all(t.default_sample_duration == 0 for t in init.tracks.values())


@needs_ffprobe
def test_init_segment_agrees_with_ffprobe(name):
    init, _ = fixture_events(name)
    streams = ffprobe(
        DATA / f"{name}.mp4",
        "stream=index,codec_tag_string,profile,level,time_base,width,height,sample_rate,channels",
    )["streams"]
    for track, stream in zip(init.tracks.values(), streams, strict=True):
        fourcc, *fields = track.codec.split(".")
        assert fourcc == stream["codec_tag_string"].lower()
        assert f"1/{track.timescale}" == stream["time_base"]
        if fourcc == "avc1":
            assert int(fields[0][:2], 16) == H264_PROFILES[stream["profile"]]
            assert int(fields[0][4:], 16) == stream["level"]
        elif fourcc == "hvc1":
            assert int(fields[0]) == HEVC_PROFILES[stream["profile"]]
            assert fields[2] == f"L{stream['level']}"
        elif fourcc == "mp4a":
            assert fields[:2] == ["40", str(AAC_PROFILES[stream["profile"]])]
        if track.kind == "video":
            assert (track.width, track.height) == (stream["width"], stream["height"])
        else:
            assert (track.sample_rate, track.channels) == (
                int(stream["sample_rate"]),
                stream["channels"],
            )


def test_any_split_reads_the_same(name):
    data = fixture_bytes(name)
    init, fragments = fixture_events(name)
    rng = random.Random(name)
    for sizes in ([1], [7, 3], [rng.randrange(1, 4000) for _ in range(50)], [len(data) // 3 + 1]):
        assert read_all(data, sizes) == [init, *fragments]


def test_decode_times_are_continuous(name):
    init, fragments = fixture_events(name)
    next_time = dict.fromkeys(init.tracks, 0)
    jumps, empty = [], 0
    for fragment in fragments:
        for track_id, traf in fragment.tracks.items():
            assert traf.sample_count == len(traf.sample_sizes) > 0
            if traf.base_decode_time != next_time[track_id]:
                jumps.append(
                    (init.tracks[track_id].kind, traf.base_decode_time - next_time[track_id])
                )
            empty += traf.duration == 0
            next_time[track_id] = traf.base_decode_time + traf.duration
    if name == "av_frag_every_frame":
        # ffmpeg 5.1's +frag_every_frame writes some lone AAC samples with duration 0, and the
        # timeline then skips one AAC frame: tfdt and durations disagree, as ffprobe also shows.
        assert jumps == [("audio", 1024)] * empty and empty > 0
    else:
        assert jumps == [] and empty == 0
    for track_id, end in next_time.items():
        # 2 s of media, give or take the last frame or audio packet
        assert 1.9 <= end / init.tracks[track_id].timescale <= 2.1
    last = fragments[-1]
    track_id = next(iter(last.tracks))
    end_s = last.decode_time_s(init, track_id) + last.duration_s(init, track_id)
    assert end_s == next_time[track_id] / init.tracks[track_id].timescale


@needs_ffprobe
def test_samples_and_keyframes_agree_with_ffprobe(name):
    init, fragments = fixture_events(name)
    samples = samples_by_track(fragments)
    packets = probed_packets(DATA / f"{name}.mp4")
    for index, track_id in enumerate(init.tracks):
        assert [size for size, _ in samples[track_id]] == [int(p["size"]) for p in packets[index]]
        if init.tracks[track_id].kind == "video":
            assert len(samples[track_id]) == 50
            keyframes = [i for i, p in enumerate(packets[index]) if "K" in p["flags"]]
            assert keyframes == [0, 25]  # -g 25
            # Fragments start on every keyframe here (frag_every_frame, or 5 frames per fragment).
            assert [i for i, (_, sync) in enumerate(samples[track_id]) if sync] == keyframes


@needs_ffprobe
def test_fragment_decode_times_agree_with_ffprobe(name):
    init, fragments = fixture_events(name)
    packets = probed_packets(DATA / f"{name}.mp4")
    for index, track_id in enumerate(init.tracks):
        trafs = [f.tracks[track_id] for f in fragments if track_id in f.tracks]
        first_samples = [sum(t.sample_count for t in trafs[:n]) for n in range(len(trafs))]
        dts = [int(packets[index][i]["dts"]) for i in first_samples]
        # ffprobe shifts every dts by the edit list; differences are what tfdt fixes.
        assert [d - dts[0] for d in dts] == [
            t.base_decode_time - trafs[0].base_decode_time for t in trafs
        ]


def test_video_fragments_that_start_on_a_keyframe():
    _, fragments = fixture_events("video_only_frag_200ms")
    # 200 ms fragments with a 1 s GOP: only every 5th fragment is independent.
    assert [f.tracks[1].first_sample_sync for f in fragments] == [
        True,
        False,
        False,
        False,
        False,
    ] * 2
    assert all(f.tracks[1].composition_offsets_present for f in fragments)  # x264 B-frames


def test_how_ffmpeg_lays_out_tracks_in_moofs():
    """What ffmpeg 5.1 writes: with frag_every_frame only the first moof carries both tracks,
    then each moof holds one packet of one track; 200 ms fragments carry a traf per track;
    +separate_moof alternates one track per moof."""
    layouts = {name: [tuple(f.tracks) for f in fixture_events(name)[1]] for name in FIXTURES}
    every_frame = layouts["av_frag_every_frame"]
    assert every_frame[0] == (1, 2)
    assert set(every_frame[1:]) == {(1,), (2,)}
    assert set(layouts["av_frag_200ms"][:-1]) == {(1, 2)}
    assert layouts["av_frag_200ms"][-1] == (2,)  # the audio that outlasts the last video frame
    assert layouts["av_separate_moof"][:4] == [(1,), (2,), (1,), (2,)]
    sequence_numbers = [f.sequence_number for f in fixture_events("av_separate_moof")[1]]
    assert sequence_numbers == list(range(1, len(sequence_numbers) + 1))


def test_concatenation_is_the_input_without_mfra(name):
    data = fixture_bytes(name)
    init, fragments = fixture_events(name)
    joined = init.data + b"".join(f.data for f in fragments)
    assert init.data[4:8] == b"ftyp"
    assert all(f.data[4:8] == b"moof" for f in fragments)
    # ffmpeg ends the piped file with an mfra box, which is all the reader leaves out.
    assert data[: len(joined)] == joined
    assert data[len(joined) + 4 : len(joined) + 8] == b"mfra"
    assert len(data) - len(joined) == struct.unpack(">I", data[len(joined) : len(joined) + 4])[0]


@needs_ffprobe
def test_ffprobe_reads_the_concatenation(name, tmp_path):
    init, fragments = fixture_events(name)
    path = tmp_path / "joined.mp4"
    path.write_bytes(init.data + b"".join(f.data for f in fragments))
    original = probed_packets(DATA / f"{name}.mp4")
    assert probed_packets(path) == original


# -- hand-built streams ------------------------------------------------------------

SYNC = 0x02000000  # sample_depends_on = 2 (no other sample)
NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
AVCC = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE0, 0x00])  # High, level 3.1, no SPS/PPS
AAC_LC_STEREO = bytes([0x11, 0x90])  # AudioObjectType 2, 48 kHz, channelConfiguration 2


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def descriptor(tag: int, body: bytes, wide: bool = False) -> bytes:
    """An ISO/IEC 14496-1 descriptor; ``wide`` writes the size in 4 bytes, as ffmpeg does."""
    size = bytes([0x80, 0x80, 0x80, len(body)]) if wide else bytes([len(body)])
    return bytes([tag]) + size + body


def esds(
    object_type: int = 0x40, specific: bytes = AAC_LC_STEREO, es_flags: int = 0, wide=False
) -> bytes:
    es_extra = (u16(7) if es_flags & 0x80 else b"") + (b"\x03abc" if es_flags & 0x40 else b"")
    es_extra += u16(9) if es_flags & 0x20 else b""
    decoder = bytes([object_type, 0x15]) + bytes(11)
    if specific:
        decoder += descriptor(0x05, specific, wide)
    body = (
        u16(1)
        + bytes([es_flags])
        + es_extra
        + descriptor(0x04, decoder, wide)
        + descriptor(0x06, b"\x02", wide)
    )
    return full_box(b"esds", 0, 0, descriptor(0x03, body, wide))


def visual_entry(fourcc: bytes, width: int, height: int, *children: bytes) -> bytes:
    return box(
        fourcc,
        bytes(6) + u16(1) + bytes(16) + u16(width) + u16(height) + bytes(50) + b"".join(children),
    )


def audio_entry(
    fourcc: bytes, channels: int, rate: int, *children: bytes, version: int = 0
) -> bytes:
    fields = (
        bytes(6)
        + u16(1)
        + u16(version)
        + bytes(6)
        + u16(channels)
        + u16(16)
        + bytes(4)
        + u32(rate << 16)
    )
    return box(fourcc, fields + bytes(16 if version == 1 else 0) + b"".join(children))


def trak(
    track_id: int, handler: bytes, timescale: int, entry: bytes, tkhd_version: int = 0
) -> bytes:
    times = bytes(8 if tkhd_version == 0 else 16)
    tkhd = full_box(
        b"tkhd",
        tkhd_version,
        3,
        times
        + u32(track_id)
        + bytes(4)
        + bytes(len(times) // 2)
        + bytes(52)
        + u32(640 << 16)
        + u32(360 << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, bytes(8) + u32(timescale) + bytes(8))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4) + handler + bytes(13))
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, u32(1) + entry))
    return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + box(b"minf", stbl)))


VIDEO = trak(1, b"vide", 90000, visual_entry(b"avc1", 1280, 720, box(b"avcC", AVCC)))
AUDIO = trak(2, b"soun", 48000, audio_entry(b"mp4a", 2, 48000, esds()))


def movie(*traks: bytes, trex=((1, 3000, 0, NON_SYNC), (2, 1024, 0, SYNC))) -> bytes:
    """ftyp + moov with a trex (track_ID, duration, size, flags) per entry."""
    trexes = b"".join(
        full_box(b"trex", 0, 0, u32(t) + u32(1) + u32(d) + u32(s) + u32(f)) for t, d, s, f in trex
    )
    return box(b"ftyp", b"iso6" + u32(0) + b"iso6cmfc") + box(
        b"moov", b"".join(traks or (VIDEO,)) + box(b"mvex", trexes)
    )


def trun(
    samples, flags=0x700, data_offset: int | None = 0, first_flags: int | None = None, version=0
) -> bytes:
    """``samples``: (duration, size, flags, composition offset) each; the trun flags choose which
    of them are written."""
    flags |= (0x1 if data_offset is not None else 0) | (0x4 if first_flags is not None else 0)
    body = u32(len(samples))
    body += struct.pack(">i", data_offset) if data_offset is not None else b""
    body += u32(first_flags) if first_flags is not None else b""
    for sample in samples:
        body += b"".join(
            u32(v & 0xFFFFFFFF)
            for bit, v in zip((0x100, 0x200, 0x400, 0x800), sample, strict=False)
            if flags & bit
        )
    return full_box(b"trun", version, flags, body)


def traf(
    track_id: int,
    base_time: int,
    *truns: bytes,
    tfhd_flags=0x20000,
    tfhd_fields=b"",
    tfdt_version=1,
) -> bytes:
    """``tfhd_fields``: the optional tfhd fields its flags announce, in order."""
    tfhd = full_box(b"tfhd", 0, tfhd_flags, u32(track_id) + tfhd_fields)
    time = struct.pack(">Q" if tfdt_version else ">I", base_time)
    return box(b"traf", tfhd + full_box(b"tfdt", tfdt_version, 0, time) + b"".join(truns))


def moof(sequence: int, *trafs: bytes) -> bytes:
    return box(b"moof", full_box(b"mfhd", 0, 0, u32(sequence)) + b"".join(trafs))


def fragment(sequence: int, tracks: dict[int, tuple[int, list[tuple[int, int, int]]]]) -> bytes:
    """moof + mdat, one trun per track: (base time, [(duration, size, flags)]), data in order."""

    def build(first_offset: int) -> bytes:
        trafs, offset = [], first_offset
        for track_id, (base_time, samples) in tracks.items():
            trafs.append(
                traf(track_id, base_time, trun([(*s, 0) for s in samples], data_offset=offset))
            )
            offset += sum(size for _, size, _ in samples)
        return moof(sequence, *trafs)

    moof_size = len(build(0))
    payload = bytes(sum(size for _, samples in tracks.values() for _, size, _ in samples))
    return build(moof_size + 8) + box(b"mdat", payload)


AV_FRAGMENT = {1: (0, [(3000, 100, SYNC), (3000, 50, NON_SYNC)]), 2: (0, [(1024, 20, SYNC)] * 3)}


def test_box_writer():
    assert box(b"free", b"abc") == b"\x00\x00\x00\x0bfreeabc"
    assert (
        full_box(b"mfhd", 1, 0x020304, u32(7))
        == b"\x00\x00\x00\x10mfhd\x01\x02\x03\x04\x00\x00\x00\x07"
    )
    with pytest.raises(ValueError):
        box(b"toolong", b"")


def test_hand_built_stream():
    data = (
        movie(VIDEO, AUDIO)
        + fragment(1, AV_FRAGMENT)
        + fragment(2, {1: (6000, [(3000, 70, SYNC)])})
    )
    init, first, second = read_all(data)
    assert init.video.codec == "avc1.64001f"
    assert (init.video.width, init.video.height, init.video.timescale) == (1280, 720, 90000)
    assert (init.audio.codec, init.audio.sample_rate, init.audio.channels) == (
        "mp4a.40.2",
        48000,
        2,
    )
    assert (init.video.default_sample_duration, init.audio.default_sample_duration) == (3000, 1024)
    video, audio = first.tracks[1], first.tracks[2]
    assert (video.sample_count, video.duration, video.sample_sizes, video.first_sample_sync) == (
        2,
        6000,
        (100, 50),
        True,
    )
    assert (audio.sample_count, audio.duration, audio.sample_sizes) == (3, 3072, (20, 20, 20))
    assert not video.composition_offsets_present
    assert first.decode_time_s(init, 2) == 0 and first.duration_s(init, 2) == 3072 / 48000
    assert (
        second.sequence_number,
        second.tracks[1].base_decode_time,
        second.decode_time_s(init, 1),
    ) == (2, 6000, 6000 / 90000)


def test_sample_values_fall_back_from_trun_to_tfhd_to_trex():
    def one_traf(tfhd_flags, defaults, trun_flags, samples, first_flags=None):
        fields = b"".join(map(u32, defaults))
        probe = moof(
            1,
            traf(
                1,
                0,
                trun(samples, trun_flags, 0, first_flags),
                tfhd_flags=tfhd_flags,
                tfhd_fields=fields,
            ),
        )
        # point data_offset (from the moof start) past the moof and the mdat header
        body = moof(
            1,
            traf(
                1,
                0,
                trun(samples, trun_flags, len(probe) + 8, first_flags),
                tfhd_flags=tfhd_flags,
                tfhd_fields=fields,
            ),
        )
        return movie(trex=((1, 3000, 10, NON_SYNC),)) + body + box(b"mdat", bytes(1000))

    # Nothing per sample, nothing in tfhd: all from trex (non-sync).
    (_, frag) = read_all(one_traf(0x20000, (), 0, [()] * 4))
    assert (
        frag.tracks[1].duration,
        frag.tracks[1].sample_sizes,
        frag.tracks[1].first_sample_sync,
    ) == (12000, (10,) * 4, False)
    # tfhd defaults (duration, size, flags) beat trex.
    (_, frag) = read_all(one_traf(0x20038, (1500, 20, SYNC), 0, [()] * 2))
    assert (
        frag.tracks[1].duration,
        frag.tracks[1].sample_sizes,
        frag.tracks[1].first_sample_sync,
    ) == (3000, (20, 20), True)
    # first_sample_flags beats the defaults for the first sample only.
    (_, frag) = read_all(one_traf(0x20000, (), 0, [()] * 2, first_flags=SYNC))
    assert frag.tracks[1].first_sample_sync
    # per-sample values beat everything; composition offsets are noticed.
    (_, frag) = read_all(
        one_traf(0x20038, (1500, 20, SYNC), 0xF00, [(1, 2, NON_SYNC, -1), (3, 4, SYNC, 5)])
    )
    got = frag.tracks[1]
    assert (
        got.duration,
        got.sample_sizes,
        got.first_sample_sync,
        got.composition_offsets_present,
    ) == (4, (2, 4), False, True)


@pytest.mark.parametrize(
    "flags, sync",
    [
        (0, True),  # nothing known: sync unless told otherwise
        (SYNC, True),
        (NON_SYNC, False),
        (0x00010000, False),  # non-sync bit alone
        (0x01000000, False),  # depends on others, bit clear: still not a sync sample
        (0x02010000, False),  # independent but flagged non-sync (an open-GOP I frame)
        (0x0200FFFF, True),  # degradation priority is irrelevant
    ],
)
def test_is_sync_sample(flags, sync):
    assert is_sync_sample(flags) is sync


def test_runs_without_data_offset_follow_each_other_and_trafs_share_a_base():
    # No base flags in tfhd: the first traf's base is the moof, the next traf's the end of the
    # previous traf's data; a trun without data_offset follows the previous trun.
    def build(offset):
        first = traf(
            1,
            0,
            trun([(3000, 100, SYNC, 0)], data_offset=offset),
            trun([(3000, 50, NON_SYNC, 0)], data_offset=None),
            tfhd_flags=0,
        )
        second = traf(2, 0, trun([(1024, 30, SYNC, 0)], data_offset=0), tfhd_flags=0)
        return moof(1, first, second)

    frag_moof = build(len(build(0)) + 8)
    data = movie(VIDEO, AUDIO) + frag_moof + box(b"mdat", bytes(180))
    _, frag = read_all(data)
    assert (frag.tracks[1].sample_sizes, frag.tracks[2].sample_sizes) == ((100, 50), (30,))
    # One byte less of mdat and the audio run no longer fits.
    with pytest.raises(FMP4Error, match="not inside an mdat"):
        read_all(movie(VIDEO, AUDIO) + frag_moof + box(b"mdat", bytes(179)))


def test_explicit_base_data_offset_counts_from_the_ftyp_of_its_file():
    def second_file(mdat_size):
        head = movie(VIDEO)
        probe = moof(
            1, traf(1, 0, trun([(3000, 40, SYNC, 0)]), tfhd_flags=0x1, tfhd_fields=bytes(8))
        )
        base = len(head) + len(probe) + 8  # where the mdat payload starts, from this file's ftyp
        body = moof(
            1,
            traf(
                1,
                0,
                trun([(3000, 40, SYNC, 0)]),
                tfhd_flags=0x1,
                tfhd_fields=struct.pack(">Q", base),
            ),
        )
        return head + body + box(b"mdat", bytes(mdat_size))

    first_file = movie(VIDEO, AUDIO) + fragment(1, AV_FRAGMENT)
    events = read_all(first_file + second_file(40))
    assert [type(e).__name__ for e in events] == [
        "InitSegment",
        "Fragment",
        "InitSegment",
        "Fragment",
    ]
    assert list(events[2].tracks) == [1]
    assert events[3].tracks[1].sample_sizes == (40,)
    with pytest.raises(FMP4Error, match="not inside an mdat"):
        read_all(first_file + second_file(39))


def test_sample_data_spread_over_two_mdats():
    def build(offset):
        return moof(
            1,
            traf(
                1,
                0,
                trun([(3000, 10, SYNC, 0)], data_offset=offset),
                trun([(3000, 20, NON_SYNC, 0)], data_offset=offset + 18),
            ),
        )

    body = build(len(build(0)) + 8)
    head = movie()
    reader = FMP4Reader()
    assert len(reader.feed(head + body + box(b"mdat", bytes(10)))) == 1  # the init segment only
    (frag,) = reader.feed(box(b"mdat", bytes(20)))
    assert frag.data == body + box(b"mdat", bytes(10)) + box(b"mdat", bytes(20))
    assert reader.buffered_bytes == 0


def test_side_boxes_lead_the_next_fragment_and_mfra_is_dropped():
    side = (
        box(b"styp", b"msdh" + u32(0))
        + box(b"sidx", bytes(24))
        + box(b"prft", bytes(16))
        + box(b"emsg", bytes(8))
    )
    frag = fragment(1, AV_FRAGMENT)
    between = box(b"free", b"x")  # a box between moof and mdat stays in the fragment
    moof_size = struct.unpack(">I", frag[:4])[0]
    mfra = box(b"mfra", full_box(b"mfro", 0, 0, u32(16)))
    data = movie(VIDEO, AUDIO) + side + frag + mfra + box(b"free", b"dropped at the end")
    init, got = read_all(data)
    assert got.data == side + frag
    assert read_all(movie(VIDEO, AUDIO) + fragment(1, AV_FRAGMENT) + side + mfra) == [
        init,
        Fragment(frag, 1, got.tracks),
    ]
    # A box between moof and mdat is part of the fragment (its offsets shift accordingly).
    moved = _shift_data_offsets(frag[:moof_size], len(between))
    (_, got) = read_all(movie(VIDEO, AUDIO) + moved + between + frag[moof_size:])
    assert got.data == moved + between + frag[moof_size:]


def _shift_data_offsets(moof_bytes: bytes, delta: int) -> bytes:
    """The moof with every trun data_offset (flag 0x1) moved by ``delta``."""
    out = bytearray(moof_bytes)
    pos = 0
    while (pos := out.find(b"trun", pos + 1)) != -1:
        if out[pos + 7] & 0x1:
            offset = struct.unpack_from(">i", out, pos + 12)[0]
            struct.pack_into(">i", out, pos + 12, offset + delta)
    return bytes(out)


def test_largesize_boxes():
    frag = fragment(1, AV_FRAGMENT)
    moof_size = struct.unpack(">I", frag[:4])[0]
    payload = frag[moof_size + 8 :]
    large_mdat = u32(1) + b"mdat" + struct.pack(">Q", len(payload) + 16) + payload
    large_free = u32(1) + b"free" + struct.pack(">Q", 16 + 3) + b"abc"
    data = movie(VIDEO, AUDIO) + large_free + _shift_data_offsets(frag[:moof_size], 8) + large_mdat
    _, got = read_all(data, [5])
    assert got.data == data[-len(got.data) :]
    assert got.data.startswith(large_free)
    assert got.tracks[1].sample_sizes == (100, 50)


def test_a_uuid_side_box():
    uuid_box = u32(8 + 16 + 2) + b"uuid" + bytes(range(16)) + b"hi"
    (_, got) = read_all(movie() + uuid_box + fragment(1, {1: (0, [(3000, 5, SYNC)])}))
    assert got.data.startswith(uuid_box)


def test_fragment_is_emitted_as_soon_as_its_mdat_is_complete():
    reader = FMP4Reader()
    frag = fragment(1, AV_FRAGMENT)
    assert [type(e) for e in reader.feed(movie(VIDEO, AUDIO))] == [InitSegment]
    assert reader.feed(frag[:-1]) == []
    assert reader.buffered_bytes == len(frag) - 1
    (got,) = reader.feed(frag[-1:])
    assert got.data == frag and reader.buffered_bytes == 0


def test_end():
    reader = FMP4Reader()
    reader.feed(b"")
    reader.end()  # an empty stream is a complete one
    head = movie()
    frag = fragment(1, {1: (0, [(3000, 5, SYNC)])})
    cases = {
        head[:5]: "inside a box header",
        head[:40]: "inside box 'moov'",
        head[: struct.unpack(">I", head[:4])[0]]: "after ftyp, before moov",
        head + frag[: struct.unpack(">I", frag[:4])[0]]: "before the sample data",
        head + frag + box(b"mfra", b"")[:6]: "inside a box header",
    }
    for data, message in cases.items():
        reader = FMP4Reader()
        reader.feed(data)
        with pytest.raises(FMP4Error, match=message):
            reader.end()


def _traf(track_id: int) -> bytes:
    return traf(track_id, 0, trun([(1, 1, SYNC, 0)]))  # data_offset 0: the moof itself


@pytest.mark.parametrize(
    "data, message",
    [
        (box(b"moov", b""), "starts with box 'moov', not ftyp"),
        (box(b"ftyp", b"") + box(b"moof", b""), "'moof' before moov"),
        (movie() + box(b"mdat", b""), "'mdat' without a moof"),
        (movie() + box(b"moov", b""), "'moov' without a ftyp"),
        (movie() + box(b"free", b"") + moof(1, _traf(7)), "tfhd: track_ID 7 is not in the moov"),
        (
            movie(VIDEO, AUDIO, trex=((1, 0, 0, 0),)) + moof(1, _traf(2)),
            "track_ID 2, which has no trex",
        ),
        (movie() + moof(1, box(b"traf", full_box(b"tfhd", 0, 0, u32(1)))), "no tfdt"),
        (movie() + box(b"moof", b""), "moof: no mfhd"),
        (movie() + moof(1, _traf(1), _traf(1)), "two trafs for track_ID 1"),
        (
            movie() + moof(1, traf(1, 0, full_box(b"trun", 0, 0x100, u32(2) + u32(1)))),
            "trun .*sample_count 2 overruns",
        ),
        (
            movie() + moof(1, traf(1, 0, full_box(b"trun", 0, 0, u32(1 << 21)))),
            r"sample_count 2097152 exceeds",
        ),
        (
            movie() + moof(1, traf(1, 0, full_box(b"trun", 2, 0, u32(0)))),
            "trun .*unsupported version 2",
        ),
        (
            movie() + moof(1, traf(1, 0, tfdt_version=0)) + fragment(2, AV_FRAGMENT),
            "'moof' before all sample data",
        ),
        (movie() + moof(1, _traf(1)) + box(b"mdat", bytes(8)), "not inside an mdat"),
        (movie() + box(b"moof", box(b"mfhd", b"")), "mfhd: truncated at version/flags"),
        (
            movie() + box(b"moof", box(b"traf", b"\x00\x00\x00\x09tfhd")),
            "traf/tfhd: box size 9 overruns",
        ),
        (box(b"ftyp", b"") + box(b"moov", b""), "moov: no trak"),
        (box(b"ftyp", b"") + box(b"moov", VIDEO + VIDEO), "two traks with track_ID 1"),
        (box(b"ftyp", b"") + box(b"moov", trak(0, b"vide", 1, b"")), "tkhd: track_ID 0"),
        (box(b"ftyp", b"") + box(b"moov", trak(1, b"vide", 0, b"")), "mdhd: timescale 0"),
        (
            box(b"ftyp", b"") + box(b"moov", trak(1, b"vide", 1, visual_entry(b"avc1", 1, 1))),
            "avc1 sample entry: no avcC",
        ),
        (
            box(b"ftyp", b"")
            + box(
                b"moov", trak(1, b"vide", 1, visual_entry(b"hev1", 1, 1, box(b"hvcC", bytes(12))))
            ),
            "hvcC: truncated at general_level_idc",
        ),
        (
            box(b"ftyp", b"")
            + box(b"moov", trak(1, b"soun", 1, audio_entry(b"mp4a", 2, 1, esds(), version=2))),
            "unsupported audio sample entry version 2",
        ),
        (
            box(b"ftyp", b"")
            + box(
                b"moov",
                trak(
                    1, b"soun", 1, audio_entry(b"mp4a", 2, 1, full_box(b"esds", 0, 0, b"\x04\x00"))
                ),
            ),
            "esds: no ES_Descriptor",
        ),
        (box(b"ftyp", b"") + box(b"moov", box(b"trak", b"")), "trak: no tkhd"),
        (
            box(b"ftyp", b"") + box(b"moov", trak(1, b"vide", 1, b"", tkhd_version=3)),
            "tkhd: unsupported version 3",
        ),
        (box(b"ftyp", b"") + box(b"ftyp", b""), "'ftyp' before moov"),
        (b"\x00\x00\x00\x00ftyp", "size 0"),
        (b"\x00\x00\x00\x07ftyp", "declares size 7"),
        (b"\x00\x00\x00\x01ftyp" + struct.pack(">Q", 15), "declares size 15"),
        (b"\x00\x00\x00\x10uuid" + bytes(16), "declares size 16, smaller than its 24-byte header"),
    ],
)
def test_malformed_input_names_the_box(data, message):
    with pytest.raises(FMP4Error, match=message):
        read_all(data)


def test_box_sizes_are_checked_before_buffering():
    reader = FMP4Reader(max_box_size=1000, max_buffered=1500)
    reader.feed(movie())
    with pytest.raises(FMP4Error, match="'mdat' size 1001 exceeds max_box_size 1000"):
        FMP4Reader(max_box_size=1000).feed(movie() + moof(1, _traf(1)) + u32(1001) + b"mdat")
    with pytest.raises(FMP4Error, match="size 9223372036854775808 exceeds max_box_size"):
        FMP4Reader().feed(u32(1) + b"ftyp" + struct.pack(">Q", 2**63))
    # Two boxes of a fragment that fit max_box_size each but not max_buffered together.
    side = box(b"free", bytes(900))
    with pytest.raises(FMP4Error, match="'free' would grow the fragment past max_buffered 1500"):
        reader.feed(side + u32(900) + b"free")


def test_a_big_fragment_in_small_pieces_takes_linear_time():
    """A 3 Mbps stream passes through in 4 KiB reads: 16 MiB in one mdat must not be copied
    over and over as it arrives."""
    size = 16 * 1024 * 1024
    frag = fragment(1, {1: (0, [(3000, size, SYNC)])})
    data = movie() + frag
    reader = FMP4Reader()
    started = time.perf_counter()
    events = []
    for pos in range(0, len(data), 4096):
        events += reader.feed(data[pos : pos + 4096])
    elapsed = time.perf_counter() - started
    assert len(events) == 2 and events[1].data == frag
    assert elapsed < 5, f"{elapsed:.1f} s for 16 MiB"


# -- codec strings -----------------------------------------------------------------


def hvcc(
    space=0, tier=0, idc=1, compatibility=0x60000000, constraints=b"\x90" + bytes(5), level=93
) -> bytes:
    return (
        bytes([1, space << 6 | tier << 5 | idc])
        + u32(compatibility)
        + constraints
        + bytes([level])
        + bytes(10)
    )


@pytest.mark.parametrize(
    "entry, config, codec",
    [
        ("hvc1", hvcc(), "hvc1.1.6.L93.90"),
        ("hev1", hvcc(constraints=b"\xb0" + bytes(5)), "hev1.1.6.L93.B0"),
        ("hvc1", hvcc(idc=2, compatibility=0x20000000, level=120), "hvc1.2.4.L120.90"),
        # ISO/IEC 14496-15 E.3's example: profile space 1, flags 0 and 6, high tier, 2 constraints
        (
            "hev1",
            hvcc(
                space=1,
                tier=1,
                idc=4,
                compatibility=0x82000000,
                constraints=b"\xb0\x23" + bytes(4),
                level=120,
            ),
            "hev1.A4.41.H120.B0.23",
        ),
        ("hvc1", hvcc(constraints=bytes(6)), "hvc1.1.6.L93"),
        ("hvc1", hvcc(constraints=b"\x00\x00\x00\x00\x00\x01"), "hvc1.1.6.L93.00.00.00.00.00.01"),
    ],
)
def test_hevc_codec(entry, config, codec):
    assert hevc_codec(entry, config) == codec


def test_avc_codec():
    assert avc_codec("avc1", AVCC) == "avc1.64001f"
    assert avc_codec("avc3", bytes([1, 0x42, 0xE0, 0x1E])) == "avc3.42e01e"


@pytest.mark.parametrize(
    "config, codec",
    [
        (esds(), "mp4a.40.2"),
        (
            esds(wide=True, es_flags=0xE0),
            "mp4a.40.2",
        ),  # 4-byte sizes; dependsOn, URL and OCR fields
        (esds(specific=bytes([0x2B, 0x11, 0x88])), "mp4a.40.5"),  # HE-AAC
        (
            esds(specific=bytes([0xF9, 0x46, 0x40])),
            "mp4a.40.42",
        ),  # escaped object type 32 + 10 (USAC)
        (esds(specific=b""), "mp4a.40"),
        (esds(object_type=0x6B, specific=b""), "mp4a.6B"),  # MP3
        (esds(object_type=0x69, specific=b""), "mp4a.69"),
    ],
)
def test_mp4a_codec(config, codec):
    assert mp4a_codec(config[8:]) == codec


@pytest.mark.parametrize(
    "entry, codec, channels",
    [
        (
            audio_entry(b"mp4a", 2, 48000, esds(specific=bytes([0x11, 0xB0]))),
            "mp4a.40.2",
            6,
        ),  # config 6 beats the entry's 2
        (
            audio_entry(b"mp4a", 2, 48000, esds(specific=bytes([0x11, 0x80]))),
            "mp4a.40.2",
            2,
        ),  # config 0: the entry says
        (
            audio_entry(b"mp4a", 1, 48000, box(b"wave", esds()), version=1),
            "mp4a.40.2",
            2,
        ),  # QuickTime v1
        (audio_entry(b"Opus", 2, 48000, box(b"dOps", bytes([0, 1]) + bytes(9))), "opus", 1),
        (audio_entry(b"ac-3", 2, 48000, box(b"dac3", bytes(3))), "ac-3", 2),
    ],
)
def test_audio_sample_entries(entry, codec, channels):
    (init,) = read_all(box(b"ftyp", b"") + box(b"moov", trak(1, b"soun", 48000, entry)))
    assert (init.audio.codec, init.audio.channels, init.audio.sample_rate) == (
        codec,
        channels,
        48000,
    )
    assert init.video is None


def test_other_handlers_and_unknown_entries():
    subtitles = trak(3, b"subt", 1000, box(b"stpp", bytes(8)))
    # av1C: marker/version, profile 0 level 4 (4.0), tier Main, 8 bits.
    av1 = trak(1, b"vide", 90000, visual_entry(b"av01", 0, 0, box(b"av1C", b"\x81\x04\x0c\x00")))
    (init,) = read_all(
        box(b"ftyp", b"")
        + box(
            b"moov",
            av1
            + subtitles
            + trak(
                2, b"vide", 90000, visual_entry(b"avc1", 2, 2, box(b"avcC", AVCC)), tkhd_version=1
            ),
        )
    )
    assert (init.tracks[3].kind, init.tracks[3].codec, init.tracks[3].width) == (
        "subt",
        "stpp",
        None,
    )
    # An entry without a size falls back to tkhd's display size.
    assert (init.video.codec, init.video.width, init.video.height) == ("av01.0.04M.08", 640, 360)
    assert (init.tracks[2].width, init.tracks[2].height) == (2, 2)
