"""HTTP connection limits: the request-head deadline, the per-address cap, and /healthz and live
playlists answering while slowloris connections from other addresses hold http.max_connections.

The sans-IO table (daemons/http/connections.py) with examples and a hypothesis state machine,
then a real sender-http worker with raw sockets bound to other 127.x source addresses.
"""

from __future__ import annotations

import math

import httpx
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from daemons.http.connections import FULL, Accepted, ConnectionTable, Refused
from tests.daemons.conftest import wait_for
from tests.http.conftest import generation, make_http_install, start_http


def table(**kw) -> ConnectionTable:
    return ConnectionTable(**{"max_connections": 4, "max_per_address": 2, "head_timeout_s": 10.0, **kw})


# --- the sans-IO table ------------------------------------------------------------------------


def test_the_per_address_cap_refuses_at_accept_and_trusted_proxies_are_exempt():
    t = table(max_connections=100, exempt=lambda a: a == "10.9.9.9")
    assert isinstance(t.accept("a1", "10.0.0.1", 0.0), Accepted)
    assert isinstance(t.accept("a2", "10.0.0.1", 0.0), Accepted)
    first, second = t.accept("a3", "10.0.0.1", 0.0), t.accept("a4", "10.0.0.1", 0.0)
    assert first == Refused(first=True) and second == Refused(first=False)
    for i in range(10):
        assert isinstance(t.accept(f"p{i}", "10.9.9.9", 0.0), Accepted)
    t.close("a1")
    assert isinstance(t.accept("a5", "10.0.0.1", 0.0), Accepted)
    assert t.accept("a6", "10.0.0.1", 0.0) == Refused(first=True)
    assert t.stats.refused == 3 and t.from_address("10.9.9.9") == 0


def test_at_the_limit_a_newcomer_from_a_lighter_address_takes_the_place_of_the_busiest_addresses_longest_waiting():
    t = table(max_connections=5, max_per_address=5)
    for i in range(4):
        t.accept(f"slow{i}", "10.0.0.2", float(i))
    t.accept("player", "10.0.0.1", 4.0)
    t.request_started("player")
    assert t.accept("health", "10.0.0.3", 5.0) == Accepted(15.0, "slow0", first_eviction=True)
    # The player's address holds 1, the attacker's 3: a second connection of the player's gets in too.
    assert t.accept("player2", "10.0.0.1", 6.0).evicted == "slow1"
    # The attacker reopening what was closed is refused: its connections never evict each other.
    assert t.accept("slow4", "10.0.0.2", 7.0) == Refused(first=True, full=True)
    assert t.accept("slow5", "10.0.0.2", 7.0) == Refused(first=False, full=True)
    assert t.stats.refused_full == 2 and t.from_address("10.0.0.2") == 2
    # Every connection has a request in progress: nothing gives way, the caller waits.
    for conn in ("health", "player2", "slow2", "slow3"):
        t.request_started(conn)
    assert t.accept("z", "10.0.0.4", 8.0) is FULL
    assert "z" not in t and len(t) == 5
    # A finished response makes its connection an idle keep-alive one, which can give way.
    t.request_done("health")
    assert t.accept("z", "10.0.0.4", 9.0).evicted == "health"
    assert t.stats.evicted == 3


def test_keep_alive_idle_waits_from_its_last_response():
    t = table(max_connections=3, max_per_address=3)
    t.accept("a", "10.0.0.2", 0.0)
    t.accept("b", "10.0.0.2", 1.0)
    t.accept("c", "10.0.0.3", 2.0)
    t.request_started("a")
    t.request_done("a")  # waiting again, now behind b
    assert t.accept("d", "10.0.0.4", 3.0).evicted == "b"


def test_the_head_deadline_counts_from_accept_then_from_the_first_byte_of_each_next_head():
    t = table()
    assert t.accept("c", "10.0.0.1", 100.0).deadline == 110.0
    assert t.received("c", 105.0) == 110.0  # more of the first head: the deadline stands
    t.request_started("c")
    assert t.deadline("c") == math.inf
    t.request_done("c")
    assert t.deadline("c") == math.inf  # idle keep-alive: the keep-alive timer's business
    assert t.received("c", 140.0) == 150.0
    assert t.received("c", 149.0) == 150.0
    t.timed_out("c")
    assert "c" not in t and t.stats.head_timeouts == 1
    t.close("c")  # idempotent
    assert t.deadline("c") == -math.inf


