"""RenditionMirror, sans-IO: from upstream media playlists (built with the model, and parsed from
text) to the objects an edge fetches and the local playlist it publishes once they are on disk.

Nothing here does I/O: a "step" is fetched and published by calling `published(step)` (and
`fetched(name)` for a prefetched hinted part), exactly as sender-edge-fill does."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.edge_fill.mirror import (Fetch, MirrorError, OriginRestarted, RenditionMirror, Step, listed_names, position,
                                      sibling_reports)
from daemons.media.hls import MediaPlaylist, Part, RenditionReport, Segment, ServerControl, parse_media_playlist

LL = ServerControl(can_block_reload=True, part_hold_back=0.75, hold_back=3.0)


# --- playlists the way a Sender origin writes them ---------------------------------------------


def seg(msn: int, parts: int = 0, *, map_uri: str | None = "init.mp4", ext: str = ".m4s") -> Segment:
    return Segment(msn, f"{msn}{ext}", 1.0, map_uri=map_uri,
                   parts=tuple(Part(f"{msn}.{i}{ext}", 0.25, i == 0) for i in range(parts)))


def ll(ms: int, complete: int, *, partial: int = 0, parts: int = 4, hint: bool = True, ended: bool = False,
       parts_for_last: int = 2, reports: tuple[RenditionReport, ...] = ()) -> MediaPlaylist:
    """A Sender-style LL-HLS playlist: `complete` segments from `ms` (parts listed on the last
    `parts_for_last` of them), `partial` parts of the next one, and the preload hint."""
    segments = tuple(seg(ms + i, parts if i >= complete - parts_for_last else 0) for i in range(complete))
    nxt = ms + complete
    return MediaPlaylist(
        target_duration=1, media_sequence=ms, segments=segments,
        partial_parts=tuple(Part(f"{nxt}.{i}.m4s", 0.25, i == 0) for i in range(partial)),
        next_map_uri="init.mp4" if partial else None,
        part_target=0.25, server_control=LL,
        preload_hint=None if ended or not hint else f"{nxt}.{partial}.m4s",
        rendition_reports=reports, ended=ended,
    )


def plain(ms: int, complete: int, *, ended: bool = False) -> MediaPlaylist:
    return MediaPlaylist(target_duration=2, media_sequence=ms,
                         segments=tuple(seg(ms + i) for i in range(complete)), ended=ended)


def names(fetches) -> list[str]:
    return [f.name for f in fetches]


def publish(m: RenditionMirror, upstream: MediaPlaylist) -> tuple[Step, list[str]]:
    step = m.step(upstream)
    assert step is not None
    return step, m.published(step)


# --- keep_names (a Sender source) -------------------------------------------------------------


def test_first_step_lists_every_object_of_the_window_once():
    m = RenditionMirror("source", keep_names=True)
    assert m.next_directive() is None and m.local is None
    up = ll(10, 3, partial=2)
    step = m.step(up)
    assert step is not None
    assert names(step.fetches) == [
        "init.mp4", "10.m4s", "11.m4s", "11.0.m4s", "11.1.m4s", "11.2.m4s", "11.3.m4s",
        "12.m4s", "12.0.m4s", "12.1.m4s", "12.2.m4s", "12.3.m4s", "13.0.m4s", "13.1.m4s",
    ]
    assert all(f.uri == f.name for f in step.fetches)  # a Sender source: names kept
    assert len(set(names(step.fetches))) == len(step.fetches)
    assert set(names(step.fetches)) == set(listed_names(up))
    assert step.playlist == up
    assert step.hint == Fetch("13.2.m4s", "13.2.m4s")
    assert m.local is None  # nothing is published before the caller says so
    assert m.published(step) == []
    assert m.local == up and m.have == set(names(step.fetches))


def test_a_following_step_asks_only_for_new_objects():
    m = RenditionMirror("source", keep_names=True)
    publish(m, ll(10, 3, partial=2))
    step = m.step(ll(10, 3, partial=3))
    assert names(step.fetches) == ["13.2.m4s"] and step.hint == Fetch("13.3.m4s", "13.3.m4s")
    m.published(step)
    # The segment completes, the window slides by one: the new segment and its parts, nothing else.
    step = m.step(ll(11, 3, partial=1))
    assert names(step.fetches) == ["13.m4s", "13.3.m4s", "14.0.m4s"]
    gone = m.published(step)
    # 10.m4s left the window; 11's parts are no longer listed (only the last two segments list them).
    assert gone == ["10.m4s", "11.0.m4s", "11.1.m4s", "11.2.m4s", "11.3.m4s"]
    assert not set(gone) & m.have and "10.m4s" not in m.have
    assert m.have == set(listed_names(m.local))


def test_never_publishes_backwards_and_ignores_the_same_position():
    m = RenditionMirror("source", keep_names=True)
    publish(m, ll(10, 3, partial=2))
    assert m.step(ll(10, 3, partial=1)) is None  # a source behind us
    assert m.step(ll(9, 4, partial=0, hint=False)) is None  # behind (12, 3) < (13, 1)
    assert m.step(ll(10, 3, partial=2)) is None  # the same position: nothing new
    # Equal position but the hint differs (or renditions report something new): still nothing new.
    assert m.step(ll(10, 3, partial=2, hint=False)) is None
    assert m.local == ll(10, 3, partial=2)


def test_media_sequence_going_back_is_an_error():
    m = RenditionMirror("720p", keep_names=True)
    publish(m, ll(10, 3, partial=2))
    with pytest.raises(MirrorError, match=r"720p: the upstream media sequence went back \(9 < 10\)"):
        m.step(ll(9, 5, partial=0))  # ahead in position, but it starts before our window
    assert m.local == ll(10, 3, partial=2)


def test_ended_upstream_at_the_same_position_is_published_once():
    m = RenditionMirror("source", keep_names=True)
    publish(m, ll(10, 3, partial=2))
    closed = ll(10, 3, partial=2, hint=False, ended=True)
    step = m.step(closed)
    assert step is not None and step.fetches == () and step.hint is None and step.playlist.ended
    m.published(step)
    assert m.step(closed) is None
    assert m.step(ll(10, 6, partial=3)) is None  # nothing after ENDLIST
    assert m.ended() is None  # already closed


@pytest.mark.parametrize(
    "upstream, directive",
    [
        (ll(10, 3, partial=2), (13, 2)),  # the next part of the segment being built
        (ll(10, 3, partial=0), (13, 0)),  # after a completed segment with parts: part 0 of the next
        (plain(10, 3), (13, None)),  # a plain playlist: the next segment
        (ll(0, 0, partial=1), (0, 1)),  # only partial parts so far
    ],
)
def test_next_directive(upstream, directive):
    m = RenditionMirror("source", keep_names=True)
    publish(m, upstream)
    assert m.next_directive() == directive
    # The directive asks for something the published playlist does not hold yet.
    assert not m.local.contains(*directive)


def test_published_forgets_names_no_longer_listed_but_keeps_the_hint():
    m = RenditionMirror("source", keep_names=True)
    step, gone = publish(m, ll(10, 2, partial=1))
    assert gone == [] and step.hint.name == "12.1.m4s"
    m.fetched("12.1.m4s")  # the hinted part, prefetched before any playlist lists it
    step = m.step(ll(11, 2, partial=2))  # window 11..12, 13 in progress (13.0, 13.1), hint 13.2
    assert names(step.fetches) == ["12.m4s", "12.2.m4s", "12.3.m4s", "13.0.m4s", "13.1.m4s"]
    # The prefetch of the new hint may land before this playlist is published: it is kept.
    m.fetched("13.2.m4s")
    m.fetched("13.9.m4s")  # something on disk that no playlist lists or hints
    gone = m.published(step)
    assert gone == ["10.0.m4s", "10.1.m4s", "10.2.m4s", "10.3.m4s", "10.m4s", "13.9.m4s"]
    assert set(gone).isdisjoint(m.have)
    assert "13.2.m4s" in m.have and m.local.preload_hint == "13.2.m4s"
    assert m.have == set(listed_names(m.local)) | {"13.2.m4s"}
    step = m.step(ll(11, 2, partial=3))
    assert step.fetches == () and step.hint.name == "13.3.m4s"
    assert m.published(step) == []
    # Forgotten names are asked for again if an upstream (wrongly) lists them again.
    m2 = RenditionMirror("source", keep_names=True)
    publish(m2, ll(10, 1, partial=0, parts_for_last=0))
    _, gone = publish(m2, ll(11, 1, partial=0, parts_for_last=0))
    assert gone == ["10.m4s"] and m2.have == {"init.mp4", "11.m4s"}


def _fields(p: MediaPlaylist) -> dict:
    return {f: getattr(p, f) for f in p.__dataclass_fields__}


def test_fetched_hint_is_not_asked_again():
    m = RenditionMirror("source", keep_names=True)
    step, _ = publish(m, ll(10, 3, partial=2))
    m.fetched(step.hint.name)
    step = m.step(ll(10, 3, partial=3))
    assert step.fetches == ()  # the only new object is on disk already
    assert step.hint == Fetch("13.3.m4s", "13.3.m4s")
    m.published(step)
    assert "13.2.m4s" in m.have
    m.fetched("13.3.m4s")
    step = m.step(ll(10, 3, partial=4, hint=True))
    assert step.fetches == () and step.hint.name == "13.4.m4s"
    # A hint already on disk is not offered as a hint again.
    m.fetched("13.4.m4s")
    assert m.step(ll(10, 3, partial=4)).hint is None


def test_ended_closes_the_local_playlist():
    m = RenditionMirror("source", keep_names=True)
    assert m.ended() is None  # nothing published: nothing to close
    publish(m, ll(10, 3, partial=2))
    closed = m.ended()
    assert closed.ended and closed.preload_hint is None and closed.partial_parts == ()
    assert closed.segments == m.local.segments and closed.media_sequence == 10
    assert closed.render().rstrip().endswith("#EXT-X-ENDLIST")
    assert "PRELOAD-HINT" not in closed.render() and "13.0.m4s" not in closed.render()
    assert parse_media_playlist(closed.render()) == closed
    gone = m.published(Step((), closed, None))
    assert gone == ["13.0.m4s", "13.1.m4s"]
    assert m.step(ll(10, 4, partial=1)) is None and m.ended() is None


@pytest.mark.parametrize("uri", [
    "https://origin.example/hls/10.m4s", "../10.m4s", "10.m4s?token=x", "sub/10.m4s", "/10.m4s",
    "segment10.m4s", "10.mp4", "init.mp4?x", "10..m4s", "index.m3u8",
])
def test_keep_names_refuses_uris_outside_the_spool_alphabet(uri):
    good = ll(10, 2, partial=1)
    for where in ("segment", "part", "map", "hint", "partial"):
        up = _with_uri(good, where, uri)
        m = RenditionMirror("source", keep_names=True)
        with pytest.raises(MirrorError, match="source: upstream URI .* is not a spool name"):
            m.step(up)
        assert m.local is None and m.have == set()


def _with_uri(p: MediaPlaylist, where: str, uri: str) -> MediaPlaylist:
    f = _fields(p)
    segs = list(p.segments)
    if where == "segment":
        segs[0] = Segment(segs[0].msn, uri, 1.0, map_uri="init.mp4")
    elif where == "part":
        last = segs[-1]
        segs[-1] = Segment(last.msn, last.uri, 1.0, map_uri=last.map_uri, parts=(Part(uri, 0.25, True),) + last.parts[1:])
    elif where == "map":
        segs = [Segment(s.msn, s.uri, s.duration, map_uri=uri, parts=s.parts) for s in segs]
        f["next_map_uri"] = uri
    elif where == "hint":
        f["preload_hint"] = uri
    elif where == "partial":
        f["partial_parts"] = (Part(uri, 0.25, True),)
    f["segments"] = tuple(segs)
    return MediaPlaylist(**f)


def test_keep_names_accepts_every_spool_name():
    up = MediaPlaylist(
        target_duration=1, media_sequence=99_999_999_998, part_target=0.25, server_control=LL,
        segments=(Segment(99_999_999_998, "99999999998.m4s", 1.0, map_uri="init-2.mp4",
                          parts=(Part("99999999998.0.m4s", 0.25, True),)),),
        partial_parts=(Part("99999999999.123456.m4s", 0.25, True),), preload_hint="99999999999.123457.m4s",
    )
    step = RenditionMirror("r", keep_names=True).step(up)
    assert names(step.fetches) == ["init-2.mp4", "99999999998.m4s", "99999999998.0.m4s", "99999999999.123456.m4s"]
    assert step.hint.name == "99999999999.123457.m4s"


def test_the_sources_rendition_reports_are_never_copied():
    # The source's reports name its own siblings' positions, which may be ahead of this edge's.
    reports = (RenditionReport("../720p/index.m3u8", 13, 1),)
    for keep_names in (True, False):
        step = RenditionMirror("source", keep_names=keep_names).step(ll(10, 3, partial=2, reports=reports))
        assert step.playlist.rendition_reports == ()


# --- rendition reports from the edge's own siblings ----------------------------------------------


def test_sibling_reports_are_the_positions_the_edge_published():
    hi, lo = ll(10, 3, partial=2), ll(10, 2, partial=0)
    assert sibling_reports("hi", {"hi": hi, "lo": lo, "mid": None}) == (RenditionReport("../lo/index.m3u8", 11, 3),)
    assert sibling_reports("lo", {"hi": hi, "lo": lo, "mid": None}) == (RenditionReport("../hi/index.m3u8", 13, 1),)
    assert sibling_reports("hi", {"hi": hi}) == ()  # no sibling published yet: nothing to report
    only_segments = plain(4, 2)
    assert sibling_reports("hi", {"hi": hi, "lo": only_segments}) == (RenditionReport("../lo/index.m3u8", 5, None),)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["source", "720p", "360p", "audio"]),
                       st.one_of(st.none(), st.tuples(st.integers(0, 50), st.integers(1, 4), st.integers(0, 3))),
                       min_size=1))
def test_sibling_reports_never_point_past_a_sibling(published):
    siblings = {n: None if p is None else ll(p[0], p[1], partial=p[2]) for n, p in published.items()}
    for name in siblings:
        reports = sibling_reports(name, siblings)
        by_uri = {r.uri: r for r in reports}
        assert len(by_uri) == len(reports)
        for other, p in siblings.items():
            r = by_uri.get(f"../{other}/index.m3u8")
            if other == name or p is None:
                assert r is None
            else:
                # exactly the sibling's newest position: a player asking for it is answered at once
                assert r == RenditionReport.for_playlist(f"../{other}/index.m3u8", p)
                assert p.contains(r.last_msn, r.last_part)


# --- renaming (any other HLS origin) ------------------------------------------------------------

FFMPEG = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:{ms}
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="https://cdn.example/live/stream_init.mp4"
{body}"""


