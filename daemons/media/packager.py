"""Sender's LL-HLS packager for one rendition: fMP4 fragments in, parts, segments and a playlist out.

Sans-IO. The caller feeds what `fmp4.FMP4Reader` reads from a backend's pipe; the packager answers
with `Write`/`Delete` actions (file names relative to the rendition directory) and keeps the
rendition's playlist as a `hls.MediaPlaylist`. The caller performs the actions in order — a file
is always whole on disk before the playlist that lists it is published.

Three parts, each with one job:

* `Cutter` decides where parts and segments end, in integer ticks of the timeline track (the
  video track; the audio track for audio-only streams): a part closes as soon as one more frame
  of the same length would take it past the part target — it is published without waiting for
  that frame (ffmpeg already holds each frame until the next one; waiting once more would double
  the part delay) — and before every keyframe that starts a segment, at the first keyframe at or
  after the segment target (half a frame of tolerance).
* `LiveWindow` keeps the closed segments of the live window, prunes the oldest (their files are
  deleted 3 × TARGETDURATION later), and renders the playlist: parts are listed only on the
  newest segments (RFC 8216bis 6.2.2, and what strict parsers accept).
* `RenditionPackager` holds timelines (one per backend process), init segments and the segment
  being built, and its state (`to_state`/`from_state`, plain JSON: a restarted ingest daemon
  continues the playlists).

Names are never reused: a segment whose parts were listed is closed as it stands (`end_timeline`)
whenever the timeline breaks — the publisher left, the backend restarted, the spool refused a
write, the daemon was restarted (`seal_listed`) — and the next segment, with the next media
sequence number, starts after a discontinuity at the next keyframe. Audio fragments join the open
part; audio that arrives while no segment is open is kept and leads the next segment, so no audio
is lost at a boundary. A publisher whose keyframe interval is longer than the target gets longer
segments and an honest TARGETDURATION.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from functools import cached_property

from daemons.media import hls
from daemons.media.fmp4 import Fragment, InitSegment, Track
from daemons.media.names import init_name, part_name, segment_name
from daemons.media.recording import Recording

STATE_VERSION = 2
MAX_PENDING_BYTES = 1 << 20  # audio kept while no segment is open (bounded: a keyframe may never come)
PART_SEGMENTS = 3  # most segments (the one in progress included) whose parts a playlist lists
PART_SLACK = Fraction(21, 20)  # a part may run 5 % past hls.part_target_s (see PackagerConfig.part_limit)
SEGMENT_EARLY = Fraction(1, 8)  # a keyframe this much before the segment target still cuts (Cutter)
MICROSECONDS = 1_000_000  # the timescale of durations known only in seconds (a resumed playlist)


@dataclass(frozen=True)
class PackagerConfig:
    part_target_s: float = 0.2
    segment_target_s: float = 2.0
    live_window_segments: int = 30
    low_latency: bool = True
    record: bool = False  # keep every segment and list it in the DVR/VOD playlists (recording.py)

    @property
    def target_duration(self) -> int:
        return max(1, math.ceil(self.segment_target_s - 1e-9))

    @cached_property
    def part_limit(self) -> Fraction:
        """The longest part (the playlist's PART-TARGET): the configured target plus 5 %, so that
        whole frames fill parts at real frame rates — six 29.97 fps frames (200.2 ms), frames
        timed to the millisecond (33 or 34 ms) — while every part but a segment's last stays
        above 85 % of it, as strict clients require."""
        return Fraction(str(self.part_target_s)) * PART_SLACK

    @cached_property
    def part_target(self) -> float:
        """PART-TARGET as the playlist writes it (whole 10 µs, never below `part_limit`)."""
        return math.ceil(self.part_limit * 100_000) / 100_000


@dataclass(frozen=True)
class Write:
    name: str
    data: bytes


@dataclass(frozen=True)
class Delete:
    name: str
    due_s: float  # seconds from now: files leave the playlist first and the disk later


Action = Write | Delete


# --- time in integer ticks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    ticks: int
    timescale: int
    independent: bool

    @property
    def seconds(self) -> Fraction:
        return Fraction(self.ticks, self.timescale)


@dataclass
class Segment:
    msn: int
    pdt: datetime
    discontinuity: bool
    map_uri: str
    parts: list[Part]
    size: int = 0

    # A closed segment never changes: its duration and the playlist's view of it are made once
    # (rebuilding them for 30 segments at every part cost ~4 ms, 2 % of a core per stream).
    @cached_property
    def duration(self) -> Fraction:
        return sum((p.seconds for p in self.parts), Fraction(0))

    @cached_property
    def _listed(self) -> dict[bool, hls.Segment]:
        return {}


class Cutter:
    """Where parts and segments end, in ticks of one timescale (exact: no float epsilons)."""

    def __init__(self, config: PackagerConfig, timescale: int):
        self.timescale = timescale
        # floor: a part never exceeds PART-TARGET, however the timescale divides it.
        self.part_target = math.floor(config.part_limit * timescale)
        self.segment_target = math.ceil(Fraction(str(config.segment_target_s)) * timescale)
        self.segment_early = math.floor(Fraction(str(config.segment_target_s)) * SEGMENT_EARLY * timescale)

    def closes_segment(self, open_ticks: int, keyframe: bool, last_frame: int) -> bool:
        """A keyframe at or after the segment target starts the next segment — or up to an eighth
        of it early (or half a frame, if more): an encoder's keyframe a frame or two short of the
        target (B-frames, a scene cut) must not make a segment twice as long, and TARGETDURATION,
        which may never change, with it."""
        return keyframe and 2 * open_ticks >= 2 * self.segment_target - max(last_frame, 2 * self.segment_early)

    def overflows(self, part_ticks: int, frame_ticks: int) -> bool:
        """Whether a frame of `frame_ticks` would take a part of `part_ticks` past the target."""
        return part_ticks + frame_ticks > self.part_target


# --- the live window ------------------------------------------------------------------------------


class LiveWindow:
    """The closed segments a live playlist lists, oldest first; numbering and pruning. With
    `keep_segments` (a recording) a segment leaving the window keeps its file; its parts go."""

    def __init__(self, size: int, *, keep_segments: bool = False):
        self.size = size
        self.keep_segments = keep_segments
        self.segments: list[Segment] = []
        self.media_sequence = 0  # msn of segments[0] (or of the next segment when empty)
        self.discontinuity_sequence = 0
        self.discontinuities = 0  # every discontinuity of the generation, pruned or not

    def add(self, segment: Segment, target_duration: int) -> list[Action]:
        """A closed segment joins; the oldest leave — never leaving less than 3 target durations
        listed (RFC 8216bis 6.2.2: short segments after reconnects count too) — and their files
        are deleted 3 target durations later."""
        self.segments.append(segment)
        self.discontinuities += segment.discontinuity
        actions: list[Action] = []
        grace_s = 3 * target_duration
        listed = sum((s.duration for s in self.segments), Fraction(0))
        while len(self.segments) > self.size and listed - self.segments[0].duration >= 3 * target_duration:
            old = self.segments.pop(0)
            listed -= old.duration
            self.discontinuity_sequence += old.discontinuity
            if not self.keep_segments:
                actions.append(Delete(segment_name(old.msn), grace_s))
            actions += [Delete(part_name(old.msn, i), grace_s) for i in range(len(old.parts))]
        self.media_sequence = self.segments[0].msn
        return actions

    def listed(self, target_duration: int, open_seconds: Fraction, low_latency: bool) -> list[hls.Segment]:
        """The segments as the playlist lists them: parts only on segments that start within 3
        target durations of the end, and on at most PART_SEGMENTS of them counting the one in
        progress. That one always counts: strict clients (hls-parser) count the preload hint's
        segment before it has a part, and a slot that came and went would bring back parts a
        segment had lost."""
        with_parts = low_latency
        slots = PART_SEGMENTS - 1
        age = open_seconds  # from the start of the segment below to the playlist's end
        out = []
        for s in reversed(self.segments):
            age += s.duration
            with_parts = with_parts and slots > 0 and age <= 3 * target_duration
            slots -= 1
            out.append(_hls_segment(s, with_parts=with_parts))
        out.reverse()
        return out


def _hls_segment(s: Segment, *, with_parts: bool) -> hls.Segment:
    listed = s._listed.get(with_parts)
    if listed is None:
        listed = s._listed[with_parts] = hls.Segment(
            msn=s.msn, uri=segment_name(s.msn), duration=float(s.duration), program_date_time=s.pdt,
            discontinuity=s.discontinuity, map_uri=s.map_uri, parts=_hls_parts(s.msn, s.parts) if with_parts else (),
        )
    return listed


def _hls_parts(msn: int, parts: list[Part]) -> tuple[hls.Part, ...]:
    return tuple(_hls_part(msn, i, p) for i, p in enumerate(parts))


def _hls_part(msn: int, index: int, part: Part) -> hls.Part:
    return hls.Part(part_name(msn, index), float(part.seconds), part.independent)


# --- the rendition ----------------------------------------------------------------------------------


@dataclass
class _Open:
    """The segment being built: its closed parts and the fragments of its open part (ticks)."""

    msn: int
    pdt: datetime
    discontinuity: bool
    map_uri: str
    timescale: int
    parts: list[Part] = field(default_factory=list)
    part_data: bytearray = field(default_factory=bytearray)
    part_ticks: int = 0
    part_independent: bool = False
    part_fragments: int = 0
    segment_data: bytearray = field(default_factory=bytearray)
    listed_parts: list[hls.Part] = field(default_factory=list)  # `parts` as the playlist lists them

    def hls_parts(self) -> tuple[hls.Part, ...]:
        """The closed parts as the playlist lists them; each built once (parts only grow)."""
        listed = self.listed_parts
        listed += (_hls_part(self.msn, i, self.parts[i]) for i in range(len(listed), len(self.parts)))
        return tuple(listed)

    @property
    def ticks(self) -> int:
        return sum(p.ticks for p in self.parts) + self.part_ticks

    @property
    def seconds(self) -> Fraction:
        return Fraction(self.ticks, self.timescale)


class RenditionPackager:
    def __init__(self, name: str, config: PackagerConfig):
        self.name = name
        self.config = config
        self.target_duration = config.target_duration
        self.window = LiveWindow(config.live_window_segments, keep_segments=config.record)
        self.recording: Recording | None = Recording() if config.record else None
        self.next_msn = 0
        self.ended = False
        self.init: InitSegment | None = None
        self.init_uri: str | None = None
        self.inits_written = 0
        self._open: _Open | None = None
        self._pending = bytearray()  # audio fragments waiting for the next segment to open
        self._timeline_discontinuity = False
        self._timeline_wall: datetime | None = None
        self._timeline_first_dts: int | None = None
        self._timeline: Track | None = None
        self._cutter: Cutter | None = None
        self._last_frame = 0  # ticks of the newest timeline frame
        self._newest_dts = 0  # its decode time
        self._init_data: bytes | None = None
        self.keyframe_interval_s: float | None = None
        self._last_keyframe: int | None = None
        self.bandwidth_peak = 0
        self.bandwidth_bits = 0
        self.bandwidth_seconds = Fraction(0)

    # --- what the pipeline reads ---------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        return self.window.segments

    @property
    def media_sequence(self) -> int:
        return self.window.media_sequence

    @property
    def discontinuity_sequence(self) -> int:
        return self.window.discontinuity_sequence

    @property
    def discontinuities(self) -> int:
        """Every discontinuity of the generation so far (also those no longer in the window)."""
        return self.window.discontinuities

    @property
    def average_bandwidth(self) -> int:
        return int(self.bandwidth_bits / self.bandwidth_seconds) if self.bandwidth_seconds > 0 else 0

    # --- timelines -----------------------------------------------------------------------------

    def start_timeline(self) -> None:
        """A new backend timeline: its first segment follows a discontinuity (unless it is the first)."""
        self._timeline_discontinuity = self.next_msn > 0
        self._pending = bytearray()  # the old backend's timeline ends here
        self._timeline_wall = None
        self._timeline_first_dts = None
        self._last_keyframe = None

    def on_init(self, init: InitSegment) -> list[Action]:
        self.init = init
        self._timeline = init.video or init.audio
        if self._timeline is None:
            raise ValueError(f"rendition {self.name}: the backend's output has neither video nor audio")
        self._cutter = Cutter(self.config, self._timeline.timescale)
        if init.data == self._init_data and self.init_uri:
            return []
        self._init_data = init.data
        self.init_uri = init_name(self.inits_written)
        self.inits_written += 1
        return [Write(self.init_uri, init.data)]

    def end_timeline(self) -> list[Action]:
        """The timeline breaks (the backend stopped, the spool refused a write): the open segment
        is closed as it is (possibly short), so its listed parts keep their names and bytes."""
        actions: list[Action] = []
        o = self._open
        if o is not None:
            actions += self._close_part()
            # Audio after the last video frame: too short for a part of its own, so it goes into
            # the whole segment's file only (segment players get it; part players miss ~1 frame).
            o.segment_data += o.part_data
            actions += self._close_segment()
        self._pending = bytearray()
        self._timeline_discontinuity = self.next_msn > 0
        return actions

    def end(self) -> list[Action]:
        """The generation ended: close what is open; the playlist gets ENDLIST."""
        actions = self.end_timeline()
        self.ended = True
        return actions

    def seal_listed(self, listed: hls.MediaPlaylist, files: list[bytes]) -> list[Action]:
        """Resuming after a daemon restart: the last published playlist lists parts of a segment
        the state does not know (the open one). Close it from those parts (`files`, their bytes,
        read from disk) so that no name it listed is ever used for other bytes."""
        if self._open is not None or listed.next_msn != self.next_msn or not listed.partial_parts:
            return []
        parts = [Part(round(p.duration * MICROSECONDS), MICROSECONDS, p.independent) for p in listed.partial_parts]
        self._open = _Open(self.next_msn, listed.next_program_date_time or utc_now(), listed.next_discontinuity,
                           listed.next_map_uri or self.init_uri or init_name(0), MICROSECONDS, parts=parts,
                           segment_data=bytearray(b"".join(files)))
        actions = self._close_segment()
        self._timeline_discontinuity = True
        return actions

    # --- fragments -------------------------------------------------------------------------------

    def on_fragment(self, frag: Fragment, now: datetime) -> list[Action]:
        if self.init is None or self._timeline is None or self._cutter is None:
            raise ValueError(f"rendition {self.name}: a fragment arrived before the init segment")
        track = frag.tracks.get(self._timeline.track_id)
        if track is None:  # an audio-only fragment in a muxed stream: joins the open part
            if self._open is not None:
                self._open.part_data += frag.data
            elif len(self._pending) + len(frag.data) <= MAX_PENDING_BYTES:
                self._pending += frag.data  # leads the next segment
            return []
        cut = self._cutter
        ticks = track.duration
        keyframe = track.first_sample_sync if self.init.video is not None else True
        if self._timeline_wall is None:
            self._timeline_wall = now
            self._timeline_first_dts = track.base_decode_time
        if keyframe and self.init.video is not None:
            if self._last_keyframe is not None:
                self.keyframe_interval_s = (track.base_decode_time - self._last_keyframe) / cut.timescale
            self._last_keyframe = track.base_decode_time

        actions: list[Action] = []
        o = self._open
        if o is not None:
            closes_segment = cut.closes_segment(o.ticks, keyframe, self._last_frame)
            # The open part closes there too, or when this fragment would take it past the target.
            if o.part_fragments and (closes_segment or cut.overflows(o.part_ticks, ticks)):
                actions += self._close_part()
            if closes_segment:
                if o.part_fragments == 0:
                    self._pending += o.part_data  # audio after the last part: leads the next segment
                actions += self._close_segment()
                o = None
        if o is None:
            if not keyframe:
                return actions  # a segment can only start with a keyframe
            since = Fraction(track.base_decode_time - self._timeline_first_dts, cut.timescale)
            pdt = self._timeline_wall + timedelta(microseconds=round(since * MICROSECONDS))
            o = self._open = _Open(self.next_msn, pdt, self._timeline_discontinuity, self.init_uri or init_name(0), cut.timescale)
            self._timeline_discontinuity = False
            o.part_data += self._pending
            self._pending = bytearray()
        if o.part_fragments == 0:
            o.part_independent = keyframe
        o.part_data += frag.data
        o.part_ticks += ticks
        o.part_fragments += 1
        self._last_frame = ticks
        self._newest_dts = track.base_decode_time
        # Close now if the next frame of the same length would not fit: the part is published
        # without waiting for that frame.
        if cut.overflows(o.part_ticks, ticks):
            actions += self._close_part()
        return actions

    def publish_due_s(self) -> float:
        """Media seconds from the newest timeline frame's start to the start of the first frame
        whose arrival may publish something (0 when nothing is open): nothing can be published
        before it comes, so the media thread need not read the publisher until then.

        That frame is the open part's last one (after which a frame of the newest one's length
        would not fit; the part just closed: the next part's), or, where the segment may end,
        the keyframe expected to end it (every frame there if keyframes are not yet regular).
        Frame lengths jitter by a tick (millisecond timestamps), so a part may end a frame
        earlier than the newest length says: the count assumes so."""
        o, cut, d = self._open, self._cutter, self._last_frame
        if o is None or cut is None or d <= 0:
            return 0.0
        slack = d // 4
        due = max(1, (cut.part_target - o.part_ticks - slack) // d)  # in frames from the newest
        # The first frame at which a keyframe would end the segment (`Cutter.closes_segment`).
        short = 2 * cut.segment_target - max(d, 2 * cut.segment_early) - 2 * o.ticks - 2 * slack
        closing = 1 + max(0, -(-short // (2 * d)))
        if closing < due:
            key = self._expected_keyframe(d)
            if key is None:
                due = closing
            else:
                interval = max(1, round(self.keyframe_interval_s * cut.timescale / d))
                while key < closing:
                    key += interval
                due = min(due, key)
        return due * d / cut.timescale

    def _expected_keyframe(self, d: int) -> int | None:
        """The next keyframe, in frames from the newest, if keyframes have come at an interval
        and the next is not overdue; None otherwise (and for audio timelines, where every frame
        may end a segment). An encoder's keyframe off its interval (a scene cut) that ends a
        segment is then read when the part's last frame is."""
        if self.init is None or self.init.video is None or self.keyframe_interval_s is None or self._last_keyframe is None:
            return None
        expected = self._last_keyframe + round(self.keyframe_interval_s * self._cutter.timescale)
        ahead = (expected - self._newest_dts + d // 2) // d
        return ahead if ahead >= 1 else None

    def _close_part(self) -> list[Action]:
        o = self._open
        if o is None or o.part_fragments == 0:
            return []
        index = len(o.parts)
        data = bytes(o.part_data)
        o.parts.append(Part(o.part_ticks, o.timescale, o.part_independent))
        o.segment_data += data
        o.part_data = bytearray()
        o.part_ticks = 0
        o.part_fragments = 0
        o.part_independent = False
        return [Write(part_name(o.msn, index), data)]

    def _close_segment(self) -> list[Action]:
        o = self._open
        self._open = None
        if o is None or not o.parts:
            return []
        seg = Segment(o.msn, o.pdt, o.discontinuity, o.map_uri, o.parts, len(o.segment_data))
        self.next_msn = o.msn + 1
        duration = seg.duration
        if duration > 0:
            self.bandwidth_peak = max(self.bandwidth_peak, int(seg.size * 8 / duration))
            self.bandwidth_bits += seg.size * 8
            self.bandwidth_seconds += duration
        if round(duration) > self.target_duration:
            # A keyframe interval longer than the segment target: say so honestly.
            self.target_duration = round(duration)
        actions: list[Action] = [Write(segment_name(seg.msn), bytes(o.segment_data))]
        actions += self.window.add(seg, self.target_duration)
        if self.recording is not None:
            self.recording.add(_hls_segment(seg, with_parts=False))
        return actions

    def resume_recording(self, recording: Recording | None) -> None:
        """After a restart: the recording as its `dvr.m3u8` left it (None when there was none),
        completed with the closed segments the state has and the playlist did not list yet."""
        if self.recording is None:
            return
        segments = self.window.segments
        if recording is None:
            recording = Recording(segments[0].msn if segments else self.next_msn)
        for s in segments:
            if s.msn == recording.first_msn + recording.segments:
                recording.add(_hls_segment(s, with_parts=False))
        self.recording = recording

    # --- the playlist ----------------------------------------------------------------------------

    @property
    def playable(self) -> bool:
        return bool(self.window.segments) or bool(self._open and self._open.parts)

    def last_part(self) -> tuple[int, int] | None:
        """(msn, part index) of the newest part listed."""
        if self._open is not None and self._open.parts:
            return self._open.msn, len(self._open.parts) - 1
        if self.window.segments:
            s = self.window.segments[-1]
            return s.msn, len(s.parts) - 1
        return None

    def playlist(self, rendition_reports: tuple[hls.RenditionReport, ...] = ()) -> hls.MediaPlaylist:
        ll = self.config.low_latency
        td = self.target_duration
        o = self._open
        open_parts = len(o.parts) if ll and o is not None else 0
        # The playlist's end is its last listed part's: media of the part still being filled is
        # not listed (and a restarted daemon does not have it), so it must not move the end.
        listed_open = sum((p.seconds for p in o.parts), Fraction(0)) if open_parts else Fraction(0)
        segments = self.window.listed(td, listed_open, ll)
        partial = o.hls_parts() if open_parts else ()
        server_control = None
        preload = None
        if ll:
            server_control = hls.ServerControl(
                can_block_reload=True,
                part_hold_back=3 * self.config.part_target,
                hold_back=3 * td,
                can_skip_until=6 * td,
            )
            if not self.ended:
                preload = part_name(o.msn, len(o.parts)) if o is not None else part_name(self.next_msn, 0)
        return hls.MediaPlaylist(
            target_duration=td,
            media_sequence=self.window.media_sequence if self.window.segments else self.next_msn,
            discontinuity_sequence=self.window.discontinuity_sequence,
            segments=tuple(segments),
            partial_parts=partial,
            next_map_uri=o.map_uri if partial else None,
            next_discontinuity=o.discontinuity if partial else False,
            next_program_date_time=o.pdt if partial else None,
            part_target=self.config.part_target if ll else None,
            server_control=server_control,
            preload_hint=preload,
            rendition_reports=rendition_reports,
            ended=self.ended,
            independent_segments=True,
        )

    # --- persistence -------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """What a restarted daemon needs to continue: the closed segments, numbering, the init."""
        w = self.window
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "target_duration": self.target_duration,
            "media_sequence": w.media_sequence,
            "discontinuity_sequence": w.discontinuity_sequence,
            "discontinuities": w.discontinuities,
            "next_msn": self.next_msn,
            "ended": self.ended,
            "init_uri": self.init_uri,
            "inits_written": self.inits_written,
            "bandwidth_peak": self.bandwidth_peak,
            "bandwidth_bits": self.bandwidth_bits,
            "bandwidth_seconds": [self.bandwidth_seconds.numerator, self.bandwidth_seconds.denominator],
            "segments": [
                {
                    "msn": s.msn,
                    "pdt": s.pdt.isoformat(),
                    "discontinuity": s.discontinuity,
                    "map_uri": s.map_uri,
                    "size": s.size,
                    "parts": [[p.ticks, p.timescale, p.independent] for p in s.parts],
                }
                for s in w.segments
            ],
        }

    @classmethod
    def from_state(cls, state: dict, config: PackagerConfig) -> "RenditionPackager":
        version = state.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unknown packager state version {version!r}")
        p = cls(state["name"], config)
        p.target_duration = int(state["target_duration"])
        p.next_msn = int(state["next_msn"])
        p.ended = bool(state["ended"])
        p.init_uri = state["init_uri"]
        p.inits_written = int(state["inits_written"])
        p.bandwidth_peak = int(state.get("bandwidth_peak", 0))
        w = p.window
        w.media_sequence = int(state["media_sequence"])
        w.discontinuity_sequence = int(state["discontinuity_sequence"])
        if version == 1:  # float seconds (Sender before integer time)
            parts_of = lambda s: [Part(round(d * MICROSECONDS), MICROSECONDS, i) for d, i in s["parts"]]  # noqa: E731
        else:
            parts_of = lambda s: [Part(int(t), int(scale), bool(i)) for t, scale, i in s["parts"]]  # noqa: E731
        w.segments = [
            Segment(s["msn"], datetime.fromisoformat(s["pdt"]), s["discontinuity"], s["map_uri"], parts_of(s), s.get("size", 0))
            for s in state["segments"]
        ]
        w.discontinuities = int(state.get("discontinuities", w.discontinuity_sequence + sum(s.discontinuity for s in w.segments)))
        if "bandwidth_seconds" in state:
            p.bandwidth_bits = int(state["bandwidth_bits"])
            p.bandwidth_seconds = Fraction(*state["bandwidth_seconds"])
        else:
            p.bandwidth_bits = sum(s.size * 8 for s in w.segments)
            p.bandwidth_seconds = sum((s.duration for s in w.segments), Fraction(0))
        return p


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
