"""Rate limiting per source address over a sliding window (a minute unless told otherwise).

Ingest counts refused publishes with it (over `rtmp.auth_lockout_s`); the HTTP daemon counts
player telemetry and refused management logins. Time comes from `trio.current_time()`, so tests
drive it with MockClock.
"""

from __future__ import annotations

from collections import deque

import trio

WINDOW_S = 60.0


class WindowLimiter:
    def __init__(self, max_events: int, max_sources: int = 100_000, *, window_s: float = WINDOW_S):
        self.max_events = max_events  # per source within window_s
        self.window_s = window_s
        self.max_sources = max_sources  # bound on memory under a flood of sources
        self._events: dict[str, deque[float]] = {}

    def _window(self, source: str) -> deque[float]:
        now = trio.current_time()
        q = self._events.get(source)
        if q is None:
            if len(self._events) >= self.max_sources:
                self._prune(now)
            q = self._events[source] = deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _prune(self, now: float) -> None:
        for src in [s for s, q in self._events.items() if not q or q[-1] <= now - self.window_s]:
            del self._events[src]
        while len(self._events) >= self.max_sources:  # still full: forget the oldest entries
            del self._events[next(iter(self._events))]

    def blocked(self, source: str) -> bool:
        return len(self._window(source)) >= self.max_events

    def record(self, source: str) -> None:
        self._window(source).append(trio.current_time())
