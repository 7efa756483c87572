"""A strict playlist checker written from RFC 8216bis (draft-pantos-hls-rfc8216bis, the
second edition of RFC 8216 with Low-Latency HLS) and Sender's Low-Latency profile.

Every violation raises ``PlaylistViolation`` whose message names the section and quotes
the rule, then says what was found. Rules are of three strengths, and the checker enforces
all three because Sender means to meet them all:

* the spec's MUSTs (tag syntax and order, durations against their targets, hold-back and
  skip limits, how a live playlist may change between reloads);
* its SHOULDs that matter for playback (PART-HOLD-BACK of three part targets, parts
  removed three target durations from the end, PROGRAM-DATE-TIME on discontinuities);
* the Low-Latency Server Configuration Profile (Appendix B.1: program date-times, preload
  hints, rendition reports, renditions in sync within one part target).

``check_media_playlist`` judges one Media Playlist, and with ``previous`` also how it may
have changed since the last reload (6.2.1, 6.2.2); ``check_renditions`` judges the
renditions of one stream against each other; ``check_master_playlist`` the Multivariant
Playlist. Each returns the parsed model on success.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urljoin

from .errors import PlaylistError
from .model import MasterPlaylist, MediaPlaylist, Part, Segment
from .parse import MAX_PLAYLIST_BYTES, SEGMENT_TAGS, parse_master_playlist, parse_media_playlist
from .syntax import parse_attributes, parse_decimal_integer, playlist_lines, split_tag

__all__ = [
    "PlaylistViolation",
    "check_master_playlist",
    "check_media_playlist",
    "check_renditions",
]

# Float slack when comparing sums of durations written to 10 µs.
_EPSILON = 1e-6
# Media Playlist tags that describe the whole playlist: Sender writes them before the first
# segment (MEDIA-SEQUENCE and DISCONTINUITY-SEQUENCE MUST be there, 4.4.3.2, 4.4.3.3).
_HEADER_TAGS = frozenset({
    "EXT-X-VERSION", "EXT-X-TARGETDURATION", "EXT-X-SERVER-CONTROL", "EXT-X-PART-INF",
    "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE", "EXT-X-INDEPENDENT-SEGMENTS",
    "EXT-X-SKIP", "EXT-X-PLAYLIST-TYPE",
})
# Tags that apply to a Parent Segment and so MUST precede its first EXT-X-PART (4.4.4.9).
_PARENT_TAGS = frozenset({
    "EXT-X-DISCONTINUITY", "EXT-X-KEY", "EXT-X-MAP", "EXT-X-PROGRAM-DATE-TIME",
})
_FMP4_SUFFIXES = (".m4s", ".mp4", ".m4v", ".m4a", ".cmfv", ".cmfa", ".cmft")
_VIDEO_CODECS = re.compile(r"(?:^|,)\s*(?:avc[13]|hvc1|hev1|av01|vp09|dvh1|dvhe)\.")


class PlaylistViolation(PlaylistError):
    """A playlist that parses but breaks a rule. ``section`` names the rule's source."""

    def __init__(self, section: str, rule: str, found: str, line: int | None = None) -> None:
        self.section = section
        self.rule = rule
        self.found = found
        super().__init__(f'{section} ("{rule}"): {found}', line)


def _spec(section: str, rule: str, found: str, line: int | None = None) -> PlaylistViolation:
    return PlaylistViolation(f"RFC 8216bis {section}", rule, found, line)


def _profile(rule: str, found: str) -> PlaylistViolation:
    return PlaylistViolation("RFC 8216bis Appendix B.1", rule, found)


def _sender(rule: str, found: str) -> PlaylistViolation:
    return PlaylistViolation("Sender LL-HLS profile", rule, found)


def _parsed(parse, *args, **kwargs):  # noqa: ANN001, ANN202 - one of the parse functions
    """Run a parser; a syntax error is a violation too (4: "clients MUST fail to parse")."""
    try:
        return parse(*args, **kwargs)
    except PlaylistViolation:
        raise
    except PlaylistError as e:
        raise PlaylistViolation(
            "RFC 8216bis 4", "Playlists that violate these rules are invalid", e.message, e.line
        ) from e


# -- the text, line by line -------------------------------------------------------------------

