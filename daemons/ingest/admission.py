"""Who may hold an RTMP connection, and for how long before it publishes (sans-IO).

Two pools, so that sockets which never publish cannot take a publisher's place:

* **pending**: connections that have not published yet (TLS and RTMP handshakes, connect, the
  publish request). At most `max_pending` in all and `max_pending_per_address` from one source
  address; a connection past the per-address cap is refused at accept. Each must have its publish
  accepted within `deadline_s` of accept (the caller enforces the deadline this module computes).
  When the pool is full a new connection evicts the oldest pending connection of the address
  holding the most: a flood from a few addresses evicts its own sockets, and a publisher that
  connects from an address of its own is pushed out only by a flood from `max_pending` addresses.
* **publishers**: connections whose publish request was taken, at most `max_publishers`. Only a
  publish request moves a connection here; past the limit the request is refused (the caller
  answers it with an RTMP error) and the connection stays pending.

Connections are any hashable the caller chooses (the ingest daemon uses its `ConnectionHandler`s). The
caller closes what `connect` evicts and calls `leave` when a connection ends.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Admitted:
    deadline: float  # the publish must be accepted by then
    evicted: tuple[Hashable, ...] = ()  # pending connections the caller must close to make room
    first_eviction: bool = False  # the first since the pool last had room: worth a log line


@dataclass(frozen=True)
class Refused:
    reason: str
    first: bool  # the address's first refusal since it last had room: worth a log line


@dataclass
class AdmissionStats:
    refused: int = 0  # connections closed at accept (per-address cap)
    evicted: int = 0  # pending connections closed to make room for newer ones
    publishes_refused: int = 0  # publish requests past max_publishers


@dataclass
class _Pending:
    address: str
    seq: int  # order of arrival: lower is older


@dataclass
class Admission:
    max_pending: int
    max_pending_per_address: int
    max_publishers: int
    deadline_s: float
    stats: AdmissionStats = field(default_factory=AdmissionStats)

    def __post_init__(self) -> None:
        self._pending: dict[Hashable, _Pending] = {}
        self._by_address: dict[str, dict[Hashable, None]] = {}  # address → its pending, oldest first
        self._publishers: dict[Hashable, str] = {}  # connection → address
        self._refusal_logged: set[str] = set()  # addresses at their cap whose refusal was logged
        self._evicting = False  # the last connect evicted (one log line per episode)
        self._seq = itertools.count()

    # --- what the caller reads ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def publishers(self) -> int:
        return len(self._publishers)

    def pending_from(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def is_pending(self, conn: Hashable) -> bool:
        return conn in self._pending

    def is_publisher(self, conn: Hashable) -> bool:
        return conn in self._publishers

    # --- events ------------------------------------------------------------------------------

    def connect(self, conn: Hashable, address: str, now: float) -> Admitted | Refused:
        """A new connection from `address` was accepted at `now`."""
        if conn in self._pending or conn in self._publishers:
            raise ValueError(f"connection {conn!r} is already admitted")
        if self.pending_from(address) >= self.max_pending_per_address:
            self.stats.refused += 1
            first = address not in self._refusal_logged
            self._refusal_logged.add(address)
            return Refused("rtmp.max_pending_per_address reached", first)
        evicted = []
        while len(self._pending) >= self.max_pending:
            victim = self._victim()
            self._remove_pending(victim)
            evicted.append(victim)
        first_eviction = bool(evicted) and not self._evicting
        self._evicting = bool(evicted)  # a connect without eviction ends the episode
        self.stats.evicted += len(evicted)
        self._add_pending(conn, address)
        return Admitted(now + self.deadline_s, tuple(evicted), first_eviction)

    def publish(self, conn: Hashable) -> bool:
        """A publish request: take a publisher slot (True), or none is free (False, still pending)."""
        if conn in self._publishers:
            return True
        pending = self._pending.get(conn)
        if pending is None:
            raise KeyError(f"connection {conn!r} is not admitted")
        if len(self._publishers) >= self.max_publishers:
            self.stats.publishes_refused += 1
            return False
        self._remove_pending(conn)
        self._publishers[conn] = pending.address
        return True

    def unpublish(self, conn: Hashable, now: float) -> float:
        """A publisher stopped publishing but stays connected: it is pending again (it may
        publish again) with a new deadline, which is returned. It is not counted against the
        caps at accept: at most `max_publishers` connections can come back this way."""
        address = self._publishers.pop(conn, None)
        if address is not None:
            self._add_pending(conn, address)
        return now + self.deadline_s

    def leave(self, conn: Hashable) -> None:
        """The connection is closed (whatever its state; a second call does nothing)."""
        self._publishers.pop(conn, None)
        if conn in self._pending:
            self._remove_pending(conn)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _add_pending(self, conn: Hashable, address: str) -> None:
        self._pending[conn] = _Pending(address, next(self._seq))
        self._by_address.setdefault(address, {})[conn] = None

    def _remove_pending(self, conn: Hashable) -> None:
        address = self._pending.pop(conn).address
        same = self._by_address[address]
        del same[conn]
        if not same:
            del self._by_address[address]
        if len(same) < self.max_pending_per_address:
            self._refusal_logged.discard(address)

    def _victim(self) -> Hashable:
        """The oldest pending connection of the address holding the most (ties: the oldest)."""
        best_key, victim = None, None
        for conns in self._by_address.values():
            oldest = next(iter(conns))
            key = (len(conns), -self._pending[oldest].seq)
            if best_key is None or key > best_key:
                best_key, victim = key, oldest
        return victim
