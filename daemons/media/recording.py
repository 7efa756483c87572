"""A recorded generation's playlists, sans-IO: every segment since the start, for replays.

With recording on, a rendition keeps all its segments (the live window still prunes the live
playlist and the parts) and lists them in two more playlists beside `index.m3u8`:

* `dvr.m3u8` — `EXT-X-PLAYLIST-TYPE:EVENT`: every segment since the start, so a viewer can seek
  back to the start of the broadcast while it is live. With LL-HLS on, its end is the live
  playlist's own tail (the last segments with their parts, the open segment's parts, the preload
  hint, under the same SERVER-CONTROL and PART-INF), rewritten with every part, and sender-http
  answers its blocking reloads: at the live edge a DVR viewer is as close as a live one. Without
  LL-HLS it is rewritten as each segment closes. Once the generation ends it gets
  `EXT-X-ENDLIST` (and no parts).
* `vod.m3u8` — written when the generation ends: `EXT-X-PLAYLIST-TYPE:VOD`, every segment,
  `EXT-X-ENDLIST`. Its bytes never change again (cacheable as immutable).

The text is built incrementally (each closed segment's lines are rendered once, by the playlist
model's own `Segment.render_lines`), so a three-hour recording costs the same per segment as a
one-minute one; `event_text()` equals what the model renders for the whole playlist (tested).
A restarted daemon continues from the `dvr.m3u8` it finds (`Recording.from_text`).
"""

from __future__ import annotations

from dataclasses import replace

from daemons.media import hls
from daemons.media.names import DVR_PLAYLIST, VOD_PLAYLIST  # noqa: F401 - the names, defined once there


class Recording:
    def __init__(self, first_msn: int = 0):
        self.first_msn = first_msn
        self.segments = 0
        self._lines: list[str] = []
        self._map: str | None = None  # the map the lines so far put in effect
        self._starts: list[int] = []  # per segment: where its lines start, and the map in effect there
        self._maps: list[str | None] = []

    def add(self, segment: hls.Segment) -> None:
        """The next closed segment (its parts are not listed: replays play whole segments)."""
        if segment.msn != self.first_msn + self.segments:
            raise ValueError(f"recorded segment {segment.msn} after {self.first_msn + self.segments - 1}: msn must follow")
        if segment.parts:
            segment = hls.Segment(segment.msn, segment.uri, segment.duration, segment.program_date_time,
                                  segment.discontinuity, segment.map_uri)
        self._starts.append(len(self._lines))
        self._maps.append(self._map)
        self._lines += segment.render_lines(self._map)
        self._map = segment.map_uri or self._map
        self.segments += 1

    def _text(self, target_duration: int, playlist_type: str, ended: bool) -> str:
        version = 6 if self._map is not None else 3
        head = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{target_duration}",
            f"#EXT-X-PLAYLIST-TYPE:{playlist_type}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.first_msn}",
            "#EXT-X-DISCONTINUITY-SEQUENCE:0",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        tail = ["#EXT-X-ENDLIST"] if ended else []
        return "\n".join(head + self._lines + tail) + "\n"

    def event_text(self, target_duration: int, *, ended: bool = False) -> str:
        return self._text(target_duration, "EVENT", ended)

    def live_text(self, live: hls.MediaPlaylist) -> str:
        """The DVR playlist while live with LL-HLS: the recorded segments before the first one
        the live playlist lists with parts, then the live playlist's tail as it lists it (no
        delta updates, no rendition reports). Falls back to `event_text` when the live playlist
        lists a segment the recording does not have yet."""
        first = next((s.msn for s in live.segments if s.parts), live.next_msn)
        first = max(first, self.first_msn)
        recorded = first - self.first_msn
        tail = tuple(s for s in live.segments if s.msn >= first)
        if recorded > self.segments or (tail and tail[0].msn != first) or live.server_control is None:
            return self.event_text(live.target_duration)
        cut = self._starts[recorded] if recorded < self.segments else len(self._lines)
        map_uri = self._maps[recorded] if recorded < self.segments else self._map
        earlier = hls.Earlier(self.first_msn, self._lines[:cut], map_uri, 6 if map_uri is not None else 3 if cut else 1)
        own = replace(live, media_sequence=first, segments=tail, discontinuity_sequence=0, rendition_reports=(),
                      playlist_type="EVENT", server_control=replace(live.server_control, can_skip_until=None,
                                                                    can_skip_dateranges=False))
        return own.render(earlier=earlier)

    def vod_text(self, target_duration: int) -> str:
        return self._text(target_duration, "VOD", True)

    @classmethod
    def from_text(cls, text: str) -> "Recording":
        """Continue a recording from its `dvr.m3u8` (ValueError if it is not one)."""
        playlist = hls.parse_media_playlist(text)
        if playlist.playlist_type != "EVENT":
            raise ValueError("not a DVR playlist (EXT-X-PLAYLIST-TYPE:EVENT)")
        recording = cls(playlist.media_sequence)
        for segment in playlist.segments:
            recording.add(segment)
        return recording
