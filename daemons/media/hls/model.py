"""The playlist model: segments, parts and playlists as small frozen values that render
themselves, one field per tag (after bluenviron/gohlslib).

The packager builds a ``MediaPlaylist`` for each rendition whenever a part or segment is
published and calls ``render()``; the HTTP daemon calls ``render(skip=True)`` for
``_HLS_skip`` requests and ``contains()`` to decide when a blocking reload can be answered.

What the model guarantees (checked in ``__post_init__``, raising ``ValueError``):

* it can always be rendered into syntactically valid text, and ``parse`` gives the same
  value back: URIs cannot break a line or an attribute list, numbers are finite and in
  range, and seconds are quantized to the 10 µs the text carries (``2.000004`` → ``2.0``),
  dates to UTC milliseconds;
* segments are numbered consecutively from ``media_sequence``, and a map once in effect
  stays in effect (EXT-X-MAP applies until the next one);
* the state of the in-progress segment (``next_*``) only exists when it has parts.

What it does not guarantee is that the numbers make a good playlist (a part longer than
PART-TARGET, a HOLD-BACK that is too small): ``validate.check_media_playlist`` judges that.

Tag order (RFC 8216bis 4.4; Sender always writes this one)::

    EXTM3U, VERSION, TARGETDURATION, SERVER-CONTROL, PART-INF, PLAYLIST-TYPE, MEDIA-SEQUENCE,
    DISCONTINUITY-SEQUENCE, INDEPENDENT-SEGMENTS, [SKIP],
    per segment: DISCONTINUITY, MAP, PROGRAM-DATE-TIME, PART..., EXTINF, URI,
    the in-progress segment: DISCONTINUITY, MAP, PROGRAM-DATE-TIME, PART...,
    PRELOAD-HINT, RENDITION-REPORT..., ENDLIST

EXT-X-VERSION is the lowest the content needs (6.2.1: it SHOULD NOT be higher; section 8
gives the floors): 3 for decimal EXTINF durations, 6 with EXT-X-MAP, 9 with EXT-X-SKIP.
The Low-Latency tags themselves need no version, so a full LL-HLS playlist is version 6
and only its delta updates are version 9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .syntax import (
    check_datetime,
    check_int,
    check_quoted,
    check_seconds,
    check_uri,
    format_datetime,
    format_duration,
    format_frame_rate,
    format_seconds,
    quoted,
)

__all__ = [
    "Earlier",
    "MasterPlaylist",
    "MediaPlaylist",
    "Part",
    "RenditionReport",
    "Segment",
    "ServerControl",
    "Variant",
]


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise ValueError(f"{name} must be a bool, not {type(value).__name__}")


def _as_tuple(owner: object, name: str, kind: type) -> None:
    """Accept any iterable for a tuple field (a list is handy), store a tuple, check items."""
    value = getattr(owner, name)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a tuple of {kind.__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise ValueError(f"{name} must hold {kind.__name__} values, not {type(item).__name__}")
    object.__setattr__(owner, name, items)


def _optional(owner: object, name: str, check) -> None:  # noqa: ANN001 - a check_* function
    value = getattr(owner, name)
    if value is not None:
        object.__setattr__(owner, name, check(f"{type(owner).__name__}.{name}", value))


@dataclass(frozen=True, slots=True)
class Part:
    """A Partial Segment (EXT-X-PART). ``independent``: it starts with a keyframe."""

    uri: str
    duration: float
    independent: bool = False

    def __post_init__(self) -> None:
        check_uri("Part.uri", self.uri)
        object.__setattr__(self, "duration", check_seconds("Part.duration", self.duration))
        _check_bool("Part.independent", self.independent)

    def render(self) -> str:
        independent = ",INDEPENDENT=YES" if self.independent else ""
        return f"#EXT-X-PART:DURATION={format_duration(self.duration)},URI={quoted(self.uri)}{independent}"


@dataclass(frozen=True, slots=True)
class Segment:
    """A complete Media Segment.

    ``map_uri`` is the Media Initialization Section in effect for this segment (rendered as
    EXT-X-MAP only where it changes); ``parts`` are its Partial Segments, listed only while
    the segment is near the live edge. ``discontinuity`` puts EXT-X-DISCONTINUITY before it.
    """

    msn: int
    uri: str
    duration: float
    program_date_time: datetime | None = None
    discontinuity: bool = False
    map_uri: str | None = None
    parts: tuple[Part, ...] = ()
    # (map_written, lines) of the last render: a live playlist renders the same closed segments
    # five times a second, and their lines change only with the map in effect before them.
    _rendered: tuple[str | None, tuple[str, ...]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("Segment.msn", self.msn)
        check_uri("Segment.uri", self.uri)
        object.__setattr__(self, "duration", check_seconds("Segment.duration", self.duration))
        _optional(self, "program_date_time", check_datetime)
        _check_bool("Segment.discontinuity", self.discontinuity)
        _optional(self, "map_uri", check_uri)
        _as_tuple(self, "parts", Part)

    def render_lines(self, map_written: str | None) -> tuple[str, ...]:
        """This segment's lines, given the map the lines before it put in effect."""
        rendered = self._rendered
        if rendered is not None and rendered[0] == map_written:
            return rendered[1]
        lines = self._lines(map_written)
        object.__setattr__(self, "_rendered", (map_written, lines))
        return lines

    def _lines(self, map_written: str | None) -> tuple[str, ...]:
        lines = []
        if self.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if self.map_uri is not None and self.map_uri != map_written:
            lines.append(f"#EXT-X-MAP:URI={quoted(self.map_uri)}")
        if self.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_datetime(self.program_date_time)}")
        lines.extend(part.render() for part in self.parts)
        lines.append(f"#EXTINF:{format_duration(self.duration)},")
        lines.append(self.uri)
        return tuple(lines)