def ffmpeg(ms: int, count: int, *, ended: bool = False) -> MediaPlaylist:
    body = "".join(f"#EXTINF:4.000000,\nhttps://cdn.example/live/stream{ms + i}.m4s?sig=abc\n" for i in range(count))
    return parse_media_playlist(FFMPEG.format(ms=ms, body=body) + ("#EXT-X-ENDLIST\n" if ended else ""))


def test_renames_an_ffmpeg_style_playlist_by_position():
    m = RenditionMirror("source", keep_names=False)
    step = m.step(ffmpeg(41, 3))
    assert step.fetches == (
        Fetch("https://cdn.example/live/stream_init.mp4", "init.mp4"),
        Fetch("https://cdn.example/live/stream41.m4s?sig=abc", "41.m4s"),
        Fetch("https://cdn.example/live/stream42.m4s?sig=abc", "42.m4s"),
        Fetch("https://cdn.example/live/stream43.m4s?sig=abc", "43.m4s"),
    )
    assert step.hint is None
    p = step.playlist
    assert [s.uri for s in p.segments] == ["41.m4s", "42.m4s", "43.m4s"]
    assert {s.map_uri for s in p.segments} == {"init.mp4"}
    assert p.media_sequence == 41 and p.target_duration == 4 and [s.duration for s in p.segments] == [4.0] * 3
    assert parse_media_playlist(p.render()) == p
    assert "cdn.example" not in p.render()
    m.published(step)
    assert m.next_directive() == (44, None)
    step = m.step(ffmpeg(42, 3))
    assert step.fetches == (Fetch("https://cdn.example/live/stream44.m4s?sig=abc", "44.m4s"),)
    assert m.published(step) == ["41.m4s"]
    step = m.step(ffmpeg(42, 3, ended=True))
    assert step.fetches == () and step.playlist.ended
    m.published(step)
    assert m.step(ffmpeg(43, 3)) is None


