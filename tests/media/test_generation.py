"""The sans-IO packager of a generation (daemons/media/generation.py, over the rendition packager in
integer ticks), in milliseconds of media: discontinuities, a spool that refuses writes, an init
change, pruning, a daemon restart — and a property: whatever the spool refuses and whenever the
daemon restarts, a name never carries two different bodies, everything a playlist lists is on
disk, and every playlist version passes the strict checker against the one before."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.media import hls
from daemons.media.fmp4 import Fragment, InitSegment, Track
from daemons.media.fmp4.fragment import TrackFragment
from daemons.media.generation import Batch, GenerationPackager
from daemons.media.packager import Delete, PackagerConfig, RenditionPackager, Write
from daemons.media.recording import Recording

VIDEO, AUDIO = 1, 2
MS = 1000  # the video timescale: ticks are milliseconds of media
FRAME_MS = 40  # 25 fps
AAC_TICKS, AUDIO_SCALE = 1024, 48_000
T0 = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
CONFIG = PackagerConfig(part_target_s=0.2, segment_target_s=1.0, live_window_segments=4)
RENDITIONS = ("source", "low")


def init(tag: bytes = b"") -> InitSegment:
    return InitSegment(b"ftyp+moov" + tag, {
        VIDEO: Track(VIDEO, "video", MS, "avc1.64001f", 640, 360, None, None),
        AUDIO: Track(AUDIO, "audio", AUDIO_SCALE, "mp4a.40.2", None, None, 48_000, 2),
    })


class Source:
    """Frames of one publisher: video every 40 ms (a keyframe every `gop` frames), audio between."""

    def __init__(self, gop: int = 25):
        self.gop = gop
        self.n = 0
        self.audio = 0

    def frames(self, count: int, rendition: str):
        for _ in range(count):
            n = self.n
            tf = TrackFragment(VIDEO, n * FRAME_MS, 1, FRAME_MS, (100,), n % self.gop == 0, False)
            yield Fragment(f"[{rendition} v{n}]".encode(), n, {VIDEO: tf})
            while (self.audio + 1) * AAC_TICKS * MS <= (n + 1) * FRAME_MS * AUDIO_SCALE:
                atf = TrackFragment(AUDIO, self.audio * AAC_TICKS, 1, AAC_TICKS, (10,), True, False)
                yield Fragment(f"[{rendition} a{self.audio}]".encode(), 100_000 + self.audio, {AUDIO: atf})
                self.audio += 1
            self.n += 1


@dataclass
class Spool:
    """A disk that checks the contract: same name, same bytes; listed means on disk."""

    files: dict[str, bytes] = field(default_factory=dict)
    playlists: dict[str, list[hls.MediaPlaylist]] = field(default_factory=dict)
    refuse_at: int | None = None  # the next batch fails at this write (earlier writes land)
    deleted: list[tuple[str, float]] = field(default_factory=list)
    last_batch: list[str] = field(default_factory=list)  # the names the last batch wrote, in order

    def write(self, batch: Batch) -> bool:
        writes = [(f"{r}/{a.name}", a.data) for r, a in batch.actions if isinstance(a, Write)]
        writes += list(batch.published.items())
        self.last_batch = [name for name, _ in writes]
        for i, (name, data) in enumerate(writes):
            if self.refuse_at is not None and i >= self.refuse_at:
                self.refuse_at = None
                return False
            if not name.endswith((".json", ".m3u8")):
                assert self.files.get(name, data) == data, f"{name} named other bytes before"
            self.files[name] = data
        self.deleted += [(f"{r}/{a.name}", a.due_s) for r, a in batch.actions if isinstance(a, Delete)]
        for rendition in RENDITIONS:
            text = batch.playlist_of(rendition)
            if text is not None:
                self.check_playlist(rendition, text.decode())
        return True

    def check_playlist(self, rendition: str, text: str) -> None:
        previous = self.playlists.setdefault(rendition, [])
        playlist = hls.check_media_playlist(text, previous=previous[-1] if previous else None)
        for seg in playlist.segments:
            assert f"{rendition}/{seg.uri}" in self.files, seg.uri
            for part in seg.parts:
                assert f"{rendition}/{part.uri}" in self.files, part.uri
            if seg.map_uri:
                assert f"{rendition}/{seg.map_uri}" in self.files
        for part in playlist.partial_parts:
            assert f"{rendition}/{part.uri}" in self.files, part.uri
        previous.append(playlist)


class Node:
    """The ingest pipeline's protocol around a GenerationPackager, with a simulated clock."""

    def __init__(self, spool: Spool, config: PackagerConfig = CONFIG):
        self.spool = spool
        self.config = config
        self.media = GenerationPackager.new(config, list(RENDITIONS))
        self.clock = T0

    def put(self, batch: Batch | None) -> None:
        if batch is None:
            return
        retry = self.media.outage
        if not self.spool.write(batch):
            self.media.refused(batch)
        elif retry:
            self.media.recovered(batch)
        else:
            self.media.written(batch)

    def recover(self) -> None:
        if self.media.outage:
            self.put(self.media.retry())

    def timeline(self, source: Source, tag: bytes = b"") -> None:
        self.media.start_timeline()
        for r in RENDITIONS:
            self.put(self.media.on_init(r, init(tag)))

    def feed(self, source: Source, frames: int) -> None:
        start = source.n, source.audio
        for r in RENDITIONS:
            source.n, source.audio = start
            for frag in source.frames(frames, r):
                self.put(self.media.on_fragment(r, frag, self.clock))
        self.clock += timedelta(milliseconds=frames * FRAME_MS)

    def restart(self) -> "Node":
        """A new daemon reading what this one left on disk (states, then the listed open parts)."""
        node = Node(self.spool, self.config)
        packagers, listed = {}, {}
        for r in RENDITIONS:
            state = self.spool.files.get(f"{r}/state.json")
            packagers[r] = (RenditionPackager.from_state(json.loads(state), self.config) if state
                            else RenditionPackager(r, self.config))
            dvr = self.spool.files.get(f"{r}/dvr.m3u8")
            packagers[r].resume_recording(Recording.from_text(dvr.decode()) if dvr else None)
            text = self.spool.files.get(f"{r}/index.m3u8")
            if state and text:
                playlist = hls.parse_media_playlist(text.decode())
                if playlist.partial_parts and not playlist.ended:
                    listed[r] = (playlist, [self.spool.files[f"{r}/{p.uri}"] for p in playlist.partial_parts])
        node.media = GenerationPackager(self.config, packagers)
        node.put(node.media.seal_listed(listed))
        node.clock = self.clock
        return node


