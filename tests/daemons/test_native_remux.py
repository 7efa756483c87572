"""The native backend's sans-IO core (`daemons.ingest.native.SourceRemux`) against garbage, with
hypothesis: sequences of RTMP media messages built from real encodes (x264/AAC, x265, SVT-AV1,
Opus, packaged as legacy FLV or Enhanced RTMP tags by tests/daemons/enhanced_rtmp.py), mutated
(bytes replaced, truncated, extended, bit flips, random bodies) and with timestamps that jump,
stall and go back, decoded as the RTMP connection decodes them. Whatever comes in:

* `push` raises nothing but `UnsupportedMedia`, and exactly for the tags `refusal` names;
* every timeline it gives starts with an init segment, then a keyframe; its values read back
  with `FMP4Reader` exactly as given (what the packager takes needs no parse round trip);
* a dropped video packet always breaks the timeline; fragment numbers go on across timelines.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.ingest.native import Dropped, SourceRemux, TimelineBreak, refusal
from daemons.ingest.sink import UnsupportedMedia
from daemons.media import flv, rtmp
from daemons.media.fmp4 import FMP4Reader, Fragment, InitSegment
from tests.daemons import enhanced_rtmp
from tests.daemons.conftest import needs_ffmpeg
from tests.media.test_fmp4_writer import av1_svt, avc, hevc, opus, work  # noqa: F401 (fixtures: real encodes)

pytestmark = needs_ffmpeg

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                         HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def streams(avc, hevc, av1_svt, opus) -> list[list[tuple[int, bytes]]]:  # noqa: F811
    """Real tags, (type id, body), in stream order: per codec its sequence header, then frames."""
    tags = [enhanced_rtmp.video_tags(media)[:12] for media in (avc, hevc, av1_svt)]
    tags.append(enhanced_rtmp.video_tags(avc, legacy_avc=False)[:6])  # Enhanced RTMP avc1
    tags.append(enhanced_rtmp.aac_tags(avc)[:12])
    head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    tags.append([enhanced_rtmp.Tag(8, 0, enhanced_rtmp.ex_audio("Opus", 0, head))]
                + [enhanced_rtmp.Tag(8, 0, enhanced_rtmp.ex_audio("Opus", 1, f.data)) for f in opus.audio_frames[:8]])
    tags.append([enhanced_rtmp.Tag(9, 0, enhanced_rtmp.ex_video("vp09", 0, True, b"\x01\x00\x00\x00"))])  # refused
    return [[(t.type_id, t.body) for t in stream] for stream in tags]


def _mutate(body: bytes, edit: tuple) -> bytes:
    kind, a, b = edit
    if kind == "keep" or not body:
        return body
    if kind == "cut":
        return body[: a % (len(body) + 1)]
    if kind == "grow":
        return body + bytes([b]) * (a % 9)
    if kind == "byte":
        out = bytearray(body)
        out[a % len(out)] = b
        return bytes(out)
    out = bytearray(body)
    out[a % len(out)] ^= 1 << (b % 8)
    return bytes(out)


edits = st.tuples(st.sampled_from(["keep", "keep", "keep", "cut", "grow", "byte", "flip"]),
                  st.integers(0, 1 << 16), st.integers(0, 255))


def _event(type_id: int, timestamp: int, body: bytes):
    """What the RTMP connection emits for this message (None: UnreadableMedia, dropped before any sink)."""
    try:
        if type_id == 9:
            return rtmp.VideoData(timestamp, body, flv.parse_video_tag(body))
        return rtmp.AudioData(timestamp, body, flv.parse_audio_tag(body))
    except flv.FLVError:
        return None


@FUZZ
@given(data=st.data())
def test_any_packets_give_timelines_the_reader_reads_back_or_a_refusal(streams, data):
    remux = SourceRemux()
    if data.draw(st.booleans()):
        remux.set_frame_rate(data.draw(st.sampled_from([15, 25, 29.97, 30, 60, 0, -1, "x", 1e9])))
    timelines: list[list[InitSegment | Fragment]] = []
    current: list | None = None
    numbers: list[int] = []
    timestamp = 0
    messages = []
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.integers(0, 5)) == 0:  # a body of random bytes
            messages.append((data.draw(st.sampled_from([8, 9])), data.draw(st.binary(max_size=48))))
        else:  # a run of a real stream's tags, from its sequence header or anywhere
            stream = data.draw(st.sampled_from(streams))
            start = data.draw(st.sampled_from([0, 0, data.draw(st.integers(0, len(stream) - 1))]))
            messages += stream[start : start + data.draw(st.integers(1, 12))]
    for type_id, body in messages:
        body = _mutate(body, data.draw(edits))
        timestamp = max(0, timestamp + data.draw(st.sampled_from([33, 33, 21, 0, -40, 400, data.draw(st.integers(-60, 400))])))
        event = _event(type_id, timestamp, body)
        if event is None:
            continue
        reason = refusal(event)
        try:
            out = remux.push(event)
        except UnsupportedMedia as e:
            assert reason is not None and str(e).startswith(reason)
            continue
        assert reason is None
        for i, item in enumerate(out):
            if isinstance(item, InitSegment):
                current = [item]
                timelines.append(current)
            elif isinstance(item, Fragment):
                assert current is not None, "a fragment before any init"
                current.append(item)
                numbers.append(item.sequence_number)
            elif isinstance(item, Dropped):
                assert item.reason
                if item.media == "video" and not item.reason.startswith("video configuration record"):
                    assert isinstance(out[i + 1], TimelineBreak)  # a lost video frame breaks the timeline
            else:
                assert isinstance(item, TimelineBreak) and item.reason
                current = None
    assert numbers == sorted(set(numbers))  # fragment numbers go on across timelines
    for timeline in timelines:
        init, *fragments = timeline
        assert FMP4Reader().feed(b"".join(v.data for v in timeline)) == timeline
        video = init.video.track_id if init.video else None
        first_video = next((f for f in fragments if video in f.tracks), None)
        if first_video is not None:
            assert first_video.tracks[video].first_sample_sync  # a timeline starts at a keyframe
