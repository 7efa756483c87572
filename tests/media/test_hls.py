"""The HLS playlist model: exact render output for the playlists Sender writes, render →
parse round trips (table and hypothesis), a cross-check of every render with the `m3u8`
library, the parser's tolerance of other servers' playlists and its one error type, and
the blocking-reload position rules.

Helpers at the top (`T0`, `part`, `segment`, `ll_playlist`, `cross_check_with_m3u8`,
`media_playlists`) are shared with test_hls_validate.py.
"""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime, timedelta, timezone

import m3u8
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.media.hls import (
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    RenditionReport,
    Segment,
    ServerControl,
    Variant,
    parse_master_playlist,
    parse_media_playlist,
)
from daemons.media.hls.parse import MAX_PLAYLIST_BYTES, MAX_SEGMENTS

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LL_CONTROL = ServerControl(can_block_reload=True, part_hold_back=0.6, hold_back=6.0, can_skip_until=12.0)


def part(msn: int, index: int, duration: float = 0.2) -> Part:
    """Part `index` of segment `msn`, named as the packager names them; part 0 is a keyframe."""
    return Part(f"{msn}.{index}.m4s", duration, independent=index == 0)


def segment(msn: int, *, parts: int = 0, duration: float = 2.0, start: float | None = None,
            discontinuity: bool = False, map_uri: str | None = "init.mp4") -> Segment:
    """Segment `msn` of `duration` seconds, dated T0 + start (default msn * duration); with
    `parts`, it lists that many equal parts."""
    listed = tuple(part(msn, i, duration / parts) for i in range(parts)) if parts else ()
    start = msn * duration if start is None else start
    return Segment(msn, f"{msn}.m4s", duration, T0 + timedelta(seconds=start), discontinuity,
                   map_uri, listed)


def ll_playlist(*, first: int = 0, count: int = 10, with_parts: int = 2, partial: int = 2,
                reports: tuple[RenditionReport, ...] = (), **overrides) -> MediaPlaylist:
    """A live LL-HLS playlist as the packager would write it: 2 s segments of ten 0.2 s
    parts, parts listed on the newest `with_parts` segments, `partial` parts of the next."""
    segments = tuple(
        segment(msn, parts=10 if msn >= first + count - with_parts else 0)
        for msn in range(first, first + count)
    )
    next_msn = first + count
    fields = dict(
        target_duration=2,
        media_sequence=first,
        segments=segments,
        partial_parts=tuple(part(next_msn, i) for i in range(partial)),
        next_program_date_time=T0 + timedelta(seconds=2 * next_msn) if partial else None,
        part_target=0.2,
        server_control=LL_CONTROL,
        preload_hint=f"{next_msn}.{partial}.m4s",
        rendition_reports=reports,
    )
    fields.update(overrides)
    return MediaPlaylist(**fields)


def cross_check_with_m3u8(text: str, playlist: MediaPlaylist, *, skipped: int = 0) -> None:
    """Parse `text` with the m3u8 library and compare it with the model it came from."""
    parsed = m3u8.loads(text)
    assert parsed.target_duration == playlist.target_duration
    assert parsed.media_sequence == playlist.media_sequence
    assert (parsed.discontinuity_sequence or 0) == playlist.discontinuity_sequence
    assert parsed.version == playlist.version(skip=skipped > 0)
    assert parsed.is_endlist == playlist.ended
    assert parsed.is_independent_segments == playlist.independent_segments
    complete = [s for s in parsed.segments if s.uri is not None]
    trailing = [s for s in parsed.segments if s.uri is None]
    shown = playlist.segments[skipped:]
    assert len(complete) == len(shown)
    for theirs, ours in zip(complete, shown, strict=True):
        assert theirs.uri == ours.uri
        assert math.isclose(theirs.duration, ours.duration, abs_tol=1e-9)
        assert bool(theirs.discontinuity) == ours.discontinuity
        assert (theirs.init_section.uri if theirs.init_section else None) == ours.map_uri
        if ours.program_date_time is not None:
            assert theirs.program_date_time == ours.program_date_time
        assert [(p.uri, p.duration, p.independent == "YES") for p in theirs.parts] == [
            (p.uri, p.duration, p.independent) for p in ours.parts
        ]
    if playlist.partial_parts:
        assert len(trailing) == 1
        assert [(p.uri, p.duration) for p in trailing[0].parts] == [
            (p.uri, p.duration) for p in playlist.partial_parts
        ]
    else:
        assert trailing == []
    if playlist.part_target is None:
        assert not parsed.part_inf  # m3u8 leaves an empty dict
    else:
        assert parsed.part_inf.part_target == playlist.part_target
    control = playlist.server_control
    if control is None:
        assert parsed.server_control is None
    else:
        assert (parsed.server_control.can_block_reload == "YES") == control.can_block_reload
        assert parsed.server_control.part_hold_back == control.part_hold_back
        assert parsed.server_control.hold_back == control.hold_back
        assert parsed.server_control.can_skip_until == control.can_skip_until
    if playlist.preload_hint is None:
        assert parsed.preload_hint is None
    else:
        assert (parsed.preload_hint.hint_type, parsed.preload_hint.uri) == ("PART", playlist.preload_hint)
    assert [(r.uri, r.last_msn, r.last_part) for r in parsed.rendition_reports] == [
        (r.uri, r.last_msn, r.last_part) for r in playlist.rendition_reports
    ]
    if skipped:
        assert parsed.skip.skipped_segments == skipped
    else:
        assert not parsed.skip