@dataclass
class _Text:
    """What only the text shows (the model normalizes it away)."""

    version: int = 1
    version_line: int | None = None
    has_map: bool = False
    has_decimal_extinf: bool = False
    skip_line: int | None = None
    skipped: int = 0
    ended: bool = False
    playlist_type_line: int | None = None
    preload_hint_line: int | None = None


def _scan(text: str) -> _Text:
    facts = _Text()
    in_segments = False
    parent_has_part = False
    hint_types: set[str] = set()
    for number, line in playlist_lines(text, max_bytes=MAX_PLAYLIST_BYTES):
        if not line.startswith("#"):
            in_segments, parent_has_part = True, False
            continue
        if not line.startswith("#EXT"):
            continue
        name, value = split_tag(line)
        if name in _HEADER_TAGS and in_segments:
            raise _spec(
                "4.4.3", "Media Playlist tags describe global parameters of the Media Playlist",
                f"{name} after the first Media Segment (Sender writes them all before it)", number,
            )
        if name in SEGMENT_TAGS:
            in_segments = True
        if name in _PARENT_TAGS and parent_has_part:
            raise _spec(
                "4.4.4.9", "they MUST appear before the first EXT-X-PART tag of that Parent Segment",
                f"{name} after an EXT-X-PART of the same segment", number,
            )
        if name == "EXT-X-PART":
            parent_has_part = True
        elif name == "EXTINF":
            facts.has_decimal_extinf |= "." in (value or "").partition(",")[0]
        elif name == "EXT-X-VERSION":
            facts.version = parse_decimal_integer(value or "", name, number)
            facts.version_line = number
        elif name == "EXT-X-MAP":
            facts.has_map = True
        elif name == "EXT-X-SKIP":
            facts.skip_line = number
            facts.skipped = parse_attributes(name, value, number).decimal_integer("SKIPPED-SEGMENTS") or 0
        elif name == "EXT-X-PLAYLIST-TYPE":
            facts.playlist_type_line = number
        elif name == "EXT-X-ENDLIST":
            facts.ended = True
        elif name == "EXT-X-PRELOAD-HINT":
            kind = parse_attributes(name, value, number).enumerated("TYPE")
            if kind is None:
                raise _spec("4.4.5.3", "TYPE ... This attribute is REQUIRED", "a hint without TYPE", number)
            if kind in hint_types:
                raise _spec(
                    "6.2.6", "The Server SHOULD NOT add more than one EXT-X-PRELOAD-HINT tag "
                    "with the same TYPE to a Playlist", f"two TYPE={kind} hints", number,
                )
            hint_types.add(kind)
            facts.preload_hint_line = number
    if facts.ended and facts.preload_hint_line is not None:
        raise _spec(
            "4.4.5.3", "A Playlist containing an EXT-X-ENDLIST tag MUST NOT contain an "
            "EXT-X-PRELOAD-HINT tag", "both", facts.preload_hint_line,
        )
    return facts


# -- one Media Playlist -----------------------------------------------------------------------

def _rounded(seconds: float) -> int:
    """Rounded to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(seconds + 0.5)


def _check_version(playlist: MediaPlaylist, facts: _Text) -> None:
    needed, why = 1, ""
    if facts.has_decimal_extinf:
        needed, why = 3, "decimal-floating-point EXTINF durations"
    if facts.has_map:
        needed, why = 6, "EXT-X-MAP in a playlist without EXT-X-I-FRAMES-ONLY"
    if facts.skip_line is not None:
        needed, why = 9, "the EXT-X-SKIP tag"
    if facts.version < needed:
        raise _spec(
            "8", f"A Playlist MUST indicate an EXT-X-VERSION of {needed} or higher if it contains {why}",
            f"EXT-X-VERSION is {facts.version}", facts.version_line,
        )


def _check_durations(playlist: MediaPlaylist) -> None:
    target = playlist.target_duration
    for segment in playlist.segments:
        if _rounded(segment.duration) > target:
            raise _spec(
                "4.4.3.1", "The EXTINF duration of each Media Segment in a Playlist file, when "
                "rounded to the nearest integer, MUST be less than or equal to the Target Duration",
                f"segment {segment.msn} lasts {segment.duration} s, EXT-X-TARGETDURATION is {target}",
            )
        if segment.parts:
            total = sum(part.duration for part in segment.parts)
            if abs(total - segment.duration) > 1e-3 + 1e-5 * len(segment.parts):
                raise _spec(
                    "3.2", "A Parent Segment and its entire set of Partial Segments MUST contain "
                    "the same set of media samples",
                    f"the parts of segment {segment.msn} add up to {total:.5f} s, its EXTINF is "
                    f"{segment.duration} s (a segment lists all of its parts or none)",
                )


def _parents(playlist: MediaPlaylist) -> Iterator[tuple[int, tuple[Part, ...], bool]]:
    """Every list of parts with its parent's msn and whether the parent is complete."""
    for segment in playlist.segments:
        if segment.parts:
            yield segment.msn, segment.parts, True
    if playlist.partial_parts:
        yield playlist.next_msn, playlist.partial_parts, False


