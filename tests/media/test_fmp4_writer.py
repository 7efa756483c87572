"""The fMP4 writer against real media: Debian's ffmpeg encodes H.264+AAC (as FLV, read with
daemons/media/flv.py, B-frames on), HEVC (libx265) and AV1 (libsvtav1, libaom-av1) as MP4 (their
configuration records and samples taken out here, as an Enhanced RTMP publisher would send
them: ffmpeg 5.1 cannot write Enhanced FLV) and Opus as Ogg (its OpusHead, what Enhanced RTMP's
Opus sequence start carries). Each is fed to the writer; then

* every value it gives is what FMP4Reader reads back from its bytes (the packager's inputs
  with no parse round trip);
* ffprobe reads the whole file: codec, size, frames decoded, duration, and every packet's
  pts/dts exactly the input timestamps (composition offsets included);
* codec strings and picture sizes match what ffmpeg's own mp4 muxer writes, and ffprobe's
  profile and level; Chromium's MediaSource takes the AVC and AV1 strings and plays the files;
* garbage (hypothesis) — records, frames, timestamps, samples — is an FMP4Error or
  CodecConfigError naming it, never another exception and never a box the reader reads back
  differently.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.media import flv
from daemons.media.fmp4 import (
    AudioConfig,
    CodecConfigError,
    FMP4Error,
    FMP4Reader,
    FMP4Writer,
    Fragment,
    InitSegment,
    Remuxer,
    Sample,
    VideoConfig,
    VideoTiming,
    parse_audio_config,
    parse_video_config,
)
from daemons.media.fmp4.boxes import iter_children
from daemons.media.fmp4.codecs import av1_codec, hevc_codec
from daemons.media.fmp4.records import (
    aac_frame_samples,
    opus_packet_samples,
    parse_av1_sequence_header,
    parse_hevc_sps,
)
from daemons.media.packager import PackagerConfig, RenditionPackager, Write

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed (run .ci/bootstrap --test)",
)

SIZE = "320x180"  # 180 is no multiple of 16 (or 8): SPS cropping and conformance windows count
WIDTH, HEIGHT = 320, 180
FPS = 30
SECONDS = 2
FRAMES = FPS * SECONDS
TICKS_PER_MS = 90  # the writer's 90 kHz video timescale
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
H264_PROFILES = {"Baseline": 0x42, "Constrained Baseline": 0x42, "Main": 0x4D, "High": 0x64}
HEVC_PROFILES = {"Main": 1, "Main 10": 2}
AV1_PROFILES = {"Main": 0, "High": 1, "Professional": 2}


# -- inputs: real encodes, taken apart as RTMP would carry them ----------------------------


@dataclass(frozen=True)
class VideoFrame:
    timestamp_ms: int  # DTS, as FLV's tag timestamp
    composition_ms: int  # PTS - DTS
    keyframe: bool
    data: bytes


@dataclass(frozen=True)
class AudioFrame:
    timestamp_ms: int
    data: bytes


@dataclass(frozen=True)
class Media:
    name: str
    video: VideoConfig | None
    audio: AudioConfig | None
    video_frames: tuple[VideoFrame, ...]
    audio_frames: tuple[AudioFrame, ...]
    source: Path  # the file ffmpeg wrote


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=120,
    )


def ffprobe_json(path: Path, *args: str) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout)


def packets(path: Path, stream: str) -> list[dict]:
    probed = ffprobe_json(
        path, "-select_streams", stream, "-show_entries", "packet=pts,dts,flags,pos,size"
    )
    return probed["packets"]


def flv_media(path: Path) -> Media:
    """H.264/AAC from an FLV file, through daemons/media/flv.py's reader and tag headers."""
    video = audio = None
    video_frames, audio_frames = [], []
    for tag in flv.FLVReader().feed(path.read_bytes()):
        if tag.type == flv.TAG_VIDEO:
            header = flv.parse_video_tag(tag.body)
            payload = tag.body[header.data_offset :]
            if header.is_sequence_header:
                video = parse_video_config("avc1", payload)
            elif header.packet_type == 1:  # coded frames
                video_frames.append(
                    VideoFrame(tag.timestamp, header.composition_time, header.is_keyframe, payload)
                )
        elif tag.type == flv.TAG_AUDIO:
            header = flv.parse_audio_tag(tag.body)
            payload = tag.body[header.data_offset :]
            if header.is_sequence_header:
                audio = parse_audio_config("mp4a", payload)
            else:
                audio_frames.append(AudioFrame(tag.timestamp, payload))
    return Media(path.stem, video, audio, tuple(video_frames), tuple(audio_frames), path)


def _child(data: bytes, start: int, end: int, box_type: bytes):
    return next(h for h in iter_children(data, start, end, "test") if h.type == box_type)