# -- render: table tests of the exact text ------------------------------------------------------

PLAIN_LIVE = MediaPlaylist(
    target_duration=6,
    media_sequence=100,
    segments=(
        Segment(100, "100.m4s", 6.0, T0, map_uri="init.mp4"),
        Segment(101, "101.m4s", 5.96, T0 + timedelta(seconds=6), map_uri="init.mp4"),
        Segment(102, "102.m4s", 6.04, T0 + timedelta(seconds=11.96), map_uri="init.mp4"),
    ),
    server_control=ServerControl(can_block_reload=False, hold_back=18.0),
)
PLAIN_LIVE_TEXT = """\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:6
#EXT-X-SERVER-CONTROL:HOLD-BACK=18.0
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z
#EXTINF:6.00000,
100.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:06.000Z
#EXTINF:5.96000,
101.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:11.960Z
#EXTINF:6.04000,
102.m4s
"""

LOW_LATENCY = MediaPlaylist(
    target_duration=1,
    media_sequence=7,
    segments=(
        Segment(7, "7.m4s", 1.0, T0, map_uri="init.mp4"),
        Segment(8, "8.m4s", 1.0, T0 + timedelta(seconds=1), map_uri="init.mp4",
                parts=(Part("8.0.m4s", 0.5, True), Part("8.1.m4s", 0.5))),
    ),
    partial_parts=(Part("9.0.m4s", 0.5, True),),
    next_program_date_time=T0 + timedelta(seconds=2),
    part_target=0.5,
    server_control=ServerControl(part_hold_back=1.5, hold_back=3.0, can_skip_until=6.0),
    preload_hint="9.1.m4s",
    rendition_reports=(RenditionReport("../240p/index.m3u8", 9, 0),
                       RenditionReport("../720p/index.m3u8", 8, 1)),
)
LOW_LATENCY_TEXT = """\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,HOLD-BACK=3.0,PART-HOLD-BACK=1.5
#EXT-X-PART-INF:PART-TARGET=0.5
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z
#EXTINF:1.00000,
7.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:01.000Z
#EXT-X-PART:DURATION=0.50000,URI="8.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.50000,URI="8.1.m4s"
#EXTINF:1.00000,
8.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z
#EXT-X-PART:DURATION=0.50000,URI="9.0.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="9.1.m4s"
#EXT-X-RENDITION-REPORT:URI="../240p/index.m3u8",LAST-MSN=9,LAST-PART=0
#EXT-X-RENDITION-REPORT:URI="../720p/index.m3u8",LAST-MSN=8,LAST-PART=1
"""

# The first part exists, the first segment does not: the playlist is already playable.
PARTS_ONLY = MediaPlaylist(
    target_duration=2,
    media_sequence=0,
    segments=(),
    partial_parts=(Part("0.0.m4s", 0.2, True), Part("0.1.m4s", 0.2)),
    next_map_uri="init.mp4",
    next_program_date_time=T0,
    part_target=0.2,
    server_control=LL_CONTROL,
    preload_hint="0.2.m4s",
    rendition_reports=(RenditionReport("../240p/index.m3u8", 0, 1),),
)
PARTS_ONLY_TEXT = """\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z
#EXT-X-PART:DURATION=0.20000,URI="0.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="0.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="0.2.m4s"
#EXT-X-RENDITION-REPORT:URI="../240p/index.m3u8",LAST-MSN=0,LAST-PART=1
"""

# ffmpeg restarted after segment 41: a new init segment, a discontinuity, a new date; and
# again while segment 43 is being built. One discontinuity already left the window.
RESTART = MediaPlaylist(
    target_duration=2,
    media_sequence=41,
    discontinuity_sequence=1,
    segments=(
        Segment(41, "41.m4s", 2.0, T0, map_uri="init-1.mp4"),
        Segment(42, "42.m4s", 1.5, T0 + timedelta(seconds=7.25), discontinuity=True,
                map_uri="init-2.mp4"),
    ),
    partial_parts=(Part("43.0.m4s", 0.2, True),),
    next_discontinuity=True,
    next_map_uri="init-3.mp4",
    next_program_date_time=T0 + timedelta(seconds=12.5),
    independent_segments=False,
)
RESTART_TEXT = """\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-MAP:URI="init-1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z
#EXTINF:2.00000,
41.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-2.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:07.250Z
#EXTINF:1.50000,
42.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-3.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:12.500Z
#EXT-X-PART:DURATION=0.20000,URI="43.0.m4s",INDEPENDENT=YES
"""