def _check_parts(playlist: MediaPlaylist) -> None:
    parents = list(_parents(playlist))
    if not parents:
        return
    target = playlist.part_target
    if target is None:
        raise _spec("4.4.3.7", "It is REQUIRED if a Playlist contains one or more EXT-X-PART tags",
                    "EXT-X-PART without EXT-X-PART-INF")
    for msn, parts, _complete in parents:
        for index, part in enumerate(parts):
            if part.duration > target + _EPSILON:
                raise _spec(
                    "4.4.4.9", "The duration of a Partial Segment MUST be less than or equal to "
                    "the Part Target Duration",
                    f"part {msn}.{index} lasts {part.duration} s, PART-TARGET is {target}",
                )
            # The last part of a complete segment may be short; so may the newest part of
            # the segment being built, since it may turn out to be that segment's last.
            last = index == len(parts) - 1
            if not part.independent and not last and part.duration < 0.85 * target - _EPSILON:
                raise _spec(
                    "4.4.4.9", "The duration of each Partial Segment MUST be at least 85% of the "
                    "Part Target Duration, with the exception of Partial Segments with the "
                    "INDEPENDENT=YES ... and the final Partial Segment of any Parent Segment",
                    f"part {msn}.{index} lasts {part.duration} s, PART-TARGET is {target}",
                )
        if playlist.independent_segments and not parts[0].independent:
            raise _spec(
                "4.4.2.1, 4.4.4.9", "all media samples in a Media Segment can be decoded without "
                "information from other segments ... every Partial Segment containing an "
                "independent frame SHOULD carry [INDEPENDENT=YES]",
                f"part {msn}.0 starts an independent segment but is not INDEPENDENT=YES",
            )
    _check_part_window(playlist, parents)


def _check_part_window(playlist: MediaPlaylist, parents: list) -> None:
    """Parts are listed for a run of the newest segments, long enough to play from
    PART-HOLD-BACK and not kept beyond three target durations from the end (6.2.2)."""
    with_parts = [segment.parts != () for segment in playlist.segments]
    if True in with_parts and False in with_parts[with_parts.index(True):]:
        raise _spec(
            "6.2.2", "Media Segments and EXT-X-PART tags MUST be removed from the Playlist in "
            "the order that they appear in the Playlist",
            "a segment without parts listed after one with parts",
        )
    edge = playlist.duration + sum(part.duration for part in playlist.partial_parts)
    start = 0.0  # the start of each segment, from the start of the playlist
    for segment in playlist.segments:
        if segment.parts and edge - start > 3 * playlist.target_duration + _EPSILON:
            raise _spec(
                "6.2.2", "EXT-X-PART tags SHOULD be removed from the Playlist after they are "
                "greater than three Target Durations from the end of the Playlist",
                f"segment {segment.msn} still lists parts from {edge - start:.3f} s before the end",
            )
        start += segment.duration
    # hls-parser (strict) counts the in-progress segment as a segment — from its preload hint
    # on, before it has a part — and refuses parts on any but the last three: a defect a real
    # client finds is a defect.
    in_progress = 1 if playlist.partial_parts or playlist.preload_hint is not None else 0
    listing = sum(1 for segment in playlist.segments if segment.parts) + in_progress
    if listing > 3:
        raise _spec(
            "6.2.2", "EXT-X-PART tags SHOULD be removed from the Playlist after they are "
            "greater than three Target Durations from the end of the Playlist",
            f"{listing} segments list parts (the one in progress counted); strict clients accept three",
        )
    control = playlist.server_control
    if playlist.ended or control is None or control.part_hold_back is None:
        return
    span = sum(part.duration for _, parts, _ in parents for part in parts)
    # Short segments (a reconnect, a spool outage) can fill the three that may list parts before
    # PART-HOLD-BACK is covered: strict clients' limit wins, a joining player starts at a segment.
    if span + _EPSILON < min(control.part_hold_back, edge) and listing < 3:
        raise _sender(
            "parts are listed at least PART-HOLD-BACK back from the live edge, where a "
            "low-latency client starts (4.4.3.8)",
            f"parts cover the last {span:.3f} s, PART-HOLD-BACK is {control.part_hold_back}",
        )


