"""Writing into the spool: every file under a temporary name, then renamed (readers never see a
half-written file), off the event loop, in order; deletions delayed so a player that fetched a
playlist a moment ago still finds what it lists. The ingest pipeline and sender-edge-fill both
write through here.
"""

from __future__ import annotations

import heapq
import logging
import os
import secrets
from pathlib import Path

import trio

from daemons.media.packager import Delete, Write
from daemons.runtime import logging as slog

log = slog.get("spool")


def atomic_write(path: Path | str, data: bytes, *, make_dirs: bool = False) -> None:
    """Write under a temporary name of this writer's own, then rename into place. The name is
    unique, so two writers of the same file (sender-edge-fill and a pull-through in sender-http)
    never write into one temporary file; a failed write leaves nothing behind."""
    directory, name = os.path.split(os.fspath(path))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class SpoolWriter:
    """Applies packager actions to one generation's directory, in order, off the event loop."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._limiter = trio.CapacityLimiter(1)
        self._deletions: list[tuple[float, str]] = []  # (due, path) heap
        self.full = False

    async def apply(self, rendition: str, actions: list, published: dict[str, bytes]) -> bool:
        """Write one rendition's actions' files, then the published files (playlists, state)."""
        return await self.write([(rendition, a) for a in actions], published)

    async def write(self, actions: list | tuple, published: dict[str, bytes]) -> bool:
        """Perform `(rendition, action)` pairs in order — files written, deletions scheduled —
        then write the published files (playlists, states). False if the disk refused."""
        now = trio.current_time()
        for rendition, a in actions:
            if isinstance(a, Delete):
                heapq.heappush(self._deletions, (now + a.due_s, str(self.directory / rendition / a.name)))
        writes = [(self.directory / rendition / a.name, a.data) for rendition, a in actions if isinstance(a, Write)]

        def work() -> None:
            for path, data in writes:
                atomic_write(path, data)
            for rel, data in published.items():
                atomic_write(self.directory / rel, data)

        try:
            await trio.to_thread.run_sync(work, limiter=self._limiter)
        except OSError as e:
            if not self.full:
                slog.log(log, logging.ERROR, "SPOOL WRITE FAILED: playlists hold back until it recovers", directory=self.directory, error=e)
            self.full = True
            return False
        self.full = False
        return True

    async def run_deletions(self) -> None:
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            due = []
            while self._deletions and self._deletions[0][0] <= now:
                due.append(heapq.heappop(self._deletions)[1])
            if due:
                await trio.to_thread.run_sync(_unlink_all, due, limiter=self._limiter)


def _unlink_all(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
