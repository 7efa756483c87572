"""The strict checker: every rule has a playlist that breaks it and one that keeps it, and a
miniature packager driven by hypothesis produces live LL-HLS timelines (restarts, short
GOPs, two renditions updated one after the other, delta updates, the end) that pass every
check on every reload.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.media.hls import (
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    PlaylistViolation,
    RenditionReport,
    Segment,
    ServerControl,
    Variant,
    check_master_playlist,
    check_media_playlist,
    check_renditions,
    parse_media_playlist,
)
from tests.media.test_hls import (
    LL_CONTROL,
    T0,
    cross_check_with_m3u8,
    ll_playlist,
    media_playlists,
    mutated_playlists,
    part,
    segment,
)

GOOD = ll_playlist()


def violates(text: str, section: str, *, previous: MediaPlaylist | None = None) -> PlaylistViolation:
    with pytest.raises(PlaylistViolation) as caught:
        check_media_playlist(text, previous=previous)
    assert section in caught.value.section, str(caught.value)
    assert isinstance(caught.value, PlaylistError) and isinstance(caught.value, ValueError)
    return caught.value


def edited(playlist: MediaPlaylist, **changes) -> MediaPlaylist:
    return replace(playlist, **changes)


def test_the_reference_playlist_passes():
    assert check_media_playlist(GOOD.render()) == GOOD
    assert check_media_playlist(GOOD.render(skip=True), previous=GOOD) == GOOD


def test_a_violation_quotes_its_rule():
    error = violates(edited(GOOD, target_duration=1).render(), "4.4.3.1")
    assert str(error).startswith('RFC 8216bis 4.4.3.1 ("The EXTINF duration of each Media Segment')
    assert "segment 0 lasts 2.0 s, EXT-X-TARGETDURATION is 1" in str(error)


# -- text-level rules ---------------------------------------------------------------------------

def test_syntax_errors_are_violations_too():
    error = violates("#EXT-X-TARGETDURATION:2\n", "RFC 8216bis 4")
    assert error.line == 1


def test_playlist_tags_come_before_the_segments():
    text = GOOD.render().replace("#EXT-X-INDEPENDENT-SEGMENTS\n", "")
    violates(text.replace("\n0.m4s\n", "\n0.m4s\n#EXT-X-INDEPENDENT-SEGMENTS\n"), "4.4.3")
    sequence = "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
    check_media_playlist(text.replace(sequence, sequence + "#EXT-X-INDEPENDENT-SEGMENTS\n"))


@pytest.mark.parametrize("tag", ["#EXT-X-DISCONTINUITY", '#EXT-X-MAP:URI="init.mp4"',
                                 "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:16.000Z"])
def test_parent_segment_tags_come_before_its_first_part(tag):
    first_part = '#EXT-X-PART:DURATION=0.20000,URI="8.0.m4s",INDEPENDENT=YES\n'
    text = GOOD.render()
    violates(text.replace(first_part, first_part + tag + "\n"), "4.4.4.9")


def test_one_part_preload_hint():
    hint = '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="10.2.m4s"\n'
    text = GOOD.render()
    violates(text.replace(hint, hint * 2), "6.2.6")
    violates(text.replace(hint, '#EXT-X-PRELOAD-HINT:URI="10.2.m4s"\n'), "4.4.5.3")
    check_media_playlist(text.replace(hint, hint + '#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init-2.mp4"\n'))


def test_no_preload_hint_once_ended():
    ended = edited(GOOD, ended=True, preload_hint=None)
    check_media_playlist(ended.render())
    hint = '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="10.2.m4s"\n'
    text = ended.render().replace("#EXT-X-ENDLIST", hint + "#EXT-X-ENDLIST")
    violates(text, "4.4.5.3")


@pytest.mark.parametrize(("playlist", "lower", "section"), [
    pytest.param(GOOD, "#EXT-X-VERSION:5", "8", id="map-needs-6"),
    pytest.param(MediaPlaylist(2, 0, (Segment(0, "0.ts", 1.5),)), "#EXT-X-VERSION:2", "8", id="decimal-extinf-needs-3"),
])
def test_version_is_high_enough(playlist, lower, section):
    text = playlist.render()
    check_media_playlist(text)
    violates(text.replace(f"#EXT-X-VERSION:{playlist.version()}", lower), section)


def test_delta_update_needs_version_9():
    delta = GOOD.render(skip=True)
    assert "#EXT-X-VERSION:9\n" in delta
    violates(delta.replace("#EXT-X-VERSION:9", "#EXT-X-VERSION:6"), "8", previous=GOOD)


def test_live_playlist_that_removes_segments_has_no_playlist_type():
    live = ll_playlist(first=5)
    check_media_playlist(live.render())
    sequence = "#EXT-X-MEDIA-SEQUENCE"
    with_type = live.render().replace(sequence, "#EXT-X-PLAYLIST-TYPE:EVENT\n" + sequence)
    violates(with_type, "6.2.2")


# -- durations ----------------------------------------------------------------------------------

def test_extinf_rounded_within_target_duration():
    def with_last(duration: float) -> MediaPlaylist:
        # Twelve 0.2 s parts and a short final one.
        last = GOOD.segments[-1]
        parts = tuple(part(last.msn, i) for i in range(12)) + (part(last.msn, 12, round(duration - 2.4, 5)),)
        return edited(GOOD, segments=GOOD.segments[:-1] + (replace(last, duration=duration, parts=parts),))

    check_media_playlist(with_last(2.49).render())  # rounds to 2
    violates(with_last(2.5).render(), "4.4.3.1")    # rounds (half up) to 3


def test_parts_add_up_to_their_segment():
    last = GOOD.segments[-1]
    short = replace(last, parts=last.parts[:-1])  # a part missing: the EXTINF says 2.0
    violates(edited(GOOD, segments=GOOD.segments[:-1] + (short,)).render(), "3.2")


def test_parts_need_part_inf():
    violates(edited(GOOD, part_target=None, server_control=ServerControl(hold_back=6.0)).render(), "4.4.3.7")


def test_part_not_longer_than_part_target():
    violates(edited(GOOD, partial_parts=(part(10, 0), part(10, 1, 0.21))).render(), "4.4.4.9")
    check_media_playlist(edited(GOOD, partial_parts=(part(10, 0), part(10, 1, 0.2))).render())


def test_parts_at_least_85_percent_of_part_target_unless_independent_or_last():
    short, fine = 0.16, 0.17  # 85% of 0.2 is 0.17
    def partial(*durations: float, independent: tuple[int, ...] = (0,)) -> MediaPlaylist:
        parts = tuple(Part(f"10.{i}.m4s", d, i in independent) for i, d in enumerate(durations))
        return edited(GOOD, partial_parts=parts, preload_hint=f"10.{len(parts)}.m4s")

    violates(partial(0.2, short, 0.2).render(), "4.4.4.9")
    check_media_playlist(partial(0.2, fine, 0.2).render())
    check_media_playlist(partial(0.2, short, 0.2, independent=(0, 1)).render())  # INDEPENDENT=YES
    check_media_playlist(partial(0.2, 0.2, short).render())  # the newest part may end the segment
    # The final part of a complete segment may be short.
    last = GOOD.segments[-1]
    parts = last.parts[:-1] + (Part("9.9.m4s", 0.05),)
    ends_short = replace(last, duration=1.85, parts=parts)
    check_media_playlist(edited(GOOD, segments=GOOD.segments[:-1] + (ends_short,)).render())


def test_first_part_of_an_independent_segment_is_marked_independent():
    parts = (Part("10.0.m4s", 0.2), Part("10.1.m4s", 0.2))
    violates(edited(GOOD, partial_parts=parts).render(), "4.4.2.1")
    check_media_playlist(edited(GOOD, partial_parts=parts, independent_segments=False).render())


# -- which parts are listed --------------------------------------------------------------------

def test_parts_are_removed_oldest_first():
    segments = list(GOOD.segments)
    segments[7] = replace(segments[7], parts=segments[9].parts)  # 7 and 9 list parts, 8 does not
    segments[8] = replace(segments[8], parts=())
    violates(edited(GOOD, segments=tuple(segments)).render(), "6.2.2")


def test_parts_removed_beyond_three_target_durations():
    # Segment 7 starts 6.4 s before the live edge, more than 3 x 2 s.
    violates(ll_playlist(with_parts=3).render(), "6.2.2")
    check_media_playlist(ll_playlist(with_parts=2, partial=10).render())  # starts exactly 6.0 s back


def test_a_preload_hint_counts_its_segment_among_the_three_that_list_parts():
    # hls-parser (strict) makes a segment of a preload hint before its first part: three closed
    # segments with parts and a hint are four (seen at every segment start, 1 reload in 10).
    error = violates(ll_playlist(with_parts=3, partial=0, preload_hint="10.0.m4s", next_program_date_time=None).render(),
                     "6.2.2")
    assert "4 segments list parts" in str(error)
    check_media_playlist(ll_playlist(with_parts=2, partial=0, preload_hint="10.0.m4s", next_program_date_time=None).render())


def test_parts_on_at_most_three_segments_counting_the_one_in_progress():
    # hls-parser (strict) refuses parts on any but the last three segments, its in-progress
    # segment included, even when they are all within three target durations (short segments).
    short = tuple(segment(msn, parts=2, duration=0.4, start=0.4 * msn) for msn in range(4))
    playlist = ll_playlist(count=0, with_parts=0, partial=2, segments=short, media_sequence=0,
                           preload_hint="4.2.m4s", next_program_date_time=T0 + timedelta(seconds=1.6))
    error = violates(playlist.render(), "6.2.2")
    assert "5 segments list parts" in str(error)
    trimmed = edited(playlist, segments=(replace(short[0], parts=()), replace(short[1], parts=()), *short[2:]))
    check_media_playlist(trimmed.render())


def test_parts_reach_back_to_part_hold_back():
    playlist = ll_playlist(with_parts=0, partial=2)  # 0.4 s of parts, PART-HOLD-BACK 0.6
    error = violates(playlist.render(), "Sender LL-HLS profile")
    assert "parts cover the last 0.400 s" in str(error)
    check_media_playlist(ll_playlist(with_parts=1, partial=0, preload_hint="10.0.m4s",
                                     next_program_date_time=None).render())


# -- EXT-X-SERVER-CONTROL ------------------------------------------------------------------------

@pytest.mark.parametrize(("control", "section", "rule"), [
    pytest.param(ServerControl(hold_back=6.0, can_skip_until=12.0), "4.4.3.8", "REQUIRED", id="no-part-hold-back"),
    pytest.param(replace(LL_CONTROL, part_hold_back=0.59), "4.4.3.8", "SHOULD be at least three", id="below-3x"),
    pytest.param(replace(LL_CONTROL, part_hold_back=0.39), "4.4.3.8", "MUST be at least twice", id="below-2x"),
    pytest.param(replace(LL_CONTROL, hold_back=5.99), "4.4.3.8", "three times the Target", id="hold-back"),
    pytest.param(replace(LL_CONTROL, can_skip_until=11.99), "4.4.3.8", "six times", id="skip-boundary"),
    pytest.param(replace(LL_CONTROL, can_block_reload=False), "Sender LL-HLS profile", "CAN-BLOCK-RELOAD",
                 id="no-blocking-reload"),
])
def test_server_control_limits(control, section, rule):
    error = violates(edited(GOOD, server_control=control).render(), section)
    assert rule in str(error)


def test_server_control_limits_met_exactly():
    exact = ServerControl(part_hold_back=0.6, hold_back=6.0, can_skip_until=12.0)
    check_media_playlist(edited(GOOD, server_control=exact).render())
    # Without parts, a plain playlist needs no SERVER-CONTROL at all.
    plain = MediaPlaylist(6, 0, tuple(segment(i, duration=6.0) for i in range(3)))
    check_media_playlist(plain.render())


# -- the low-latency profile -------------------------------------------------------------------

def test_low_latency_playlists_carry_dates():
    undated = edited(GOOD, segments=tuple(replace(s, program_date_time=None) for s in GOOD.segments),
                     next_program_date_time=None)
    violates(undated.render(), "Appendix B.1")


def test_low_latency_playlists_hint_the_next_part():
    violates(edited(GOOD, preload_hint=None).render(), "Appendix B.1")
    check_media_playlist(edited(GOOD, preload_hint=None, ended=True).render())  # ended: no hint
    violates(edited(GOOD, preload_hint="10.1.m4s").render(), "4.4.5.3")  # already listed


def test_parts_only_playlist_is_valid():
    playlist = ll_playlist(count=0, partial=1, next_map_uri="init.mp4", next_program_date_time=T0,
                           preload_hint="0.1.m4s")
    assert check_media_playlist(playlist.render()) == playlist
    cross_check_with_m3u8(playlist.render(), playlist)


# -- EXT-X-MAP and dates -----------------------------------------------------------------------

def test_fmp4_segments_have_a_map():
    unmapped = edited(GOOD, segments=tuple(replace(s, map_uri=None) for s in GOOD.segments))
    violates(unmapped.render(), "3.1.2")
    late = list(GOOD.segments)
    late[0] = replace(late[0], map_uri=None)
    violates(edited(GOOD, segments=tuple(late)).render(), "3.1.2")
    transport_stream = MediaPlaylist(6, 0, (Segment(0, "0.ts", 6.0),))
    check_media_playlist(transport_stream.render())
    parts_only = ll_playlist(count=0, partial=1, next_program_date_time=T0, preload_hint="0.1.m4s")
    violates(parts_only.render(), "3.1.2")


def test_program_date_times_never_go_back():
    segments = list(GOOD.segments)
    # Segment 3 starts at 6 s and lasts 2 s.
    segments[4] = replace(segments[4], program_date_time=T0 + timedelta(seconds=7.5))  # a 0.5 s overlap
    check_media_playlist(edited(GOOD, segments=tuple(segments)).render())
    segments[4] = replace(segments[4], program_date_time=T0 + timedelta(seconds=6.9))  # a 1.1 s overlap
    violates(edited(GOOD, segments=tuple(segments)).render(), "6.2.1")
    segments[4] = replace(segments[4], program_date_time=T0 + timedelta(seconds=6))  # the same as 3
    violates(edited(GOOD, segments=tuple(segments)).render(), "6.2.1")


def test_dates_across_a_gap_and_a_discontinuity():
    segments = list(GOOD.segments)
    later = T0 + timedelta(seconds=100)
    segments[5:] = [replace(s, program_date_time=later + timedelta(seconds=2 * i), discontinuity=i == 0,
                            map_uri="init-2.mp4") for i, s in enumerate(segments[5:])]
    gap = edited(GOOD, segments=tuple(segments), next_program_date_time=later + timedelta(seconds=10))
    check_media_playlist(gap.render())
    segments[5] = replace(segments[5], program_date_time=None)
    violates(edited(gap, segments=tuple(segments)).render(), "6.2.1")  # discontinuity without a date


# -- delta updates -----------------------------------------------------------------------------

def test_delta_update_checks():
    delta = GOOD.render(skip=True)
    assert check_media_playlist(delta, previous=GOOD) == GOOD
    violates(delta, "RFC 8216bis 4")  # no previous playlist to merge into
    no_skipping = delta.replace("CAN-SKIP-UNTIL=12.0,", "")
    without_deltas = edited(GOOD, server_control=replace(LL_CONTROL, can_skip_until=None))
    violates(no_skipping, "6.2.5.1", previous=without_deltas)


def test_delta_update_skips_exactly_the_segments_beyond_the_boundary():
    full = GOOD.render().split("\n")
    header, body = full[:8], full[8:]  # up to EXT-X-INDEPENDENT-SEGMENTS
    header[1] = "#EXT-X-VERSION:9"

    def delta(skipped: int) -> str:
        # Segment n's lines start at its EXT-X-PROGRAM-DATE-TIME (segment 0 also has the map).
        starts = [i for i, line in enumerate(body) if line.startswith("#EXT-X-PROGRAM-DATE-TIME")]
        kept = body[starts[skipped]:]
        skip = [f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}", '#EXT-X-MAP:URI="init.mp4"']
        return "\n".join(header + skip + kept)

    assert check_media_playlist(delta(4), previous=GOOD) == GOOD
    # Segment 3 ends 12.4 s before the live edge but only 12.0 s before the end of the last
    # complete segment: whether it is "further than the Skip Boundary" depends on where the
    # end is taken, so keeping it is accepted too.
    assert check_media_playlist(delta(3), previous=GOOD) == GOOD
    violates(delta(2), "6.2.5.1", previous=GOOD)  # segment 2 is beyond the boundary but kept
    # Segment 4 straddles the boundary (it starts 12.4 s before the live edge): skipping it
    # is accepted; segment 5 lies wholly within the boundary and must not be skipped.
    assert check_media_playlist(delta(5), previous=GOOD) == GOOD
    violates(delta(6), "6.2.5.1", previous=GOOD)


# -- how a playlist may change between reloads -------------------------------------------------

def test_reload_continuity_rules():
    older = ll_playlist(first=10)
    newer = ll_playlist(first=11)
    assert check_media_playlist(newer.render(), previous=older) == newer
    cases = [
        (edited(newer, target_duration=3, server_control=replace(LL_CONTROL, hold_back=9.0,
                                                                 can_skip_until=18.0)), "6.2.1"),
        (ll_playlist(first=9), "6.2.2"),                                    # media sequence went back
        # A part vanished.
        (edited(older, partial_parts=older.partial_parts[:1], preload_hint="20.1.m4s"), "6.2.1"),
    ]
    for playlist, section in cases:
        violates(playlist.render(), section, previous=older)
    ended = edited(older, ended=True, preload_hint=None)
    check_media_playlist(ended.render(), previous=older)
    violates(older.render(), "6.2.1", previous=ended)  # EXT-X-ENDLIST disappeared


def test_reload_keeps_listed_segments_and_parts():
    older = ll_playlist(first=10)
    segments = list(older.segments)
    segments[3] = replace(segments[3], uri="13-again.m4s")
    violates(edited(older, segments=tuple(segments)).render(), "6.2.1", previous=older)
    segments = list(older.segments)
    last = segments[-1]
    segments[-1] = replace(last, parts=(replace(last.parts[0], uri="other.m4s"),) + last.parts[1:])
    violates(edited(older, segments=tuple(segments)).render(), "6.2.1", previous=older)
    # The segment that was being built completes with the parts that were listed for it.
    done = ll_playlist(first=10, count=11, partial=0, preload_hint="21.0.m4s", next_program_date_time=None)
    check_media_playlist(done.render(), previous=older)
    changed = list(done.segments)
    changed[-1] = replace(changed[-1], parts=(changed[-1].parts[0], Part("20.1-other.m4s", 0.2))
                          + changed[-1].parts[2:])
    violates(edited(done, segments=tuple(changed)).render(), "6.2.1", previous=older)


def test_discontinuity_sequence_counts_discontinuities_that_left():
    older = ll_playlist(first=10)
    segments = list(older.segments)
    segments[0] = replace(segments[0], discontinuity=True)
    older = edited(older, segments=tuple(segments), discontinuity_sequence=3)
    newer = edited(ll_playlist(first=11), discontinuity_sequence=4)
    check_media_playlist(newer.render(), previous=older)
    violates(edited(newer, discontinuity_sequence=3).render(), "6.2.2", previous=older)
    violates(edited(newer, discontinuity_sequence=5).render(), "6.2.2", previous=older)


def test_removing_segments_keeps_three_target_durations():
    older = ll_playlist(first=10, count=4)
    check_media_playlist(ll_playlist(first=11, count=3).render(), previous=older)  # 6 s left
    violates(ll_playlist(first=12, count=2, with_parts=2).render(), "6.2.2", previous=older)  # 4 s


# -- renditions of one stream ------------------------------------------------------------------

def renditions(**changes_to_low) -> dict[str, MediaPlaylist]:
    high = ll_playlist(reports=(RenditionReport("../low/index.m3u8", 10, 1),))
    low = edited(ll_playlist(reports=(RenditionReport("../high/index.m3u8", 10, 1),)), **changes_to_low)
    return {"high/index.m3u8": high, "low/index.m3u8": low}


def test_renditions_in_sync_pass():
    check_renditions(renditions())


@pytest.mark.parametrize(("changes", "section"), [
    pytest.param({"target_duration": 3, "server_control": replace(LL_CONTROL, hold_back=9.0, can_skip_until=18.0)},
                 "6.2.4", id="target-duration"),
    pytest.param({"server_control": replace(LL_CONTROL, hold_back=7.0)}, "6.2.4", id="server-control"),
    pytest.param({"part_target": 0.19}, "Sender LL-HLS profile", id="part-inf"),
    pytest.param({"rendition_reports": ()}, "Appendix B.1", id="missing-report"),
    pytest.param({"rendition_reports": (RenditionReport("../high/index.m3u8", 10, 1),) * 2}, "Appendix B.1",
                 id="duplicate-report"),
    pytest.param({"rendition_reports": (RenditionReport("../high/index.m3u8", 10, 1),
                                        RenditionReport("../mid/index.m3u8", 10, 1))}, "Sender LL-HLS profile",
                 id="unknown-rendition"),
    pytest.param({"rendition_reports": (RenditionReport("index.m3u8", 10, 1),)}, "Sender LL-HLS profile",
                 id="reports-itself"),
    pytest.param({"rendition_reports": (RenditionReport("../high/index.m3u8", 9, 8),)}, "Appendix B.1",
                 id="report-three-parts-behind"),
    pytest.param({"rendition_reports": (RenditionReport("../high/index.m3u8", 10, 3),)}, "Appendix B.1",
                 id="report-two-parts-ahead"),
    pytest.param({"rendition_reports": (RenditionReport("../high/index.m3u8", 10),)}, "4.4.5.4",
                 id="report-without-last-part"),
])
def test_renditions_violations(changes, section):
    with pytest.raises(PlaylistViolation) as caught:
        check_renditions(renditions(**changes))
    assert section in caught.value.section, str(caught.value)


def test_renditions_undated_one():
    playlists = renditions()
    low = playlists["low/index.m3u8"]
    undated = tuple(replace(s, program_date_time=None) for s in low.segments)
    playlists["low/index.m3u8"] = edited(low, segments=undated, next_program_date_time=None)
    with pytest.raises(PlaylistViolation, match="6.2.4"):
        check_renditions(playlists)


@pytest.mark.parametrize("report", [
    RenditionReport("../high/index.m3u8", 10, 0),   # one part behind
    RenditionReport("../high/index.m3u8", 10, 2),   # one part ahead: the hinted part
    RenditionReport("/high/index.m3u8", 10, 1),     # an absolute path resolves the same
])
def test_rendition_reports_within_one_part(report):
    check_renditions(renditions(rendition_reports=(report,)))


def test_plain_renditions_need_no_reports():
    plain = MediaPlaylist(6, 0, tuple(segment(i, duration=6.0) for i in range(3)))
    check_renditions({"a.m3u8": plain, "b.m3u8": plain})
    with pytest.raises(PlaylistViolation):
        check_renditions({})


# -- the Multivariant Playlist ------------------------------------------------------------------

VIDEO = Variant("720p/index.m3u8", 3_300_000, 3_000_000, "avc1.64001f,mp4a.40.2", (1280, 720), 30.0)


@pytest.mark.parametrize(("variants", "section"), [
    pytest.param((), "4.1", id="no-variants"),
    pytest.param((replace(VIDEO, bandwidth=0),), "4.4.6.2", id="zero-bandwidth"),
    pytest.param((replace(VIDEO, average_bandwidth=4_000_000),), "4.4.6.2", id="average-above-peak"),
    pytest.param((replace(VIDEO, codecs=None),), "4.4.6.2", id="no-codecs"),
    pytest.param((replace(VIDEO, resolution=None),), "4.4.6.2", id="video-without-resolution"),
    pytest.param((replace(VIDEO, frame_rate=None),), "4.4.6.2", id="video-without-frame-rate"),
])
def test_master_playlist_violations(variants, section):
    with pytest.raises(PlaylistViolation) as caught:
        check_master_playlist(MasterPlaylist(variants).render())
    assert section in caught.value.section


def test_master_playlist_passes():
    audio = Variant("audio/index.m3u8", 130_000, 128_000, "mp4a.40.2")
    master = MasterPlaylist((VIDEO, audio))
    assert check_master_playlist(master.render()) == master
    with pytest.raises(PlaylistViolation, match="RFC 8216bis 4"):
        check_master_playlist("#EXTM3U\n#EXTINF:2,\na.ts\n")


# -- a packager in miniature, checked on every reload ------------------------------------------

class LiveRendition:
    """What Sender's packager does to one rendition's playlist, in the fewest lines: parts
    of at most PART-TARGET, a segment per GOP, parts listed while the segment ends within
    three target durations of the live edge, a window of `window` segments, a new map and
    a discontinuity after a restart, a preload hint for the next part."""

    PART_TARGET = 0.5
    CONTROL = ServerControl(part_hold_back=1.5, hold_back=6.0, can_skip_until=12.0)

    def __init__(self, name: str, *, window: int = 12) -> None:
        self.name = name
        self.window = window
        self.segments: list[Segment] = []
        self.parts: list[Part] = []
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.map_uri = "init-0.mp4"
        self.clock = T0
        self.segment_start = T0
        self.restarted = False
        self.ended = False

    @property
    def next_msn(self) -> int:
        return self.media_sequence + len(self.segments)

    def publish_part(self, duration: float, keyframe: bool) -> None:
        if keyframe and self.parts:
            self._close_segment()
        index = len(self.parts)
        self.parts.append(Part(f"{self.name}/{self.next_msn}.{index}.m4s", duration, keyframe))
        self.clock += timedelta(seconds=duration)

    def restart(self, gap: float) -> None:
        """The backend died mid-GOP: the segment closes, the next one is discontinuous."""
        if self.parts:
            self._close_segment()
        self.map_uri = f"init-{self.next_msn}.mp4"
        self.restarted = True
        self.clock += timedelta(seconds=gap)
        self.segment_start = self.clock

    def end(self) -> None:
        if self.parts:
            self._close_segment()
        self.ended = True

    def _close_segment(self) -> None:
        duration = round(sum(p.duration for p in self.parts), 5)
        self.segments.append(Segment(
            self.next_msn, f"{self.name}/{self.next_msn}.m4s", duration, self.segment_start,
            self.restarted, self.map_uri, tuple(self.parts),
        ))
        self.parts, self.restarted = [], False
        self.segment_start = self.clock
        while len(self.segments) > self.window:
            removed = self.segments.pop(0)
            self.media_sequence += 1
            self.discontinuity_sequence += removed.discontinuity

    def position(self) -> MediaPlaylist:
        return self.playlist(())

    def playlist(self, reports: tuple[RenditionReport, ...]) -> MediaPlaylist:
        # Parts on segments starting within 3 x 2 s of the end, three segments at most
        # counting the one in progress (the packager's rule).
        age, slots, listed = sum(p.duration for p in self.parts), 3 - bool(self.parts), []
        for s in reversed(self.segments):
            age += s.duration
            listed.insert(0, s if slots > 0 and age <= 3 * 2 + 1e-9 and (not listed or listed[0].parts)
                          else replace(s, parts=()))
            slots -= 1
        return MediaPlaylist(
            target_duration=2,
            media_sequence=self.media_sequence,
            segments=tuple(listed),
            discontinuity_sequence=self.discontinuity_sequence,
            partial_parts=tuple(self.parts),
            next_map_uri=self.map_uri if self.parts else None,
            next_discontinuity=self.restarted and bool(self.parts),
            next_program_date_time=self.segment_start if self.parts else None,
            part_target=self.PART_TARGET,
            server_control=self.CONTROL,
            preload_hint=None if self.ended else f"{self.name}/{self.next_msn}.{len(self.parts)}.m4s",
            rendition_reports=reports,
            ended=self.ended,
        )


# A GOP: two to three 0.5 s parts and maybe a shorter last one, 1.0 to 2.0 s in all.
gops = st.tuples(st.integers(2, 3), st.none() | st.sampled_from([0.04, 0.25, 0.5]))
# Long enough for the window to fill and delta updates to skip something.
timeline = st.tuples(st.lists(gops, min_size=12, max_size=14),
                     st.lists(st.one_of(gops, st.just("restart")), max_size=10)).map(
    lambda start_and_rest: [*start_and_rest[0], *start_and_rest[1]]
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timeline)
def test_live_timelines_pass_every_check(events):
    high, low = LiveRendition("high"), LiveRendition("low")
    pair = {"high/index.m3u8": (high, "../low/index.m3u8", low),
            "low/index.m3u8": (low, "../high/index.m3u8", high)}
    previous: dict[str, MediaPlaylist] = {}

    def reload(uri: str) -> None:
        rendition, sibling_uri, sibling = pair[uri]
        playlist = rendition.playlist((RenditionReport.for_playlist(sibling_uri, sibling.position()),))
        before = previous.get(uri)
        assert check_media_playlist(playlist.render(), previous=before) == playlist
        if before is not None:
            assert check_media_playlist(playlist.render(skip=True), previous=before) == playlist
        previous[uri] = playlist
        if len(previous) == 2:
            check_renditions(previous)

    for event in events:
        if event == "restart":
            for rendition in (high, low):
                rendition.restart(gap=3.0)
            continue
        count, tail = event
        durations = [LiveRendition.PART_TARGET] * count + ([tail] if tail else [])
        for index, duration in enumerate(durations):
            # The renditions publish one after the other, as two packagers would.
            for uri, (rendition, _, _) in pair.items():
                rendition.publish_part(duration, keyframe=index == 0)
                reload(uri)
    for uri, (rendition, _, _) in pair.items():
        rendition.end()
        reload(uri)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | mutated_playlists())
def test_checker_fails_only_with_violations(text):
    with contextlib.suppress(PlaylistViolation):
        check_media_playlist(text)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(media_playlists(), media_playlists())
def test_checker_on_any_pair_of_models_fails_only_with_violations(playlist, previous):
    for text in (playlist.render(), playlist.render(skip=True)):
        with contextlib.suppress(PlaylistViolation):
            assert check_media_playlist(text, previous=previous) is not None
    assert parse_media_playlist(playlist.render()) == playlist