def _check_server_control(playlist: MediaPlaylist) -> None:
    control = playlist.server_control
    target = playlist.target_duration
    if playlist.part_target is not None and (control is None or control.part_hold_back is None):
        raise _spec("4.4.3.8", "PART-HOLD-BACK is REQUIRED if the Playlist contains the "
                    "EXT-X-PART-INF tag", "EXT-X-PART-INF without PART-HOLD-BACK")
    if control is None:
        return
    if control.hold_back is not None and control.hold_back < 3 * target - _EPSILON:
        raise _spec("4.4.3.8", "[HOLD-BACK] MUST be at least three times the Target Duration",
                    f"HOLD-BACK={control.hold_back}, EXT-X-TARGETDURATION is {target}")
    if control.can_skip_until is not None and control.can_skip_until < 6 * target - _EPSILON:
        raise _spec("4.4.3.8", "The Skip Boundary MUST be at least six times the Target Duration",
                    f"CAN-SKIP-UNTIL={control.can_skip_until}, EXT-X-TARGETDURATION is {target}")
    if control.part_hold_back is not None and playlist.part_target is not None:
        minimum = 3 * playlist.part_target
        if control.part_hold_back < minimum - _EPSILON:
            strength = "MUST be at least twice" if (
                control.part_hold_back < 2 * playlist.part_target - _EPSILON
            ) else "SHOULD be at least three times"
            raise _spec("4.4.3.8", f"[PART-HOLD-BACK] {strength} the Part Target Duration",
                        f"PART-HOLD-BACK={control.part_hold_back}, PART-TARGET is {playlist.part_target}")


def _check_low_latency(playlist: MediaPlaylist, facts: _Text) -> None:
    if playlist.part_target is None:
        return
    if not any(s.program_date_time for s in playlist.segments) and playlist.next_program_date_time is None:
        raise _profile("All Media Playlists have EXT-X-PROGRAM-DATE-TIME tags",
                       "a low-latency playlist without EXT-X-PROGRAM-DATE-TIME")
    listed = any(True for _ in _parents(playlist))
    if playlist.ended or not listed:
        return
    if playlist.server_control is None or not playlist.server_control.can_block_reload:
        raise _sender(
            "a playlist with parts offers blocking reload: CAN-BLOCK-RELOAD=YES (6.3.8: clients "
            "MUST NOT request Blocking Playlist Reloads unless [it is present])",
            "EXT-X-PART without CAN-BLOCK-RELOAD=YES",
        )
    if playlist.preload_hint is None:
        raise _profile(
            "A Playlist that contains an EXT-X-PART tag but no EXT-X-ENDLIST tag will also "
            "contain an EXT-X-PRELOAD-HINT tag that specifies the next Partial Segment",
            "no EXT-X-PRELOAD-HINT TYPE=PART",
        )
    listed_uris = {part.uri for _, parts, _ in _parents(playlist) for part in parts}
    if playlist.preload_hint in listed_uris:
        raise _spec(
            "4.4.5.3", "It MUST match the URI that will be subsequently added to the Playlist",
            f"the hint {playlist.preload_hint!r} names a part already listed", facts.preload_hint_line,
        )