def sample_entry_box(data: bytes, config_type: bytes, entry_header: int) -> bytes:
    """The payload of ``config_type`` in the first track's sample entry of an MP4 file."""
    box = _child(data, 0, len(data), b"moov")
    for box_type in (b"trak", b"mdia", b"minf", b"stbl", b"stsd"):
        box = _child(data, box.payload, box.end, box_type)
    entry = next(iter_children(data, box.payload + 8, box.end, "stsd"))
    config = _child(data, entry.payload + entry_header, entry.end, config_type)
    return data[config.payload : config.end]


def mp4_video_media(path: Path, fourcc: str) -> Media:
    """HEVC or AV1 from an ffmpeg MP4 (video timescale 1000: FLV's milliseconds): the sample
    entry's configuration record, and each sample's bytes at the offsets ffprobe gives."""
    data = path.read_bytes()
    config_box = {"hvc1": b"hvcC", "av01": b"av1C"}[fourcc]
    config = parse_video_config(fourcc, sample_entry_box(data, config_box, 78))
    probed = packets(path, "v:0")
    first_dts = min(p["dts"] for p in probed)  # B-frames: ffmpeg starts dts below 0
    frames = tuple(
        VideoFrame(
            p["dts"] - first_dts,
            p["pts"] - p["dts"],
            "K" in p["flags"],
            data[int(p["pos"]) : int(p["pos"]) + int(p["size"])],
        )
        for p in probed
    )
    return Media(path.stem, config, None, frames, (), path)


def ogg_packets(data: bytes) -> list[bytes]:
    """The packets of an Ogg stream (one logical stream), from the pages' lacing values."""
    found, partial, pos = [], b"", 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + segments]
        pos += 27 + segments
        for size in lacing:
            partial += data[pos : pos + size]
            pos += size
            if size < 255:
                found.append(partial)
                partial = b""
    return found


def opus_media(path: Path) -> Media:
    """Opus from Ogg: the OpusHead (Enhanced RTMP's Opus sequence start), then the packets with
    ffprobe's timestamps in ms."""
    head, _tags, *audio = ogg_packets(path.read_bytes())
    probed = ffprobe_json(path, "-show_entries", "packet=pts,size")["packets"]
    assert [int(p["size"]) for p in probed] == [len(a) for a in audio]
    first = probed[0]["pts"]
    frames = tuple(
        AudioFrame(round((p["pts"] - first) / 48), data) for p, data in zip(probed, audio, strict=True)
    )
    return Media(path.stem, None, parse_audio_config("Opus", head), (), frames, path)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fmp4_writer")


LAVFI_VIDEO = ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}"]
MP4_MS = ["-video_track_timescale", "1000", "-movflags", "+faststart"]


@pytest.fixture(scope="module")
def avc(work: Path) -> Media:
    path = work / "avc_aac.flv"
    ffmpeg(
        *LAVFI_VIDEO, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", str(FPS),
        "-threads", "1", "-c:a", "aac", "-ac", "2", "-f", "flv", str(path),
    )
    return flv_media(path)


@pytest.fixture(scope="module")
def hevc(work: Path) -> Media:
    path = work / "hevc.mp4"
    ffmpeg(
        *LAVFI_VIDEO, "-t", str(SECONDS), "-c:v", "libx265", "-preset", "veryfast",
        "-g", str(FPS), "-tag:v", "hvc1",
        "-x265-params", "log-level=error:pools=1:frame-threads=1:bframes=3", *MP4_MS, str(path),
    )
    return mp4_video_media(path, "hvc1")


@pytest.fixture(scope="module")
def av1_svt(work: Path) -> Media:
    path = work / "av1_svt.mp4"
    ffmpeg(
        *LAVFI_VIDEO, "-t", str(SECONDS), "-c:v", "libsvtav1", "-preset", "12", "-g", str(FPS),
        "-svtav1-params", "lp=1", *MP4_MS, str(path),
    )
    return mp4_video_media(path, "av01")


@pytest.fixture(scope="module")
def av1_aom(work: Path) -> Media:
    path = work / "av1_aom.mp4"
    ffmpeg(
        *LAVFI_VIDEO, "-t", str(SECONDS), "-c:v", "libaom-av1", "-usage", "realtime",
        "-cpu-used", "8", "-threads", "1", "-g", str(FPS), *MP4_MS, str(path),
    )
    return mp4_video_media(path, "av01")


@pytest.fixture(scope="module")
def opus(work: Path) -> Media:
    path = work / "opus.ogg"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS),
        "-c:a", "libopus", "-ac", "2", "-f", "ogg", str(path),
    )
    return opus_media(path)


@pytest.fixture(params=["avc", "hevc", "av1_svt", "av1_aom", "opus"])
def media(request) -> Media:
    return request.getfixturevalue(request.param)


# -- writing ---------------------------------------------------------------------


