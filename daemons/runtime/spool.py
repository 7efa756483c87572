"""Writing into the spool: every file under a temporary name, then renamed (readers never see a
half-written file), in order; deletions delayed so a player that fetched a playlist a moment ago
still finds what it lists. The ingest pipeline and sender-edge-fill both write through here.

A batch (a part, a playlist, a state: a few small files into the page cache) is written on the
event loop itself while the disk answers quickly: a hand-off to a worker thread costs more than
the writes (~240 µs against ~40 µs a file on the reference machine, bench/wakeup_cost.py), and
it is paid five times a second per rendition. A batch that takes longer than `SLOW_WRITE_S`
moves this writer's batches to a worker thread for `SLOW_COOLDOWN_S` (a slow or stalling disk
then holds back only this generation's writes, never the loop and the other publishers), and
the writer tries the loop again after that. The ingest daemon's media thread writes the batches
of a leased publish with `write_now` (daemons/ingest/media_thread.py): the same, without trio.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import threading
import time
from pathlib import Path

import trio

from daemons.core.files import atomic_write
from daemons.media.packager import Delete, Write
from daemons.runtime import logging as slog

log = slog.get("spool")

SLOW_WRITE_S = 0.02  # a batch written on the loop slower than this sends the next ones to a thread
SLOW_COOLDOWN_S = 60.0


class SpoolWriter:
    """Applies packager actions to one generation's directory, in order (see the module
    docstring for where the writes run)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._limiter = trio.CapacityLimiter(1)  # one batch at a time, in order, wherever it runs
        self._deletions: list[tuple[float, str]] = []  # (due, path) heap
        self._deletions_lock = threading.Lock()  # the media thread schedules, the loop deletes
        self._threaded_until = -math.inf  # trio time until which batches go to a worker thread
        self.full = False

    @property
    def threaded(self) -> bool:
        """Whether batches go to a worker thread now (after a slow one)."""
        return self.threaded_at(trio.current_time())

    def threaded_at(self, now: float) -> bool:
        return now < self._threaded_until

    async def apply(self, rendition: str, actions: list, published: dict[str, bytes]) -> bool:
        """Write one rendition's actions' files, then the published files (playlists, state)."""
        return await self.write([(rendition, a) for a in actions], published)

    async def write(self, actions: list | tuple, published: dict[str, bytes]) -> bool:
        """Perform `(rendition, action)` pairs in order — files written, deletions scheduled —
        then write the published files (playlists, states). False if the disk refused."""
        writes = self._plan(actions, published, trio.current_time())
        try:
            if self.threaded:
                await trio.to_thread.run_sync(_write_all, writes, limiter=self._limiter)
            else:
                await self._write_on_loop(writes)
        except OSError as e:
            return self._failed(e)
        self.full = False
        return True

    def write_now(self, actions: list | tuple, published: dict[str, bytes], now: float) -> bool:
        """`write` in the calling thread, at `now` on trio's clock: for the media thread, which
        owns the writer while it holds the publish (no other batch of this writer runs)."""
        writes = self._plan(actions, published, now)
        try:
            took = _timed_write_all(writes)
        except OSError as e:
            return self._failed(e)
        self.full = False
        self._check_speed(took, len(writes), now)
        _unlink_all(self._due(now))  # here too: no hand-off to a worker thread each second
        return True

    def _plan(self, actions: list | tuple, published: dict[str, bytes], now: float) -> list[tuple[Path, bytes]]:
        """Schedule the deletions; the files to write, in order."""
        with self._deletions_lock:
            for rendition, a in actions:
                if isinstance(a, Delete):
                    heapq.heappush(self._deletions, (now + a.due_s, str(self.directory / rendition / a.name)))
        writes = [(self.directory / rendition / a.name, a.data) for rendition, a in actions if isinstance(a, Write)]
        writes += [(self.directory / rel, data) for rel, data in published.items()]
        return writes

    def _failed(self, e: OSError) -> bool:
        if not self.full:
            slog.log(log, logging.ERROR, "SPOOL WRITE FAILED: playlists hold back until it recovers", directory=self.directory, error=e)
        self.full = True
        return False

    def _check_speed(self, took: float, files: int, now: float) -> None:
        if took > SLOW_WRITE_S:
            self._threaded_until = now + SLOW_COOLDOWN_S
            slog.log(log, logging.WARNING, "slow spool writes: writing from a worker thread for a while",
                     directory=self.directory, batch_ms=round(took * 1000, 1), files=files, for_s=SLOW_COOLDOWN_S)

    async def _write_on_loop(self, writes: list[tuple[Path, bytes]]) -> None:
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:  # a batch still in a worker thread goes first
            await self._limiter.acquire()
        try:
            took = _timed_write_all(writes)
        finally:
            self._limiter.release()
        self._check_speed(took, len(writes), trio.current_time())

    def _due(self, now: float) -> list[str]:
        """The paths whose deletion is due, taken off the schedule."""
        due = []
        with self._deletions_lock:
            while self._deletions and self._deletions[0][0] <= now:
                due.append(heapq.heappop(self._deletions)[1])
        return due

    async def run_deletions(self) -> None:
        while True:
            await trio.sleep(1.0)
            due = self._due(trio.current_time())
            if due:
                await trio.to_thread.run_sync(_unlink_all, due, limiter=self._limiter)


def _write_all(writes: list[tuple[Path, bytes]]) -> None:
    for path, data in writes:
        atomic_write(path, data)


def _timed_write_all(writes: list[tuple[Path, bytes]]) -> float:
    """`_write_all`; how long it took (s)."""
    started = time.perf_counter()
    _write_all(writes)
    return time.perf_counter() - started


def _unlink_all(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