def last(spool: Spool, rendition: str = "source") -> hls.MediaPlaylist:
    return spool.playlists[rendition][-1]


# --- examples in milliseconds of media ---------------------------------------------------------------


def test_parts_and_segments_in_integer_ticks():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 60)  # 2.4 s: segments at the 1 s keyframes
    p = last(spool)
    assert [s.duration for s in p.segments] == [1.0, 1.0]
    assert [pt.duration for pt in p.segments[0].parts] == [0.2] * 5  # five parts of exactly 200 ms
    assert [pt.duration for pt in p.partial_parts] == [0.2, 0.2]
    assert p.preload_hint == "2.2.m4s"


def test_a_new_timeline_is_a_discontinuity_and_numbering_goes_on():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 30)
    node.put(node.media.end_timeline())  # the publisher left mid-segment: closed as it is
    src = Source()  # back, its timestamps from zero again
    node.timeline(src)
    node.feed(src, 30)
    p = last(spool)
    assert [(s.msn, round(s.duration, 3), s.discontinuity) for s in p.segments] == [(0, 1.0, False), (1, 0.2, False), (2, 1.0, True)]
    assert node.media.discontinuities == 1


def test_an_init_change_is_a_new_map_and_the_old_one_stays():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 30)
    node.put(node.media.end_timeline())
    src = Source()
    node.timeline(src, tag=b"v2")  # the backend restarted with other codec parameters
    node.feed(src, 30)
    p = last(spool)
    assert [s.map_uri for s in p.segments] == ["init.mp4", "init.mp4", "init-1.mp4"]
    assert spool.files["source/init-1.mp4"] == init(b"v2").data and spool.files["source/init.mp4"] == init().data


def test_pruning_keeps_the_window_and_deletes_later():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 8 * 25)  # segments 0-6 closed, 7 open; a window of 4
    media = node.media.packagers["source"]
    assert [s.msn for s in media.segments] == [3, 4, 5, 6] and last(spool).media_sequence == 3
    gone = [(name, due) for name, due in spool.deleted if name.startswith("source/")]
    assert {name for name, _ in gone} == {f"source/{m}.m4s" for m in range(3)} | {f"source/{m}.{i}.m4s" for m in range(3) for i in range(5)}
    assert {due for _, due in gone} == {3}  # 3 x TARGETDURATION after they left the playlist