ENDED = MediaPlaylist(
    target_duration=2,
    media_sequence=3,
    segments=(segment(3), segment(4, duration=0.84, start=8.0)),
    ended=True,
)
ENDED_TEXT = """\
#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:06.000Z
#EXTINF:2.00000,
3.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:08.000Z
#EXTINF:0.84000,
4.m4s
#EXT-X-ENDLIST
"""

# No map and no segments: nothing needs more than protocol version 1.
EMPTY = MediaPlaylist(target_duration=4, media_sequence=0, segments=(), independent_segments=False)
EMPTY_TEXT = """\
#EXTM3U
#EXT-X-VERSION:1
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
"""

TABLE = [
    pytest.param(PLAIN_LIVE, PLAIN_LIVE_TEXT, id="plain-live"),
    pytest.param(LOW_LATENCY, LOW_LATENCY_TEXT, id="low-latency"),
    pytest.param(PARTS_ONLY, PARTS_ONLY_TEXT, id="parts-only"),
    pytest.param(RESTART, RESTART_TEXT, id="discontinuity-after-restart"),
    pytest.param(ENDED, ENDED_TEXT, id="ended"),
    pytest.param(EMPTY, EMPTY_TEXT, id="empty"),
]


@pytest.mark.parametrize(("playlist", "text"), TABLE)
def test_render_exact_text(playlist, text):
    assert playlist.render() == text


@pytest.mark.parametrize(("playlist", "text"), TABLE)
def test_render_parse_round_trip(playlist, text):
    assert parse_media_playlist(text) == playlist


@pytest.mark.parametrize(("playlist", "text"), TABLE)
def test_render_cross_checked_with_m3u8(playlist, text):
    cross_check_with_m3u8(text, playlist)


def test_delta_update_skips_segments_beyond_the_skip_boundary():
    # 20 s of 2 s segments plus 0.4 s of parts; CAN-SKIP-UNTIL=12: segments 0-3 end more
    # than 12 s before the live edge (20.4 - 8 = 12.4), segment 4 does not (10.4).
    playlist = ll_playlist(count=10)
    assert playlist.skippable_segments() == 4
    delta = playlist.render(skip=True)
    head = delta.split("#EXT-X-PROGRAM-DATE-TIME", 1)[0]
    assert head == """\
#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SKIP:SKIPPED-SEGMENTS=4
#EXT-X-MAP:URI="init.mp4"
"""
    assert "\n4.m4s\n" in delta and "\n3.m4s\n" not in delta
    # Everything after the skipped segments is exactly the full playlist's text.
    assert delta.split("#EXT-X-MAP", 1)[1].split("\n4.m4s\n", 1)[1] == (
        playlist.render().split("\n4.m4s\n", 1)[1]
    )
    assert playlist.render().startswith("#EXTM3U\n#EXT-X-VERSION:6\n")
    cross_check_with_m3u8(delta, playlist, skipped=4)
    assert parse_media_playlist(delta, previous=playlist) == playlist


def test_delta_update_redeclares_the_map_and_keeps_discontinuities():
    base = ll_playlist(count=10)
    segments = list(base.segments)
    segments[5] = Segment(5, "5.m4s", 2.0, T0 + timedelta(seconds=30), discontinuity=True, map_uri="b.mp4")
    segments[6:] = [Segment(s.msn, s.uri, s.duration, s.program_date_time + timedelta(seconds=20),
                            map_uri="b.mp4", parts=s.parts) for s in segments[6:]]
    playlist = MediaPlaylist(**{**_fields(base), "segments": tuple(segments),
                                "next_program_date_time": T0 + timedelta(seconds=40)})
    delta = playlist.render(skip=True)
    assert '#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXT-X-MAP:URI="init.mp4"\n' in delta
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="b.mp4"\n' in delta
    assert parse_media_playlist(delta, previous=playlist) == playlist


@pytest.mark.parametrize("change", [
    pytest.param({"server_control": ServerControl(part_hold_back=0.6)}, id="no-can-skip-until"),
    pytest.param({"server_control": None, "part_target": None, "preload_hint": None}, id="no-server-control"),
    pytest.param({"ended": True, "preload_hint": None}, id="ended"),
    pytest.param({"segments": (), "next_program_date_time": T0}, id="nothing-to-skip"),
])
def test_skip_request_renders_the_full_playlist_when_no_delta_is_possible(change):
    playlist = MediaPlaylist(**{**_fields(ll_playlist()), **change})
    assert playlist.skippable_segments() == 0
    assert playlist.render(skip=True) == playlist.render()
    assert "EXT-X-SKIP" not in playlist.render(skip=True)