def remux(media: Media, *, hold: bool = False) -> list[InitSegment | Fragment]:
    """Every value the writer gives for ``media``, frames interleaved in timestamp order as an
    RTMP session would deliver them."""
    remuxer = Remuxer(media.video, media.audio, hold_video=hold)
    events: list[InitSegment | Fragment] = [remuxer.init]
    timeline = sorted(
        [(f.timestamp_ms, 0, i) for i, f in enumerate(media.video_frames)]
        + [(f.timestamp_ms, 1, i) for i, f in enumerate(media.audio_frames)]
    )
    for _, kind, index in timeline:
        if kind == 0:
            f = media.video_frames[index]
            events += remuxer.video(f.timestamp_ms, f.composition_ms, f.keyframe, f.data)
        else:
            f = media.audio_frames[index]
            events += remuxer.audio(f.timestamp_ms, f.data)
    return events + remuxer.flush()


def read_back(events: list[InitSegment | Fragment]) -> list[InitSegment | Fragment]:
    reader = FMP4Reader()
    found = reader.feed(b"".join(e.data for e in events))
    reader.end()
    return found


def write_file(path: Path, events: list[InitSegment | Fragment]) -> Path:
    path.write_bytes(b"".join(e.data for e in events))
    return path


def video_samples(events) -> list[tuple[int, int]]:
    """(base decode time, duration) of every video fragment."""
    init = events[0]
    video = init.video.track_id
    return [
        (e.tracks[video].base_decode_time, e.tracks[video].duration)
        for e in events[1:]
        if video in e.tracks
    ]


# -- round trips and ffprobe -------------------------------------------------------


@pytest.mark.parametrize("hold", [False, True], ids=["immediate", "hold"])
def test_every_value_is_what_the_reader_reads_back(media, hold):
    events = remux(media, hold=hold)
    assert read_back(events) == events
    assert len(events) == 1 + len(media.video_frames) + len(media.audio_frames)
    # Each value alone, after its init, reads back the same too.
    init = events[0]
    for event in events[1:]:
        assert FMP4Reader().feed(init.data + event.data) == [init, event]
    sequence = [e.sequence_number for e in events[1:]]
    assert sequence == list(range(1, len(sequence) + 1))


@pytest.mark.parametrize("hold", [False, True], ids=["immediate", "hold"])
def test_ffprobe_reads_the_file_with_the_input_timestamps(media, hold, tmp_path):
    events = remux(media, hold=hold)
    path = write_file(tmp_path / f"{media.name}.mp4", events)
    probed = ffprobe_json(
        path, "-count_frames", "-show_entries",
        "stream=codec_name,codec_tag_string,width,height,nb_read_frames,sample_rate,channels"
        ":format=duration",
    )
    streams = probed["streams"]
    if media.video is not None:
        video = streams[0]
        assert video["codec_tag_string"] == media.video.fourcc
        assert video["codec_name"] == {"avc1": "h264", "hvc1": "hevc", "av01": "av1"}[
            media.video.fourcc
        ]
        assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
        assert int(video["nb_read_frames"]) == len(media.video_frames) == FRAMES
        probed_video = packets(path, "v:0")
        assert [(p["dts"], p["pts"]) for p in probed_video] == [
            (TICKS_PER_MS * f.timestamp_ms, TICKS_PER_MS * (f.timestamp_ms + f.composition_ms))
            for f in media.video_frames
        ]
        assert [p["flags"].startswith("K") for p in probed_video] == [
            f.keyframe for f in media.video_frames
        ]
    if media.audio is not None:
        audio = streams[-1]
        assert audio["codec_name"] == {"mp4a": "aac", "Opus": "opus"}[media.audio.fourcc]
        assert (int(audio["sample_rate"]), audio["channels"]) == (48000, 2)
        probed_audio = packets(path, "a:0")
        assert len(probed_audio) == len(media.audio_frames)
        # Decode times count samples from the first frame: within FLV's 1 ms rounding of the input.
        for p, f in zip(probed_audio, media.audio_frames, strict=True):
            assert abs(p["dts"] / 48 - f.timestamp_ms) <= 1
    assert float(probed["format"]["duration"]) == pytest.approx(SECONDS, abs=0.1)


def test_b_frames_and_their_composition_offsets_are_in_the_avc_input(avc, hevc):
    for media in (avc, hevc):
        offsets = [f.composition_ms for f in media.video_frames]
        assert len(set(offsets)) > 2, "the encode should have B-frames"
        pts = [f.timestamp_ms + f.composition_ms for f in media.video_frames]
        assert pts != sorted(pts)


def test_immediate_timestamps_are_exact_and_durations_estimated_hold_durations_exact(avc):
    timestamps = [TICKS_PER_MS * f.timestamp_ms for f in avc.video_frames]
    intervals = [b - a for a, b in pairwise(timestamps)]
    immediate = video_samples(remux(avc))
    assert [t for t, _ in immediate] == timestamps
    # 30 fps in FLV's ms: 33 and 34 ms intervals; each estimate is within a millisecond of the
    # interval it stands for, and their sum keeps to the timestamps (the mean of the recent
    # intervals, not one of them: 33 ms each would make the stream 1 % short).
    assert all(abs(d - i) <= TICKS_PER_MS for (_, d), i in zip(immediate[1:], intervals[1:]))
    assert abs(sum(d for _, d in immediate[:-1]) - (timestamps[-1] - timestamps[0])) <= 2 * TICKS_PER_MS
    held = video_samples(remux(avc, hold=True))
    assert [t for t, _ in held] == timestamps
    assert [d for _, d in held[:-1]] == intervals  # each frame lasts until the next one