def _check_map(playlist: MediaPlaylist) -> None:
    uris = [s.uri for s in playlist.segments] + [p.uri for _, parts, _ in _parents(playlist) for p in parts]
    fmp4 = (
        any(s.map_uri for s in playlist.segments)
        or playlist.next_map_uri is not None
        or any(uri.split("?")[0].endswith(_FMP4_SUFFIXES) for uri in uris)
    )
    first_map = (
        playlist.segments[0].map_uri if playlist.segments
        else playlist.next_map_uri if playlist.partial_parts else "-"
    )
    if fmp4 and first_map is None:
        raise _spec("3.1.2", "Each fMP4 Segment in a Media Playlist MUST have an EXT-X-MAP tag "
                    "applied to it", "no EXT-X-MAP before the first segment or part")


def _check_dates(playlist: MediaPlaylist) -> None:
    dated = [(s.msn, s.program_date_time, s.duration, s.discontinuity) for s in playlist.segments]
    if playlist.partial_parts:
        dated.append((playlist.next_msn, playlist.next_program_date_time, 0.0, playlist.next_discontinuity))
    if not any(date for _, date, _, _ in dated):
        return
    previous = None  # (implied date of the previous segment, its duration)
    for msn, date, duration, discontinuity in dated:
        if discontinuity and date is None:
            raise _spec(
                "6.2.1", "If a server provides this mapping, it SHOULD apply an "
                "EXT-X-PROGRAM-DATE-TIME tag to every segment that has an EXT-X-DISCONTINUITY tag",
                f"segment {msn} follows a discontinuity without a date",
            )
        if date is not None and previous is not None:
            earlier, earlier_duration = previous
            if date <= earlier or date < earlier + timedelta(seconds=earlier_duration - 1):
                raise _spec(
                    "6.2.1", "The Server MUST NOT add any EXT-X-PROGRAM-DATE-TIME tag to a Playlist "
                    "that would cause the mapping between program date and Media Segment to become "
                    "ambiguous ... (sub-second) overlaps",
                    f"segment {msn} is dated {date.isoformat()}, the one before it starts "
                    f"{earlier.isoformat()} and lasts {earlier_duration} s",
                )
        if date is None and previous is not None:
            date = previous[0] + timedelta(seconds=previous[1])
        previous = (date, duration) if date is not None else None


def _check_delta(playlist: MediaPlaylist, facts: _Text, skipped: int) -> None:
    control = playlist.server_control
    if facts.ended or control is None or control.can_skip_until is None:
        raise _spec(
            "6.2.5.1", "A Server MUST ignore the _HLS_skip directive if the Playlist does not "
            "contain the CAN-SKIP-UNTIL attribute, or if it contains an EXT-X-ENDLIST tag",
            "EXT-X-SKIP in such a playlist", facts.skip_line,
        )
    boundary = control.can_skip_until
    edge = playlist.duration + sum(part.duration for part in playlist.partial_parts)
    start = 0.0
    for index, segment in enumerate(playlist.segments):
        end = start + segment.duration
        if index < skipped and edge - start <= boundary + _EPSILON:
            raise _spec(
                "6.2.5.1", "Media Segments that are further from the end of the last (Parent) "
                "Media Segment in the Playlist than the Skip Boundary ... are replaced",
                f"segment {segment.msn} was skipped but starts only {edge - start:.3f} s from the end",
                facts.skip_line,
            )
        if index == skipped and playlist.duration - end > boundary + _EPSILON:
            raise _spec(
                "6.2.5.1", "Media Segments that are further from the end of the last (Parent) "
                "Media Segment in the Playlist than the Skip Boundary ... are replaced by an "
                "EXT-X-SKIP tag", f"segment {segment.msn}, {playlist.duration - end:.3f} s before "
                "the end, was not skipped", facts.skip_line,
            )
        start = end


