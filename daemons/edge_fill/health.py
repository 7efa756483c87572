"""How an edge judges each of its sources, and which one it follows, sans-IO.

A `SourceHealth` per source endpoint collects what the edge sees: listings (with the source's
load and each rendition's live position and playlist age) and the outcome of every request. Its
status, with the `health.*` thresholds (the endpoint's own overrides first):

* **stale** — a request failed and no request succeeded since, or the last failure is younger
  than the cool-down; no listing for longer than `max_playlist_age_s`; or (for one generation)
  its playlists are older than `max_playlist_age_s`, or made no progress within the wait the
  follower allows (a blocking reload that timed out) and no listing since shows them moving;
* **overloaded** — its viewers or egress are over `max_viewers` / `max_egress_bps` (0 = no limit);
* **degraded** — more than `max_error_rate` of its requests in the last minute failed, or it trails
  the best source of a generation by more than `max_segment_lag` segments;
* **healthy** otherwise.

`choose` ranks candidates healthy < degraded < overloaded < stale, then by configured order: an
edge leaves a failing source at the first failed request and returns to a preferred one as soon
as it is healthy again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from daemons.core.domain.generations import is_active

RANK = {"healthy": 0, "degraded": 1, "overloaded": 2, "stale": 3}
ERROR_WINDOW_S = 60.0
MIN_SAMPLES = 5
FAIL_COOLDOWN_S = 2.0


@dataclass
class SourceHealth:
    endpoint_id: str
    order: int
    thresholds: dict  # health.* without the prefix, overrides applied
    last_success: float = -math.inf
    last_failure: float = -math.inf
    last_listing: float = -math.inf
    load: dict | None = None
    positions: dict[str, dict] = field(default_factory=dict)  # "<gid>/<rendition>" → {"last": [msn, part], "playlist_age_s"}
    generations: set[str] = field(default_factory=set)  # active generations it listed last
    stalled: dict[str, float] = field(default_factory=dict)  # gid → when a follower found no progress there
    _outcomes: deque = field(default_factory=deque)  # (time, ok)

    # --- what happened --------------------------------------------------------------------

    def succeeded(self, now: float) -> None:
        self.last_success = now
        self._record(now, True)

    def failed(self, now: float) -> None:
        self.last_failure = now
        self._record(now, False)

    def no_progress(self, generation_id: str, now: float) -> None:
        """A blocking reload for this generation timed out: its playlists do not move here."""
        self.stalled[generation_id] = now

    def progressed(self, generation_id: str) -> None:
        self.stalled.pop(generation_id, None)

    def _unstall(self, now: float) -> None:
        """A stalled generation is followed here again once a listing shows its playlists moved
        after the stall was seen (every rendition's playlist is younger than the stall)."""
        for gid, at in list(self.stalled.items()):
            ages = [r.get("playlist_age_s") for k, r in self.positions.items() if k.startswith(gid + "/")]
            if ages and all(a is not None and a < now - at for a in ages):
                del self.stalled[gid]

    def listed(self, now: float, doc: dict) -> None:
        self.succeeded(now)
        self.last_listing = now
        self.load = doc.get("load")
        self.positions = {}
        self.generations = set()
        for s in doc.get("streams", ()):
            g = s.get("generation")
            if not g or not is_active(g.get("status")):
                continue
            self.generations.add(g["id"])
            for r in g.get("renditions", ()):
                if "last" in r:
                    self.positions[f"{g['id']}/{r['name']}"] = r
        self._unstall(now)

    def _record(self, now: float, ok: bool) -> None:
        self._outcomes.append((now, ok))
        while self._outcomes and self._outcomes[0][0] < now - ERROR_WINDOW_S:
            self._outcomes.popleft()

    # --- the verdict ------------------------------------------------------------------------

    def error_rate(self, now: float | None = None) -> float:
        """The share of failed requests in the last minute (before `now`, else the last record)."""
        outcomes = [ok for t, ok in self._outcomes if now is None or t >= now - ERROR_WINDOW_S]
        if len(outcomes) < MIN_SAMPLES:
            return 0.0
        return outcomes.count(False) / len(outcomes)

    def status(self, now: float, generation_id: str | None = None, *, best_msn: dict[str, int] | None = None) -> str:
        t = self.thresholds
        failing = self.last_failure > -math.inf and (
            self.last_failure >= self.last_success or now - self.last_failure < FAIL_COOLDOWN_S)
        if failing or now - self.last_listing > t["max_playlist_age_s"]:
            return "stale"
        if generation_id is not None:
            if generation_id in self.stalled:
                return "stale"
            ages = [r.get("playlist_age_s") for k, r in self.positions.items() if k.startswith(generation_id + "/")]
            if any(a is not None and a > t["max_playlist_age_s"] for a in ages):
                return "stale"
        load = self.load or {}
        if (t["max_viewers"] and (load.get("viewers") or 0) > t["max_viewers"]) or (
            t["max_egress_bps"] and (load.get("egress_bps") or 0) > t["max_egress_bps"]
        ):
            return "overloaded"
        if self.error_rate(now) > t["max_error_rate"]:
            return "degraded"
        if generation_id is not None and best_msn and self.segment_lag(generation_id, best_msn) > t["max_segment_lag"]:
            return "degraded"
        return "healthy"

    def segment_lag(self, generation_id: str, best_msn: dict[str, int]) -> int:
        lag = 0
        for rendition_key, best in best_msn.items():
            if rendition_key.startswith(generation_id + "/"):
                mine = self.positions.get(rendition_key, {}).get("last")
                lag = max(lag, best - mine[0] if mine else best)
        return lag


def best_positions(sources: list[SourceHealth]) -> dict[str, int]:
    """The newest msn any source lists, per "<gid>/<rendition>"."""
    best: dict[str, int] = {}
    for s in sources:
        for k, r in s.positions.items():
            last = r.get("last")
            if last:
                best[k] = max(best.get(k, -1), last[0])
    return best


def choose(sources: list[SourceHealth], now: float, generation_id: str) -> SourceHealth | None:
    """The source to follow a generation from: those listing it first, then by status and order."""
    if not sources:
        return None
    best = best_positions(sources)

    def key(s: SourceHealth):
        return (generation_id not in s.generations, RANK[s.status(now, generation_id, best_msn=best)], s.order)

    return min(sources, key=key)