def test_skip_boundary_counts_whole_segments_only():
    # A segment straddling the boundary is kept: 12.4 s is "further", exactly 12.0 s is not.
    assert ll_playlist(partial=2).skippable_segments() == 4
    just_completed = ll_playlist(partial=0, preload_hint="10.0.m4s", next_program_date_time=None)
    assert just_completed.skippable_segments() == 3


def _fields(playlist: MediaPlaylist) -> dict:
    return {name: getattr(playlist, name) for name in MediaPlaylist.__dataclass_fields__}


def test_master_playlist_render_and_round_trip():
    master = MasterPlaylist((
        Variant("source/index.m3u8", 3_300_000, 3_000_000, "avc1.64001f,mp4a.40.2", (1280, 720), 30),
        Variant("240p/index.m3u8", 500_000, 420_000, "avc1.42c015,mp4a.40.2", (426, 240), 29.97),
        Variant("audio/index.m3u8", 130_000, codecs="mp4a.40.2"),
    ))
    text = master.render()
    assert text == """\
#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=3300000,AVERAGE-BANDWIDTH=3000000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000
source/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=420000,CODECS="avc1.42c015,mp4a.40.2",RESOLUTION=426x240,FRAME-RATE=29.970
240p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=130000,CODECS="mp4a.40.2"
audio/index.m3u8
"""
    assert parse_master_playlist(text) == master
    parsed = m3u8.loads(text)
    assert parsed.is_variant
    assert [(p.uri, p.stream_info.bandwidth, p.stream_info.average_bandwidth, p.stream_info.codecs,
             p.stream_info.resolution, p.stream_info.frame_rate) for p in parsed.playlists] == [
        (v.uri, v.bandwidth, v.average_bandwidth, v.codecs, v.resolution, v.frame_rate)
        for v in master.variants
    ]


# -- the model's own checks ------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    pytest.param(lambda: Part("a.m4s", -0.1), id="negative-duration"),
    pytest.param(lambda: Part("a.m4s", float("nan")), id="nan-duration"),
    pytest.param(lambda: Part("a.m4s", float("inf")), id="inf-duration"),
    pytest.param(lambda: Part("a.m4s", "0.2"), id="string-duration"),
    pytest.param(lambda: Part("", 0.2), id="empty-uri"),
    pytest.param(lambda: Part('a".m4s', 0.2), id="quote-in-uri"),
    pytest.param(lambda: Part("a\n.m4s", 0.2), id="newline-in-uri"),
    pytest.param(lambda: Part("a\r.m4s", 0.2), id="cr-in-uri"),
    pytest.param(lambda: Part("a .m4s", 0.2), id="space-in-uri"),
    pytest.param(lambda: Part("a\x00.m4s", 0.2), id="nul-in-uri"),
    pytest.param(lambda: Part("a.m4s", 0.2, independent=1), id="int-as-bool"),
    pytest.param(lambda: Segment(0, "#0.m4s", 2.0), id="uri-line-that-is-a-comment"),
    pytest.param(lambda: Segment(-1, "0.m4s", 2.0), id="negative-msn"),
    pytest.param(lambda: Segment(True, "0.m4s", 2.0), id="bool-msn"),
    pytest.param(lambda: Segment(2**64, "0.m4s", 2.0), id="msn-beyond-decimal-integer"),
    pytest.param(lambda: Segment(0, "0.m4s", 2.0, datetime(2024, 1, 1)), id="naive-date"),
    pytest.param(lambda: Segment(0, "0.m4s", 2.0, map_uri='i"nit.mp4'), id="quote-in-map"),
    pytest.param(lambda: Segment(0, "0.m4s", 2.0, parts=("0.0.m4s",)), id="parts-not-parts"),
    pytest.param(lambda: ServerControl(can_block_reload=False), id="empty-server-control"),
    pytest.param(lambda: ServerControl(can_skip_dateranges=True), id="dateranges-without-skip"),
    pytest.param(lambda: ServerControl(hold_back=-1.0), id="negative-hold-back"),
    pytest.param(lambda: RenditionReport("", 1), id="empty-report-uri"),
    pytest.param(lambda: RenditionReport("a.m3u8", 1, -1), id="negative-last-part"),
    pytest.param(lambda: MediaPlaylist(0, 0, ()), id="zero-target-duration"),
    pytest.param(lambda: MediaPlaylist(2, 5, (segment(4),)), id="msn-not-from-media-sequence"),
    pytest.param(lambda: MediaPlaylist(2, 0, (segment(0), segment(2))), id="msn-gap"),
    pytest.param(lambda: MediaPlaylist(2, 0, (segment(0), segment(1, map_uri=None))), id="map-switched-off"),
    pytest.param(lambda: MediaPlaylist(2, 0, (), preload_hint="0.0.m4s", ended=True), id="hint-when-ended"),
    pytest.param(lambda: MediaPlaylist(2, 0, (), server_control="CAN-BLOCK-RELOAD=YES"),
                 id="control-not-a-control"),
    pytest.param(lambda: Variant("a.m3u8", 100, resolution=(0, 720)), id="zero-width"),
    pytest.param(lambda: Variant("a.m3u8", 100, resolution="1280x720"), id="resolution-string"),
    pytest.param(lambda: Variant("a.m3u8", 100, codecs='avc1"'), id="quote-in-codecs"),
    pytest.param(lambda: Variant("a.m3u8", 100, frame_rate=0), id="zero-frame-rate"),
])
def test_model_rejects_what_cannot_be_rendered(make):
    with pytest.raises(ValueError):
        make()