PLAYLIST_TYPES = ("EVENT", "VOD")


@dataclass(frozen=True, slots=True)
class ServerControl:
    """EXT-X-SERVER-CONTROL: which Delivery Directives the server answers (4.4.3.8)."""

    can_block_reload: bool = True
    part_hold_back: float | None = None
    hold_back: float | None = None
    can_skip_until: float | None = None
    can_skip_dateranges: bool = False

    def __post_init__(self) -> None:
        _check_bool("ServerControl.can_block_reload", self.can_block_reload)
        _check_bool("ServerControl.can_skip_dateranges", self.can_skip_dateranges)
        for name in ("part_hold_back", "hold_back", "can_skip_until"):
            _optional(self, name, check_seconds)
        if self.can_skip_dateranges and self.can_skip_until is None:
            raise ValueError("CAN-SKIP-DATERANGES requires CAN-SKIP-UNTIL (4.4.3.8)")
        if not self._attributes():
            raise ValueError("an EXT-X-SERVER-CONTROL tag needs at least one attribute")

    def _attributes(self) -> list[str]:
        attributes = []
        if self.can_block_reload:
            attributes.append("CAN-BLOCK-RELOAD=YES")
        if self.can_skip_until is not None:
            attributes.append(f"CAN-SKIP-UNTIL={format_seconds(self.can_skip_until)}")
        if self.can_skip_dateranges:
            attributes.append("CAN-SKIP-DATERANGES=YES")
        if self.hold_back is not None:
            attributes.append(f"HOLD-BACK={format_seconds(self.hold_back)}")
        if self.part_hold_back is not None:
            attributes.append(f"PART-HOLD-BACK={format_seconds(self.part_hold_back)}")
        return attributes

    def render(self) -> str:
        return "#EXT-X-SERVER-CONTROL:" + ",".join(self._attributes())


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """EXT-X-RENDITION-REPORT about a sibling rendition (4.4.5.4).

    ``uri`` is the sibling's Media Playlist relative to this one (e.g.
    ``../240p/index.m3u8``); ``last_msn``/``last_part`` are the sibling's
    ``last_msn_part()``; ``last_part`` is None when the sibling lists no parts.
    """

    uri: str
    last_msn: int
    last_part: int | None = None

    def __post_init__(self) -> None:
        check_uri("RenditionReport.uri", self.uri)
        check_int("RenditionReport.last_msn", self.last_msn)
        if self.last_part is not None:
            check_int("RenditionReport.last_part", self.last_part)

    @classmethod
    def for_playlist(cls, uri: str, playlist: MediaPlaylist) -> RenditionReport:
        """The report on ``playlist`` as seen from a sibling at relative ``uri``.

        A sibling with nothing listed yet reports its first msn, with no part.
        """
        last = playlist.last_msn_part()
        if last is None:
            return cls(uri, playlist.media_sequence)
        return cls(uri, last[0], last[1])

    def render(self) -> str:
        part = "" if self.last_part is None else f",LAST-PART={self.last_part}"
        return f"#EXT-X-RENDITION-REPORT:URI={quoted(self.uri)},LAST-MSN={self.last_msn}{part}"