def _check_update(playlist: MediaPlaylist, previous: MediaPlaylist) -> None:
    """What a reload may change (6.2.1 "The server MUST NOT change the Media Playlist file,
    except to: ..."; 6.2.2)."""
    allowed = "The server MUST NOT change the Media Playlist file, except to: Append lines ..."
    if playlist.target_duration != previous.target_duration:
        raise _spec("6.2.1", "The value of the EXT-X-TARGETDURATION tag in the Media Playlist "
                    "MUST NOT change", f"{previous.target_duration} → {playlist.target_duration}")
    if playlist.media_sequence < previous.media_sequence:
        raise _spec("6.2.2", "[EXT-X-MEDIA-SEQUENCE] MUST NOT decrease or wrap",
                    f"{previous.media_sequence} → {playlist.media_sequence}")
    if previous.ended and not playlist.ended:
        raise _spec("6.2.1", allowed + " Add an EXT-X-ENDLIST tag", "EXT-X-ENDLIST disappeared")
    if playlist.next_msn < previous.next_msn or (
        playlist.next_msn == previous.next_msn
        and len(playlist.partial_parts) < len(previous.partial_parts)
    ):
        raise _spec("6.2.1", allowed, "segments or parts disappeared from the end: "
                    f"{previous.last_msn_part()} → {playlist.last_msn_part()}")

    before = {segment.msn: segment for segment in previous.segments}
    for segment in playlist.segments:
        old = before.get(segment.msn)
        if old is not None:
            _check_same_segment(segment, old, allowed)
        elif segment.msn == previous.next_msn and previous.partial_parts:
            _check_completed(segment, previous, allowed)
    if playlist.next_msn == previous.next_msn and (
        playlist.partial_parts[: len(previous.partial_parts)] != previous.partial_parts
    ):
        raise _spec("6.2.1", allowed, f"the parts of segment {playlist.next_msn} changed")

    removed = [s for s in previous.segments if s.msn < playlist.media_sequence]
    known = previous.discontinuity_sequence + sum(s.discontinuity for s in removed)
    unknown = max(0, playlist.media_sequence - previous.next_msn)  # removed before we saw them
    if not known <= playlist.discontinuity_sequence <= known + unknown:
        raise _spec(
            "6.2.2", "If the server removes an EXT-X-DISCONTINUITY tag from the Media Playlist, "
            "it MUST increment the value of the EXT-X-DISCONTINUITY-SEQUENCE tag so that the "
            "Discontinuity Sequence Numbers of the segments still in the Media Playlist remain "
            "unchanged", f"EXT-X-DISCONTINUITY-SEQUENCE {previous.discontinuity_sequence} → "
            f"{playlist.discontinuity_sequence} after removing {len(removed)} segments, "
            f"{known - previous.discontinuity_sequence} of them after a discontinuity",
        )
    if (
        playlist.media_sequence > previous.media_sequence and not playlist.ended
        and playlist.duration < 3 * playlist.target_duration - _EPSILON
    ):
        raise _spec(
            "6.2.2", "The server MUST NOT remove a Media Segment from a Playlist file without an "
            "EXT-X-ENDLIST tag if that would produce a Playlist whose duration is less than "
            "three times the Target Duration",
            f"{playlist.duration:.3f} s left, EXT-X-TARGETDURATION is {playlist.target_duration}",
        )


def _check_same_segment(segment: Segment, old: Segment, allowed: str) -> None:
    for field in ("uri", "duration", "discontinuity", "map_uri", "program_date_time"):
        if getattr(segment, field) != getattr(old, field):
            raise _spec("6.2.1", allowed, f"segment {segment.msn} changed its {field}: "
                        f"{getattr(old, field)!r} → {getattr(segment, field)!r}")
    if segment.parts and segment.parts != old.parts:
        raise _spec("6.2.1", allowed + " Remove EXT-X-PART tags no longer at the live edge",
                    f"the parts of segment {segment.msn} changed")


def _check_completed(segment: Segment, previous: MediaPlaylist, allowed: str) -> None:
    """The segment that was being built, now complete: what was listed stays as it was."""
    if segment.parts and segment.parts[: len(previous.partial_parts)] != previous.partial_parts:
        raise _spec("6.2.1", allowed, f"the parts of segment {segment.msn} changed when it completed")
    last_map = previous.segments[-1].map_uri if previous.segments else None
    was = {
        "discontinuity": previous.next_discontinuity,
        "map_uri": previous.next_map_uri or last_map,
        "program_date_time": previous.next_program_date_time,
    }
    for field, value in was.items():
        if getattr(segment, field) != value and not (field == "program_date_time" and value is None):
            raise _spec("6.2.1", allowed, f"segment {segment.msn} changed its {field} when it "
                        f"completed: {value!r} → {getattr(segment, field)!r}")