def test_model_quantizes_to_what_the_text_carries():
    assert Part("a.m4s", 0.2000004).duration == 0.2
    assert Segment(0, "0.m4s", 1.999996).duration == 2.0
    assert Variant("a.m3u8", 1, frame_rate=29.97002997).frame_rate == 29.97
    eastern = timezone(timedelta(hours=-5))
    date = datetime(2024, 5, 1, 7, 0, 0, 123_600, tzinfo=eastern)
    assert Segment(0, "0.m4s", 2.0, date).program_date_time == datetime(
        2024, 5, 1, 12, 0, 0, 124_000, tzinfo=UTC
    )
    # Lists are accepted where tuples are stored.
    assert Segment(0, "0.m4s", 2.0, parts=[Part("p", 2.0)]).parts == (Part("p", 2.0),)


def test_commas_in_quoted_uris_are_fine():
    playlist = MediaPlaylist(2, 0, (Segment(0, "0.m4s?a=1,2", 2.0, map_uri="init.mp4?x=1,y=2",
                                            parts=(Part("0.0.m4s?t=a,b", 2.0, True),)),))
    assert parse_media_playlist(playlist.render()) == playlist
    cross_check_with_m3u8(playlist.render(), playlist)


def test_zero_valued_attributes_are_not_absent():
    playlist = MediaPlaylist(2, 0, (), server_control=ServerControl(can_block_reload=False, hold_back=0.0),
                             part_target=0.0)
    assert "#EXT-X-SERVER-CONTROL:HOLD-BACK=0.0\n" in playlist.render()
    assert parse_media_playlist(playlist.render()) == playlist


def test_next_segment_state_is_normalized():
    playlist = MediaPlaylist(2, 0, (segment(0),), partial_parts=(part(1, 0),), next_map_uri="init.mp4")
    assert playlist.next_map_uri is None  # the same map as the last segment's
    assert playlist.render().count("EXT-X-MAP") == 1
    # Without a partial part the in-progress segment has nothing listed, tags included.
    empty = MediaPlaylist(2, 0, (segment(0),), next_map_uri="init-2.mp4", next_discontinuity=True,
                          next_program_date_time=T0)
    assert (empty.next_map_uri, empty.next_discontinuity, empty.next_program_date_time) == (None, False, None)
    assert empty == MediaPlaylist(2, 0, (segment(0),))


# -- positions: last_msn_part and blocking reload ---------------------------------------------

def test_last_msn_part():
    assert EMPTY.last_msn_part() is None
    assert PLAIN_LIVE.last_msn_part() == (102, None)
    assert PARTS_ONLY.last_msn_part() == (0, 1)
    assert LOW_LATENCY.last_msn_part() == (9, 0)
    # A segment that just completed, with no part of the next one yet: its own last part.
    just_completed = ll_playlist(partial=0, preload_hint="10.0.m4s", next_program_date_time=None)
    assert just_completed.last_msn_part() == (9, 9)
    assert RenditionReport.for_playlist("../a/index.m3u8", just_completed) == RenditionReport(
        "../a/index.m3u8", 9, 9
    )
    assert RenditionReport.for_playlist("x.m3u8", EMPTY) == RenditionReport("x.m3u8", 0)


@pytest.mark.parametrize(("msn", "part", "answered"), [
    (5, None, True),     # a complete segment
    (9, None, True),     # the last complete segment
    (10, None, False),   # the segment being built is not a Media Segment yet
    (10, 0, True),
    (10, 1, True),
    (10, 2, False),      # the hinted part
    (11, 0, False),
    (9, 9, True),
    (9, 10, True),       # past the last part of 9: part 0 of 10, which is listed
    (8, 25, True),       # past the last part of 8: part 0 of 9
])
def test_contains_answers_blocking_reloads(msn, part, answered):
    assert ll_playlist(count=10, partial=2).contains(msn, part) is answered


@pytest.mark.parametrize(("msn", "part", "rejected"), [
    (11, None, False),   # last complete segment 9, plus two
    (12, None, True),
    (10, 16, False),     # newest part is 10.1; PART-TARGET 0.2 allows 15 parts ahead
    (10, 17, True),
    (11, 14, False),     # part 14 of the next segment: 15 parts in, counted conservatively
    (11, 15, True),
    (3, 99, False),      # behind the live edge is never too far
])
def test_too_far_ahead_for_a_blocking_reload(msn, part, rejected):
    assert ll_playlist(count=10, partial=2).too_far_ahead(msn, part) is rejected