def test_a_refused_write_closes_the_open_segment_as_listed_and_goes_on_after_a_discontinuity():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 35)  # segment 1 is open with parts listed
    listed = last(spool)
    assert listed.next_msn == 1 and listed.partial_parts
    spool.refuse_at = 0  # the disk is full
    node.feed(src, 10)
    assert node.media.outage
    node.feed(src, 10)  # dropped: never half-kept
    node.recover()  # space again
    assert not node.media.outage
    node.feed(src, 60)  # the next keyframe (frame 75) opens segment 2; frame 100 closes it
    p = last(spool)
    # Segment 1 keeps the parts it listed (their names and bytes) and is closed as it stood; the
    # media after the outage is segment 2, after a discontinuity.
    seg1 = next(s for s in p.segments if s.msn == 1)
    assert [pt.uri for pt in seg1.parts][:len(listed.partial_parts)] == [pt.uri for pt in listed.partial_parts]
    seg2 = next(s for s in p.segments if s.msn == 2)
    assert seg2.discontinuity
    assert node.media.discontinuities == 1


def test_a_restarted_daemon_closes_the_segment_the_last_playlist_listed():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 33)  # segment 1 open, 1 part listed
    listed = last(spool)
    node = node.restart()
    p = last(spool)
    assert p.next_msn == 2 and p.segments[-1].msn == 1
    assert [pt.uri for pt in p.segments[-1].parts] == [pt.uri for pt in listed.partial_parts]
    assert spool.files["source/1.m4s"] == b"".join(spool.files[f"source/{pt.uri}"] for pt in listed.partial_parts)
    src = Source()  # the publisher comes back to the new daemon
    node.timeline(src)
    node.feed(src, 30)
    assert last(spool).segments[-1].discontinuity and last(spool).segments[-1].msn == 2


def test_the_end_closes_every_playlist():
    spool = Spool()
    node, src = Node(spool), Source()
    node.timeline(src)
    node.feed(src, 33)
    node.put(node.media.end())
    for r in RENDITIONS:
        assert last(spool, r).ended and last(spool, r).preload_hint is None


# --- the property ------------------------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.integers(1, 30)),
        st.tuples(st.just("refuse"), st.integers(0, 6)),
        st.tuples(st.just("recover"), st.just(0)),
        st.tuples(st.just("timeline"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
    ),
    min_size=1, max_size=16,
)


def play(script, config: PackagerConfig) -> Spool:
    """Run a script of feeds, refused writes, recoveries, new timelines and daemon restarts to the
    end of the generation; the Spool checks the contract on every write."""
    spool = Spool()
    node, src = Node(spool, config), Source(gop=13)
    node.timeline(src)
    for kind, n in script:
        if kind == "feed":
            node.feed(src, n)
        elif kind == "refuse":
            spool.refuse_at = n
        elif kind == "recover":
            node.recover()
        elif kind == "timeline":
            node.put(node.media.end_timeline())
            src = Source(gop=13)
            node.timeline(src)
        elif kind == "restart":
            spool.refuse_at = None
            node.recover()
            node = node.restart()
            src = Source(gop=13)
            node.timeline(src)
    spool.refuse_at = None
    node.recover()
    node.put(node.media.end())
    node.recover()
    return spool


@settings(max_examples=200, deadline=None)
@given(events)
def test_whatever_the_spool_refuses_a_name_never_names_other_bytes(script):
    spool = play(script, CONFIG)
    for r in RENDITIONS:
        if spool.playlists.get(r):
            assert last(spool, r).ended


# --- recordings ------------------------------------------------------------------------------------

RECORD = PackagerConfig(part_target_s=0.2, segment_target_s=1.0, live_window_segments=4, record=True)


def recording_node(spool: Spool) -> Node:
    return Node(spool, RECORD)


