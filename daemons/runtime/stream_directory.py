"""Every stream's id, slug and visibility, in memory: re-read from the store once a second, so a
hot path (sender-http's HLS route, sender-front's pusher) checks visibility with a dict lookup
instead of a query."""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from daemons.core.domain import streams
from daemons.runtime.store import StoreWorker

DIRECTORY_REFRESH_S = 1.0
MISS_REFRESH_S = 0.2


@dataclass(frozen=True, slots=True)
class StreamEntry:
    id: str
    slug: str
    title: str
    visibility: str


class StreamDirectory:
    def __init__(self, store: StoreWorker):
        self.store = store
        self.by_id: dict[str, StreamEntry] = {}
        self.by_slug: dict[str, StreamEntry] = {}
        self.loaded = trio.Event()
        self.refreshed_at = -math.inf

    async def refresh(self) -> None:
        rows = await self.store.run(streams.directory)
        entries = [StreamEntry(r["id"], r["slug"], r["title"], r["visibility"]) for r in rows]
        self.by_id = {e.id: e for e in entries}
        self.by_slug = {e.slug: e for e in entries}
        self.refreshed_at = trio.current_time()
        self.loaded.set()

    async def find(self, slug: str) -> StreamEntry | None:
        """The stream by slug; a miss re-reads the store (a stream created a moment ago), but at
        most every MISS_REFRESH_S, so a flood of unknown slugs costs no query each."""
        entry = self.by_slug.get(slug)
        if entry is None and trio.current_time() - self.refreshed_at >= MISS_REFRESH_S:
            await self.refresh()
            entry = self.by_slug.get(slug)
        return entry

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.refresh()
        task_status.started()
        while True:
            await trio.sleep(DIRECTORY_REFRESH_S)
            await self.refresh()
