"""sender-front's playlist pusher (front.kind = "nginx"): every version of every public or
unlisted media playlist, into nginx.

The ingest (and edge-fill) daemon names each rendition whose playlist changed in a spool event
datagram (daemons/runtime/spool_events.py); this binds its own receiver ("front"), reads the
rendition's `index.m3u8`, and POSTs it to nginx's loopback control listener (front.proxy_listen)
with its delta update and the numbers a blocking reload is decided on (sender_front.lua). nginx
then answers that rendition's playlist requests itself and wakes the reloads waiting for it.

Only renditions viewers ask for are pushed: nginx lists those asked for within WANTED_FOR_S
(`/wanted`, polled every WANTED_POLL_S; a rendition's first viewers are answered by sender-http
until then), so a rendition nobody watches costs nothing here (a push parses and renders its
playlist: ~2 ms of CPU). Only streams the directory says are public or unlisted are pushed, and only those have a link in
nginx's `public/` directory (`<stream id>` → its spool directory, which nginx serves media
through); a stream that turns private (or is deleted) is unlinked and dropped from nginx within
LINK_SYNC_S of the directory's next refresh (once a second), and what was pushed expires in nginx
after `ttl` anyway. Unchanged playlists are pushed again every
REPUSH_S so a paused stream (or an ended one) stays served by nginx; a rendition that has not
changed for FORGET_S is left to expire. A push that fails (nginx restarting) is retried at the
next event or re-push: nginx sends what it has no copy of to sender-http meanwhile.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import trio

from daemons.core.config import Config
from daemons.core.front_config import hold_seconds
from daemons.core.front_nginx import NginxFiles, push_address
from daemons.media.hls import MediaPlaylist
from daemons.media.hls.parse import parse_media_playlist
from daemons.media.names import STREAM_ID_RE
from daemons.runtime import logging as slog
from daemons.runtime.spool_events import SpoolEventReceiver
from daemons.runtime.store import StoreWorker
from daemons.runtime.stream_directory import StreamDirectory

log = slog.get("front.push")

REPUSH_S = 2.0
LINK_SYNC_S = 1.0
WANTED_POLL_S = 0.5  # how often nginx is asked which renditions viewers want
WANTED_FOR_S = 60  # a rendition nobody asked for in this long is no longer pushed
FORGET_S = 300.0
CONNECT_TIMEOUT_S = 2.0
RESPONSE_TIMEOUT_S = 5.0
MAX_RESPONSE = 4 << 20  # /wanted: one line per rendition asked for
PUBLIC = ("public", "unlisted")


@dataclass(slots=True)
class Pushed:
    key: tuple[int, int, int]  # the file's identity when it was read
    body: bytes
    query: str
    changed_at: float
    pushed_at: float


def blocking_numbers(playlist: MediaPlaylist) -> dict[str, int]:
    """What sender_front.lua decides a blocking reload on (MediaPlaylist.contains/too_far_ahead)."""
    last = playlist.last_msn_part()
    last_msn, last_part = (last[0], last[1] if last[1] is not None else -1) if last else (playlist.next_msn, -1)
    target = playlist.part_target
    limit = round(3 / target, 6) if target is not None and 0 < target < 1 else 3
    td = playlist.target_duration
    return {
        "next_msn": playlist.next_msn, "media_sequence": playlist.media_sequence,
        "last_parts": len(playlist.segments[-1].parts) if playlist.segments else 0,
        "partial": len(playlist.partial_parts), "last_msn": last_msn, "last_part": last_part,
        "part_limit": int(limit), "hold_s": 3 * td, "hold_max_age": 3 * td, "ttl": hold_seconds(td) + 4,
        "ended": int(playlist.ended),
    }


def push_request(path: str, data: bytes) -> tuple[bytes, str]:
    """One rendition's playlist file → (request body, query) for nginx's /push."""
    playlist = parse_media_playlist(data.decode())
    delta = b""
    if playlist.server_control is not None and playlist.server_control.can_skip_until is not None and not playlist.ended:
        delta = playlist.render(skip=True).encode()
    query = urlencode({"r": path, "full": len(data), **blocking_numbers(playlist)})
    return data + delta, query


class PlaylistPusher:
    def __init__(self, cfg: Config, state_dir: Path, store: StoreWorker, key: str):
        self.root = Path(cfg["spool.root"]) / "streams"
        self.public_dir = NginxFiles.of(cfg).public
        self.state_dir = state_dir
        self.directory = StreamDirectory(store)
        self.address = push_address(cfg)
        self.key = key
        self.pushed: dict[str, Pushed] = {}
        self.streams: set[str] = set()  # streams with something pushed: dropped when no longer public
        self._conn: trio.SocketStream | None = None
        self._lock = trio.Lock()
        self.wanted: set[str] = set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        receiver = SpoolEventReceiver(self.state_dir, "front")
        try:
            await receiver.bind()
            await trio.to_thread.run_sync(self._clear_links)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.directory.run)
                await self._sync_links()
                nursery.start_soon(self._repush_loop)
                nursery.start_soon(self._link_loop)
                nursery.start_soon(self._wanted_loop)
                task_status.started()
                while True:
                    try:
                        path, _msn, _part = await receiver.receive()
                    except (ValueError, UnicodeDecodeError):
                        continue  # not one of ours
                    await self.update(path)
        finally:
            receiver.close()
            if self._conn is not None:
                await self._conn.aclose()

    def _public(self, path: str) -> bool:
        entry = self.directory.by_id.get(path.partition("/")[0])
        return entry is not None and entry.visibility in PUBLIC

    async def update(self, path: str) -> None:
        """Push the rendition's playlist if it changed (viewers want it, its stream is public)."""
        if path not in self.wanted or not self._public(path):
            return
        index = self.root / path / "index.m3u8"
        try:
            st = os.stat(index)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            old = self.pushed.get(path)
            if old is not None and old.key == key:
                return
            data = index.read_bytes()
            body, query = push_request(path, data)
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, ValueError) as e:
            slog.log(log, logging.WARNING, "playlist not pushed: unreadable", rendition=path, error=e)
            return
        now = trio.current_time()
        self.pushed[path] = Pushed(key, body, query, now, now)
        self.streams.add(path.partition("/")[0])
        await self._post(f"/push?{query}", body)

    def _clear_links(self) -> None:
        """At start: no stream is public to nginx until the directory says so."""
        self.public_dir.mkdir(parents=True, exist_ok=True)
        for link in self.public_dir.iterdir():
            link.unlink(missing_ok=True)

    async def _sync_links(self) -> None:
        """One link per public or unlisted stream, none for any other; streams no longer public
        are dropped from nginx's playlists too."""
        public = {e.id for e in self.directory.by_id.values() if e.visibility in PUBLIC and STREAM_ID_RE.fullmatch(e.id)}
        try:
            linked = set(os.listdir(self.public_dir))
        except OSError as e:
            slog.log(log, logging.WARNING, "cannot list the front's public links", error=e)
            return
        for sid in linked - public:
            (self.public_dir / sid).unlink(missing_ok=True)
            slog.log(log, logging.INFO, "stream not public: its media no longer served by the front", stream=sid)
        for sid in public - linked:
            try:
                os.symlink(self.root / sid, self.public_dir / sid)
            except FileExistsError:
                pass
            except OSError as e:
                slog.log(log, logging.WARNING, "cannot link a public stream for the front", stream=sid, error=e)
        for sid in [s for s in self.streams if s not in public]:
            self.streams.discard(sid)
            for path in [p for p in self.pushed if p.startswith(sid + "/")]:
                del self.pushed[path]
            await self._post(f"/drop?s={sid}", b"")

    async def _wanted_loop(self) -> None:
        """What viewers ask for, from nginx: newly wanted renditions are pushed at once, those no
        longer wanted are left to expire there."""
        while True:
            await trio.sleep(WANTED_POLL_S)
            status, body = await self._request("GET", f"/wanted?since={WANTED_FOR_S}")
            if status != 200:
                continue
            now = {p for p in body.decode(errors="replace").split("\n") if p.count("/") == 2}
            new, self.wanted = now - self.wanted, now
            for path in [p for p in self.pushed if p not in now]:
                del self.pushed[path]
            for path in sorted(new):
                await self.update(path)

    async def _link_loop(self) -> None:
        while True:
            await trio.sleep(LINK_SYNC_S)
            await self._sync_links()

    async def _repush_loop(self) -> None:
        """Keep nginx's copies fresh (their ttl)."""
        while True:
            await trio.sleep(REPUSH_S)
            now = trio.current_time()
            for path, p in list(self.pushed.items()):
                if now - p.changed_at > FORGET_S:
                    del self.pushed[path]
                elif now - p.pushed_at >= REPUSH_S:
                    p.pushed_at = now
                    await self._post(f"/push?{p.query}", p.body)

    async def _post(self, target: str, body: bytes) -> bool:
        status, _ = await self._request("POST", target, body)
        if status not in (200, None):
            slog.log(log, logging.WARNING, "nginx refused a push", target=target.split("?")[0], status=status)
        return status == 200

    async def _request(self, method: str, target: str, body: bytes = b"") -> tuple[int | None, bytes]:
        """One request on the kept connection to nginx's control listener: (status, body), or
        (None, b"") when nginx could not be reached."""
        request = (f"{method} {target} HTTP/1.1\r\nHost: sender-front\r\nX-Sender-Key: {self.key}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        async with self._lock:
            for attempt in (1, 2):  # a kept connection nginx closed (reload): once more on a new one
                try:
                    if self._conn is None:
                        with trio.fail_after(CONNECT_TIMEOUT_S):
                            self._conn = await trio.open_tcp_stream(*self.address)
                    with trio.fail_after(RESPONSE_TIMEOUT_S):
                        await self._conn.send_all(request)
                        return await self._read_response()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ValueError,
                        IndexError) as e:
                    if self._conn is not None:
                        await self._conn.aclose()
                        self._conn = None
                    if attempt == 2:
                        slog.log(log, logging.DEBUG, "nginx's control listener not reached", error=repr(e))
        return None, b""

    async def _read_response(self) -> tuple[int, bytes]:
        """A response head and its Content-Length body: (status, body)."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await self._conn.receive_some(4096)
            if not chunk:
                raise ValueError("connection closed")
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise ValueError("response too large")
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise ValueError("chunked response")  # nginx sends Content-Length for ngx.say
        while len(rest) < length:
            chunk = await self._conn.receive_some(1 << 16)
            if not chunk:
                raise ValueError("connection closed")
            rest += chunk
            if len(rest) > MAX_RESPONSE:
                raise ValueError("response too large")
        return status, rest