def check_media_playlist(text: str, *, previous: MediaPlaylist | None = None) -> MediaPlaylist:
    """Check one Media Playlist; with ``previous`` (the version before this reload) also
    check what changed. A Playlist Delta Update needs ``previous`` to be merged into.

    Returns the parsed (for a delta: merged) playlist; raises ``PlaylistViolation``.
    """
    playlist: MediaPlaylist = _parsed(parse_media_playlist, text, previous=previous)
    facts = _parsed(_scan, text)
    if facts.playlist_type_line is not None and playlist.media_sequence > 0:
        raise _spec("6.2.2", "A Live Playlist MUST NOT contain the EXT-X-PLAYLIST-TYPE tag, as no "
                    "value of that tag allows Media Segments to be removed",
                    "EXT-X-PLAYLIST-TYPE in a playlist that removed segments", facts.playlist_type_line)
    _check_version(playlist, facts)
    _check_durations(playlist)
    _check_server_control(playlist)
    _check_parts(playlist)
    _check_map(playlist)
    _check_dates(playlist)
    _check_low_latency(playlist, facts)
    if facts.skip_line is not None:
        _check_delta(playlist, facts, facts.skipped)
    if previous is not None:
        _check_update(playlist, previous)
    return playlist


# -- the renditions of one stream -------------------------------------------------------------

def _positions(playlist: MediaPlaylist) -> list[tuple[tuple[int, int | None], float]]:
    """Every reportable position in order, with the time its media ends."""
    positions: list[tuple[tuple[int, int | None], float]] = []
    time = 0.0
    for segment in playlist.segments:
        if segment.parts:
            for index, part in enumerate(segment.parts):
                time += part.duration
                positions.append(((segment.msn, index), time))
        else:
            time += segment.duration
            positions.append(((segment.msn, None), time))
    for index, part in enumerate(playlist.partial_parts):
        time += part.duration
        positions.append(((playlist.next_msn, index), time))
    return positions


def _check_report(
    reporter: str, sibling: str, playlist: MediaPlaylist, reported: tuple[int, int | None]
) -> None:
    actual = playlist.last_msn_part()
    if actual is None or reported == actual:
        return
    positions = _positions(playlist)
    times = dict(positions)
    rule = ("All Renditions in a Multivariant Playlist are updated in sync, within an accuracy "
            "of one Part Target Duration")
    found = f"{reporter} reports {sibling} at {reported}, it is at {actual}"
    if actual[1] is None:  # a rendition without parts: one segment either way
        if abs(reported[0] - actual[0]) > 1 or reported[1] is not None:
            raise _profile(rule, found)
        return
    if reported[1] is None:
        # Reported before the sibling listed anything of segment `msn`: fine while that is
        # still just its first part; otherwise the report lacks its LAST-PART.
        if actual == (reported[0], 0):
            return
        raise _spec("4.4.5.4", "LAST-PART ... is REQUIRED if the Rendition contains a Partial Segment", found)
    # Slightly ahead: the sibling's next part (a part index past its last part means part 0
    # of the next segment).
    if reported in ((actual[0], actual[1] + 1), (actual[0] + 1, 0)):
        return
    behind = times.get(reported)
    tolerance = playlist.part_target or 0.0
    if behind is None or positions[-1][1] - behind > tolerance + _EPSILON:
        raise _profile(rule, found)


