"""Small blocking file work (a daemon's stats file) on the event loop while the disk is quick.

A hand-off to a worker thread and back costs a daemon more than writing a small file into the
page cache (~240 µs against ~40–120 µs on the reference machine, bench/wakeup_cost.py), and a
daemon writes its stats file every second whether or not anything happens: on an idle daemon
that hand-off was a good part of its CPU. So the call runs on the loop itself; one that takes
longer than `SLOW_S` (a slow or stalling disk) sends the next calls to a worker thread for
`COOLDOWN_S`, so a sick disk holds back only this work, never the loop. The spool writer does the
same for its batches (daemons/runtime/spool.py).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, TypeVar

import trio

T = TypeVar("T")

SLOW_S = 0.02
COOLDOWN_S = 60.0


class SmallIO:
    def __init__(self, *, slow_s: float = SLOW_S, cooldown_s: float = COOLDOWN_S):
        self.slow_s = slow_s
        self.cooldown_s = cooldown_s
        self._threaded_until = -math.inf  # trio time until which calls go to a worker thread
        self._limiter = trio.CapacityLimiter(1)  # one call at a time, in order, wherever it runs

    @property
    def threaded(self) -> bool:
        """Whether calls go to a worker thread now (after a slow one)."""
        return trio.current_time() < self._threaded_until

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.threaded:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        async with self._limiter:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                if time.perf_counter() - started > self.slow_s:
                    self._threaded_until = trio.current_time() + self.cooldown_s