# -- what ffmpeg's own muxer says about the same streams -----------------------------


def test_codec_strings_and_sizes_match_ffmpeg_mp4_muxer(avc, hevc, av1_svt, av1_aom, tmp_path):
    # AVC/AAC: ffmpeg remuxes the same FLV into fragmented MP4; the reader reads its init.
    remuxed = tmp_path / "ffmpeg.mp4"
    ffmpeg("-i", str(avc.source), "-c", "copy", "-f", "mp4", "-movflags",
           "+frag_keyframe+empty_moov+default_base_moof", str(remuxed))
    theirs = FMP4Reader().feed(remuxed.read_bytes())[0]
    ours = remux(avc)[0]
    for kind in ("video", "audio"):
        mine, ffmpegs = getattr(ours, kind), getattr(theirs, kind)
        assert (mine.codec, mine.width, mine.height, mine.sample_rate, mine.channels) == (
            ffmpegs.codec, ffmpegs.width, ffmpegs.height, ffmpegs.sample_rate, ffmpegs.channels
        )
    # HEVC/AV1: ffmpeg's mp4 muxer wrote the records; its moov, read, says what ours says.
    for media in (hevc, av1_svt, av1_aom):
        data = media.source.read_bytes()
        moov = next(h for h in iter_children(data, 0, len(data), "file") if h.type == b"moov")
        (theirs,) = FMP4Reader().feed(data[: moov.end])
        ours = remux(media)[0]
        assert (ours.video.codec, ours.video.width, ours.video.height) == (
            theirs.video.codec, theirs.video.width, theirs.video.height
        )


def test_codec_strings_agree_with_ffprobe_profile_and_level(media, tmp_path):
    events = remux(media)
    path = write_file(tmp_path / f"{media.name}.mp4", events)
    streams = ffprobe_json(
        path, "-show_entries", "stream=codec_tag_string,profile,level,pix_fmt"
    )["streams"]
    for track, stream in zip(events[0].tracks.values(), streams, strict=True):
        fourcc, *fields = track.codec.split(".")
        assert fourcc == stream["codec_tag_string"].lower()
        if fourcc == "avc1":
            assert int(fields[0][:2], 16) == H264_PROFILES[stream["profile"]]
            assert int(fields[0][4:], 16) == stream["level"]
        elif fourcc == "hvc1":
            assert int(fields[0]) == HEVC_PROFILES[stream["profile"]]
            assert fields[2] == f"L{stream['level']}"
        elif fourcc == "av01":
            profile, level_tier, depth = fields
            assert int(profile) == AV1_PROFILES[stream["profile"]]
            assert int(level_tier[:2]) == stream["level"]  # seq_level_idx: 0 is level 2.0
            assert (level_tier[2], depth, stream["pix_fmt"]) == ("M", "08", "yuv420p")
        elif fourcc == "mp4a":
            assert fields == ["40", "2"] and stream["profile"] == "LC"
        else:
            assert track.codec == "opus"


def test_opus_head_becomes_the_dops_ffmpeg_writes(opus, tmp_path):
    remuxed = tmp_path / "ffmpeg_opus.mp4"
    ffmpeg("-i", str(opus.source), "-c", "copy", str(remuxed))
    assert opus.audio.record == sample_entry_box(remuxed.read_bytes(), b"dOps", 28)
    assert opus.audio.sample_rate == 48000 and opus.audio.channels == 2


def test_record_parsers_give_the_picture_ffprobe_sees(avc, hevc, av1_svt, av1_aom):
    for media in (avc, hevc, av1_svt, av1_aom):
        assert (media.video.width, media.video.height, media.video.bit_depth) == (
            WIDTH, HEIGHT, 8
        )
    assert avc.video.codec.startswith("avc1.64") and avc.video.nal_length_size == 4
    assert hevc.video.codec == hevc_codec("hvc1", hevc.video.record)
    assert hevc.video.codec.startswith("hvc1.1.6.L")
    for media in (av1_svt, av1_aom):
        assert media.video.codec == "av01.0.00M.08"  # level 2.0 (index 0) fits 320x180
        assert media.video.nal_length_size is None
    assert (avc.audio.codec, avc.audio.sample_rate, avc.audio.channels) == ("mp4a.40.2", 48000, 2)
    assert avc.audio.frame_samples == 1024


# -- the packager takes the writer's values as they are ------------------------------------


