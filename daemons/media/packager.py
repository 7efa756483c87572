"""Sender's LL-HLS packager for one rendition: fMP4 fragments in, parts, segments and a playlist out.

Sans-IO. The caller feeds what `fmp4.FMP4Reader` reads from a backend's pipe; the packager answers
with `Write`/`Delete` actions (file names relative to the rendition directory) and keeps the
rendition's playlist as a `hls.MediaPlaylist`. The caller performs the actions in order — a file
is always whole on disk before the playlist that lists it is published.

The timeline is the video track (the audio track for audio-only streams). A part closes as soon
as one more frame of the same length would take it past the part target — it is published
without waiting for that frame (ffmpeg already holds each frame until the next one; waiting once
more would double the part delay) — and before every keyframe that starts a segment, at the first
keyframe at or after the segment target. Audio fragments join the open part; audio that arrives
while no segment is open (between a segment's close and the next keyframe) is kept and leads the
next segment, so no audio is lost at a boundary. A publisher whose keyframe interval is longer
than the target gets longer segments and an honest TARGETDURATION. Each backend session (a publisher connection, an ffmpeg restart) starts with a
discontinuity; media sequence numbers run on across sessions for the whole generation.

The packager's state (`to_state`/`from_state`) is plain JSON, so a restarted ingest daemon
continues a generation's playlists where they stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from daemons.media import hls
from daemons.media.fmp4 import Fragment, InitSegment, Track

STATE_VERSION = 1
MAX_PENDING_BYTES = 1 << 20  # audio kept while no segment is open (bounded: a keyframe may never come)
PART_SEGMENTS = 3  # most segments (the one in progress included) whose parts a playlist lists


@dataclass(frozen=True)
class PackagerConfig:
    part_target_s: float = 0.2
    segment_target_s: float = 2.0
    live_window_segments: int = 30
    low_latency: bool = True

    @property
    def target_duration(self) -> int:
        return max(1, math.ceil(self.segment_target_s - 1e-9))


@dataclass(frozen=True)
class Write:
    name: str
    data: bytes


@dataclass(frozen=True)
class Delete:
    name: str
    due_s: float  # seconds from now: files leave the playlist first and the disk later


Action = Write | Delete


@dataclass
class _Part:
    duration: float
    independent: bool


@dataclass
class _Segment:
    msn: int
    duration: float
    pdt: datetime
    discontinuity: bool
    map_uri: str
    parts: list[_Part]
    size: int = 0


@dataclass
class _Open:
    """The segment being built: its closed parts and the fragments of its open part."""

    msn: int
    pdt: datetime
    discontinuity: bool
    map_uri: str
    parts: list[_Part] = field(default_factory=list)
    part_data: bytearray = field(default_factory=bytearray)
    part_duration: float = 0.0
    part_independent: bool = False
    part_fragments: int = 0
    segment_data: bytearray = field(default_factory=bytearray)

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts) + self.part_duration


class RenditionPackager:
    def __init__(self, name: str, config: PackagerConfig):
        self.name = name
        self.config = config
        self.target_duration = config.target_duration
        self.segments: list[_Segment] = []  # the live window, oldest first
        self.media_sequence = 0  # msn of segments[0] (or of the next segment when empty)
        self.discontinuity_sequence = 0
        self.next_msn = 0
        self.ended = False
        self.init: InitSegment | None = None
        self.init_uri: str | None = None
        self.inits_written = 0
        self._open: _Open | None = None
        self._pending = bytearray()  # audio fragments waiting for the next segment to open
        self._session_discontinuity = False
        self._session_wall: datetime | None = None
        self._session_first_dts: int | None = None
        self._timeline: Track | None = None
        self._last_frame_s = 0.0
        self._init_data: bytes | None = None
        self.keyframe_interval_s: float | None = None
        self._last_keyframe_s: float | None = None
        self.bandwidth_peak = 0
        self.bandwidth_sum = 0.0
        self.bandwidth_time = 0.0

    # --- sessions --------------------------------------------------------------------------

    def start_session(self) -> None:
        """A new backend session: its first segment follows a discontinuity (unless it is the first)."""
        self._session_discontinuity = self.next_msn > 0 or bool(self.segments)
        self._pending = bytearray()  # the old backend's timeline ends here
        self._session_wall = None
        self._session_first_dts = None
        self._last_keyframe_s = None

    def on_init(self, init: InitSegment) -> list[Action]:
        self.init = init
        self._timeline = init.video or init.audio
        if self._timeline is None:
            raise ValueError(f"rendition {self.name}: the backend's output has neither video nor audio")
        if init.data == self._init_data and self.init_uri:
            return []
        self._init_data = init.data
        self.init_uri = "init.mp4" if self.inits_written == 0 else f"init-{self.inits_written}.mp4"
        self.inits_written += 1
        return [Write(self.init_uri, init.data)]

    def end_session(self) -> list[Action]:
        """The backend stopped: the open segment is closed as it is (possibly short)."""
        actions: list[Action] = []
        o = self._open
        if o is not None:
            actions += self._close_part()
            # Audio after the last video frame: too short for a part of its own, so it goes into
            # the whole segment's file only (segment players get it; part players miss ~1 frame).
            o.segment_data += o.part_data
            actions += self._close_segment()
        self._pending = bytearray()
        return actions

    def end(self) -> list[Action]:
        """The generation ended: close what is open; the playlist gets ENDLIST."""
        actions = self.end_session()
        self.ended = True
        return actions

    def drop_open_segment(self) -> None:
        """A file of the open segment could not be written (spool full): drop that segment.

        Its parts leave the playlist (they may not all be on disk); the next keyframe starts a
        new segment after a discontinuity, so nothing listed is ever missing from disk.
        """
        self._open = None
        self._session_discontinuity = True

    # --- fragments -------------------------------------------------------------------------

    def on_fragment(self, frag: Fragment, now: datetime) -> list[Action]:
        if self.init is None or self._timeline is None:
            raise ValueError(f"rendition {self.name}: a fragment arrived before the init segment")
        track = frag.tracks.get(self._timeline.track_id)
        if track is None:  # an audio-only fragment in a muxed stream: joins the open part
            if self._open is not None:
                self._open.part_data += frag.data
            elif len(self._pending) + len(frag.data) <= MAX_PENDING_BYTES:
                self._pending += frag.data  # leads the next segment
            return []
        scale = self._timeline.timescale
        start_s = track.base_decode_time / scale
        duration = track.duration / scale
        keyframe = track.first_sample_sync if self.init.video is not None else True
        if self._session_wall is None:
            self._session_wall = now
            self._session_first_dts = track.base_decode_time
        if keyframe and self.init.video is not None:
            if self._last_keyframe_s is not None:
                self.keyframe_interval_s = start_s - self._last_keyframe_s
            self._last_keyframe_s = start_s

        actions: list[Action] = []
        o = self._open
        if o is not None:
            # A keyframe at or after the segment target starts the next segment.
            closes_segment = keyframe and o.duration >= self.config.segment_target_s - self._last_frame_s / 2
            # The open part closes there too, or when this fragment would take it past the target.
            if o.part_fragments and (closes_segment or o.part_duration + duration > self.config.part_target_s + 1e-6):
                actions += self._close_part()
            if closes_segment:
                if o.part_fragments == 0:
                    self._pending += o.part_data  # audio after the last part: leads the next segment
                actions += self._close_segment()
                o = None
        if o is None:
            if not keyframe:
                return actions  # a segment can only start with a keyframe
            pdt = self._session_wall + timedelta(seconds=(track.base_decode_time - self._session_first_dts) / scale)
            o = self._open = _Open(self.next_msn, pdt, self._session_discontinuity, self.init_uri or "init.mp4")
            self._session_discontinuity = False
            o.part_data += self._pending
            self._pending = bytearray()
        if o.part_fragments == 0:
            o.part_independent = keyframe
        o.part_data += frag.data
        o.part_duration += duration
        o.part_fragments += 1
        self._last_frame_s = duration
        # Close now if the next frame of the same length would not fit: the part is published
        # without waiting for that frame.
        if o.part_duration + duration > self.config.part_target_s + 1e-6:
            actions += self._close_part()
        return actions

    def _close_part(self) -> list[Action]:
        o = self._open
        if o is None or o.part_fragments == 0:
            return []
        index = len(o.parts)
        data = bytes(o.part_data)
        o.parts.append(_Part(o.part_duration, o.part_independent))
        o.segment_data += data
        o.part_data = bytearray()
        o.part_duration = 0.0
        o.part_fragments = 0
        o.part_independent = False
        return [Write(part_name(o.msn, index), data)]

    def _close_segment(self) -> list[Action]:
        o = self._open
        self._open = None
        if o is None or not o.parts:
            return []
        seg = _Segment(o.msn, sum(p.duration for p in o.parts), o.pdt, o.discontinuity, o.map_uri, o.parts, len(o.segment_data))
        self.segments.append(seg)
        self.next_msn = o.msn + 1
        if seg.duration > 0:
            bps = int(seg.size * 8 / seg.duration)
            self.bandwidth_peak = max(self.bandwidth_peak, bps)
            self.bandwidth_sum += seg.size * 8
            self.bandwidth_time += seg.duration
        if round(seg.duration) > self.target_duration:
            # A keyframe interval longer than the segment target: say so honestly.
            self.target_duration = round(seg.duration)
        actions: list[Action] = [Write(segment_name(seg.msn), bytes(o.segment_data))]
        actions += self._prune()
        return actions

    def _prune(self) -> list[Action]:
        """Keep the live window; removed files stay on disk for 3 target durations."""
        actions: list[Action] = []
        grace = 3 * self.target_duration
        while len(self.segments) > self.config.live_window_segments:
            old = self.segments.pop(0)
            if old.discontinuity:
                self.discontinuity_sequence += 1
            actions.append(Delete(segment_name(old.msn), grace))
            actions += [Delete(part_name(old.msn, i), grace) for i in range(len(old.parts))]
        self.media_sequence = self.segments[0].msn if self.segments else self.next_msn
        return actions

    # --- the playlist ----------------------------------------------------------------------

    @property
    def playable(self) -> bool:
        return bool(self.segments) or bool(self._open and self._open.parts)

    def last_part(self) -> tuple[int, int] | None:
        """(msn, part index) of the newest part listed."""
        if self._open is not None and self._open.parts:
            return self._open.msn, len(self._open.parts) - 1
        if self.segments:
            s = self.segments[-1]
            return s.msn, len(s.parts) - 1
        return None

    def playlist(self, rendition_reports: tuple[hls.RenditionReport, ...] = ()) -> hls.MediaPlaylist:
        ll = self.config.low_latency
        td = self.target_duration
        o = self._open
        # Parts are listed for the newest segments only (RFC 8216bis 6.2.2): for a segment that
        # starts within 3 target durations of the playlist's end, and for at most 3 segments
        # counting the one in progress, as strict parsers (hls-parser) enforce.
        with_parts = ll
        slots = PART_SEGMENTS - (1 if o is not None and o.parts else 0)
        segments = []
        age = o.duration if o else 0.0  # from the start of the segment below to the playlist's end
        for s in reversed(self.segments):
            age += s.duration
            with_parts = with_parts and slots > 0 and age <= 3 * td + 1e-6
            slots -= 1
            segments.append(
                hls.Segment(
                    msn=s.msn,
                    uri=segment_name(s.msn),
                    duration=s.duration,
                    program_date_time=s.pdt,
                    discontinuity=s.discontinuity,
                    map_uri=s.map_uri,
                    parts=tuple(hls.Part(part_name(s.msn, i), p.duration, p.independent) for i, p in enumerate(s.parts)) if with_parts else (),
                )
            )
        segments.reverse()
        partial = ()
        if ll and o is not None:
            partial = tuple(hls.Part(part_name(o.msn, i), p.duration, p.independent) for i, p in enumerate(o.parts))
        server_control = None
        preload = None
        if ll:
            server_control = hls.ServerControl(
                can_block_reload=True,
                part_hold_back=3 * self.config.part_target_s,
                hold_back=3 * td,
                can_skip_until=6 * td,
            )
            if not self.ended:
                if o is not None:
                    preload = part_name(o.msn, len(o.parts))
                else:
                    preload = part_name(self.next_msn, 0)
        return hls.MediaPlaylist(
            target_duration=td,
            media_sequence=self.media_sequence,
            discontinuity_sequence=self.discontinuity_sequence,
            segments=tuple(segments),
            partial_parts=partial,
            next_map_uri=o.map_uri if partial else None,
            next_discontinuity=o.discontinuity if partial else False,
            next_program_date_time=o.pdt if partial else None,
            part_target=self.config.part_target_s if ll else None,
            server_control=server_control,
            preload_hint=preload,
            rendition_reports=rendition_reports,
            ended=self.ended,
            independent_segments=True,
        )

    # --- persistence -----------------------------------------------------------------------

    def to_state(self) -> dict:
        """What a restarted daemon needs to continue: the closed segments, numbering, the init."""
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "target_duration": self.target_duration,
            "media_sequence": self.media_sequence,
            "discontinuity_sequence": self.discontinuity_sequence,
            "next_msn": self.next_msn,
            "ended": self.ended,
            "init_uri": self.init_uri,
            "inits_written": self.inits_written,
            "bandwidth_peak": self.bandwidth_peak,
            "average_bandwidth": self.average_bandwidth,
            "segments": [
                {
                    "msn": s.msn,
                    "duration": s.duration,
                    "pdt": s.pdt.isoformat(),
                    "discontinuity": s.discontinuity,
                    "map_uri": s.map_uri,
                    "size": s.size,
                    "parts": [[p.duration, p.independent] for p in s.parts],
                }
                for s in self.segments
            ],
        }

    @classmethod
    def from_state(cls, state: dict, config: PackagerConfig) -> "RenditionPackager":
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown packager state version {state.get('version')!r}")
        p = cls(state["name"], config)
        p.target_duration = int(state["target_duration"])
        p.media_sequence = int(state["media_sequence"])
        p.discontinuity_sequence = int(state["discontinuity_sequence"])
        p.next_msn = int(state["next_msn"])
        p.ended = bool(state["ended"])
        p.init_uri = state["init_uri"]
        p.inits_written = int(state["inits_written"])
        p.bandwidth_peak = int(state.get("bandwidth_peak", 0))
        p.segments = [
            _Segment(
                s["msn"], s["duration"], datetime.fromisoformat(s["pdt"]), s["discontinuity"], s["map_uri"],
                [_Part(d, i) for d, i in s["parts"]], s.get("size", 0),
            )
            for s in state["segments"]
        ]
        p.bandwidth_sum = sum(s.size * 8 for s in p.segments)
        p.bandwidth_time = sum(s.duration for s in p.segments)
        return p

    @property
    def average_bandwidth(self) -> int:
        return int(self.bandwidth_sum / self.bandwidth_time) if self.bandwidth_time > 0 else 0


def segment_name(msn: int) -> str:
    return f"{msn}.m4s"


def part_name(msn: int, index: int) -> str:
    return f"{msn}.{index}.m4s"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