def test_too_far_ahead_without_parts_and_when_ended():
    assert PLAIN_LIVE.too_far_ahead(105) and not PLAIN_LIVE.too_far_ahead(104)  # 102 + 2
    assert not PLAIN_LIVE.too_far_ahead(103, 2) and PLAIN_LIVE.too_far_ahead(103, 3)  # limit 3
    assert not ENDED.too_far_ahead(10**6, 10**6)


def test_contains_after_a_segment_completes_and_when_ended():
    just_completed = ll_playlist(partial=0, preload_hint="10.0.m4s", next_program_date_time=None)
    assert just_completed.contains(9, 9)
    assert not just_completed.contains(9, 10)  # means (10, 0): not yet
    assert not just_completed.contains(10, 0)
    assert ENDED.contains(1000, 3)  # directives are ignored once ENDLIST is there
    assert ll_playlist(first=20).contains(3, 4)  # older than the window: answered at once


# -- parsing other servers' playlists ---------------------------------------------------------

FOREIGN = """\
#EXTM3U\r
#EXT-X-TARGETDURATION:4\r
#EXT-X-VERSION:7\r
#EXT-X-PLAYLIST-TYPE:EVENT\r
#EXT-X-START:TIME-OFFSET=-12.0\r
# a comment\r
#EXT-X-MAP:URI="https://cdn.example.com/live/init.mp4"\r
\r
#EXT-X-DATERANGE:ID="ad",START-DATE="2024-05-01T12:00:00Z",DURATION=30\r
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T14:00:00+02:00\r
#EXT-X-BITRATE:2000\r
#EXTINF:4,first segment\r
seg/0.mp4?token=abc\r
#EXT-X-KEY:METHOD=NONE\r
#EXTINF:3.5\r
../other/1.mp4\r
#EXT-X-FUTURE-TAG:X=1\r
#EXT-X-PART:DURATION=1,URI="2.0.mp4",INDEPENDENT=YES,X-VENDOR="y"\r
#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="next-init.mp4"\r
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="2.1.mp4"\r
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="ignored.mp4"\r
#EXT-X-RENDITION-REPORT:URI="../lo/index.m3u8"\r
"""


def test_parser_tolerates_other_servers_valid_playlists():
    playlist = parse_media_playlist(FOREIGN)
    assert playlist.target_duration == 4
    assert playlist.media_sequence == 0
    assert playlist.independent_segments is False
    first, second = playlist.segments
    init = "https://cdn.example.com/live/init.mp4"
    assert first == Segment(0, "seg/0.mp4?token=abc", 4.0, T0, map_uri=init)
    assert second == Segment(1, "../other/1.mp4", 3.5, map_uri=init)
    assert playlist.partial_parts == (Part("2.0.mp4", 1.0, True),)
    assert playlist.next_map_uri is None
    assert playlist.preload_hint == "2.1.mp4"
    # LAST-MSN (and LAST-PART) omitted: the same as this playlist's own (4.4.5.4).
    assert playlist.rendition_reports == (RenditionReport("../lo/index.m3u8", 2, 0),)


