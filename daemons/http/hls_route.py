"""HLS serving: the hot path, as a raw ASGI handler (no framework between hypercorn and the bytes).

URLs are generation-scoped and matched exactly, on the raw path (no percent-decoding, so no
encoded dots or slashes; every component has a fixed alphabet), which is why no request can name
a file outside the spool:

    /hls/<stream_id>/<generation_id>/master.m3u8
    /hls/<stream_id>/<generation_id>/<rendition>/index.m3u8   ?_HLS_msn=&_HLS_part=&_HLS_skip=
    /hls/<stream_id>/<generation_id>/<rendition>/init.mp4 | init-<n>.mp4
    /hls/<stream_id>/<generation_id>/<rendition>/<msn>.m4s | <msn>.<part>.m4s | <msn>.ts | <msn>.<part>.ts

and, for a recorded generation, its replays (daemons/media/recording.py):

    /hls/<stream_id>/<generation_id>/master-dvr.m3u8 | master-vod.m3u8
    /hls/<stream_id>/<generation_id>/<rendition>/dvr.m3u8 ?_HLS_msn=&_HLS_part= | vod.m3u8

The DVR playlists are cached like a live playlist (an hour once they carry ENDLIST); the VOD
playlists and their master, written once when the generation ended, are immutable.

Visibility is checked first, before any byte of playback data: unknown or deleted streams 404;
private streams need `?token=` (a playback token), which is then carried into every URI of the
playlists served to that viewer. Blocking playlist reload and preload-hint holds follow RFC
8216bis 6.2.5.2 and wait on the rendition's one `RenditionView` event (see spool_view.py).
On an edge, what the spool lacks may come from the generation's upstream (pull_through.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import trio

from daemons.core.domain import distribution, playback
from daemons.http.pull_through import PullFailed, PullThrough, finalized
from daemons.http.spool_view import FileCache, RenditionView, SpoolView, with_query
from daemons.http.state import Counters, ViewerTracker, session_key
from daemons.runtime.stream_directory import StreamDirectory
from daemons.media import names

PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
MP4_TYPE = b"video/mp4"
TS_TYPE = b"video/mp2t"  # MPEG-TS segments, which edges of external origins keep
IMMUTABLE = b"max-age=31536000, immutable"
ENDED_PLAYLIST_MAX_AGE = 3600
LIVE_PLAYLIST_MAX_AGE = 1
EDGE_CATCH_UP_S = 2.0  # an edge holds a part just ahead of its playlist this long (or a target duration) for edge-fill

# Every name from daemons/media/names.py: what the packager writes is what this route accepts.
_MASTERS = "|".join(re.escape(n) for n in (names.MASTER, names.MASTER_DVR, names.MASTER_VOD))
_PLAYLISTS = "|".join(re.escape(n) for n in (names.PLAYLIST, names.DVR_PLAYLIST, names.VOD_PLAYLIST))
ROUTE = re.compile(
    (rf"/hls/({names.STREAM_ID})/({names.GENERATION_ID})/(?:({_MASTERS})|({names.RENDITION})"
     rf"/({_PLAYLISTS}|{names.INIT_FILE}|({names.MSN})(?:\.({names.PART_INDEX}))?\.(?:m4s|ts)))").encode()
)
REPLAYS = (names.MASTER_DVR, names.MASTER_VOD, names.DVR_PLAYLIST, names.VOD_PLAYLIST)
IMMUTABLE_REPLAYS = (names.MASTER_VOD, names.VOD_PLAYLIST)  # written once, when the generation ended
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"content-length, content-range, etag, age"),
]
PREFLIGHT = CORS + [
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"range, x-playback-session-id, if-none-match"),
    (b"access-control-max-age", b"86400"),
    (b"content-length", b"0"),
]


class Refused(Exception):
    def __init__(self, status: int, message: str, cache: bytes = b"no-store"):
        self.status, self.message, self.cache = status, message, cache


@dataclass(slots=True)
class Request:
    kind: str
    stream_id: str
    generation_id: str
    rendition: str | None
    filename: str
    query: dict[str, str]
    headers: dict[bytes, bytes]
    head: bool
    private: bool


class HLSHandler:
    def __init__(self, *, spool: SpoolView, files: FileCache, directory: StreamDirectory, viewers: ViewerTracker,
                 counters: Counters, secret: bytes, client_of, node_key: bytes | None = None,
                 pull: PullThrough | None = None):
        self.spool = spool
        self.files = files
        self.directory = directory
        self.viewers = viewers
        self.counters = counters
        self.secret = secret
        self.node_key = node_key  # the distribution key: other Sender nodes (edges) may fetch private streams
        self.client_of = client_of  # scope → the viewer's address (trusted proxies honoured)
        self.root = str(spool.root)
        self.pull = pull  # an edge's pull-through (None, or inactive, elsewhere)

    async def __call__(self, scope, receive, send) -> None:
        kind = "hls"
        try:
            method = scope["method"]
            if method == "OPTIONS":
                await _send(send, 204, PREFLIGHT, b"", head=True)
                self.counters.count("preflight", 204, 0)
                return
            if method not in ("GET", "HEAD"):
                raise Refused(405, "use GET or HEAD")
            req = self._parse(scope)
            kind = req.kind
            if kind == "playlist":
                status, headers, body = await self._media_playlist(req, scope)
            elif kind == "master":
                status, headers, body = await self._master(req)
            elif kind == "replay":
                status, headers, body = await self._replay(req, scope)
            else:
                status, headers, body = await self._media_file(req)
        except Refused as r:
            status, body = r.status, (r.message + "\n").encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", r.cache)]
            req = None
        await _send(send, status, headers + CORS + [(b"content-length", b"%d" % len(body))], body,
                    head=scope["method"] == "HEAD")
        self.counters.count(kind, status, 0 if scope["method"] == "HEAD" else len(body))

    # --- request ------------------------------------------------------------------------

    def _parse(self, scope) -> Request:
        m = ROUTE.fullmatch(scope["raw_path"])
        if m is None:
            raise Refused(404, "not found")
        sid, gid, master, rendition, filename = (g.decode() if g else None for g in m.group(1, 2, 3, 4, 5))
        stream = self.directory.by_id.get(sid)
        if stream is None:
            raise Refused(404, "no such stream")
        qs = scope["query_string"]
        query = dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True)) if qs else {}
        private = stream.visibility == "private"
        headers = dict(scope["headers"])
        if private and not playback.token_valid(self.secret, sid, query.get("token")):
            authorization = headers.get(b"authorization")
            if not distribution.node_authorized(self.node_key, authorization.decode("latin-1") if authorization else None):
                raise Refused(403, "this stream is private: a valid playback token is required")
            query["token"] = ""  # an edge: URIs stay plain, the answer stays private
        if master:
            kind, filename = ("replay" if master in REPLAYS else "master"), master
        elif filename in REPLAYS:
            kind = "replay"
        elif filename == "index.m3u8":
            kind = "playlist"
        elif filename.endswith(".mp4"):
            kind = "init"
        elif m.group(7) is not None:
            kind = "part"
        else:
            kind = "segment"
        return Request(kind, sid, gid, rendition, filename, query, headers, scope["method"] == "HEAD", private)

    def _token_query(self, req: Request) -> bytes:
        token = req.query.get("token") if req.private else None
        return b"token=" + quote(token, safe="").encode() if token else b""

    def _cache(self, req: Request, directive: bytes) -> bytes:
        return (b"private, " if req.private else b"public, ") + directive

    # --- playlists ----------------------------------------------------------------------

    async def _media_playlist(self, req: Request, scope):
        msn, part, skip = _directives(req.query)
        view = self.spool.rendition(req.stream_id, req.generation_id, req.rendition)
        if view.playlist is None:
            upstream = self.pull.upstream(req.stream_id, req.generation_id) if self.pull else None
            if upstream is None:
                raise Refused(404, "this rendition has no playlist (yet)")
            self._seen(req, scope)
            return await self._forwarded_playlist(req, upstream)
        self._seen(req, scope)
        blocking = msn is not None and not view.playlist.ended
        if blocking:
            await self._hold_for(view, msn, part)
        playlist = view.playlist
        if playlist.ended:
            cache = self._cache(req, b"max-age=%d" % ENDED_PLAYLIST_MAX_AGE)
        elif blocking:
            # The answer to one (msn, part) never changes: caches may keep it (CDN appendix).
            cache = self._cache(req, b"max-age=%d" % (3 * playlist.target_duration))
        else:
            cache = self._cache(req, b"max-age=%d" % LIVE_PLAYLIST_MAX_AGE)
        etag = view.etag[:-1] + (b'-d"' if skip else b'"')
        headers = [(b"content-type", PLAYLIST_TYPE), (b"cache-control", cache), (b"etag", etag),
                   (b"last-modified", view.last_modified)]
        if req.headers.get(b"if-none-match") == etag:
            return 304, headers, b""
        return 200, headers, view.render(skip=skip, query=self._token_query(req))

    def _seen(self, req: Request, scope) -> None:
        authorization = req.headers.get(b"authorization")
        if authorization is not None and distribution.node_authorized(self.node_key, authorization.decode("latin-1")):
            return  # an edge filling its spool is not a viewer (it would count its viewers twice)
        self.viewers.seen(req.stream_id, req.generation_id, req.rendition, session_key(
            req.query.get("session") or req.headers.get(b"x-playback-session-id", b"").decode("latin-1"),
            self.client_of(scope), req.headers.get(b"user-agent", b"").decode("latin-1")))

    async def _forwarded_playlist(self, req: Request, upstream):
        """An edge's playlist not in its spool yet: the upstream's answer, passed through, not kept."""
        try:
            fwd = await self.pull.playlist(upstream, req.stream_id, req.generation_id, req.rendition, req.filename,
                                           {} if req.kind == "master" else req.query)
        except PullFailed as e:
            raise Refused(e.status, e.message) from None
        headers = [(b"content-type", PLAYLIST_TYPE), (b"cache-control", fwd.cache_control)]
        headers += [(b"etag", fwd.etag)] if fwd.etag else []
        headers += [(b"last-modified", fwd.last_modified)] if fwd.last_modified else []
        if fwd.etag and req.headers.get(b"if-none-match") == fwd.etag:
            return 304, headers, b""
        return 200, headers, with_query(fwd.body, self._token_query(req))

    async def _hold_for(self, view: RenditionView, msn: int, part: int | None) -> None:
        playlist = view.playlist
        if playlist.too_far_ahead(msn, part):
            raise Refused(400, f"_HLS_msn={msn} is too far ahead of the live edge")
        if playlist.contains(msn, part):
            return
        self.counters.blocked_now += 1
        try:
            with trio.move_on_after(3 * playlist.target_duration):
                while not view.playlist.contains(msn, part):
                    await view.wait_change()
                return
        finally:
            self.counters.blocked_now -= 1
        raise Refused(503, "the requested segment or part did not arrive in time")

    async def _master(self, req: Request):
        path = f"{self.root}/{req.stream_id}/{req.generation_id}/master.m3u8"
        entry = self.files.get(path)
        if entry is None:
            upstream = self.pull.upstream(req.stream_id, req.generation_id) if self.pull else None
            if upstream is None:
                raise Refused(404, "this generation has no master playlist (yet)")
            return await self._forwarded_playlist(req, upstream)
        ended = self._generation_ended(req)
        cache = self._cache(req, b"max-age=%d" % (ENDED_PLAYLIST_MAX_AGE if ended else LIVE_PLAYLIST_MAX_AGE))
        headers = [(b"content-type", PLAYLIST_TYPE), (b"cache-control", cache), (b"etag", entry.etag),
                   (b"last-modified", entry.last_modified)]
        if req.headers.get(b"if-none-match") == entry.etag:
            return 304, headers, b""
        return 200, headers, with_query(entry.data, self._token_query(req))

    async def _replay(self, req: Request, scope):
        """A recording's playlist or master: the file as written, the viewer's token in its URIs.
        A live DVR playlist ends as the live playlist does (LL-HLS): its blocking reloads wait
        for the live playlist to list the part, since both are written in one batch, the DVR
        playlist first."""
        generation = f"{self.root}/{req.stream_id}/{req.generation_id}"
        path = f"{generation}/{req.rendition}/{req.filename}" if req.rendition else f"{generation}/{req.filename}"
        blocking = False
        if req.filename == names.DVR_PLAYLIST:
            msn, part, skip = _directives(req.query)
            if skip:
                raise Refused(400, "a DVR playlist has no delta updates (no CAN-SKIP-UNTIL): drop _HLS_skip")
            if msn is not None:
                view = self.spool.rendition(req.stream_id, req.generation_id, req.rendition)
                blocking = view.playlist is not None and not view.playlist.ended
                if blocking:
                    await self._hold_for(view, msn, part)
                    target_duration = view.playlist.target_duration
        entry = self.files.get(path)
        if entry is None:
            upstream = self.pull.upstream(req.stream_id, req.generation_id) if self.pull else None
            if upstream is None:
                raise Refused(404, "no such replay playlist: the generation is not recorded, or has none (yet)")
            return await self._forwarded_playlist(req, upstream)
        if req.filename == names.DVR_PLAYLIST:
            self._seen(req, scope)  # reloaded like a live playlist: its viewers count
        if req.filename in IMMUTABLE_REPLAYS:
            cache = self._cache(req, IMMUTABLE)
        elif (entry.data.rstrip().endswith(b"#EXT-X-ENDLIST") if req.rendition
              else os.path.exists(f"{generation}/{names.MASTER_VOD}")):
            cache = self._cache(req, b"max-age=%d" % ENDED_PLAYLIST_MAX_AGE)
        elif blocking:
            cache = self._cache(req, b"max-age=%d" % (3 * target_duration))  # as a live blocking reload
        else:
            cache = self._cache(req, b"max-age=%d" % LIVE_PLAYLIST_MAX_AGE)
        headers = [(b"content-type", PLAYLIST_TYPE), (b"cache-control", cache), (b"etag", entry.etag),
                   (b"last-modified", entry.last_modified)]
        if req.headers.get(b"if-none-match") == entry.etag:
            return 304, headers, b""
        return 200, headers, with_query(entry.data, self._token_query(req))

    def _generation_ended(self, req: Request) -> bool:
        views = [v for p, v in self.spool.views.items() if p.startswith(f"{req.stream_id}/{req.generation_id}/")]
        return bool(views) and all(v.playlist is not None and v.playlist.ended for v in views)

    # --- media files --------------------------------------------------------------------

    async def _media_file(self, req: Request):
        path = f"{self.root}/{req.stream_id}/{req.generation_id}/{req.rendition}/{req.filename}"
        entry = self.files.get(path)
        if entry is None and req.kind == "part":
            entry = await self._wait_for_hinted_part(req, path)
        if entry is None and self.pull is not None:
            entry = await self._pulled(req)
        if entry is None:
            # Not there (yet): a cache must not keep this answer.
            raise Refused(404, "no such file (yet)")
        content_type = TS_TYPE if req.filename.endswith(".ts") else MP4_TYPE
        headers = [(b"content-type", content_type), (b"cache-control", self._cache(req, IMMUTABLE)),
                   (b"etag", entry.etag), (b"last-modified", entry.last_modified), (b"accept-ranges", b"bytes")]
        if req.headers.get(b"if-none-match") == entry.etag:
            return 304, headers, b""
        data = entry.data
        range_header = req.headers.get(b"range")
        if range_header is not None:
            span = _byte_range(range_header.decode("latin-1"), len(data))
            if span is None:
                return 416, headers + [(b"content-range", b"bytes */%d" % len(data))], b""
            if span is not ...:
                start, end = span
                headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end, len(data))))
                return 206, headers, data[start:end + 1]
        return 200, headers, data

    async def _pulled(self, req: Request):
        """An edge's miss: the file from the generation's upstream, if it is final there; a part or
        segment just ahead of the local playlist once edge-fill has it (else None)."""
        upstream = self.pull.upstream(req.stream_id, req.generation_id)
        if upstream is None:
            return None
        view = self.spool.rendition(req.stream_id, req.generation_id, req.rendition)
        if not finalized(req.kind, req.filename, view.playlist):
            return await self._caught_up(req, view)
        try:
            return await self.pull.media_file(upstream, req.stream_id, req.generation_id, req.rendition, req.filename, req.kind)
        except PullFailed as e:
            raise Refused(e.status, e.message) from None

    async def _caught_up(self, req: Request, view):
        """An edge is a moment behind its upstream: a viewer who saw the upstream's playlist (a
        request forwarded before the edge had its own) asks for a part or segment the edge's
        playlist does not list yet. Held until edge-fill writes it (no second upstream request
        for it), for at most EDGE_CATCH_UP_S; only in the segment in progress or the next."""
        playlist = view.playlist
        if playlist is None or req.kind not in ("part", "segment"):
            return None
        msn = int(req.filename.split(".", 1)[0])
        if not playlist.next_msn <= msn <= playlist.next_msn + 1 or playlist.ended:
            return None
        path = f"{self.root}/{req.stream_id}/{req.generation_id}/{req.rendition}/{req.filename}"
        self.counters.blocked_now += 1
        try:
            with trio.move_on_after(min(EDGE_CATCH_UP_S, playlist.target_duration)):
                while True:
                    await view.wait_change()
                    entry = self.files.get(path)
                    if entry is not None:
                        return entry
        finally:
            self.counters.blocked_now -= 1
        return None

    async def _wait_for_hinted_part(self, req: Request, path: str):
        """A part requested before it exists is held only if the playlist hints it (EXT-X-PRELOAD-HINT)."""
        view = self.spool.rendition(req.stream_id, req.generation_id, req.rendition)
        playlist = view.playlist
        if playlist is None or playlist.preload_hint != req.filename:
            return None
        self.counters.blocked_now += 1
        try:
            with trio.move_on_after(3 * playlist.target_duration):
                while True:
                    await view.wait_change()
                    entry = self.files.get(path)
                    if entry is not None:
                        return entry
                    if view.playlist.preload_hint != req.filename:
                        return None  # the packager moved on without it (e.g. a dropped segment)
        finally:
            self.counters.blocked_now -= 1
        raise Refused(503, "the hinted part did not arrive in time")


def _directives(query: dict[str, str]) -> tuple[int | None, int | None, bool]:
    """_HLS_msn, _HLS_part, _HLS_skip, checked (6.2.5.2): 400 for anything malformed."""
    msn = _non_negative(query, "_HLS_msn")
    part = _non_negative(query, "_HLS_part")
    if part is not None and msn is None:
        raise Refused(400, "_HLS_part needs _HLS_msn")
    skip = query.get("_HLS_skip")
    if skip not in (None, "YES", "v2"):
        raise Refused(400, "_HLS_skip must be YES or v2")
    return msn, part, skip is not None


def _non_negative(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise Refused(400, f"{name} must be a non-negative integer")
    return int(raw)


def _byte_range(header: str, size: int):
    """(start, end) inclusive for one satisfiable range; ... to ignore the header (several
    ranges, or a unit we do not serve); None when unsatisfiable (416)."""
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return ...
    first, last = m.groups()
    if not first and not last:
        return ...
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return None
    return start, end


async def _send(send, status: int, headers: list, body: bytes, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