def check_renditions(playlists: dict[str, MediaPlaylist]) -> None:
    """Check the renditions of one stream against each other.

    ``playlists`` maps each Media Playlist's URI (relative to the Multivariant Playlist,
    e.g. ``360p/index.m3u8``) to its parsed playlist, taken at about the same moment.
    """
    if not playlists:
        raise _sender("a stream has at least one rendition", "no playlists")
    items = list(playlists.items())
    first_uri, first = items[0]
    for uri, playlist in items[1:]:
        for field, section, rule in (
            ("target_duration", "6.2.4", "Each Media Playlist in each Variant Stream and "
             "Rendition MUST have the same Target Duration"),
            ("server_control", "6.2.4", "If any Media Playlist in a Multivariant Playlist contains "
             "an EXT-X-SERVER-CONTROL tag, then all Media Playlists in that Multivariant Playlist "
             "MUST contain that tag, with the same attributes and values"),
        ):
            if getattr(playlist, field) != getattr(first, field):
                raise _spec(section, rule, f"{first_uri}: {getattr(first, field)!r}, "
                            f"{uri}: {getattr(playlist, field)!r}")
        if playlist.part_target != first.part_target:
            raise _sender("every rendition has the same EXT-X-PART-INF (4.4.3.8 otherwise asks "
                          "PART-HOLD-BACK to cover the largest)",
                          f"{first_uri}: {first.part_target}, {uri}: {playlist.part_target}")
    dated = {uri: _has_dates(p) for uri, p in items}
    if len(set(dated.values())) > 1:
        raise _spec("6.2.4", "If any Media Playlist in a Multivariant Playlist contains an "
                    "EXT-X-PROGRAM-DATE-TIME tag, then all Media Playlists in that Multivariant "
                    "Playlist MUST contain EXT-X-PROGRAM-DATE-TIME tags", f"dated: {dated}")

    base = "http://renditions.invalid/"
    by_address = {urljoin(base, uri): uri for uri, _ in items}
    for uri, playlist in items:
        if playlist.part_target is None and not playlist.rendition_reports:
            continue  # rendition reports are part of the low-latency profile
        named: dict[str, tuple[int, int | None]] = {}
        for report in playlist.rendition_reports:
            target = by_address.get(urljoin(urljoin(base, uri), report.uri))
            if target is None or target == uri:
                raise _sender("rendition reports name sibling renditions, relative to the "
                              "reporting playlist (4.4.5.4)", f"{uri} reports {report.uri!r}")
            if target in named:
                raise _profile("Each Media Playlist MUST contain one EXT-X-RENDITION-REPORT tag "
                               "for each Media Playlist", f"{uri} reports {target} twice")
            named[target] = (report.last_msn, report.last_part)
        for sibling, _ in items:
            if sibling != uri and sibling not in named:
                raise _profile("Each Media Playlist MUST contain one EXT-X-RENDITION-REPORT tag "
                               "for each Media Playlist (Rendition) in the Multivariant Playlist, "
                               "except for the Media Playlist to which the EXT-X-RENDITION-REPORT "
                               "tag is being added", f"{uri} does not report {sibling}")
        for sibling, reported in named.items():
            _check_report(uri, sibling, playlists[sibling], reported)


def _has_dates(playlist: MediaPlaylist) -> bool:
    return playlist.next_program_date_time is not None or any(
        segment.program_date_time is not None for segment in playlist.segments
    )


# -- the Multivariant Playlist ----------------------------------------------------------------

def check_master_playlist(text: str) -> MasterPlaylist:
    """Check a Multivariant Playlist as Sender writes it: every variant complete enough for
    a player to choose it. Returns the parsed playlist."""
    master: MasterPlaylist = _parsed(parse_master_playlist, text)
    if not master.variants:
        raise _spec("4.1", "A Multivariant Playlist contains at least one of the Multivariant "
                    "Playlist Tags", "no EXT-X-STREAM-INF")
    for variant in master.variants:
        if variant.bandwidth <= 0:
            raise _spec("4.4.6.2", "[BANDWIDTH] represents the peak segment bit rate of the "
                        "Variant Stream", f"{variant.uri}: BANDWIDTH={variant.bandwidth}")
        if variant.average_bandwidth is not None and variant.average_bandwidth > variant.bandwidth:
            raise _spec("4.1, 4.4.6.2", "AVERAGE-BANDWIDTH ... represents the average segment bit "
                        "rate", f"{variant.uri}: average {variant.average_bandwidth} above peak "
                        f"{variant.bandwidth}")
        if variant.codecs is None:
            raise _spec("4.4.6.2", "Every EXT-X-STREAM-INF tag SHOULD include a CODECS attribute",
                        f"{variant.uri} has none")
        if _VIDEO_CODECS.search(variant.codecs):
            for field, attribute in (("resolution", "RESOLUTION"), ("frame_rate", "FRAME-RATE")):
                if getattr(variant, field) is None:
                    raise _spec("4.4.6.2", f"The {attribute} attribute is OPTIONAL but is "
                                "recommended if the Variant Stream includes video",
                                f"{variant.uri} has video ({variant.codecs}) and no {attribute}")
    return master
