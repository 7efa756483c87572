"""What one HTTP worker keeps in memory between requests: streams, viewers, counters.

* `StreamDirectory` (daemons/runtime/stream_directory.py, shared with sender-front) — every
  stream's id, slug and visibility, re-read from the store once a second.
* `ViewerTracker` — active viewers per stream, generation and rendition: each media playlist
  request marks its session seen; a session counts while seen within the window.
* `EndpointSnapshots` — every endpoint's latest own snapshot and its 1-minute rollups, re-read
  from the store at most once a second, when `/metrics` asks.
* `Counters` — request, byte and event counters exported at `/metrics` and in the worker's
  stats file (`<state_dir>/stats/http-<worker>.json`, which the snapshot daemon reads). Behind a
  front tier, egress (`bytes_sent`) is what the front sent viewers, from its counts
  (front_stats.py); what sender-http sent the front is `upstream_bytes`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import trio

from daemons.core.domain import endpoints, snapshots
from daemons.core.domain.common import iso
from daemons.runtime.store import StoreWorker
from daemons.runtime.stream_directory import DIRECTORY_REFRESH_S

ROLLUP_WINDOW_S = 60.0


class EndpointSnapshots:
    """Latest snapshot (generation "") of each endpoint and min/avg/max over the last minute of its
    history, for `/metrics`. Read on demand, at most once per `max_age_s`: scrapes cost one query."""

    def __init__(self, store: StoreWorker, max_age_s: float = DIRECTORY_REFRESH_S, wall_clock=time.time):
        self.store = store
        self.max_age_s = max_age_s
        self.wall_clock = wall_clock
        self.latest: list[dict] = []
        self.rollups: list[dict] = []
        self.read_at: float | None = None  # trio time

    async def refresh(self, *, force: bool = False) -> None:
        now = trio.current_time()
        if not force and self.read_at is not None and now - self.read_at < self.max_age_s:
            return
        self.latest, self.rollups = await self.store.run(_endpoint_snapshots, self.wall_clock() - ROLLUP_WINDOW_S)
        self.read_at = now


def _endpoint_snapshots(store, since: float) -> tuple[list[dict], list[dict]]:
    live = endpoints.live_ids(store)
    latest = [r for r in snapshots.list_(store) if r["generation_id"] == "" and r["endpoint_id"] in live]
    return latest, [r for r in snapshots.rollups(store, iso(since)) if r["endpoint_id"] in live]


def session_key(session_id: str | None, client: str, user_agent: str) -> str:
    """The player's own session id when it sends one, else a hash of address + user agent."""
    if session_id:
        return "s:" + session_id[:64]
    return "h:" + hashlib.blake2b(f"{client}\0{user_agent}".encode(), digest_size=9).hexdigest()


class ViewerTracker:
    """Sessions seen per (stream, generation, rendition) within a sliding window."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._seen: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)

    def seen(self, stream_id: str, generation_id: str, rendition: str, session: str) -> None:
        self._seen[(stream_id, generation_id, rendition)][session] = trio.current_time()

    def prune(self) -> None:
        horizon = trio.current_time() - self.window_s
        for key in list(self._seen):
            sessions = self._seen[key]
            for s in [s for s, t in sessions.items() if t < horizon]:
                del sessions[s]
            if not sessions:
                del self._seen[key]

    def snapshot(self) -> list[dict]:
        """Active viewers per rendition, and each session once per stream (a player switching
        renditions is one viewer)."""
        self.prune()
        out = []
        for (sid, gid, rendition), sessions in sorted(self._seen.items()):
            out.append({"stream_id": sid, "generation_id": gid, "rendition": rendition, "viewers": len(sessions),
                        "sessions": sorted(sessions)})
        return out


@dataclass
class Counters:
    requests: Counter = field(default_factory=Counter)  # (kind, status code) → count
    bytes_sent: Counter = field(default_factory=Counter)  # kind → bytes
    player_events: Counter = field(default_factory=Counter)  # event kind → count
    blocked_now: int = 0  # blocking playlist / preload-hint requests being held
    pull_fetches: Counter = field(default_factory=Counter)  # pull-through: upstream requests, by kind
    pull_bytes: int = 0  # pull-through: body bytes received from upstreams
    pull_coalesced: int = 0  # pull-through: requests that waited on a fetch already in flight
    pull_errors: Counter = field(default_factory=Counter)  # pull-through: failed upstream requests, by reason
    behind_front: bool = False  # a front tier answers viewers: its log says what they were sent
    upstream_bytes: Counter = field(default_factory=Counter)  # kind → bytes sender-http sent the front
    front_requests: Counter = field(default_factory=Counter)  # (kind, status, handling) → count, from the front's log
    front_bad_lines: int = 0  # lines of the front's counts that were not ours

    def count(self, kind: str, status: int, nbytes: int) -> None:
        self.requests[(kind, status)] += 1
        if nbytes:
            (self.upstream_bytes if self.behind_front else self.bytes_sent)[kind] += nbytes

    def count_front(self, kind: str, status: int, handling: str, nbytes: int, requests: int = 1) -> None:
        """Requests the front answered (its counts): egress, and the requests by handling."""
        self.front_requests[(kind, status, handling)] += requests
        if nbytes:
            self.bytes_sent[kind] += nbytes

    def to_json(self) -> dict:
        return {
            "requests": [[k, c, n] for (k, c), n in sorted(self.requests.items())],
            "bytes_sent": dict(self.bytes_sent),
            "player_events": dict(self.player_events),
            "blocked_now": self.blocked_now,
            "pull_through": {"fetches": dict(self.pull_fetches), "bytes": self.pull_bytes,
                             "coalesced": self.pull_coalesced, "errors": dict(self.pull_errors)},
            **({"upstream_bytes": dict(self.upstream_bytes),
                "front": {"requests": [[k, c, h, n] for (k, c, h), n in sorted(self.front_requests.items())],
                          "bad_lines": self.front_bad_lines}} if self.behind_front else {}),
        }
