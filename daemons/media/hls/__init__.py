"""HLS playlists for Sender's own LL-HLS packager: a typed model that renders itself, a
parser that reads it back (and other servers' playlists), and a strict checker written
from RFC 8216bis, used by the tests and by edge nodes.

    playlist = MediaPlaylist(target_duration=2, media_sequence=0, segments=(...), ...)
    text = playlist.render()                      # full playlist
    delta = playlist.render(skip=True)            # _HLS_skip: Playlist Delta Update
    playlist.contains(msn, part)                  # can a blocking reload be answered?
    playlist.too_far_ahead(msn, part)             # ... or must it get 400 at once?
    parse_media_playlist(text) == playlist        # exact inverse
    check_media_playlist(text, previous=older)    # raises PlaylistViolation

Modules: ``model`` (the values and rendering), ``parse``, ``validate``, ``syntax`` (how
numbers, dates and attribute lists are written and read), ``errors``. Imports nothing of
Sender; no I/O.
"""

from .errors import PlaylistError
from .model import (
    Earlier,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    RenditionReport,
    Segment,
    ServerControl,
    Variant,
)
from .parse import parse_master_playlist, parse_media_playlist
from .validate import (
    PlaylistViolation,
    check_master_playlist,
    check_media_playlist,
    check_renditions,
)

__all__ = [
    "Earlier",
    "MasterPlaylist",
    "MediaPlaylist",
    "Part",
    "PlaylistError",
    "PlaylistViolation",
    "RenditionReport",
    "Segment",
    "ServerControl",
    "Variant",
    "check_master_playlist",
    "check_media_playlist",
    "check_renditions",
    "parse_master_playlist",
    "parse_media_playlist",
]
