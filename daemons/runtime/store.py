"""The store off the event loop: every SQLite call runs in one worker thread, one at a time.

A daemon holds one `StoreWorker`; `await worker.run(domain.keys.verify, secret, key)` runs the
call with the daemon's store as its first argument in a thread, so the trio loop only waits.
One connection and one call at a time keeps SQLite's threading rules simple. `StoreChanges`
tells a polling loop, without that trip, whether the store may have changed at all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import trio

from daemons.core.store import Store

T = TypeVar("T")


class StoreWorker:
    def __init__(self, store: Store):
        self.store = store
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(lambda: fn(self.store, *args, **kwargs), limiter=self._limiter)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.store.close, limiter=self._limiter)


class StoreChanges:
    """Whether anyone may have written the store since the last look, from the database's and
    its WAL's size, modification time and inode: a `stat` on the event loop instead of a trip
    to the store's thread. A daemon that polls the store for admin changes (the ingest daemon's
    control loop, twice a second) asks this first and skips the queries while nothing changed.

    A write in the same timestamp tick as a look could leave both unchanged; so files modified
    less than `RECENT_S` before a look count as changed at the next look too (a tick is at most
    a few milliseconds here, up to 2 s on coarse filesystems)."""

    RECENT_S = 2.0

    def __init__(self, path: Path):
        path = Path(path)
        self.paths = (path, path.with_name(path.name + "-wal"))
        self._seen: tuple | None = None

    def look(self) -> bool:
        """True at the first look, and whenever the files changed (or may have) since the last."""
        seen = tuple(_signature(p) for p in self.paths)
        changed = seen != self._seen
        now = time.time()
        recent = any(s is not None and now - s[1] / 1e9 < self.RECENT_S for s in seen)
        self._seen = None if recent else seen
        return changed


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)