def test_the_packager_cuts_the_writer_output_into_parts_and_segments(avc):
    config = PackagerConfig(part_target_s=0.2, segment_target_s=1.0)
    packager = RenditionPackager("source", config)
    events = remux(avc)
    writes = packager.on_init(events[0])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for index, fragment in enumerate(events[1:]):
        writes += packager.on_fragment(fragment, now + timedelta(milliseconds=index * 10))
    writes += packager.end()
    assert writes[0].data == events[0].data  # the init, as it is
    segments = packager.segments
    assert len(segments) == SECONDS  # a keyframe each second
    total = sum(float(s.duration) for s in segments)
    assert total == pytest.approx(SECONDS, abs=1 / FPS)
    # Every part is whole fragments: the reader reads each after the init.
    init = events[0]
    for write in writes:
        if isinstance(write, Write) and write.name.endswith(".m4s"):
            read = FMP4Reader().feed(init.data + write.data)
            assert read[0] == init and all(isinstance(f, Fragment) for f in read[1:])


# -- fragments of several samples (one per part) and a new init mid-stream -------------------


def test_one_fragment_per_part_with_exact_durations(avc, tmp_path):
    writer = FMP4Writer([avc.video])
    timing = VideoTiming(hold=True)
    samples = [
        s
        for f in avc.video_frames
        if (s := timing.push(f.timestamp_ms, f.composition_ms, f.keyframe, f.data)) is not None
    ]
    samples.append(timing.flush())
    # Parts of up to 6 frames, each starting a new one at a keyframe (as the packager cuts).
    parts, part = [], []
    for sample in samples:
        if part and (sample.sync or len(part) == 6):
            parts.append(part)
            part = []
        part.append(sample)
    parts.append(part)
    events = [writer.init] + [writer.fragment(1, part) for part in parts]
    assert read_back(events) == events
    assert [f.tracks[1].sample_count for f in events[1:]] == [len(p) for p in parts]
    path = write_file(tmp_path / "parts.mp4", events)
    assert [(p["dts"], p["pts"]) for p in packets(path, "v:0")] == [
        (TICKS_PER_MS * f.timestamp_ms, TICKS_PER_MS * (f.timestamp_ms + f.composition_ms))
        for f in avc.video_frames
    ]
    with pytest.raises(FMP4Error, match="not where the one before it ends"):
        writer.fragment(1, [samples[0], samples[2]])


def test_a_changed_configuration_gives_a_new_init_after_the_held_frame(avc, hevc, tmp_path):
    remuxer = Remuxer(avc.video, avc.audio, hold_video=True)
    events: list[InitSegment | Fragment] = [remuxer.init]
    assert remuxer.configure(avc.video, avc.audio) == []  # a repeated sequence header
    half = FRAMES // 2
    for f in avc.video_frames[:half]:
        events += remuxer.video(f.timestamp_ms, f.composition_ms, f.keyframe, f.data)
    switched = remuxer.configure(hevc.video, avc.audio)
    assert [type(e) for e in switched] == [Fragment, InitSegment]  # the held frame, old init
    events += switched
    offset = avc.video_frames[half - 1].timestamp_ms + 34
    for f in hevc.video_frames:
        events += remuxer.video(offset + f.timestamp_ms, f.composition_ms, f.keyframe, f.data)
    events += remuxer.flush()
    assert read_back(events) == events
    inits = [e for e in events if isinstance(e, InitSegment)]
    assert [i.video.codec[:4] for i in inits] == ["avc1", "hvc1"]
    sequence = [e.sequence_number for e in events if isinstance(e, Fragment)]
    assert sequence == list(range(1, len(sequence) + 1))  # numbering continues across inits
    decode = [t for t, _ in video_samples(events[: events.index(inits[1])])]
    assert decode == [TICKS_PER_MS * f.timestamp_ms for f in avc.video_frames[:half]]


# -- garbage in: a clear error, nothing written, the next good frame goes on ------------------


def test_bad_frames_are_refused_by_name_and_change_nothing(avc, av1_svt, opus):
    remuxer = Remuxer(avc.video, avc.audio)
    first, second = avc.video_frames[:2]
    [fragment] = remuxer.video(first.timestamp_ms, first.composition_ms, True, first.data)
    annex_b = b"\x00\x00\x00\x01\x65" + bytes(40)
    cases = [
        (lambda: remuxer.video(40, 0, False, annex_b), "Annex B"),
        (lambda: remuxer.video(40, 0, False, b""), "empty"),
        (lambda: remuxer.video(first.timestamp_ms, 0, False, second.data), "does not advance"),
        (lambda: remuxer.video(-1, 0, False, second.data), "non-negative"),
        (lambda: remuxer.video(40, 1 << 30, False, second.data), "out of range"),
        (lambda: remuxer.audio(0, b"\xff\xf1\x50\x80\x00"), "ADTS"),
        (lambda: remuxer.audio(0, b""), "empty"),
        (lambda: Remuxer(avc.video).audio(0, b"\x01"), "no audio configuration"),
        (lambda: Remuxer(None, avc.audio).video(0, 0, True, first.data), "no video configuration"),
        (lambda: Remuxer(av1_svt.video).video(0, 0, True, b"\x12\x05\x00"), "does not fit"),
        (lambda: Remuxer(av1_svt.video).video(0, 0, True, b"\x4a\x00"), "reserved type"),
        (lambda: Remuxer(None, opus.audio).audio(0, b"\xfb"), "frame count"),
        (lambda: Remuxer(), "video or an audio"),
    ]
    for call, message in cases:
        with pytest.raises(FMP4Error, match=message):
            call()
    # Nothing moved: the second frame continues as if none of that had come.
    [next_fragment] = remuxer.video(
        second.timestamp_ms, second.composition_ms, second.keyframe, second.data
    )
    assert next_fragment.sequence_number == fragment.sequence_number + 1
    assert next_fragment.tracks[1].base_decode_time == TICKS_PER_MS * second.timestamp_ms


