"""Which HTTP connections a worker holds, which one gives way, and when a request head is late
(sans-IO; `asgi_server.py` is the trio side).

* **Per address**: at most `max_per_address` connections from one client address, counted at
  accept; more are refused. Addresses for which `exempt` is true (trusted proxies, which carry
  many clients) are not counted.
* **In all**: at most `max_connections`. At the limit a newcomer takes the place of a connection
  waiting for a request head (one that never finished a head — slowloris — or an idle keep-alive
  one): the longest-waiting one of the address holding the most connections, if the newcomer's
  address holds none yet or at least two fewer than that one; otherwise the newcomer is refused.
  So unfinished heads from a few addresses cannot keep a health check or a player out, and an
  attacker reopening what was closed cannot make its own connections evict each other in a loop
  (each of its reopened connections is refused at accept, which costs next to nothing). When every
  connection has a request in progress nothing gives way and the caller stops accepting (the
  kernel's backlog holds newcomers).
* **Head deadline**: a request head must be whole within `head_timeout_s`: from accept for the
  first request of a connection, from its first byte for each next one on keep-alive (the idle
  wait before that byte is the keep-alive timeout's business).
"""

from __future__ import annotations

import itertools
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
    full: bool = False  # at max_connections (else: at max_per_address)


class _Full:
    def __repr__(self) -> str:
        return "FULL"


FULL = _Full()
"""`accept`'s answer when every connection has a request in progress: wait for `close` or
`request_done`, then ask again."""


@dataclass
class TableStats:
    refused: int = 0  # connections closed at accept (per-address cap)
    refused_full: int = 0  # connections closed at accept (at max_connections, nothing to give way to them)
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
        self._per_address: dict[str, int] = {}  # counted connections (not the exempt addresses')
        self._held: dict[str, int] = {}  # every address's connections, for who gives way
        self._waiting: dict[str, dict[Hashable, int]] = {}  # address → its connections waiting for a head, longest first (→ order)
        self._waiting_total = 0
        self._order = itertools.count()
        self._refusal_logged: set[str] = set()
        self._evicting = False
        self._full_refusals_logged = False

    # --- what the caller reads -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._conns)

    def __contains__(self, conn: Hashable) -> bool:
        return conn in self._conns

    def from_address(self, address: str) -> int:
        return self._per_address.get(address, 0)

    @property
    def waiting(self) -> int:
        return self._waiting_total

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
            if not self._waiting_total:
                return FULL
            busiest = max(self._waiting, key=lambda a: (self._held[a], -next(iter(self._waiting[a].values()))))
            held = self._held.get(address, 0) if counted else 0
            if held and held + 1 >= self._held[busiest]:
                self.stats.refused_full += 1
                first = not self._full_refusals_logged
                self._full_refusals_logged = True
                return Refused(first, full=True)
            evicted = next(iter(self._waiting[busiest]))
            self.close(evicted)
            self.stats.evicted += 1
        else:
            self._full_refusals_logged = False
        first_eviction = evicted is not None and not self._evicting
        self._evicting = evicted is not None  # an accept without eviction ends the episode
        deadline = now + self.head_timeout_s
        self._conns[conn] = _Conn(address, counted, deadline)
        self._held[address] = self._held.get(address, 0) + 1
        self._wait(conn, address)
        if counted:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return Accepted(deadline, evicted, first_eviction)

    def received(self, conn: Hashable, now: float) -> float:
        """Bytes arrived: if they begin a request head on keep-alive, its deadline starts now.
        Returns the connection's deadline."""
        c = self._conns.get(conn)
        if c is None:
            return -math.inf
        if c.deadline == math.inf and conn in self._waiting.get(c.address, ()):
            c.deadline = now + self.head_timeout_s
        return c.deadline

    def request_started(self, conn: Hashable) -> None:
        """A whole request head arrived: no deadline, and it does not give way while it runs."""
        c = self._conns.get(conn)
        if c is not None:
            c.deadline = math.inf
            self._unwait(conn, c.address)

    def request_done(self, conn: Hashable) -> None:
        """Its response is sent and the connection waits for the next request (keep-alive)."""
        c = self._conns.get(conn)
        if c is not None:
            c.deadline = math.inf  # until a first byte arrives
            self._unwait(conn, c.address)
            self._wait(conn, c.address)  # waiting from now on: the youngest

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
        self._unwait(conn, c.address)
        held = self._held[c.address] - 1
        if held:
            self._held[c.address] = held
        else:
            del self._held[c.address]
        if c.counted:
            left = self._per_address[c.address] - 1
            if left:
                self._per_address[c.address] = left
            else:
                del self._per_address[c.address]
            if left < self.max_per_address:
                self._refusal_logged.discard(c.address)

    def _wait(self, conn: Hashable, address: str) -> None:
        self._waiting.setdefault(address, {})[conn] = next(self._order)
        self._waiting_total += 1

    def _unwait(self, conn: Hashable, address: str) -> None:
        waiting = self._waiting.get(address)
        if waiting is not None and waiting.pop(conn, None) is not None:
            self._waiting_total -= 1
            if not waiting:
                del self._waiting[address]
