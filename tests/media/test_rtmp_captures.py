"""Replay what real publishers sent (tests/media/data/*.bin, made by capture.py)
through ServerConnection, cut at arbitrary points, and check the events; write
the media back out as FLV and let ffprobe judge it."""

import json
import random
import shutil
import subprocess
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from daemons.media import flv
from daemons.media.rtmp import (
    NEED_DATA,
    AudioData,
    Connect,
    ConnectionClosed,
    Metadata,
    PublishRequest,
    ServerConnection,
    Unpublish,
    VideoData,
)
from daemons.media.rtmp.chunk import MAX_HEADER_SIZE

DATA = Path(__file__).parent / "data"

# What each capture holds: 2 s of 320x240 H.264 at 25 fps (keyframe every 25
# frames) and AAC, published to rtmp://host/live/somekey.
CAPTURES = {
    "ffmpeg": {"audio_frames": 88, "metadata": 1, "sample_rate": 44100},
    "gstreamer": {"audio_frames": 101, "metadata": 29, "sample_rate": 44100},
}


def replay(data: bytes, sizes) -> tuple[list, ServerConnection]:
    """Feed ``data`` in pieces of the given sizes (cycled), accept the publish, collect events."""
    conn = ServerConnection()
    events = []
    pos = 0
    sizes = iter(sizes)
    while True:
        if pos < len(data):
            size = next(sizes)
            conn.receive_data(data[pos : pos + size])
            pos += size
        else:
            conn.receive_data(b"")
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, PublishRequest):
                conn.accept_publish()
            if isinstance(event, ConnectionClosed):
                return events, conn
        conn.data_to_send()
        assert (
            conn.buffered_bytes
            <= conn.limits.max_message_size + conn.limits.max_chunk_size + MAX_HEADER_SIZE
        )


def fixed(n: int):
    while True:
        yield n


def randomized(seed: int):
    rng = random.Random(seed)
    while True:
        yield rng.choice([1, 2, 3, 11, 100, 1400, 4096, 70000])


@pytest.fixture(scope="module", params=sorted(CAPTURES))
def capture(request):
    name = request.param
    data = (DATA / f"{name}_publish.bin").read_bytes()
    events, _ = replay(data, fixed(len(data)))
    return name, data, events


def test_capture_is_small(capture):
    _, data, _ = capture
    assert len(data) < 1_000_000


def test_session_events(capture):
    name, _, events = capture
    kinds = Counter(type(e) for e in events)
    assert isinstance(events[0], Connect)
    assert events[0].app == "live"
    assert events[0].tc_url.startswith("rtmp://127.0.0.1:")
    assert events[1] == PublishRequest("somekey", "live", 1)
    assert kinds[Metadata] == CAPTURES[name]["metadata"]
    assert events[-2:] == [Unpublish("somekey"), ConnectionClosed("peer closed the connection")]

    metadata = next(e for e in events if isinstance(e, Metadata)).data
    assert (metadata["width"], metadata["height"]) == (320.0, 240.0)
    assert metadata["videocodecid"] == 7.0 and metadata["audiocodecid"] == 10.0


def test_video(capture):
    _, _, events = capture
    video = [e for e in events if isinstance(e, VideoData)]
    assert video[0].is_sequence_header and video[0].is_keyframe
    assert sum(e.is_sequence_header for e in video) == 1
    assert all(e.header.fourcc == flv.VideoCodec.AVC and not e.header.enhanced for e in video)
    frames = [e for e in video if e.header.is_coded_frame]
    assert len(frames) == 50
    assert [i for i, e in enumerate(frames) if e.is_keyframe] == [0, 25]
    assert all(b.timestamp - a.timestamp == 40 for a, b in pairwise(frames))
    config = flv.parse_avc_decoder_config(video[0].payload[video[0].header.data_offset :])
    assert (config.width, config.height) == (320, 240)
    assert config.codec_string.startswith("avc1.")


def test_audio(capture):
    name, _, events = capture
    audio = [e for e in events if isinstance(e, AudioData)]
    assert audio[0].is_sequence_header
    assert sum(e.is_sequence_header for e in audio) == 1
    frames = audio[1:]
    assert len(frames) == CAPTURES[name]["audio_frames"]
    # 1024 samples at 44.1 kHz: 23.2 ms, rounded to whole milliseconds.
    assert all(b.timestamp - a.timestamp in (23, 24) for a, b in pairwise(frames))
    config = flv.parse_aac_audio_specific_config(audio[0].payload[2:])
    assert config.sample_rate == CAPTURES[name]["sample_rate"]
    assert config.codec_string == "mp4a.40.2"


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param(lambda: fixed(1), id="1-byte"),
        pytest.param(lambda: fixed(7), id="7-bytes"),
        pytest.param(lambda: fixed(1536), id="1536-bytes"),
        pytest.param(lambda: randomized(1), id="random-1"),
        pytest.param(lambda: randomized(2), id="random-2"),
    ],
)
def test_any_split_gives_the_same_events(capture, sizes):
    _, data, events = capture
    assert replay(data, sizes())[0] == events


def write_flv(events: list, path: Path) -> None:
    with path.open("wb") as out:
        out.write(flv.flv_header())
        for event in events:
            if isinstance(event, Metadata):
                out.write(flv.encode_script_tag(event.data))
            elif isinstance(event, VideoData):
                out.write(flv.encode_tag(flv.TAG_VIDEO, event.timestamp, event.payload))
            elif isinstance(event, AudioData):
                out.write(flv.encode_tag(flv.TAG_AUDIO, event.timestamp, event.payload))


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_reads_the_flv(capture, tmp_path):
    _, _, events = capture
    path = tmp_path / "out.flv"
    write_flv(events, path)
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    streams = {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert int(streams["video"]["nb_read_frames"]) == 50
    assert streams["audio"]["codec_name"] == "aac"
    assert int(streams["audio"]["sample_rate"]) == 44100


def test_flv_reader_reads_back_what_was_written(capture, tmp_path):
    _, _, events = capture
    path = tmp_path / "out.flv"
    write_flv(events, path)
    data = path.read_bytes()
    reader = flv.FLVReader()
    tags = []
    for i in range(0, len(data), 999):
        tags += reader.feed(data[i : i + 999])
    media = [e for e in events if isinstance(e, (VideoData, AudioData))]
    assert [(t.timestamp, t.body) for t in tags if t.type != flv.TAG_SCRIPT] == [
        (e.timestamp, e.payload) for e in media
    ]
    assert reader.buffered_bytes == 0