def test_audio_follows_its_samples_and_reanchors_on_a_gap_only(avc):
    remuxer = Remuxer(None, avc.audio)
    frame = avc.audio_frames[0].data
    times = [0, 21, 43, 64, 85, 200, 221, 243]  # AAC 1024 @ 48 kHz = 21.33 ms, then a gap
    starts = [remuxer.audio(t, frame)[0].tracks[1].base_decode_time for t in times]
    assert starts[:5] == [0, 1024, 2048, 3072, 4096]
    assert starts[5] == 200 * 48 and starts[6:] == [200 * 48 + 1024, 200 * 48 + 2048]
    with pytest.raises(FMP4Error, match="behind the audio written"):
        remuxer.audio(230, frame)


@pytest.mark.parametrize(
    ("fourcc", "record", "message"),
    [
        ("avc1", b"\x01\x64", "too short"),
        ("hvc1", bytes(10), "shorter than its 23-byte header"),
        ("hvc1", b"\x02" + bytes(22), "configurationVersion 2"),
        ("av01", b"\x81\x00\x0c\x00", "no sequence header OBU"),
        ("av01", b"\x01\x00\x0c\x00", "marker"),
        ("vp09", b"\x01", "not avc1, hvc1 or av01"),
    ],
)
def test_bad_video_records_say_why(fourcc, record, message):
    with pytest.raises(CodecConfigError, match=message):
        parse_video_config(fourcc, record)


@pytest.mark.parametrize(
    ("fourcc", "record", "message"),
    [
        ("mp4a", b"\x00\x00", "object type 0"),
        # USAC: AOT 31 escapes to 32 + 10, 48 kHz, stereo
        ("mp4a", int("11111" "001010" "0011" "0010" "00000", 2).to_bytes(3, "big"),
         "object type 42 is not supported"),
        ("Opus", b"OpusHead\x01", "shorter than 19"),
        ("Opus", b"OpusTags" + bytes(11), "not b'OpusHead'"),
        ("Opus", b"OpusHead\x01\x03" + bytes(9), "family 0 with 3 channels"),
        ("fLaC", b"", "not mp4a or Opus"),
    ],
)
def test_bad_audio_records_say_why(fourcc, record, message):
    with pytest.raises(CodecConfigError, match=message):
        parse_audio_config(fourcc, record)


def test_codec_string_corners():
    # Profile 2, level 5.1 (index 13), High tier, 12 bits; profile 0 with high_bitdepth is 10.
    assert av1_codec("av01", bytes([0x81, 0x4D, 0xE0, 0x00])) == "av01.2.13H.12"
    assert av1_codec("av01", bytes([0x81, 0x08, 0x40, 0x00])) == "av01.0.08M.10"
    assert aac_frame_samples(bytes([0x12, 0x10])) == 1024  # AAC-LC 44.1 kHz stereo
    assert aac_frame_samples(bytes([0x12, 0x14])) == 960  # frameLengthFlag
    # HE-AAC with explicit SBR: AOT 5, core 24 kHz, stereo, output 48 kHz, then the LC core.
    he_aac = int("00101" "0110" "0010" "0011" "00010" "0" "0", 2).to_bytes(3, "big")
    assert parse_audio_config("mp4a", he_aac).codec == "mp4a.40.5"
    assert aac_frame_samples(he_aac) == 1024
    assert aac_frame_samples(bytes([0xB9, 0x88])) == 512  # AAC-LD
    # Opus TOC: CELT 20 ms x1, SILK 60 ms x2, CELT 2.5 ms code 3 with 48 frames (120 ms).
    assert [opus_packet_samples(p) for p in (b"\xf8", b"\x19", b"\x83\x30")] == [960, 5760, 5760]


# -- hypothesis: garbage records, frames, timestamps and samples -----------------------------


def _replace(base: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(base)
    for index, value in edits:
        out[index % len(out)] = value
    return bytes(out)


def _flip(base: bytes, bit: int) -> bytes:
    out = bytearray(base)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def _mutations(base: bytes):
    """Bytes near ``base`` (not empty): truncated, extended, bytes replaced, a bit flipped."""
    return st.one_of(
        st.integers(0, len(base)).map(lambda n: base[:n]),
        st.binary(min_size=1, max_size=16).map(lambda tail: base + tail),
        st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)),
                 min_size=1, max_size=4).map(lambda edits: _replace(base, edits)),
        st.integers(0, 8 * len(base) - 1).map(lambda bit: _flip(base, bit)),
    )


