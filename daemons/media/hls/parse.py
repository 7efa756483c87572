"""Reading playlists back into the model: the exact inverse of ``render`` for everything
Sender writes, and tolerant of other servers' valid playlists.

* Unknown tags, comments and metadata Sender does not model (EXT-X-DATERANGE,
  EXT-X-START, EXT-X-BITRATE, EXT-X-PLAYLIST-TYPE, EXT-X-MEDIA, ...) are ignored; URIs are
  kept exactly as written (relative ones stay relative).
* Features that would change what a URI means are refused with a clear ``PlaylistError``
  rather than silently misread: byte ranges (EXT-X-BYTERANGE, BYTERANGE attributes),
  encryption (EXT-X-KEY other than METHOD=NONE), gaps (EXT-X-GAP, GAP=YES), variable
  substitution (EXT-X-DEFINE) and I-frame playlists.
* A Playlist Delta Update (EXT-X-SKIP) is merged into the ``previous`` playlist, as
  RFC 8216bis 6.3.7 asks of a client; without it the delta cannot be read.
* Input is bounded: at most ``MAX_PLAYLIST_BYTES`` of text and ``MAX_SEGMENTS`` segments
  (and as many parts).

Everything wrong ends in one ``PlaylistError`` carrying the line number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from .errors import PlaylistError
from .model import (
    PLAYLIST_TYPES,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    RenditionReport,
    Segment,
    ServerControl,
    Variant,
)
from .syntax import (
    Attributes,
    parse_attributes,
    parse_datetime,
    parse_decimal_float,
    parse_decimal_integer,
    playlist_lines,
    split_tag,
)

__all__ = [
    "MAX_PLAYLIST_BYTES",
    "MAX_SEGMENTS",
    "PlaylistError",
    "parse_master_playlist",
    "parse_media_playlist",
]

MAX_PLAYLIST_BYTES = 4 * 1024 * 1024
MAX_SEGMENTS = 100_000
MAX_VARIANTS = 10_000

# Tags that only a Multivariant Playlist may carry (4.4.6), and those only a Media Playlist
# may carry (4.4.3, 4.4.4, 4.4.5): a playlist with both is invalid.
MULTIVARIANT_TAGS = frozenset({
    "EXT-X-STREAM-INF", "EXT-X-I-FRAME-STREAM-INF", "EXT-X-MEDIA", "EXT-X-SESSION-DATA",
    "EXT-X-SESSION-KEY", "EXT-X-CONTENT-STEERING",
})
MEDIA_TAGS = frozenset({
    "EXTINF", "EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE",
    "EXT-X-ENDLIST", "EXT-X-PLAYLIST-TYPE", "EXT-X-I-FRAMES-ONLY", "EXT-X-PART-INF",
    "EXT-X-SERVER-CONTROL", "EXT-X-BYTERANGE", "EXT-X-DISCONTINUITY", "EXT-X-KEY", "EXT-X-MAP",
    "EXT-X-PROGRAM-DATE-TIME", "EXT-X-GAP", "EXT-X-BITRATE", "EXT-X-PART", "EXT-X-DATERANGE",
    "EXT-X-SKIP", "EXT-X-PRELOAD-HINT", "EXT-X-RENDITION-REPORT",
})
# Tags that MUST NOT appear more than once (4.4.1.2, 4.4.2, 4.4.3, 4.4.5.2).
SINGLE_TAGS = frozenset({
    "EXT-X-VERSION", "EXT-X-INDEPENDENT-SEGMENTS", "EXT-X-START", "EXT-X-TARGETDURATION",
    "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE", "EXT-X-ENDLIST",
    "EXT-X-PLAYLIST-TYPE", "EXT-X-I-FRAMES-ONLY", "EXT-X-PART-INF", "EXT-X-SERVER-CONTROL",
    "EXT-X-SKIP",
})
# Media Segment tags: they belong to the next segment (or the parent of the next parts).
SEGMENT_TAGS = frozenset({
    "EXTINF", "EXT-X-BYTERANGE", "EXT-X-DISCONTINUITY", "EXT-X-KEY", "EXT-X-MAP",
    "EXT-X-PROGRAM-DATE-TIME", "EXT-X-GAP", "EXT-X-BITRATE", "EXT-X-PART",
})
UNSUPPORTED_TAGS = {
    "EXT-X-BYTERANGE": "byte-range Media Segments",
    "EXT-X-GAP": "gap segments",
    "EXT-X-DEFINE": "variable substitution",
    "EXT-X-I-FRAMES-ONLY": "I-frame playlists",
}

_T = TypeVar("_T")


def _build(line: int, make: Callable[[], _T]) -> _T:
    """Construct a model value, reporting its ``ValueError`` against the playlist line."""
    try:
        return make()
    except ValueError as e:
        raise PlaylistError(str(e), line) from None


def _unsupported(tag: str, line: int) -> PlaylistError:
    return PlaylistError(f"{tag}: Sender does not support {UNSUPPORTED_TAGS[tag]}", line)


class _MediaReader:
    """The state of one pass over a Media Playlist."""

    def __init__(self, previous: MediaPlaylist | None) -> None:
        self.previous = previous
        self.seen: set[str] = set()
        self.target_duration: int | None = None
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.part_target: float | None = None
        self.server_control: ServerControl | None = None
        self.independent_segments = False
        self.ended = False
        self.playlist_type: str | None = None
        self.skipped = 0
        self.skip_line = 0
        self.in_segments = False  # the first Media Segment tag or URI has been seen
        self.segments: list[Segment] = []
        self.part_count = 0
        self.preload_hint: str | None = None
        self.reports: list[tuple[int, str, int | None, int | None]] = []
        # Tags waiting for the next segment (or for the parent of the next parts).
        self.map_uri: str | None = None
        self.pending_discontinuity = False
        self.pending_date: datetime | None = None
        self.pending_parts: list[Part] = []
        self.pending_duration: float | None = None
        self.pending_extinf_line = 0

    # -- the header and the skipped segments -------------------------------------------------

    def enter_segments(self) -> None:
        """The first Media Segment tag or URI: the header is complete; merge a delta."""
        if self.in_segments:
            return
        self.in_segments = True
        if not self.skipped:
            return
        if self.previous is None:
            raise PlaylistError(
                "EXT-X-SKIP: a Playlist Delta Update can only be read with the previous "
                "playlist to merge it into (6.3.7)", self.skip_line,
            )
        known = {segment.msn: segment for segment in self.previous.segments}
        for msn in range(self.media_sequence, self.media_sequence + self.skipped):
            if msn not in known:
                raise PlaylistError(
                    f"EXT-X-SKIP skips segment {msn}, which the previous playlist does not "
                    "have: reload without _HLS_skip (6.3.7)", self.skip_line,
                )
            self.segments.append(known[msn])
        self.map_uri = self.segments[-1].map_uri  # the skipped map still applies

    def header_value(self, name: str, line: int) -> None:
        if self.in_segments:
            # 4.4.3.2 and 4.4.3.3: these MUST appear before the first Media Segment.
            raise PlaylistError(f"{name} after the first Media Segment", line)

    # -- one line ----------------------------------------------------------------------------

    def tag(self, line: int, name: str, value: str | None) -> None:
        if name in SINGLE_TAGS:
            if name in self.seen:
                raise PlaylistError(f"{name} appears more than once", line)
            self.seen.add(name)
        if name in MULTIVARIANT_TAGS:
            raise PlaylistError(f"{name} is a Multivariant Playlist tag, in a Media Playlist", line)
        if name in UNSUPPORTED_TAGS:
            raise _unsupported(name, line)
        if name in SEGMENT_TAGS:
            self.enter_segments()
        handler = getattr(self, "tag_" + name.replace("-", "_"), None)
        if handler is not None:
            handler(line, value)

    def tag_EXT_X_VERSION(self, line: int, value: str | None) -> None:
        parse_decimal_integer(value or "", "EXT-X-VERSION", line)

    def tag_EXT_X_TARGETDURATION(self, line: int, value: str | None) -> None:
        self.target_duration = parse_decimal_integer(value or "", "EXT-X-TARGETDURATION", line)

    def tag_EXT_X_MEDIA_SEQUENCE(self, line: int, value: str | None) -> None:
        self.header_value("EXT-X-MEDIA-SEQUENCE", line)
        self.media_sequence = parse_decimal_integer(value or "", "EXT-X-MEDIA-SEQUENCE", line)

    def tag_EXT_X_DISCONTINUITY_SEQUENCE(self, line: int, value: str | None) -> None:
        self.header_value("EXT-X-DISCONTINUITY-SEQUENCE", line)
        self.discontinuity_sequence = parse_decimal_integer(
            value or "", "EXT-X-DISCONTINUITY-SEQUENCE", line
        )

    def tag_EXT_X_PART_INF(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-PART-INF", value, line)
        self.part_target = attributes.decimal_float("PART-TARGET", required=True)

    def tag_EXT_X_SERVER_CONTROL(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-SERVER-CONTROL", value, line)
        fields = {
            "can_block_reload": attributes.yes("CAN-BLOCK-RELOAD"),
            "part_hold_back": attributes.decimal_float("PART-HOLD-BACK"),
            "hold_back": attributes.decimal_float("HOLD-BACK"),
            "can_skip_until": attributes.decimal_float("CAN-SKIP-UNTIL"),
            "can_skip_dateranges": attributes.yes("CAN-SKIP-DATERANGES"),
        }
        # CAN-BLOCK-RELOAD=NO alone says nothing: treat it as no SERVER-CONTROL at all.
        if any(value is not None and value is not False for value in fields.values()):
            self.server_control = _build(line, lambda: ServerControl(**fields))

    def tag_EXT_X_INDEPENDENT_SEGMENTS(self, line: int, value: str | None) -> None:
        self.independent_segments = True

    def tag_EXT_X_ENDLIST(self, line: int, value: str | None) -> None:
        self.ended = True

    def tag_EXT_X_PLAYLIST_TYPE(self, line: int, value: str | None) -> None:
        if value not in PLAYLIST_TYPES:
            raise PlaylistError(f"EXT-X-PLAYLIST-TYPE must be EVENT or VOD, not {value!r}", line)
        self.playlist_type = value

    def tag_EXT_X_SKIP(self, line: int, value: str | None) -> None:
        if self.in_segments:
            raise PlaylistError("EXT-X-SKIP after a Media Segment (it replaces the oldest ones)", line)
        attributes = parse_attributes("EXT-X-SKIP", value, line)
        skipped = attributes.decimal_integer("SKIPPED-SEGMENTS", required=True)
        assert skipped is not None
        if skipped > MAX_SEGMENTS:
            raise PlaylistError(f"EXT-X-SKIP skips more than {MAX_SEGMENTS} segments", line)
        self.skipped, self.skip_line = skipped, line

    def tag_EXT_X_KEY(self, line: int, value: str | None) -> None:
        if parse_attributes("EXT-X-KEY", value, line).enumerated("METHOD") != "NONE":
            raise PlaylistError("EXT-X-KEY: Sender does not support encrypted segments", line)

    def tag_EXT_X_MAP(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-MAP", value, line)
        if "BYTERANGE" in attributes:
            raise PlaylistError("EXT-X-MAP: Sender does not support a BYTERANGE map", line)
        self.map_uri = attributes.quoted_string("URI", required=True)

    def tag_EXT_X_DISCONTINUITY(self, line: int, value: str | None) -> None:
        self.pending_discontinuity = True

    def tag_EXT_X_PROGRAM_DATE_TIME(self, line: int, value: str | None) -> None:
        self.pending_date = parse_datetime(value or "", "EXT-X-PROGRAM-DATE-TIME", line)

    def tag_EXT_X_PART(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-PART", value, line)
        if "BYTERANGE" in attributes:
            raise PlaylistError("EXT-X-PART: Sender does not support byte-range parts", line)
        if attributes.yes("GAP"):
            raise PlaylistError("EXT-X-PART: Sender does not support GAP parts", line)
        uri = attributes.quoted_string("URI", required=True)
        duration = attributes.decimal_float("DURATION", required=True)
        independent = attributes.yes("INDEPENDENT")
        self.part_count += 1
        if self.part_count > MAX_SEGMENTS:
            raise PlaylistError(f"more than {MAX_SEGMENTS} parts", line)
        self.pending_parts.append(_build(line, lambda: Part(uri, duration, independent)))

    def tag_EXTINF(self, line: int, value: str | None) -> None:
        if self.pending_duration is not None:
            raise PlaylistError("EXTINF without a URI line after the previous EXTINF", line)
        duration, _, _title = (value or "").partition(",")
        self.pending_duration = parse_decimal_float(duration, "EXTINF", line)
        self.pending_extinf_line = line

    def tag_EXT_X_PRELOAD_HINT(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-PRELOAD-HINT", value, line)
        kind = attributes.enumerated("TYPE")
        uri = attributes.quoted_string("URI", required=True)
        if kind != "PART" or self.preload_hint is not None:
            return  # MAP hints and unknown types are not modelled; the first PART hint wins
        if "BYTERANGE-START" in attributes or "BYTERANGE-LENGTH" in attributes:
            raise PlaylistError("EXT-X-PRELOAD-HINT: Sender does not support byte-range hints", line)
        self.preload_hint = uri

    def tag_EXT_X_RENDITION_REPORT(self, line: int, value: str | None) -> None:
        attributes = parse_attributes("EXT-X-RENDITION-REPORT", value, line)
        uri = attributes.quoted_string("URI", required=True)
        assert uri is not None
        self.reports.append((
            line, uri, attributes.decimal_integer("LAST-MSN"), attributes.decimal_integer("LAST-PART")
        ))

    def uri(self, line: int, uri: str) -> None:
        self.enter_segments()
        if self.pending_duration is None:
            raise PlaylistError("a Media Segment URI without EXTINF (4.4.4.1)", line)
        if len(self.segments) >= MAX_SEGMENTS:
            raise PlaylistError(f"more than {MAX_SEGMENTS} segments", line)
        msn = self.media_sequence + len(self.segments)
        duration, date, discontinuity = self.pending_duration, self.pending_date, self.pending_discontinuity
        parts, map_uri = tuple(self.pending_parts), self.map_uri
        self.segments.append(_build(line, lambda: Segment(
            msn, uri, duration, date, discontinuity, map_uri, parts
        )))
        self.pending_duration, self.pending_date, self.pending_discontinuity = None, None, False
        self.pending_parts = []

    # -- the end -----------------------------------------------------------------------------

    def finish(self, last_line: int) -> MediaPlaylist:
        self.enter_segments()  # a delta with nothing after its EXT-X-SKIP
        if self.pending_duration is not None:
            raise PlaylistError("EXTINF without a URI line", self.pending_extinf_line)
        if self.target_duration is None:
            raise PlaylistError("EXT-X-TARGETDURATION is required (4.4.3.1)", last_line)
        # Tags after the last part or segment with no part following them (a server may
        # announce the next segment's discontinuity ahead of its first part) are not kept.
        partial = tuple(self.pending_parts)
        next_map = self.map_uri if partial else None
        next_discontinuity = self.pending_discontinuity and bool(partial)
        next_date = self.pending_date if partial else None

        def playlist(reports: tuple[RenditionReport, ...]) -> MediaPlaylist:
            assert self.target_duration is not None
            return MediaPlaylist(
                target_duration=self.target_duration,
                media_sequence=self.media_sequence,
                segments=tuple(self.segments),
                discontinuity_sequence=self.discontinuity_sequence,
                partial_parts=partial,
                next_map_uri=next_map,
                next_discontinuity=next_discontinuity,
                next_program_date_time=next_date,
                part_target=self.part_target,
                server_control=self.server_control,
                preload_hint=None if self.ended else self.preload_hint,
                rendition_reports=reports,
                ended=self.ended,
                independent_segments=self.independent_segments,
                playlist_type=self.playlist_type,
            )

        without_reports = _build(last_line, lambda: playlist(()))
        if not self.reports:
            return without_reports
        # 4.4.5.4: a server MAY omit an attribute whose value equals this playlist's own
        # report; LAST-MSN (with LAST-PART) is filled in from ours when it is missing.
        own = without_reports.last_msn_part() or (self.media_sequence, None)
        reports = []
        for line, uri, last_msn, last_part in self.reports:
            if last_msn is None:
                last_msn = own[0]
                if last_part is None:
                    last_part = own[1]
            reports.append(_build(line, lambda u=uri, m=last_msn, p=last_part: RenditionReport(u, m, p)))
        return _build(last_line, lambda: playlist(tuple(reports)))


def parse_media_playlist(text: str, *, previous: MediaPlaylist | None = None) -> MediaPlaylist:
    """Parse a Media Playlist.

    ``previous`` is only needed for a Playlist Delta Update: the segments its EXT-X-SKIP
    replaces are taken from it (and it must still have them).
    """
    reader = _MediaReader(previous)
    last_line = 1
    for number, line in playlist_lines(text, max_bytes=MAX_PLAYLIST_BYTES):
        last_line = number
        if line.startswith("#EXT"):
            name, value = split_tag(line)
            reader.tag(number, name, value)
        elif not line.startswith("#"):
            reader.uri(number, line)
    return reader.finish(last_line)


def _resolution(raw: str, line: int) -> tuple[int, int]:
    width, x, height = raw.partition("x")
    if not x:
        raise PlaylistError(f"RESOLUTION is not WIDTHxHEIGHT: {raw!r}", line)
    return (
        parse_decimal_integer(width, "RESOLUTION width", line),
        parse_decimal_integer(height, "RESOLUTION height", line),
    )


def _variant(line: int, uri: str, attributes: Attributes) -> Variant:
    resolution = attributes.enumerated("RESOLUTION")
    fields = {
        "bandwidth": attributes.decimal_integer("BANDWIDTH", required=True),
        "average_bandwidth": attributes.decimal_integer("AVERAGE-BANDWIDTH"),
        "codecs": attributes.quoted_string("CODECS"),
        "resolution": None if resolution is None else _resolution(resolution, attributes.line or line),
        "frame_rate": attributes.decimal_float("FRAME-RATE"),
    }
    return _build(line, lambda: Variant(uri, **fields))


def parse_master_playlist(text: str) -> MasterPlaylist:
    """Parse a Multivariant (master) Playlist: its EXT-X-STREAM-INF variants.

    EXT-X-MEDIA renditions, I-frame streams and session data are ignored.
    """
    seen: set[str] = set()
    variants: list[Variant] = []
    pending: Attributes | None = None
    independent = False
    last_line = 1
    for number, line in playlist_lines(text, max_bytes=MAX_PLAYLIST_BYTES):
        last_line = number
        if line.startswith("#EXT"):
            name, value = split_tag(line)
            if name in MEDIA_TAGS:
                raise PlaylistError(f"{name} is a Media Playlist tag, in a Multivariant Playlist", number)
            if name == "EXT-X-DEFINE":
                raise _unsupported(name, number)
            if name in SINGLE_TAGS:
                if name in seen:
                    raise PlaylistError(f"{name} appears more than once", number)
                seen.add(name)
            if name == "EXT-X-VERSION":
                parse_decimal_integer(value or "", name, number)
            elif name == "EXT-X-INDEPENDENT-SEGMENTS":
                independent = True
            elif name == "EXT-X-STREAM-INF":
                if pending is not None:
                    raise PlaylistError("EXT-X-STREAM-INF without its URI line", pending.line)
                pending = parse_attributes(name, value, number)
        elif not line.startswith("#"):
            if pending is None:
                raise PlaylistError("a URI line without EXT-X-STREAM-INF", number)
            if len(variants) >= MAX_VARIANTS:
                raise PlaylistError(f"more than {MAX_VARIANTS} variants", number)
            variants.append(_variant(number, line, pending))
            pending = None
    if pending is not None:
        raise PlaylistError("EXT-X-STREAM-INF without its URI line", pending.line)
    return _build(last_line, lambda: MasterPlaylist(tuple(variants), independent))