def test_a_recording_keeps_every_segment_and_lists_it_in_the_dvr_playlist():
    spool = Spool()
    node, src = recording_node(spool), Source()
    node.timeline(src)
    node.feed(src, 10 * 25 + 3)  # segments 0-9 closed, the live window holds 6-9
    assert last(spool).media_sequence == 6
    gone = {name for name, _ in spool.deleted}
    assert not any(name.endswith(".m4s") and name.count(".") == 1 for name in gone)  # no segment deleted
    assert "source/0.0.m4s" in gone  # parts are
    dvr = hls.check_media_playlist(spool.files["source/dvr.m3u8"].decode())
    assert dvr.playlist_type == "EVENT" and [s.msn for s in dvr.segments] == list(range(10)) and not dvr.ended
    # While live, its end is the live playlist's: the same parts, preload hint and blocking
    # reloads (no delta updates), so LL-HLS is on at its live edge; older segments are whole.
    live = last(spool)
    tail = [s for s in live.segments if s.parts]
    assert tail and [s.parts for s in dvr.segments[-len(tail):]] == [s.parts for s in tail]
    assert all(not s.parts for s in dvr.segments[:-len(tail)])
    assert dvr.partial_parts == live.partial_parts and dvr.preload_hint == live.preload_hint
    assert dvr.part_target == live.part_target and dvr.server_control.can_block_reload
    assert dvr.server_control.can_skip_until is None and not dvr.rendition_reports
    # The incremental text is exactly what the model renders for the whole playlist.
    assert spool.files["source/dvr.m3u8"].decode() == hls.MediaPlaylist(
        target_duration=1, media_sequence=0, segments=dvr.segments, playlist_type="EVENT",
        partial_parts=live.partial_parts, next_map_uri=live.next_map_uri, next_discontinuity=live.next_discontinuity,
        next_program_date_time=live.next_program_date_time, part_target=live.part_target,
        server_control=dvr.server_control, preload_hint=live.preload_hint).render()
    for s in dvr.segments:
        assert f"source/{s.uri}" in spool.files
    # Written with every part, before the live playlist that lists the same part (sender-http
    # answers a blocking DVR reload once the live playlist has the part).
    order = spool.last_batch
    assert order.index("source/dvr.m3u8") < order.index("source/index.m3u8"), order


def test_the_end_of_a_recording_writes_the_vod_playlist():
    spool = Spool()
    node, src = recording_node(spool), Source()
    node.timeline(src)
    node.feed(src, 6 * 25 + 10)
    node.put(node.media.end_timeline())  # a reconnect: a discontinuity in the recording too
    src = Source()
    node.timeline(src)
    node.feed(src, 2 * 25)
    node.put(node.media.end())
    for r in RENDITIONS:
        dvr = hls.check_media_playlist(spool.files[f"{r}/dvr.m3u8"].decode())
        vod_text = spool.files[f"{r}/vod.m3u8"].decode()
        vod = hls.check_media_playlist(vod_text)
        assert dvr.ended and vod.ended and vod.playlist_type == "VOD"
        assert vod.segments == dvr.segments and vod.segments[0].msn == 0
        assert sum(s.discontinuity for s in vod.segments) == 1
        assert abs(sum(s.duration for s in vod.segments) - (6 * 25 + 10 + 2 * 25) * 0.04) < 0.05


def test_a_recording_continues_after_a_restart():
    spool = Spool()
    node, src = recording_node(spool), Source()
    node.timeline(src)
    node.feed(src, 5 * 25 + 7)  # segment 5 open with parts listed
    restarted = node.restart()
    src = Source()
    restarted.timeline(src)
    restarted.feed(src, 2 * 25)
    restarted.put(restarted.media.end())
    vod = hls.check_media_playlist(spool.files["source/vod.m3u8"].decode())
    assert [s.msn for s in vod.segments] == list(range(len(vod.segments)))  # nothing lost, nothing twice
    assert vod.segments[5].duration < 1 and vod.segments[6].discontinuity  # the sealed one, then the new session


def test_a_restart_never_brings_back_parts_the_playlist_dropped():
    """Found by the property below: the part being filled moved the playlist's end, so segment 0
    lost its parts 3.04 s in; a restarted daemon, which never has that unlisted media, listed
    them again (RFC 8216bis 6.2.1). The end is now the last listed part's."""
    for config in (CONFIG, RECORD):
        spool = play([("feed", 76), ("restart", 0)], config)  # the Spool checks every version against the last
        assert len(spool.playlists["source"]) > 10


@settings(max_examples=100, deadline=None)
@given(events)
def test_a_recording_under_refused_writes_and_restarts_still_plays_end_to_end(script):
    spool = play(script, RECORD)
    if "source/dvr.m3u8" in spool.files:
        dvr = hls.check_media_playlist(spool.files["source/dvr.m3u8"].decode())
        assert [s.msn for s in dvr.segments] == list(range(len(dvr.segments)))
        for s in dvr.segments:
            assert f"source/{s.uri}" in spool.files
        assert Recording.from_text(spool.files["source/dvr.m3u8"].decode()).segments == len(dvr.segments)
    if "source/vod.m3u8" in spool.files:
        vod = hls.check_media_playlist(spool.files["source/vod.m3u8"].decode())
        assert [s.msn for s in vod.segments] == list(range(len(vod.segments)))
        for s in vod.segments:
            assert f"source/{s.uri}" in spool.files
