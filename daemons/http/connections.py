"""Which HTTP connections a worker holds, which one gives way, and when a request head is late
(sans-IO; `asgi_server.py` is the trio side).

* **Per address**: at most `max_per_address` connections from one client address, counted at
  accept; more are refused. Addresses for which `exempt` is true (trusted proxies, which carry
  many clients) are not counted.
* **In all**: at most `max_connections`. At the limit a new connection takes the place of the one
  that has waited longest for a request head — one that never finished a head (slowloris) or an
  idle keep-alive one — so unfinished heads cannot keep a health check or a player out. When every
  connection has a request in progress, nothing gives way and the caller stops accepting (the
  kernel's backlog holds newcomers).
* **Head deadline**: a request head must be whole within `head_timeout_s`: from accept for the
  first request of a connection, from its first byte for each next one on keep-alive (the idle
  wait before that byte is the keep-alive timeout's business).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Accepted:
    deadline: float  # the first request head must be whole by then
    evicted: Hashable | None = None  # the connection the caller must close to make room
    first_eviction: bool = False  # the first since the table last had room: worth a log line


@dataclass(frozen=True)
class Refused:
    first: bool  # the address's first refusal since it last had room: worth a log line


class _Full:
    def __repr__(self) -> str:
        return "FULL"


FULL = _Full()
"""`accept`'s answer when every connection has a request in progress: wait for `close` or
`request_done`, then ask again."""


@dataclass
class TableStats:
    refused: int = 0  # connections closed at accept (per-address cap)
    evicted: int = 0  # connections closed to make room (max_connections)
    head_timeouts: int = 0  # connections closed for a late request head


@dataclass
class _Conn:
    address: str
    counted: bool  # against its address's cap
    deadline: float = math.inf  # a request head is due by then


@dataclass
class ConnectionTable:
    max_connections: int
    max_per_address: int
    head_timeout_s: float
    exempt: Callable[[str], bool] = lambda address: False
    stats: TableStats = field(default_factory=TableStats)

    def __post_init__(self) -> None:
        self._conns: dict[Hashable, _Conn] = {}
        self._per_address: dict[str, int] = {}
        self._waiting: dict[Hashable, None] = {}  # waiting for a request head, longest first
        self._refusal_logged: set[str] = set()
        self._evicting = False

    # --- what the caller reads -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._conns)

    def __contains__(self, conn: Hashable) -> bool:
        return conn in self._conns

    def from_address(self, address: str) -> int:
        return self._per_address.get(address, 0)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def deadline(self, conn: Hashable) -> float:
        c = self._conns.get(conn)
        return c.deadline if c is not None else -math.inf

    # --- events ------------------------------------------------------------------------------

    def accept(self, conn: Hashable, address: str, now: float) -> Accepted | Refused | _Full:
        """A connection from `address` was accepted at `now`."""
        if conn in self._conns:
            raise ValueError(f"connection {conn!r} is already in the table")
        counted = not self.exempt(address)
        if counted and self._per_address.get(address, 0) >= self.max_per_address:
            self.stats.refused += 1
            first = address not in self._refusal_logged
            self._refusal_logged.add(address)
            return Refused(first)
        evicted = None
        if len(self._conns) >= self.max_connections:
            if not self._waiting:
                return FULL
            evicted = next(iter(self._waiting))
            self.close(evicted)
            self.stats.evicted += 1
        first_eviction = evicted is not None and not self._evicting
        self._evicting = evicted is not None  # an accept without eviction ends the episode
        deadline = now + self.head_timeout_s
        self._conns[conn] = _Conn(address, counted, deadline)
        self._waiting[conn] = None
        if counted:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return Accepted(deadline, evicted, first_eviction)

    def received(self, conn: Hashable, now: float) -> float:
        """Bytes arrived: if they begin a request head on keep-alive, its deadline starts now.
        Returns the connection's deadline."""
        c = self._conns.get(conn)
        if c is None:
            return -math.inf
        if conn in self._waiting and c.deadline == math.inf:
            c.deadline = now + self.head_timeout_s
        return c.deadline

    def request_started(self, conn: Hashable) -> None:
        """A whole request head arrived: no deadline, and it does not give way while it runs."""
        c = self._conns.get(conn)
        if c is not None:
            c.deadline = math.inf
            self._waiting.pop(conn, None)

    def request_done(self, conn: Hashable) -> None:
        """Its response is sent and the connection waits for the next request (keep-alive)."""
        c = self._conns.get(conn)
        if c is not None:
            c.deadline = math.inf  # until a first byte arrives
            self._waiting.pop(conn, None)
            self._waiting[conn] = None  # waiting from now on: the youngest

    def timed_out(self, conn: Hashable) -> None:
        """The caller closed the connection for a late head."""
        if conn in self._conns:
            self.stats.head_timeouts += 1
            self.close(conn)

    def close(self, conn: Hashable) -> None:
        """The connection is gone (a second call does nothing)."""
        c = self._conns.pop(conn, None)
        if c is None:
            return
        self._waiting.pop(conn, None)
        if c.counted:
            left = self._per_address[c.address] - 1
            if left:
                self._per_address[c.address] = left
            else:
                del self._per_address[c.address]
            if left < self.max_per_address:
                self._refusal_logged.discard(c.address)