class TableMachine(RuleBasedStateMachine):
    """Any sequence of accepts, requests and closes keeps the table's bounds and books."""

    def __init__(self):
        super().__init__()
        self.t = ConnectionTable(max_connections=5, max_per_address=3, head_timeout_s=2.0, exempt=lambda a: a == "proxy")
        self.now = 0.0
        self.next_id = 0
        self.open: dict[int, str] = {}
        self.busy: set[int] = set()

    @rule(address=st.sampled_from(["a", "b", "c", "proxy"]), dt=st.floats(0, 3))
    def accept(self, address, dt):
        self.now += dt
        conn, self.next_id = self.next_id, self.next_id + 1
        before = sum(1 for a in self.open.values() if a == address)
        verdict = self.t.accept(conn, address, self.now)
        held = lambda a: sum(1 for x in self.open.values() if x == a)  # noqa: E731
        busiest = max((held(a) for c, a in self.open.items() if c not in self.busy), default=0)
        if isinstance(verdict, Refused) and not verdict.full:
            assert address != "proxy" and before == 3
            return
        if isinstance(verdict, Refused):
            assert len(self.open) == 5 and address != "proxy" and 1 <= held(address) and held(address) + 1 >= busiest
            return
        if verdict is FULL:
            assert len(self.open) == 5 and self.busy == set(self.open)
            return
        assert verdict.deadline == self.now + 2.0
        if verdict.evicted is not None:
            assert len(self.open) == 5
            assert verdict.evicted in self.open and verdict.evicted not in self.busy
            assert held(self.open[verdict.evicted]) == busiest
            del self.open[verdict.evicted]
        else:
            assert len(self.open) < 5
        self.open[conn] = address

    @precondition(lambda self: set(self.open) - self.busy)
    @rule(data=st.data())
    def request_started(self, data):
        conn = data.draw(st.sampled_from(sorted(set(self.open) - self.busy)))
        self.t.request_started(conn)
        self.busy.add(conn)

    @precondition(lambda self: self.busy)
    @rule(data=st.data(), dt=st.floats(0, 3))
    def request_done_then_bytes(self, data, dt):
        conn = data.draw(st.sampled_from(sorted(self.busy)))
        self.t.request_done(conn)
        self.busy.discard(conn)
        self.now += dt
        assert self.t.received(conn, self.now) == self.now + 2.0

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def close(self, data):
        conn = data.draw(st.sampled_from(sorted(self.open)))
        self.t.close(conn)
        del self.open[conn]
        self.busy.discard(conn)

    @invariant()
    def bounds_hold_and_books_agree(self):
        t = self.t
        assert len(t) == len(self.open) <= 5
        assert t.waiting == len(self.open) - len(self.busy)
        for address in "abc":
            assert t.from_address(address) == sum(1 for a in self.open.values() if a == address) <= 3
        assert t.from_address("proxy") == 0
        for conn in self.busy:
            assert t.deadline(conn) == math.inf


TableMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_table_state_machine = TableMachine.TestCase


# --- a real worker ------------------------------------------------------------------------------


async def slowloris(host: str, port: int, source: str, *, held: list, closed: list[float], every_s: float = 2.0) -> None:
    """One connection from `source` that trickles a request head (a header line every `every_s`)
    and never finishes it; `held` lists it while open, `closed` gets how long it lasted."""
    stream = await trio.open_tcp_stream(host, port, local_address=source)
    async with stream:
        opened = trio.current_time()
        held.append(stream)
        try:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while True:
                with trio.move_on_after(every_s):
                    if await stream.receive_some(4096) == b"":
                        break
                await stream.send_all(b"X-Slow: 1\r\n")
        except trio.BrokenResourceError:
            pass
        finally:
            held.remove(stream)
        closed.append(trio.current_time() - opened)


async def timed_get(client: httpx.AsyncClient, path: str) -> float:
    started = trio.current_time()
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return trio.current_time() - started


