"""`RenditionPackager.publish_due_s`: the frame the media thread waits for before it reads a
publisher again. Never later than the first frame whose arrival publishes something (a part or a
segment), at the frame rates, timescales and GOPs publishers send; and exact where frames are
regular, so that the thread wakes once per part, not per frame."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.media.fmp4 import Fragment, InitSegment, Track
from daemons.media.fmp4.fragment import TrackFragment
from daemons.media.packager import PackagerConfig, RenditionPackager, Write

NOW = datetime(2026, 12, 8, tzinfo=timezone.utc)
VIDEO, AUDIO = 1, 2


def _init(video_scale: int | None, audio_scale: int = 48_000) -> InitSegment:
    tracks = {AUDIO: Track(AUDIO, "audio", audio_scale, "mp4a.40.2", None, None, audio_scale, 2)}
    if video_scale:
        tracks[VIDEO] = Track(VIDEO, "video", video_scale, "avc1.64001f", 1280, 720, None, None)
    return InitSegment(b"init", tracks)


def _video_times(fps: float, scale: int, count: int) -> list[int]:
    """Decode times as a publisher's millisecond timestamps give them (rounded), or exact."""
    return [round(n * scale / fps) for n in range(count + 1)]


def _feed(p: RenditionPackager, fragments: list[tuple[Fragment, int]]) -> tuple[int, int]:
    """Feed (fragment, its decode time); at each timeline fragment check the wait against what
    publishes. Returns (timeline fragments that published, predicted exactly)."""
    awaited = None  # decode time of the frame the thread would wait for
    published = exact = 0
    for frag, dts in fragments:
        actions = p.on_fragment(frag, NOW)
        if not frag.tracks.get(p._timeline.track_id):
            assert not actions
            continue
        if any(isinstance(a, Write) for a in actions):
            published += 1
            assert awaited is None or awaited <= dts, (awaited, dts)  # never waited past it
            exact += awaited == dts
        due = p.publish_due_s()
        awaited = None if due == 0 else dts + round(due * p._timeline.timescale)
    return published, exact


def _video_stream(fps: float, scale: int, seconds: float, keyframes) -> list[tuple[Fragment, int]]:
    times = _video_times(fps, scale, int(seconds * fps))
    out, a, aac = [], 0, 1024
    for n in range(len(times) - 1):
        tf = TrackFragment(VIDEO, times[n], 1, times[n + 1] - times[n], (100,), n in keyframes, False)
        out.append((Fragment(b"v", n, {VIDEO: tf}), times[n]))
        while (a + 1) * aac / 48_000 <= (n + 1) / fps:
            out.append((Fragment(b"a", 10_000 + a, {AUDIO: TrackFragment(AUDIO, a * aac, 1, aac, (10,), True, False)}), -1))
            a += 1
    return out


@pytest.mark.parametrize("fps", [30, 29.97, 25, 60, 15, 24])
@pytest.mark.parametrize("scale", [1000, 90_000])
def test_regular_gops_are_never_waited_past_and_mostly_exactly(fps, scale):
    gop = round(2 * fps)
    p = RenditionPackager("source", PackagerConfig())
    p.on_init(_init(scale))
    published, exact = _feed(p, _video_stream(fps, scale, 12, set(range(0, 10_000, gop))))
    assert published > 50
    # A part ends at its last frame, or a frame earlier where a tick of jitter in the lengths
    # makes it so: the thread then waits once more. Most waits end at the frame itself.
    assert exact >= 0.5 * published, (exact, published)


@settings(max_examples=60, deadline=None)
@given(fps=st.sampled_from([15, 24, 25, 29.97, 30, 50, 60]), scale=st.sampled_from([1000, 90_000, 15_360]),
       gop_s=st.sampled_from([0.5, 1, 2, 4, 8.3]), part_s=st.sampled_from([0.1, 0.2, 0.333, 0.5, 1.0]),
       segment_s=st.sampled_from([1, 2, 4, 6]))
def test_never_waited_past_what_publishes(fps, scale, gop_s, part_s, segment_s):
    gop = max(1, round(gop_s * fps))
    p = RenditionPackager("source", PackagerConfig(part_target_s=part_s, segment_target_s=segment_s))
    p.on_init(_init(scale))
    published, _ = _feed(p, _video_stream(fps, scale, 10, set(range(0, 10_000, gop))))
    assert published > 0


def test_a_keyframe_off_the_interval_is_the_one_case_waited_past():
    """A scene cut's keyframe that ends a segment early comes before the expected one: it is read
    with the part's last frame (at most a part late), the one exception."""
    fps, scale = 30, 90_000
    keys = {0, 60, 120, 175, 235}  # 175: five frames early
    p = RenditionPackager("source", PackagerConfig())
    p.on_init(_init(scale))
    with pytest.raises(AssertionError):
        _feed(p, _video_stream(fps, scale, 8, keys))
    # Before keyframes have an interval, every frame that may end a segment is awaited.
    p = RenditionPackager("source", PackagerConfig())
    p.on_init(_init(scale))
    assert _feed(p, _video_stream(fps, scale, 1.9, {0, 50}))[0] > 0


def test_audio_only_timelines_wait_for_the_frame_that_ends_a_part():
    p = RenditionPackager("source", PackagerConfig())
    p.on_init(_init(None))
    aac, out = 1024, []
    for a in range(48_000 * 8 // aac):
        out.append((Fragment(b"a", a, {AUDIO: TrackFragment(AUDIO, a * aac, 1, aac, (10,), True, False)}), a * aac))
    published, exact = _feed(p, out)
    assert published > 30 and exact >= 0.5 * published


def test_nothing_open_is_nothing_to_wait_for():
    p = RenditionPackager("source", PackagerConfig())
    assert p.publish_due_s() == 0
    p.on_init(_init(90_000))
    assert p.publish_due_s() == 0
