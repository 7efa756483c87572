"""When the ingest daemon's control loop asks the store, and what it asks.

The control loop (`IngestDaemon._control_loop`, server.py) applies what changes in the store
without this daemon's doing — a generation stopped by an admin, a stream deleted, a key revoked,
restream targets — and ends generations whose publisher did not come back within the reconnect
grace. It steps twice a second so that an admin's change takes effect at once; but asking the
store each time (a trip to the store's thread and four queries, with cold caches on an idle
machine) was most of an idle daemon's CPU. `ControlGate` decides when a step must ask: the
store's files changed (`StoreChanges`, a stat on the loop), the situation changed (what is
asked about — the publishers, the restreaming streams, the pipelines — and what a step does with
the answers, such as which pipelines have lost their publisher), the next reconnect deadline
came, or `REFRESH_S` went by since the last answer. Sans-IO: times are given.
"""

from __future__ import annotations

import math

from daemons.core import domain

INTERVAL_S = 0.5  # a step: how late an admin's change or a reconnect deadline may take effect
REFRESH_S = 30.0  # the store is asked at least this often, changed or not


class ControlGate:
    def __init__(self, refresh_s: float = REFRESH_S):
        self.refresh_s = refresh_s
        self.asked: tuple | None = None  # the situation of the last answer
        self.deadline = math.inf  # the next reconnect deadline (on the caller's clock)
        self.refresh_at = -math.inf

    def due(self, now: float, situation: tuple, store_changed: bool) -> bool:
        """Whether this step must ask the store."""
        return store_changed or situation != self.asked or now >= self.deadline or now >= self.refresh_at

    def answered(self, now: float, situation: tuple, deadline_in_s: float | None) -> None:
        """The store answered in `situation` at `now`; the next reconnect deadline is that far off."""
        self.asked = situation
        self.refresh_at = now + self.refresh_s
        self.deadline = math.inf if deadline_in_s is None else now + max(0.0, deadline_in_s)


def control_reads(store, default_grace, publishers: list[tuple[str, str]], restreaming: list[str],
                  pipelines: list[str]) -> tuple[list[dict], list, dict, dict, object]:
    """The control loop's store work in one call (one trip to the store's thread): generations
    whose reconnect grace ran out (ended here), why each publisher must go (if it must), the
    restream targets of publishing streams, the status of each generation with a pipeline, and
    the next reconnect deadline (a UTC datetime, or None)."""
    return (domain.generations.end_abandoned(store, default_grace),
            domain.publish.disconnect_reasons(store, publishers) if publishers else [],
            domain.restream.active_targets(store, restreaming) if restreaming else {},
            domain.generations.statuses(store, pipelines) if pipelines else {},
            domain.generations.next_abandon_deadline(store, default_grace))