@pytest.mark.parametrize(("text", "message", "line"), [
    pytest.param("", "#EXTM3U", 1, id="empty"),
    pytest.param("\ufeff#EXTM3U\n", "byte order mark", 1, id="bom"),
    pytest.param("#EXT-X-TARGETDURATION:2\n", "#EXTM3U", 1, id="no-extm3u"),
    pytest.param("#EXTM3U\n#EXTINF:2,\na.ts\n", "EXT-X-TARGETDURATION is required", 3, id="no-target-duration"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2.5\n", "decimal-integer", 2, id="float-target-duration"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-TARGETDURATION:2\n", "more than once", 3, id="twice"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na.ts\n", "decimal-floating-point", 3,
                 id="negative-extinf"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1e3,\na.ts\n", "decimal-floating-point", 3, id="exponent"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:nan,\na.ts\n", "decimal-floating-point", 3, id="nan"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "without EXTINF", 3, id="uri-without-extinf"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n", "without a URI", 3, id="extinf-without-uri"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-BYTERANGE:100@0\n#EXTINF:2,\na.ts\n",
                 "byte-range", 3, id="byterange"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1,URI=\"a\",BYTERANGE=\"10@0\"\n",
                 "byte-range parts", 3, id="part-byterange"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n",
                 "encrypted", 3, id="encryption"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-GAP\n", "gap", 3, id="gap"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1,URI=\"a\",GAP=YES\n",
                 "GAP", 3, id="gap-part"),
    pytest.param("#EXTM3U\n#EXT-X-DEFINE:NAME=\"a\",VALUE=\"b\"\n", "variable substitution", 2, id="define"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
                 "Multivariant", 3, id="master-tag-in-media"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1\n", "URI attribute is required", 3,
                 id="part-without-uri"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1,URI=a\n", "quoted-string", 3,
                 id="unquoted-uri"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:URI=\"a\",URI=\"b\",DURATION=1\n",
                 "appears twice", 3, id="duplicate-attribute"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1, URI=\"a\"\n", "malformed", 3,
                 id="whitespace-in-attributes"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=1,URI=\"a\n", "unterminated", 3,
                 id="unterminated-quote"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-MEDIA-SEQUENCE:3\n",
                 "after the first Media Segment", 5, id="media-sequence-late"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n", "ISO 8601", 3,
                 id="bad-date"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\tb.ts\n", "control character", 4,
                 id="tab"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na b.ts\n", "whitespace", 4,
                 id="space-in-uri"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551616\n",
                 "decimal-integer", 3, id="msn-overflow"),
    pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n#EXTINF:2,\na.ts\n",
                 "previous playlist", 3, id="delta-without-previous"),
])
def test_parse_errors_name_the_line(text, message, line):
    with pytest.raises(PlaylistError, match=message) as caught:
        parse_media_playlist(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ")


def test_delta_update_needs_the_skipped_segments_in_the_previous_playlist():
    playlist = ll_playlist(first=20)
    older = ll_playlist(first=22)  # no longer has segments 20 and 21
    with pytest.raises(PlaylistError, match="reload without _HLS_skip"):
        parse_media_playlist(playlist.render(skip=True), previous=older)


def test_parse_refuses_oversized_input():
    with pytest.raises(PlaylistError, match="larger than"):
        parse_media_playlist("#EXTM3U\n" + "#" * MAX_PLAYLIST_BYTES)
    header = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
    too_many = header + "#EXTINF:1,\na\n" * (MAX_SEGMENTS + 1)
    assert len(too_many) < MAX_PLAYLIST_BYTES
    with pytest.raises(PlaylistError, match="more than 100000 segments"):
        parse_media_playlist(too_many)


def test_parse_master_playlist_tolerates_and_refuses():
    text = """\
#EXTM3U
#EXT-X-VERSION:4
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="en",URI="audio.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="aac",RESOLUTION=640x360
360p.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="iframes.m3u8"
"""
    assert parse_master_playlist(text) == MasterPlaylist(
        (Variant("360p.m3u8", 800000, resolution=(640, 360)),), independent_segments=False
    )
    for bad, message in [
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "without its URI line"),
        ("#EXTM3U\nlonely.m3u8\n", "without EXT-X-STREAM-INF"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:AVERAGE-BANDWIDTH=1\na.m3u8\n", "BANDWIDTH attribute is required"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1280\na.m3u8\n", "WIDTHxHEIGHT"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n", "Media Playlist tag"),
    ]:
        with pytest.raises(PlaylistError, match=message):
            parse_master_playlist(bad)


# -- hypothesis: any model round-trips; any text fails only with PlaylistError ---------------

uris = st.text(string.ascii_letters + string.digits + "._-/?=&%~,:", min_size=1, max_size=16).filter(
    lambda uri: not uri.startswith("#")
)
seconds = st.floats(min_value=0, max_value=100, allow_nan=False)
dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]))
parts_ = st.builds(Part, uris, seconds, st.booleans())


@st.composite
def server_controls(draw) -> ServerControl:
    can_skip_until = draw(st.none() | seconds)
    fields = dict(
        can_block_reload=draw(st.booleans()),
        part_hold_back=draw(st.none() | seconds),
        hold_back=draw(st.none() | seconds),
        can_skip_until=can_skip_until,
        can_skip_dateranges=can_skip_until is not None and draw(st.booleans()),
    )
    if not any(value is not None and value is not False for value in fields.values()):
        fields["can_block_reload"] = True
    return ServerControl(**fields)


