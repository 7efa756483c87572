"""PublisherStats (daemons/ingest/stats.py), sans-IO: what real publishers' captures measure,
and the tags that are no frame (sequence headers, end of sequence, metadata, commands)."""

from __future__ import annotations

import pytest

from daemons.ingest.stats import PublisherStats
from daemons.media import flv, rtmp
from tests.media.test_rtmp_captures import CAPTURES, DATA, fixed, replay


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_a_real_capture(name):
    events, _ = replay((DATA / f"{name}_publish.bin").read_bytes(), fixed(4096))
    stats = PublisherStats(remote="127.0.0.1:5000", connected_since="2026-01-01T00:00:00.000Z")
    for e in events:
        if isinstance(e, rtmp.VideoData):
            stats.on_video(e)
        elif isinstance(e, rtmp.AudioData):
            stats.on_audio(e)
        elif isinstance(e, rtmp.Metadata):
            stats.on_metadata(e.data)
    doc = stats.to_json(0.0)
    # 50 pictures and the end of sequence the publisher sends at the end; 2 key frames.
    assert (doc["video_frames"], doc["keyframes"], doc["keyframe_interval_s"]) == (51, 2, 1.0)
    assert doc["audio_frames"] == CAPTURES[name]["audio_frames"]
    assert doc["video_codec"].startswith("avc1.") and doc["audio_codec"] == "mp4a.40.2"
    last = [e for e in events if isinstance(e, rtmp.VideoData)][-1]
    assert last.header.is_end_of_sequence
    assert (doc["width"], doc["height"], doc["media_time_ms"]) == (320, 240, last.timestamp)


def video(ts: int, body: bytes) -> rtmp.VideoData:
    return rtmp.VideoData(ts, body, flv.parse_video_tag(body))


@pytest.mark.parametrize(
    ("body", "frames", "keyframes"),
    [
        (b"\x17\x01\x00\x00\x00\x65", 1, 1),  # an AVC key frame
        (b"\x27\x01\x00\x00\x00\x41", 1, 0),
        (b"\x17\x02\x00\x00\x00", 1, 0),  # end of sequence: flagged key, no picture
        (b"\x17\x00\x00\x00\x00\x01", 0, 0),  # a sequence header (unreadable avcC: no codec, no error)
        (b"\x84hvc1\x02\x00\x09colorInfo", 0, 0),  # Enhanced RTMP metadata
        (b"\x57\x00", 0, 0),  # a command frame
        (b"\x91hvc1\x00\x00\x00\x26", 1, 1),
        (b"\xa3av01\x12\x00", 1, 0),
    ],
)
def test_what_counts_as_a_frame(body, frames, keyframes):
    stats = PublisherStats(remote="r", connected_since="t")
    stats.on_video(video(40, body))
    assert (stats.video_frames, stats.keyframes, stats.video_codec) == (frames, keyframes, None)
