"""The store off the event loop: every SQLite call runs in one worker thread, one at a time.

A daemon holds one `StoreWorker`; `await worker.run(domain.keys.verify, secret, key)` runs the
call with the daemon's store as its first argument in a thread, so the trio loop only waits.
One connection and one call at a time keeps SQLite's threading rules simple.
"""

from __future__ import annotations

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