def test_renames_mpeg_ts_without_a_map():
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:7\n" + "".join(
        f"#EXTINF:6.0,\nseg-{n}.ts\n" for n in (7, 8))
    step = RenditionMirror("source", keep_names=False).step(parse_media_playlist(text))
    assert step.fetches == (Fetch("seg-7.ts", "7.ts"), Fetch("seg-8.ts", "8.ts"))
    assert [s.uri for s in step.playlist.segments] == ["7.ts", "8.ts"]
    assert all(s.map_uri is None for s in step.playlist.segments)
    assert parse_media_playlist(step.playlist.render()) == step.playlist


def test_renames_ll_hls_parts_maps_and_the_hint():
    def other(ms: int, complete: int, partial: int, map_for=lambda msn: "a/init.mp4") -> MediaPlaylist:
        segments = tuple(
            Segment(ms + i, f"https://o.example/s/{ms + i}/full.mp4", 1.0, map_uri=map_for(ms + i),
                    parts=tuple(Part(f"https://o.example/s/{ms + i}/p{j}.mp4?v=1", 0.25, j == 0) for j in range(4)))
            for i in range(complete))
        nxt = ms + complete
        return MediaPlaylist(
            target_duration=1, media_sequence=ms, segments=segments,
            partial_parts=tuple(Part(f"https://o.example/s/{nxt}/p{j}.mp4?v=1", 0.25, j == 0) for j in range(partial)),
            next_map_uri=map_for(nxt), part_target=0.25, server_control=LL,
            preload_hint=f"https://o.example/s/{nxt}/p{partial}.mp4?v=1",
            rendition_reports=(RenditionReport("https://o.example/other.m3u8", nxt, partial - 1),),
        )

    m = RenditionMirror("source", keep_names=False)
    step = m.step(other(5, 2, 2))
    p = step.playlist
    assert [s.uri for s in p.segments] == ["5.m4s", "6.m4s"]
    assert [pt.uri for pt in p.segments[0].parts] == ["5.0.m4s", "5.1.m4s", "5.2.m4s", "5.3.m4s"]
    assert [pt.uri for pt in p.partial_parts] == ["7.0.m4s", "7.1.m4s"]
    assert p.preload_hint == "7.2.m4s" and step.hint == Fetch("https://o.example/s/7/p2.mp4?v=1", "7.2.m4s")
    assert p.rendition_reports == ()  # they name the other origin's playlists
    assert ("https://o.example/s/5/p3.mp4?v=1", "5.3.m4s") in [(f.uri, f.name) for f in step.fetches]
    assert ("a/init.mp4", "init.mp4") in [(f.uri, f.name) for f in step.fetches]
    assert len(step.fetches) == len(set(names(step.fetches))) == 1 + 2 * 5 + 2
    assert parse_media_playlist(p.render()) == p
    m.published(step)

    # A new map from segment 8 on: init-1.mp4, in the order first seen; the old map keeps its name.
    new_map = lambda msn: "a/init.mp4" if msn < 8 else "b/init.mp4"  # noqa: E731
    step = m.step(other(6, 2, 1, new_map))  # 6, 7 complete; 8 in progress with the new map
    p = step.playlist
    assert p.next_map_uri == "init-1.mp4" and ("b/init.mp4", "init-1.mp4") in [(f.uri, f.name) for f in step.fetches]
    assert {s.map_uri for s in p.segments} == {"init.mp4"}
    assert names(step.fetches) == ["7.2.m4s", "7.3.m4s", "7.m4s", "init-1.mp4", "8.0.m4s"]
    assert parse_media_playlist(p.render()) == p
    assert m.published(step) == ["5.0.m4s", "5.1.m4s", "5.2.m4s", "5.3.m4s", "5.m4s"]
    step = m.step(other(8, 1, 1, new_map))
    assert [s.map_uri for s in step.playlist.segments] == ["init-1.mp4"]
    assert names(step.fetches) == ["8.1.m4s", "8.2.m4s", "8.3.m4s", "8.m4s", "9.0.m4s"]
    assert m.published(step) == sorted(["6.m4s", "7.m4s", "init.mp4", *(f"{n}.{j}.m4s" for n in (6, 7) for j in range(4))])


