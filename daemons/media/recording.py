"""A recorded generation's playlists, sans-IO: every segment since the start, for replays.

With recording on, a rendition keeps all its segments (the live window still prunes the live
playlist and the parts) and lists them in two more playlists beside `index.m3u8`:

* `dvr.m3u8` — `EXT-X-PLAYLIST-TYPE:EVENT`, rewritten as each segment closes: a viewer can seek
  back to the start of the broadcast while it is live (the live playlist, with LL-HLS, stays the
  way to watch at the live edge). Once the generation ends it gets `EXT-X-ENDLIST`.
* `vod.m3u8` — written when the generation ends: `EXT-X-PLAYLIST-TYPE:VOD`, every segment,
  `EXT-X-ENDLIST`. Its bytes never change again (cacheable as immutable).

The text is built incrementally (each closed segment's lines are rendered once, by the playlist
model's own `Segment.render_lines`), so a three-hour recording costs the same per segment as a
one-minute one; `event_text()` equals what the model renders for the whole playlist (tested).
A restarted daemon continues from the `dvr.m3u8` it finds (`Recording.from_text`).
"""

from __future__ import annotations

from daemons.media import hls
from daemons.media.names import DVR_PLAYLIST, VOD_PLAYLIST  # noqa: F401 - the names, defined once there


class Recording:
    def __init__(self, first_msn: int = 0):
        self.first_msn = first_msn
        self.segments = 0
        self._lines: list[str] = []
        self._map: str | None = None  # the map the lines so far put in effect

    def add(self, segment: hls.Segment) -> None:
        """The next closed segment (its parts are not listed: replays play whole segments)."""
        if segment.msn != self.first_msn + self.segments:
            raise ValueError(f"recorded segment {segment.msn} after {self.first_msn + self.segments - 1}: msn must follow")
        if segment.parts:
            segment = hls.Segment(segment.msn, segment.uri, segment.duration, segment.program_date_time,
                                  segment.discontinuity, segment.map_uri)
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
