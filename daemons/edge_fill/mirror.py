"""One rendition's copy on an edge, sans-IO: from an upstream playlist to the files to fetch and
the playlist to publish once they are on disk.

`RenditionMirror.step(upstream)` compares an upstream media playlist with what the edge already
published and answers a `Step`: the objects (init sections, segments, parts) the local spool
lacks, and the local playlist that may be published once every one of them is written. The
edge never publishes a playlist that lists a file it does not have, never goes back (a source
that trails what the edge already shows is ignored until it catches up), and keeps the upstream's
sequence numbers, so a player can move between origin and edges.

Rendition reports: the source's EXT-X-RENDITION-REPORTs describe the source's siblings, which
may be ahead of this edge's (a player following one would ask for a part the edge does not have
yet). They are never copied: `sibling_reports` makes them from the playlists the edge itself
published for the sibling renditions.

Names: a Sender source already uses the spool's names (`init.mp4`, `<msn>.m4s`,
`<msn>.<part>.m4s`), kept as they are. Any other HLS origin names its files as it likes; they
are renamed by position (`<msn>.m4s` or `<msn>.ts`, `<msn>.<i>.m4s`, `init.mp4`, `init-<n>.mp4`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from daemons.media import names
from daemons.media.hls import MediaPlaylist, RenditionReport

SENDER_NAME = names.MEDIA_FILE_RE


class MirrorError(ValueError):
    """The upstream playlist cannot be mirrored (a name outside the spool's alphabet, a reset)."""


class OriginRestarted(MirrorError):
    """An external origin's numbering went back: what follows is another broadcast."""


@dataclass(frozen=True, slots=True)
class Fetch:
    uri: str  # as the upstream playlist names it (relative to the playlist, or absolute)
    name: str  # the local file name


@dataclass(frozen=True, slots=True)
class Step:
    fetches: tuple[Fetch, ...]
    playlist: MediaPlaylist  # publish once every fetch is on disk
    hint: Fetch | None  # the preload-hinted part: worth requesting before the next playlist


def position(playlist: MediaPlaylist) -> tuple[int, int]:
    last = playlist.last_msn_part()
    if last is None:
        return (-1, -1)
    return (last[0], -1 if last[1] is None else last[1])


def progress(playlist: MediaPlaylist) -> tuple[tuple[int, int], int, bool]:
    """How far a playlist has got: its newest part, then whether that segment closed, then ENDLIST."""
    return position(playlist), playlist.next_msn, playlist.ended


class RenditionMirror:
    def __init__(self, name: str, *, keep_names: bool):
        self.name = name
        self.keep_names = keep_names
        self.local: MediaPlaylist | None = None
        self.have: set[str] = set()
        self._maps: dict[str, str] = {}  # upstream EXT-X-MAP URI → local name

    # --- what to ask upstream next ----------------------------------------------------------

    def next_directive(self) -> tuple[int, int | None] | None:
        """`(_HLS_msn, _HLS_part)` for the next blocking reload: the part (or segment) after the
        newest one published; None before anything is published."""
        p = self.local
        if p is None:
            return None
        if p.partial_parts:
            return p.next_msn, len(p.partial_parts)
        if p.segments and p.segments[-1].parts:
            return p.next_msn, 0
        return p.next_msn, None

    # --- one upstream playlist ------------------------------------------------------------

    def step(self, upstream: MediaPlaylist) -> Step | None:
        """What to fetch and publish for this upstream playlist; None when it shows nothing new."""
        if self.local is not None:
            if self.local.ended:
                return None
            if not self.keep_names and upstream.next_msn < self.local.media_sequence:
                # Everything the origin lists is older than our whole window: not a stale copy
                # (that would overlap it) but a restarted numbering (the mux was restarted). Files
                # named by position would mix two broadcasts: a new generation.
                raise OriginRestarted(f"{self.name}: the origin's numbering restarted "
                                      f"(it lists up to {upstream.next_msn}, our window starts at {self.local.media_sequence})")
            if progress(upstream) <= progress(self.local):
                # Nothing new, or a source behind what we already show: wait until it catches up.
                # (A segment that just closed on its last part is new: same part, next msn.)
                return None
            if upstream.media_sequence < self.local.media_sequence:
                raise MirrorError(f"{self.name}: the upstream media sequence went back "
                                  f"({upstream.media_sequence} < {self.local.media_sequence})")
        playlist, objects = self._localize(upstream)
        wanted, seen = [], set()
        for fetch in objects:
            if fetch.name not in self.have and fetch.name not in seen:
                seen.add(fetch.name)
                wanted.append(fetch)
        hint = None
        if upstream.preload_hint is not None and playlist.preload_hint is not None and playlist.preload_hint not in self.have:
            hint = Fetch(upstream.preload_hint, playlist.preload_hint)
        return Step(tuple(wanted), playlist, hint)

    def published(self, step: Step) -> list[str]:
        """The step's playlist is on disk: remember it; return the names it no longer lists."""
        before = self.have
        self.local = step.playlist
        listed = set(listed_names(step.playlist))
        self.have = (before | {f.name for f in step.fetches})
        gone = sorted(n for n in self.have if n not in listed and n != step.playlist.preload_hint)
        self.have -= set(gone)
        return gone

    def fetched(self, name: str) -> None:
        """A file is on disk ahead of the playlist that lists it (the preload-hinted part)."""
        self.have.add(name)

    def ended(self) -> MediaPlaylist | None:
        """The local playlist closed with ENDLIST (the source is gone for good), or None."""
        p = self.local
        if p is None or p.ended:
            return None
        return dataclasses.replace(p, partial_parts=(), preload_hint=None, ended=True)

    # --- names ----------------------------------------------------------------------------

    def _localize(self, up: MediaPlaylist) -> tuple[MediaPlaylist, list[Fetch]]:
        objects: list[Fetch] = []
        if self.keep_names:
            for uri in _uris(up):
                if not SENDER_NAME.fullmatch(uri):
                    raise MirrorError(f"{self.name}: upstream URI {uri[:80]!r} is not a spool name")
            for seg in up.segments:
                if seg.map_uri:
                    objects.append(Fetch(seg.map_uri, seg.map_uri))
                objects.append(Fetch(seg.uri, seg.uri))
                objects += [Fetch(p.uri, p.uri) for p in seg.parts]
            if up.next_map_uri:
                objects.append(Fetch(up.next_map_uri, up.next_map_uri))
            objects += [Fetch(p.uri, p.uri) for p in up.partial_parts]
            return dataclasses.replace(up, rendition_reports=()), objects

        ext = ".m4s" if (up.next_map_uri or any(s.map_uri for s in up.segments)) else ".ts"

        def map_name(uri: str | None) -> str | None:
            if uri is None:
                return None
            if uri not in self._maps:
                n = len(self._maps)
                self._maps[uri] = "init.mp4" if n == 0 else f"init-{n}.mp4"
            name = self._maps[uri]
            objects.append(Fetch(uri, name))
            return name

        segments = []
        for seg in up.segments:
            map_local = map_name(seg.map_uri)
            parts = []
            for i, part in enumerate(seg.parts):
                parts.append(dataclasses.replace(part, uri=f"{seg.msn}.{i}{ext}"))
                objects.append(Fetch(part.uri, parts[-1].uri))
            segments.append(dataclasses.replace(seg, uri=f"{seg.msn}{ext}", map_uri=map_local, parts=tuple(parts)))
            objects.append(Fetch(seg.uri, segments[-1].uri))
        next_map = map_name(up.next_map_uri)
        partial = []
        for i, part in enumerate(up.partial_parts):
            partial.append(dataclasses.replace(part, uri=f"{up.next_msn}.{i}{ext}"))
            objects.append(Fetch(part.uri, partial[-1].uri))
        hint = f"{up.next_msn}.{len(partial)}{ext}" if up.preload_hint is not None else None
        local = dataclasses.replace(up, segments=tuple(segments), partial_parts=tuple(partial), next_map_uri=next_map,
                                    preload_hint=hint, rendition_reports=())
        return local, objects


def sibling_reports(name: str, published: Mapping[str, MediaPlaylist | None]) -> tuple[RenditionReport, ...]:
    """EXT-X-RENDITION-REPORTs for rendition `name`: each sibling at the newest position the edge
    published for it (`published`: rendition → its playlist on disk, None before the first), so
    a report never points past what this edge serves. Siblings with nothing published yet are
    left out; they are reported from the next playlist on."""
    return tuple(RenditionReport.for_playlist(f"../{other}/index.m3u8", p)
                 for other, p in published.items() if other != name and p is not None)


def _uris(p: MediaPlaylist) -> list[str]:
    out = []
    for seg in p.segments:
        out.append(seg.uri)
        if seg.map_uri:
            out.append(seg.map_uri)
        out += [part.uri for part in seg.parts]
    out += [part.uri for part in p.partial_parts]
    if p.next_map_uri:
        out.append(p.next_map_uri)
    if p.preload_hint:
        out.append(p.preload_hint)
    return out


def listed_names(p: MediaPlaylist) -> list[str]:
    """Every file a local playlist lists (not its preload hint)."""
    return [u for u in _uris(p) if u != p.preload_hint]