def test_renamed_playlist_without_partial_parts_hints_part_zero():
    up = MediaPlaylist(
        target_duration=1, media_sequence=3, part_target=0.5, server_control=LL,
        segments=(Segment(3, "x3.mp4", 1.0, map_uri="i.mp4", parts=(Part("x3a.mp4", 0.5, True), Part("x3b.mp4", 0.5))),),
        preload_hint="x4a.mp4",
    )
    m = RenditionMirror("r", keep_names=False)
    step, _ = publish(m, up)
    assert step.playlist.preload_hint == "4.0.m4s" and step.hint == Fetch("x4a.mp4", "4.0.m4s")
    assert m.next_directive() == (4, 0)


# --- a property: random growing playlists --------------------------------------------------------


def _origin_history(draw, keep_names: bool) -> list[MediaPlaylist]:
    """Every playlist a live LL-HLS origin publishes while it grows: a part at a time, segments
    closing (sometimes in a playlist of their own, with the same last part), a sliding window,
    parts listed only on the newest segments, sometimes a new map, sometimes ENDLIST."""
    ms = draw(st.integers(0, 1000))
    window = draw(st.integers(1, 4))
    parts_for = draw(st.integers(1, 3))
    events = draw(st.lists(st.sampled_from(["part", "part", "part", "close", "map"]), min_size=10, max_size=60))
    end = draw(st.booleans())

    def u(kind: str, msn: int, i: int | None = None) -> str:
        if keep_names:
            return {"seg": f"{msn}.m4s", "part": f"{msn}.{i}.m4s", "map": f"init-{msn}.mp4" if msn else "init.mp4"}[kind]
        return {"seg": f"https://o.example/v/{msn}/seg.mp4", "part": f"https://o.example/v/{msn}/part{i}.mp4?n=1",
                "map": f"maps/m{msn}.mp4"}[kind]

    done: list[tuple[int, int, str]] = []  # (msn, parts, map)
    msn, open_parts, current_map = ms, 0, u("map", 0)
    history: list[MediaPlaylist] = []

    def snapshot(ended: bool = False) -> MediaPlaylist:
        win = done[-window:]
        segments = tuple(
            Segment(n, u("seg", n), 0.25 * k, map_uri=mp,
                    parts=tuple(Part(u("part", n, i), 0.25, i == 0) for i in range(k)) if j >= len(win) - parts_for else ())
            for j, (n, k, mp) in enumerate(win))
        return MediaPlaylist(
            target_duration=1, media_sequence=win[0][0] if win else ms, segments=segments,
            partial_parts=tuple(Part(u("part", msn, i), 0.25, i == 0) for i in range(open_parts)),
            next_map_uri=current_map if open_parts else None, part_target=0.25, server_control=LL,
            preload_hint=None if ended else u("part", msn, open_parts), ended=ended,
        )

    for e in events:
        if e == "part":
            open_parts += 1
        elif e == "close" and open_parts:
            done.append((msn, open_parts, current_map))
            msn, open_parts = msn + 1, 0
        elif e == "map" and open_parts == 0:
            current_map = u("map", msn)
        else:
            continue
        if done or open_parts:
            history.append(snapshot())
    if end and (done or open_parts):
        if open_parts:
            done.append((msn, open_parts, current_map))
            msn, open_parts = msn + 1, 0
        history.append(snapshot(ended=True))
    return history