@st.composite
def media_playlists(draw) -> MediaPlaylist:
    """Any playlist the model accepts; numbers need not make a good playlist."""
    media_sequence = draw(st.integers(0, 2**40))
    maps = draw(st.lists(uris, min_size=1, max_size=3))
    map_uri = None
    segments = []
    for msn in range(media_sequence, media_sequence + draw(st.integers(0, 6))):
        # A map, once in effect, can change but not go away (4.4.4.5).
        if map_uri is None:
            map_uri = draw(st.none() | st.sampled_from(maps))
        elif draw(st.booleans()):
            map_uri = draw(st.sampled_from(maps))
        segments.append(Segment(
            msn, draw(uris), draw(seconds), draw(st.none() | dates), draw(st.booleans()), map_uri,
            tuple(draw(st.lists(parts_, max_size=3))),
        ))
    partial = tuple(draw(st.lists(parts_, max_size=3)))
    ended = draw(st.booleans())
    return MediaPlaylist(
        target_duration=draw(st.integers(1, 30)),
        media_sequence=media_sequence,
        segments=tuple(segments),
        discontinuity_sequence=draw(st.integers(0, 2**32)),
        partial_parts=partial,
        next_map_uri=draw(st.none() | st.sampled_from(maps)) if partial else None,
        next_discontinuity=bool(partial) and draw(st.booleans()),
        next_program_date_time=draw(st.none() | dates) if partial else None,
        part_target=draw(st.none() | seconds),
        server_control=draw(st.none() | server_controls()),
        preload_hint=None if ended else draw(st.none() | uris),
        rendition_reports=tuple(draw(st.lists(st.builds(
            RenditionReport, uris, st.integers(0, 2**40), st.none() | st.integers(0, 100)
        ), max_size=3))),
        ended=ended,
        independent_segments=draw(st.booleans()),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(media_playlists())
def test_any_playlist_round_trips(playlist):
    text = playlist.render()
    assert parse_media_playlist(text) == playlist
    delta = playlist.render(skip=True)
    assert parse_media_playlist(delta, previous=playlist) == playlist
    assert ("#EXT-X-SKIP:" in delta) == (playlist.skippable_segments() > 0)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(media_playlists())
def test_any_playlist_reads_the_same_in_m3u8(playlist):
    cross_check_with_m3u8(playlist.render(), playlist)
    cross_check_with_m3u8(playlist.render(skip=True), playlist, skipped=playlist.skippable_segments())


variants = st.builds(
    Variant, uris, st.integers(0, 10**9), st.none() | st.integers(0, 10**9),
    st.none() | st.text(string.ascii_letters + string.digits + ".,", min_size=1, max_size=30),
    st.none() | st.tuples(st.integers(1, 8192), st.integers(1, 8192)),
    st.none() | st.floats(min_value=0.001, max_value=240),
)


@given(st.builds(MasterPlaylist, st.lists(variants, max_size=4).map(tuple), st.booleans()))
def test_any_master_playlist_round_trips(master):
    assert parse_master_playlist(master.render()) == master


VOCABULARY = [
    "#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:3",
    "#EXT-X-DISCONTINUITY-SEQUENCE:1", "#EXT-X-DISCONTINUITY", '#EXT-X-MAP:URI="i.mp4"',
    "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z", "#EXTINF:2.0,", "#EXTINF:", "a.m4s",
    '#EXT-X-PART:DURATION=0.2,URI="p.m4s"', '#EXT-X-PART:DURATION=0.2,URI="p.m4s",INDEPENDENT=YES',
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="h.m4s"', '#EXT-X-RENDITION-REPORT:URI="r.m3u8",LAST-MSN=4',
    "#EXT-X-SKIP:SKIPPED-SEGMENTS=1", "#EXT-X-ENDLIST", "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6", "#EXT-X-PART-INF:PART-TARGET=0.2",
    "#EXT-X-STREAM-INF:BANDWIDTH=1", "#EXT-X-SERVER-CONTROL:", "#EXT-X-PART:", '"', ",", "=",
]


@st.composite
def playlist_like_text(draw) -> str:
    lines = draw(st.lists(st.sampled_from(VOCABULARY) | st.text(max_size=12), max_size=25))
    return "\n".join(["#EXTM3U", *lines]) if draw(st.booleans()) else "\n".join(lines)


@st.composite
def mutated_playlists(draw) -> str:
    lines = draw(media_playlists()).render().split("\n")
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        mutation = draw(st.sampled_from(["drop", "duplicate", "truncate", "insert"]))
        if mutation == "drop":
            del lines[index]
        elif mutation == "duplicate":
            lines.insert(index, lines[index])
        elif mutation == "truncate":
            lines[index] = lines[index][: draw(st.integers(0, max(0, len(lines[index]) - 1)))]
        else:
            lines.insert(index, draw(st.sampled_from(VOCABULARY) | st.text(max_size=8)))
        if not lines:
            lines = [""]
    return "\n".join(lines)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | playlist_like_text() | mutated_playlists())
def test_any_text_fails_only_with_playlist_error(text):
    for parse in (parse_media_playlist, parse_master_playlist):
        try:
            result = parse(text)
        except PlaylistError:
            continue
        assert isinstance(result, (MediaPlaylist, MasterPlaylist))


def test_playlist_type_round_trips_and_a_vod_playlist_is_complete():
    for kind in ("EVENT", "VOD"):
        playlist = MediaPlaylist(target_duration=2, media_sequence=0, segments=(segment(0), segment(1)),
                                 ended=True, playlist_type=kind)
        text = playlist.render()
        assert f"#EXT-X-PLAYLIST-TYPE:{kind}\n" in text
        assert parse_media_playlist(text) == playlist
        cross_check_with_m3u8(text, playlist)
    with pytest.raises(ValueError, match="VOD"):
        MediaPlaylist(target_duration=2, media_sequence=0, segments=(segment(0),), playlist_type="VOD")
    with pytest.raises(PlaylistError):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:LIVE\n#EXTINF:2,\n0.m4s\n")