def hvcc_nal_units(record: bytes) -> dict[int, bytes]:
    """The first NAL unit of each type in an hvcC's arrays."""
    units, pos = {}, 23
    for _ in range(record[22]):
        nal_type, count = record[pos] & 0x3F, int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(record[pos : pos + 2], "big")
            units.setdefault(nal_type, record[pos + 2 : pos + 2 + length])
            pos += 2 + length
    return units


@pytest.fixture(scope="module")
def records(avc, hevc, av1_svt, av1_aom, opus) -> dict[str, list[bytes]]:
    return {
        "avc1": [avc.video.record],
        "hvc1": [hevc.video.record],
        "av01": [av1_svt.video.record, av1_aom.video.record],
        "mp4a": [avc.audio.record],
        "Opus": [b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"],
    }


@FUZZ
@given(data=st.data())
def test_any_record_is_a_sane_config_or_a_codec_config_error(records, data):
    fourcc = data.draw(st.sampled_from(sorted(records)))
    base = data.draw(st.sampled_from(records[fourcc]))
    record = data.draw(st.one_of(_mutations(base), st.binary(max_size=200)))
    parse = parse_audio_config if fourcc in ("mp4a", "Opus") else parse_video_config
    try:
        config = parse(fourcc, record)
    except CodecConfigError as exc:
        assert str(exc)
        return
    assert config.codec.split(".")[0] == {"Opus": "opus"}.get(fourcc, fourcc)
    if isinstance(config, VideoConfig):
        assert config.width > 0 and config.height > 0 and config.bit_depth in range(8, 17)
        # A record that parses is written, and read back the same, or refused by name.
        try:
            init = FMP4Writer([config]).init
        except FMP4Error as exc:
            assert "does not fit" in str(exc)
            return
    else:
        assert config.sample_rate > 0
        init = FMP4Writer([config]).init
    assert FMP4Reader().feed(init.data) == [init]


@FUZZ
@given(data=st.data())
def test_sps_and_sequence_header_parsers_take_any_bytes(hevc, av1_svt, data):
    sps_base = hvcc_nal_units(hevc.video.record)[33]
    sequence_base = av1_svt.video.record[6:]  # after av1C's 4 bytes and the OBU's header/size
    for parse, base in ((parse_hevc_sps, sps_base), (parse_av1_sequence_header, sequence_base)):
        raw = data.draw(st.one_of(_mutations(base), st.binary(max_size=64)))
        try:
            info = parse(raw)
        except CodecConfigError as exc:
            assert str(exc)
            continue
        width, height = (info.width, info.height) if parse is parse_hevc_sps else (
            info.max_width, info.max_height)
        assert width > 0 and height > 0


@FUZZ
@given(data=st.data())
def test_any_frame_sequence_gives_errors_or_values_the_reader_reads_back(
    avc, hevc, av1_svt, opus, data
):
    video_media, audio_media = data.draw(
        st.sampled_from([(avc, avc), (hevc, opus), (av1_svt, None), (None, opus)])
    )
    remuxer = Remuxer(
        video_media and video_media.video,
        audio_media and audio_media.audio,
        hold_video=data.draw(st.booleans()),
    )
    events: list[InitSegment | Fragment] = [remuxer.init]
    video_ms = audio_ms = 0
    for _ in range(data.draw(st.integers(1, 25))):
        kind = data.draw(st.sampled_from(["video", "audio"]))
        step = data.draw(st.integers(-40, 400))
        source = video_media if kind == "video" else audio_media
        real = [] if source is None else (
            source.video_frames if kind == "video" else source.audio_frames)
        payload = data.draw(
            st.one_of(st.sampled_from([f.data for f in real[:8]] or [b"\x00"]),
                      st.binary(max_size=40))
        )
        try:
            if kind == "video":
                video_ms = max(0, video_ms + step)
                got = remuxer.video(video_ms, data.draw(st.integers(-200, 200)),
                                    data.draw(st.booleans()), payload)
            else:
                audio_ms = max(0, audio_ms + step)
                got = remuxer.audio(audio_ms, payload)
        except FMP4Error as exc:
            assert str(exc)
            continue
        assert all(isinstance(f, Fragment) for f in got)
        events += got
    events += remuxer.flush()
    assert read_back(events) == events
    audio_track = events[0].audio.track_id if events[0].audio else None
    for track_id in events[0].tracks:
        trafs = [e.tracks[track_id] for e in events[1:] if track_id in e.tracks]
        for before, after in pairwise(trafs):
            assert after.base_decode_time > before.base_decode_time
            if track_id == audio_track:  # audio never overlaps what was written
                assert after.base_decode_time >= before.base_decode_time + before.duration


_BAD_FIELDS = {
    "data": st.just(b""),
    "decode_time": st.sampled_from([-1, 1 << 64]),
    "duration": st.sampled_from([-1, 1 << 32]),
    "composition_offset": st.sampled_from([-(1 << 31) - 1, 1 << 31]),
}


@st.composite
def sample_runs(draw) -> tuple[list[Sample], bool]:
    """Samples of one track: contiguous and in range, unless one field of one sample is made
    bad (decode time, duration, offset, empty data) or the run is broken; and whether it was."""
    count = draw(st.integers(1, 6))
    time = draw(st.integers(0, (1 << 64) - 1 - 6 * 5000))
    samples = []
    for _ in range(count):
        duration = draw(st.integers(0, 5000))
        samples.append(Sample(draw(st.binary(min_size=1, max_size=12)), time, duration,
                              draw(st.booleans()), draw(st.integers(-(1 << 31), (1 << 31) - 1))))
        time += duration
    spoil = draw(st.sampled_from([None, None, "gap", *_BAD_FIELDS]))
    if spoil is None:
        return samples, False
    index = draw(st.integers(0, count - 1))
    sample = samples[index]
    if spoil == "gap":
        if count == 1:
            return samples, False
        index = max(index, 1)
        sample = samples[index]
        samples[index] = Sample(sample.data, sample.decode_time + 1, sample.duration, sample.sync,
                                sample.composition_offset)
    else:
        fields = {f: getattr(sample, f) for f in ("data", "decode_time", "duration", "sync",
                                                   "composition_offset")}
        fields[spoil] = draw(_BAD_FIELDS[spoil])
        samples[index] = Sample(**fields)
        # A bad decode time is only read from the first sample; later ones break the run.
    return samples, True


@FUZZ
@given(run=sample_runs(), track_id=st.sampled_from([1, 2, 3]))
def test_any_samples_are_one_right_fragment_or_an_fmp4_error(avc, run, track_id):
    samples, spoiled = run
    writer = FMP4Writer([avc.video, avc.audio])
    try:
        fragment = writer.fragment(track_id, samples)
    except FMP4Error as exc:
        assert str(exc)
        assert spoiled or track_id == 3
        return
    assert not spoiled and track_id != 3
    (read,) = FMP4Reader().feed(writer.init.data + fragment.data)[1:]
    assert read == fragment
    traf = fragment.tracks[track_id]
    assert traf.base_decode_time == samples[0].decode_time
    assert traf.sample_sizes == tuple(len(s.data) for s in samples)
    assert traf.duration == sum(s.duration for s in samples)
    assert traf.first_sample_sync == samples[0].sync
    assert traf.composition_offsets_present == any(s.composition_offset for s in samples)


# -- Chromium ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-proxy-server",
    "--autoplay-policy=no-user-gesture-required",
]
# Appends a whole file to a SourceBuffer, then plays it muted: what Chromium buffered and played.
MSE_PLAY = """async ([mime, b64]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const source = new MediaSource();
  const video = document.createElement('video');
  video.muted = true;
  document.body.appendChild(video);
  video.src = URL.createObjectURL(source);
  await new Promise(r => source.addEventListener('sourceopen', r, {once: true}));
  const buffer = source.addSourceBuffer(mime);
  let error = null;
  buffer.addEventListener('error', () => { error = 'SourceBuffer error'; });
  await new Promise(r => { buffer.addEventListener('updateend', r, {once: true});
                           buffer.appendBuffer(bytes); });
  const ranges = [];
  for (let i = 0; i < buffer.buffered.length; i++)
    ranges.push([buffer.buffered.start(i), buffer.buffered.end(i)]);
  if (error || !ranges.length) return {error, ranges, played: 0};
  source.endOfStream();
  video.currentTime = ranges[0][0];
  await video.play();
  const deadline = performance.now() + 10000;
  while (!video.ended && !video.error && performance.now() < deadline)
    await new Promise(r => setTimeout(r, 50));
  return {error: video.error && video.error.message, ranges, played: video.currentTime - ranges[0][0]};
}"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed")
def test_chromium_takes_the_avc_and_av1_codec_strings_and_plays_the_files(avc, av1_svt, av1_aom):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000
        )
        try:
            page = browser.new_page()
            for media in (avc, av1_svt, av1_aom):
                events = remux(media)
                codecs = ",".join(t.codec for t in events[0].tracks.values())
                mime = f'video/mp4; codecs="{codecs}"'
                assert page.evaluate("m => MediaSource.isTypeSupported(m)", mime), mime
                data = base64.b64encode(b"".join(e.data for e in events)).decode()
                result = page.evaluate(MSE_PLAY, [mime, data])
                assert result["error"] is None, (media.name, result)
                assert len(result["ranges"]) == 1, (media.name, result)
                start, end = result["ranges"][0]
                assert end - start == pytest.approx(SECONDS, abs=0.1), (media.name, result)
                assert result["played"] >= SECONDS - 0.2, (media.name, result)
        finally:
            browser.close()


def test_an_sps_with_a_bit_depth_h264_does_not_allow_is_refused():
    # Found by the fuzz test above: bit_depth_luma_minus8 = 9 (17 bits) was taken as a config.
    record = b"\x01\x00\x00\x00\x00\x01\x00\x08\x07d\x00\x00qY?\x00\x00"
    with pytest.raises(CodecConfigError, match="bit depth 17"):
        parse_video_config("avc1", record)