@st.composite
def runs(draw):
    keep_names = draw(st.booleans())
    history = _origin_history(draw, keep_names)
    # What the edge sees: a subsequence (it misses playlists), some older playlists again (a
    # source that may be behind the published position), and whether it prefetches hints.
    seen = []
    for i, p in enumerate(history):
        if draw(st.booleans()):
            seen.append(("new", p))
        if i and draw(st.integers(0, 4)) == 0:
            seen.append(("old", history[draw(st.integers(0, i - 1))]))
    prefetch = draw(st.booleans())
    return keep_names, seen, prefetch


@settings(max_examples=300, deadline=None)
@given(runs())
def test_every_listed_object_is_requested_exactly_once_and_positions_never_decrease(run):
    keep_names, seen, prefetch = run
    m = RenditionMirror("source", keep_names=keep_names)
    requested: Counter[str] = Counter()
    listed_ever: set[str] = set()
    last: tuple = ((-2, -2), -1, False)
    hint: Fetch | None = None
    for _kind, upstream in seen:
        if prefetch and hint is not None and hint.uri in _upstream_uris(upstream):
            # The hinted part was asked for ahead and arrived before this playlist (as the daemon
            # does: the source answers the hinted request the moment the part exists).
            m.fetched(hint.name)
            requested[hint.name] += 1
            hint = None
        try:
            step = m.step(upstream)
        except OriginRestarted:
            # An external origin listing nothing of our window is taken for a restarted one.
            assert not keep_names and upstream.next_msn < m.local.media_sequence
            continue
        if step is None:
            continue
        requested.update(names(step.fetches))
        # Everything the playlist lists is on disk once the fetches are: never a file we lack.
        assert set(listed_names(step.playlist)) <= m.have | set(names(step.fetches))
        assert set(names(step.fetches)) <= set(listed_names(step.playlist))
        now = (position(step.playlist), step.playlist.next_msn, step.playlist.ended)
        # strictly forward: never back, never the same position twice (a segment closing on its
        # last part is a step forward at the same part)
        assert now > last
        last = now
        gone = m.published(step)
        assert set(gone).isdisjoint(listed_names(step.playlist))
        listed_ever |= set(listed_names(step.playlist))
        assert parse_media_playlist(step.playlist.render()) == step.playlist
        if not keep_names:
            assert all("/" not in n and "?" not in n for n in listed_names(step.playlist))
        if step.hint is not None:
            assert step.hint.name == step.playlist.preload_hint and step.hint.name not in m.have
        hint = step.hint
    for name in listed_ever:
        assert requested[name] == 1, (name, requested[name])
    assert set(requested) <= listed_ever


def _upstream_uris(p: MediaPlaylist) -> set[str]:
    return set(listed_names(p))


def test_an_external_origin_whose_numbering_restarted_is_a_new_broadcast():
    m = RenditionMirror("source", keep_names=False)
    m.published(m.step(ll(20, 3, parts_for_last=0, hint=False)))
    # a stale copy overlapping our window: nothing new, no alarm
    assert m.step(ll(19, 3, parts_for_last=0, hint=False)) is None
    with pytest.raises(OriginRestarted):
        m.step(ll(0, 3, parts_for_last=0, hint=False))