@dataclass(frozen=True, slots=True)
class Earlier:
    """Segments listed before a Media Playlist's own, rendered already: a recording's older
    segments, each rendered once (daemons/media/recording.py). ``lines`` are their tags and
    URIs, the first numbered ``first_msn``; ``map_uri`` is the EXT-X-MAP in effect after them;
    ``version`` the EXT-X-VERSION they need."""

    first_msn: int
    lines: list[str]
    map_uri: str | None
    version: int


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """One rendition's Media Playlist.

    ``segments`` are the complete segments in the live window, numbered from
    ``media_sequence``. ``partial_parts`` are the parts of the segment being built (its msn
    is ``next_msn``), listed after the last EXTINF; ``next_discontinuity``, ``next_map_uri``
    and ``next_program_date_time`` describe that segment and are written before its first
    part. A playlist with no segments but some partial parts is valid and playable in
    low-latency mode: it is how a stream becomes watchable before its first keyframe
    interval is complete.

    Two normalizations keep "equal playlists render equal text, and parse back equal":
    a ``next_map_uri`` equal to the last segment's map becomes ``None`` ("the same map"),
    and without partial parts the ``next_*`` fields are cleared (their tags would have no
    part to precede; the packager may set them as soon as it knows them).
    """

    target_duration: int
    media_sequence: int
    segments: tuple[Segment, ...]
    discontinuity_sequence: int = 0
    partial_parts: tuple[Part, ...] = ()
    next_map_uri: str | None = None
    next_discontinuity: bool = False
    next_program_date_time: datetime | None = None
    part_target: float | None = None
    server_control: ServerControl | None = None
    preload_hint: str | None = None
    rendition_reports: tuple[RenditionReport, ...] = ()
    ended: bool = False
    independent_segments: bool = True
    playlist_type: str | None = None  # EXT-X-PLAYLIST-TYPE: EVENT (only appended to) or VOD

    def __post_init__(self) -> None:
        check_int("MediaPlaylist.target_duration", self.target_duration, minimum=1)
        if self.playlist_type is not None and self.playlist_type not in PLAYLIST_TYPES:
            raise ValueError(f"MediaPlaylist.playlist_type must be one of {', '.join(PLAYLIST_TYPES)}")
        if self.playlist_type == "VOD" and not self.ended:
            raise ValueError("a VOD playlist is complete: it ends with EXT-X-ENDLIST (4.3.3.5)")
        check_int("MediaPlaylist.media_sequence", self.media_sequence)
        check_int("MediaPlaylist.discontinuity_sequence", self.discontinuity_sequence)
        _as_tuple(self, "segments", Segment)
        _as_tuple(self, "partial_parts", Part)
        _as_tuple(self, "rendition_reports", RenditionReport)
        _optional(self, "next_map_uri", check_uri)
        _check_bool("MediaPlaylist.next_discontinuity", self.next_discontinuity)
        _optional(self, "next_program_date_time", check_datetime)
        _optional(self, "part_target", check_seconds)
        _optional(self, "preload_hint", check_uri)
        _check_bool("MediaPlaylist.ended", self.ended)
        _check_bool("MediaPlaylist.independent_segments", self.independent_segments)
        if self.server_control is not None and not isinstance(self.server_control, ServerControl):
            raise ValueError("MediaPlaylist.server_control must be a ServerControl")
        check_int("MediaPlaylist.next_msn", self.next_msn)

        map_in_effect = None
        for index, segment in enumerate(self.segments):
            if segment.msn != self.media_sequence + index:
                raise ValueError(
                    f"segment {index} has msn {segment.msn}, expected "
                    f"{self.media_sequence + index} (segments are numbered from media_sequence)"
                )
            if map_in_effect is not None and segment.map_uri is None:
                # An EXT-X-MAP applies until the next one (4.4.4.5): it cannot be switched off.
                raise ValueError(f"segment {segment.msn} has no map_uri after one with a map")
            map_in_effect = segment.map_uri

        if not self.partial_parts:
            # The in-progress segment's tags go before its first part (4.4.4.9): with no part
            # listed there is nowhere to write them, so they are not part of the playlist yet.
            object.__setattr__(self, "next_map_uri", None)
            object.__setattr__(self, "next_discontinuity", False)
            object.__setattr__(self, "next_program_date_time", None)
        if self.next_map_uri is not None and self.next_map_uri == map_in_effect:
            object.__setattr__(self, "next_map_uri", None)  # "same as the last segment's"
        if self.ended and self.preload_hint is not None:
            raise ValueError("an ended playlist must not have a preload hint (4.4.5.3)")

    # -- positions --------------------------------------------------------------------------

    @property
    def next_msn(self) -> int:
        """The msn of the segment being built: one past the last complete segment."""
        return self.media_sequence + len(self.segments)

    @property
    def duration(self) -> float:
        """Seconds of complete segments in the playlist (4.1 "duration of a Media Playlist")."""
        return sum(segment.duration for segment in self.segments)

    def last_msn_part(self) -> tuple[int, int | None] | None:
        """The newest position listed, as ``(msn, part index)``, parts counted within
        their parent segment (RFC 8216bis 3.2; what LAST-MSN/LAST-PART report, 4.4.5.4):

        * with partial parts: ``(next_msn, len(partial_parts) - 1)``;
        * else the last complete segment: ``(msn, len(parts) - 1)`` when it lists parts,
          ``(msn, None)`` when it lists none (a plain, non-LL playlist);
        * ``None`` for a playlist that lists nothing.

        A just-completed segment therefore reports its own last part, never ``(msn + 1, -1)``;
        following gohlslib, a part index past a segment's last part means part 0 of the next
        segment (``contains`` applies that rule).
        """
        if self.partial_parts:
            return self.next_msn, len(self.partial_parts) - 1
        if not self.segments:
            return None
        last = self.segments[-1]
        return last.msn, (len(last.parts) - 1 if last.parts else None)

    def contains(self, msn: int, part: int | None = None) -> bool:
        """Whether a blocking reload ``_HLS_msn=msn[&_HLS_part=part]`` can be answered now
        (RFC 8216bis 6.2.5.2).

        Without ``part``: a complete segment ``msn`` or later is listed. With ``part``: part
        ``part`` of segment ``msn`` or anything later is listed, where a part index past the
        last part of a complete segment means part 0 of the next one. Positions older than
        the window are answered at once, and so is everything once the playlist has ended
        (the server MUST ignore the directives then).
        """
        if self.ended or msn < self.media_sequence:
            return True
        if part is None:
            return msn < self.next_msn
        if msn < self.next_msn - 1:
            return True  # a complete segment after msn exists
        if msn == self.next_msn - 1:
            if part < len(self.segments[-1].parts):
                return True
            return bool(self.partial_parts)  # part 0 of the next segment
        if msn == self.next_msn:
            return part < len(self.partial_parts)
        return False

    def too_far_ahead(self, msn: int, part: int | None = None) -> bool:
        """Whether a blocking reload asks for a position so far ahead that the server SHOULD
        answer 400 at once (6.2.5.2): ``msn`` beyond the last complete segment plus two, or
        ``part`` more than the Advance Part Limit (3 / PART-TARGET below one second, else 3)
        parts past the newest part listed. Never once the playlist has ended.
        """
        if self.ended:
            return False
        if msn > self.next_msn + 1:  # last Media Segment is next_msn - 1
            return True
        if part is None:
            return False
        target = self.part_target
        limit = round(3 / target, 6) if target is not None and 0 < target < 1 else 3
        last = self.last_msn_part()
        last_msn, last_part = (last[0], last[1] if last[1] is not None else -1) if last else (msn, -1)
        if msn < last_msn:
            return False
        ahead = part - last_part if msn == last_msn else part + 1
        return ahead > limit

    def skippable_segments(self) -> int:
        """How many of the oldest segments ``render(skip=True)`` replaces by EXT-X-SKIP.

        6.2.5.1: the segments "further from the end of the last (Parent) Media Segment than
        the Skip Boundary". Sender skips a segment only when all of it lies beyond the
        boundary, measured from the live edge (the end of the last part or segment). Zero
        when CAN-SKIP-UNTIL is absent or the playlist has ended (the server MUST then
        ignore ``_HLS_skip``).
        """
        control = self.server_control
        if self.ended or control is None or control.can_skip_until is None:
            return 0
        distance = sum(part.duration for part in self.partial_parts)  # end of segment i → edge
        skippable = len(self.segments)
        for index in range(len(self.segments) - 1, -1, -1):
            if distance > control.can_skip_until:
                break
            skippable = index
            distance += self.segments[index].duration
        return skippable

    # -- rendering --------------------------------------------------------------------------

    def version(self, *, skip: bool = False) -> int:
        """The EXT-X-VERSION ``render(skip=skip)`` writes (section 8 floors)."""
        version = 1
        if self.segments:
            version = 3  # decimal-floating-point EXTINF durations
        if self.next_map_uri is not None or any(s.map_uri is not None for s in self.segments):
            version = 6  # EXT-X-MAP without EXT-X-I-FRAMES-ONLY
        if skip and self.skippable_segments():
            version = 9  # EXT-X-SKIP
        return version

    def render(self, *, skip: bool = False, earlier: Earlier | None = None) -> str:
        """The playlist text; ``skip=True`` renders a Playlist Delta Update (6.2.5.1) when
        the playlist offers one (CAN-SKIP-UNTIL, not ended, something to skip), else the
        full playlist. ``earlier``: segments already rendered that come before this
        playlist's own (a recording's), listed first; the playlist then counts from them."""
        if earlier is not None and skip:
            raise ValueError("a playlist with earlier segments has no delta update")
        skipped = self.skippable_segments() if skip else 0
        version = self.version(skip=skip) if earlier is None else max(self.version(), earlier.version)
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
        ]
        if self.server_control is not None:
            lines.append(self.server_control.render())
        if self.part_target is not None:
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={format_seconds(self.part_target)}")
        if self.playlist_type is not None:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self.playlist_type}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence if earlier is None else earlier.first_msn}")
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

        # In a delta update the map of the skipped segments still applies to the first
        # retained one; "all tags that were not skipped MUST remain" (6.2.5.1), so it is
        # declared again there.
        map_written: str | None = None
        if earlier is not None:
            lines.extend(earlier.lines)
            map_written = earlier.map_uri
        for segment in self.segments[skipped:]:
            lines.extend(segment.render_lines(map_written))
            map_written = segment.map_uri or map_written

        if self.partial_parts:
            # Tags of the parent segment go before its first EXT-X-PART (4.4.4.9).
            if self.next_discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if self.next_map_uri is not None and self.next_map_uri != map_written:
                lines.append(f"#EXT-X-MAP:URI={quoted(self.next_map_uri)}")
            if self.next_program_date_time is not None:
                lines.append(
                    f"#EXT-X-PROGRAM-DATE-TIME:{format_datetime(self.next_program_date_time)}"
                )
            lines.extend(part.render() for part in self.partial_parts)

        if self.preload_hint is not None:
            lines.append(f"#EXT-X-PRELOAD-HINT:TYPE=PART,URI={quoted(self.preload_hint)}")
        lines.extend(report.render() for report in self.rendition_reports)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF: a rendition's Media Playlist and what a player needs to pick it.

    ``bandwidth`` is the peak segment bit rate and ``average_bandwidth`` the average, in
    bits/s; ``codecs`` the RFC 6381 string (e.g. ``avc1.64001f,mp4a.40.2``); ``resolution``
    ``(width, height)``; ``frame_rate`` is kept to three decimals (4.4.6.2).
    """

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    codecs: str | None = None
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        check_uri("Variant.uri", self.uri)
        check_int("Variant.bandwidth", self.bandwidth)
        if self.average_bandwidth is not None:
            check_int("Variant.average_bandwidth", self.average_bandwidth)
        _optional(self, "codecs", check_quoted)
        if self.resolution is not None:
            try:
                width, height = self.resolution
            except (TypeError, ValueError):
                raise ValueError("Variant.resolution must be (width, height)") from None
            check_int("Variant.resolution width", width, minimum=1)
            check_int("Variant.resolution height", height, minimum=1)
            object.__setattr__(self, "resolution", (width, height))
        if self.frame_rate is not None:
            rate = round(check_seconds("Variant.frame_rate", self.frame_rate), 3)
            if rate <= 0:
                raise ValueError(f"Variant.frame_rate must be positive, got {self.frame_rate}")
            object.__setattr__(self, "frame_rate", rate)

    def render(self) -> str:
        attributes = [f"BANDWIDTH={self.bandwidth}"]
        if self.average_bandwidth is not None:
            attributes.append(f"AVERAGE-BANDWIDTH={self.average_bandwidth}")
        if self.codecs is not None:
            attributes.append(f"CODECS={quoted(self.codecs)}")
        if self.resolution is not None:
            attributes.append(f"RESOLUTION={self.resolution[0]}x{self.resolution[1]}")
        if self.frame_rate is not None:
            attributes.append(f"FRAME-RATE={format_frame_rate(self.frame_rate)}")
        return "#EXT-X-STREAM-INF:" + ",".join(attributes) + "\n" + self.uri


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    """The Multivariant Playlist: one variant per rendition.

    It needs no EXT-X-VERSION (nothing in it is beyond protocol version 1), so none is
    written. RFC 8216bis 4.4.2.1: when it carries EXT-X-INDEPENDENT-SEGMENTS, the Media
    Playlists it references SHOULD NOT repeat the tag (and MUST agree if they do).
    """

    variants: tuple[Variant, ...]
    independent_segments: bool = True

    def __post_init__(self) -> None:
        _as_tuple(self, "variants", Variant)
        _check_bool("MasterPlaylist.independent_segments", self.independent_segments)

    def render(self) -> str:
        lines = ["#EXTM3U"]
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        lines.extend(variant.render() for variant in self.variants)
        return "\n".join(lines) + "\n"