async def test_healthz_and_a_live_playlist_answer_while_slowloris_holds_every_connection(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var", **{"http.max_connections": 100, "http.max_connections_per_address": 20})
    http = await start_http(nursery, inst)
    gen = await generation(http)
    table = http.daemon.connections
    held: list = []
    closed: list[float] = []
    async with trio.open_nursery() as attack:
        for i in range(2, 17):  # 15 addresses × 20 = 300 slowloris connections for 100 places
            for _ in range(20):
                attack.start_soon(lambda src=f"127.0.0.{i}": slowloris(http.host, http.port, src, held=held, closed=closed))
        await wait_for(lambda: len(table) == 100 and table.stats.evicted + table.stats.refused_full == 200, timeout=20)
        # Fresh connections each time (no keep-alive): each must be let in past the attackers.
        latencies = []
        for _ in range(10):
            async with http.client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                latencies.append(await timed_get(c, "/healthz"))
                latencies.append(await timed_get(c, gen.url()))
        assert len(table) >= 99 and table.waiting >= 98  # still full of slowloris (less the last check)
        attack.cancel_scope.cancel()
    assert max(latencies) < 1.0, latencies
    await wait_for(lambda: len(table) == 0, timeout=5)


async def test_a_head_trickled_past_the_deadline_is_closed_and_keep_alive_idle_is_not_head_time(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var", **{"http.request_head_timeout_s": 1.0, "http.keep_alive_s": 30})
    http = await start_http(nursery, inst)
    table = http.daemon.connections
    held: list = []
    closed: list[float] = []
    await slowloris(http.host, http.port, "127.0.0.2", held=held, closed=closed, every_s=0.2)
    [lasted] = closed
    assert 0.9 <= lasted < 3.0, lasted  # at the deadline, not at the keep-alive timeout
    assert table.stats.head_timeouts == 1

    async with await trio.open_tcp_stream(http.host, http.port) as s:
        await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(s)).startswith(b"HTTP/1.1 200")
        # Idle on keep-alive longer than the head deadline: still open, the next request answered.
        await trio.sleep(1.5)  # the idle time under test, not a wait for a condition
        await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(s)).startswith(b"HTTP/1.1 200")
        # The next head trickled: closed a deadline after its first byte.
        started = trio.current_time()
        await s.send_all(b"GET /healthz HTTP/1.1\r\n")
        with trio.fail_after(5):
            while True:
                with trio.move_on_after(0.2):
                    if await _closed(s):
                        break
                await s.send_all(b"X-Slow: 1\r\n")
        assert 0.9 <= trio.current_time() - started < 3.0
    assert table.stats.head_timeouts == 2


async def test_the_per_address_cap_refuses_the_next_connection_but_not_other_addresses_or_trusted_proxies(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var", **{"http.max_connections_per_address": 5, "http.trusted_proxies": ["127.0.0.3"]})
    http = await start_http(nursery, inst)
    table = http.daemon.connections
    held = [await trio.open_tcp_stream(http.host, http.port, local_address="127.0.0.2") for _ in range(5)]
    try:
        await wait_for(lambda: table.from_address("127.0.0.2") == 5)
        async with await trio.open_tcp_stream(http.host, http.port, local_address="127.0.0.2") as extra:
            with trio.fail_after(2):  # at accept, well before the head deadline
                assert await _closed(extra)
        assert table.stats.refused == 1
        async with http.client() as c:  # 127.0.0.1
            assert (await c.get("/healthz")).status_code == 200
        # A trusted proxy carries many clients: not capped.
        proxied = [await trio.open_tcp_stream(http.host, http.port, local_address="127.0.0.3") for _ in range(8)]
        try:
            for s in proxied:
                await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
                assert (await _response(s)).startswith(b"HTTP/1.1 200")
        finally:
            for s in proxied:
                await s.aclose()
    finally:
        for s in held:
            await s.aclose()


async def test_a_client_that_leaves_without_a_request_frees_its_place_at_once(nursery, tmp_path):
    # hypercorn alone kept such a connection (and its file descriptor) until http.keep_alive_s.
    inst = make_http_install(tmp_path / "var", **{"http.keep_alive_s": 60})
    http = await start_http(nursery, inst)
    table = http.daemon.connections
    s = await trio.open_tcp_stream(http.host, http.port)
    await wait_for(lambda: len(table) == 1)
    await s.aclose()
    await wait_for(lambda: len(table) == 0, timeout=1)


async def _response(stream: trio.SocketStream) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += await stream.receive_some(4096)
    return data


async def _closed(stream: trio.SocketStream) -> bool:
    try:
        return await stream.receive_some(100) == b""
    except trio.BrokenResourceError:
        return True
