"""The HTTP daemon's live view of the spool: playlists in memory, waiters woken by spool events.

One `RenditionView` per rendition being watched holds its parsed media playlist, renders
(full, delta, with a viewer's token in the URIs) cached per playlist version, and one
`trio.Event` that every held request waits on. `SpoolView` owns the views: it creates them on
first request, refreshes one when the ingest daemon's datagram names it (see
`daemons.runtime.spool_events`), polls the few with waiters as a fallback for lost datagrams,
and forgets views nobody asked for lately. The packager's `index.m3u8` is the truth; an edge
node's spool has the same files, so origin and edge serve through the same code.

`FileCache` keeps the immutable media files (init, parts, segments) of the live edge in memory,
keyed by path and checked against the file's identity (inode, mtime, size) on every request, so
each file is read from disk once and sent from memory after that.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import trio

from daemons.media.hls import MediaPlaylist
from daemons.media.hls.parse import parse_media_playlist
from daemons.runtime import logging as slog
from daemons.runtime.spool_events import SpoolEventReceiver

log = slog.get("http.spool")

POLL_INTERVAL_S = 0.5  # views with waiters re-check this often if a datagram was lost
VIEW_IDLE_S = 60.0  # a view nobody asked for in this long is dropped
MAX_RENDERS_PER_VERSION = 64  # distinct (skip, token) renders kept per playlist version

_URI_ATTR = re.compile(rb'URI="([^"]*)"')


def with_query(text: bytes, query: bytes) -> bytes:
    """Append `query` (e.g. b"token=…") to every URI in a playlist: URI lines and URI="…"."""
    if not query:
        return text
    suffix = b"?" + query
    lines = []
    for line in text.split(b"\n"):
        if line and not line.startswith(b"#"):
            line += suffix
        elif b'URI="' in line:
            line = _URI_ATTR.sub(lambda m: b'URI="' + m.group(1) + suffix + b'"', line)
        lines.append(line)
    return b"\n".join(lines)


def file_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


def etag_of(key: tuple[int, int, int]) -> bytes:
    return b'"%x-%x-%x"' % key


class RenditionView:
    """One rendition's playlist, as parsed from `index.m3u8`, and the requests waiting on it."""

    def __init__(self, path: str, directory: Path):
        self.path = path  # "<stream_id>/<generation_id>/<rendition>"
        self.directory = directory
        self.playlist: MediaPlaylist | None = None
        self.key: tuple[int, int, int] | None = None
        self.etag = b""
        self.last_modified = b""
        self.changed_at = trio.current_time()
        self.last_used = self.changed_at
        self.waiters = 0
        self._changed = trio.Event()
        self._renders: dict[tuple[bool, bytes], bytes] = {}

    def refresh(self) -> bool:
        """Re-read the playlist if the file changed; wake every waiter if it did."""
        index = self.directory / "index.m3u8"
        try:
            st = os.stat(index)
            if file_key(st) == self.key:
                return False
            with open(index, "rb") as f:
                data = f.read()
            playlist = parse_media_playlist(data.decode())
        except FileNotFoundError:
            return False
        except (OSError, UnicodeDecodeError, ValueError) as e:
            slog.log(log, logging.WARNING, "unreadable playlist kept at its last version", rendition=self.path, error=e)
            return False
        self.key = file_key(st)
        self.etag = etag_of(self.key)
        self.last_modified = formatdate(st.st_mtime, usegmt=True).encode()
        self.playlist = playlist
        self._renders = {}
        self.changed_at = trio.current_time()
        self._changed.set()
        self._changed = trio.Event()
        return True

    async def wait_change(self) -> None:
        self.waiters += 1
        try:
            await self._changed.wait()
        finally:
            self.waiters -= 1

    def render(self, *, skip: bool, query: bytes) -> bytes:
        """The playlist bytes for this version: rendered once, shared by every waiter."""
        cache_key = (skip, query)
        body = self._renders.get(cache_key)
        if body is None:
            assert self.playlist is not None
            body = with_query(self.playlist.render(skip=skip).encode(), query)
            if len(self._renders) >= MAX_RENDERS_PER_VERSION:
                self._renders.clear()
            self._renders[cache_key] = body
        return body


class SpoolView:
    """Every watched rendition's view; refreshed by spool events, with a slow fallback poll."""

    def __init__(self, spool_root: Path, state_dir: Path, *, name: str):
        self.root = Path(spool_root) / "streams"
        self.state_dir = Path(state_dir)
        self.name = name
        self.views: dict[str, RenditionView] = {}

    def rendition(self, stream_id: str, generation_id: str, rendition: str) -> RenditionView:
        path = f"{stream_id}/{generation_id}/{rendition}"
        view = self.views.get(path)
        if view is None:
            view = self.views[path] = RenditionView(path, self.root / stream_id / generation_id / rendition)
            view.refresh()
        view.last_used = trio.current_time()
        return view

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        receiver = SpoolEventReceiver(self.state_dir, self.name)
        try:
            await receiver.bind()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poll)
                task_status.started()
                while True:
                    try:
                        path, _msn, _part = await receiver.receive()
                    except (ValueError, UnicodeDecodeError):
                        continue  # not one of ours: ignored
                    view = self.views.get(path)
                    if view is not None:
                        view.refresh()
        finally:
            receiver.close()

    async def _poll(self) -> None:
        while True:
            await trio.sleep(POLL_INTERVAL_S)
            now = trio.current_time()
            for path, view in list(self.views.items()):
                if view.waiters:
                    view.refresh()
                elif now - view.last_used > VIEW_IDLE_S:
                    del self.views[path]


@dataclass(slots=True)
class CachedFile:
    key: tuple[int, int, int]
    data: bytes
    etag: bytes
    last_modified: bytes


class FileCache:
    """Immutable spool files in memory, least recently used out first, bounded in bytes."""

    def __init__(self, root: Path, max_bytes: int):
        self.root_real = os.path.realpath(root) + os.sep
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, CachedFile] = OrderedDict()

    def get(self, path: str) -> CachedFile | None:
        """The file's bytes, or None when it does not exist (or is not a regular file inside the
        spool: symlinks out of it are refused)."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        entry = self._entries.get(path)
        key = file_key(st)
        if entry is not None and entry.key == key:
            self._entries.move_to_end(path)
            return entry
        if not stat.S_ISREG(st.st_mode) or not os.path.realpath(path).startswith(self.root_real):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
        finally:
            os.close(fd)
        entry = CachedFile(file_key(st), data, etag_of(file_key(st)), formatdate(st.st_mtime, usegmt=True).encode())
        self._store(path, entry)
        return entry

    def _store(self, path: str, entry: CachedFile) -> None:
        old = self._entries.pop(path, None)
        if old is not None:
            self.size -= len(old.data)
        if len(entry.data) > self.max_bytes // 4:
            return  # too big to be worth caching: served, not kept
        self._entries[path] = entry
        self.size += len(entry.data)
        while self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.data)
