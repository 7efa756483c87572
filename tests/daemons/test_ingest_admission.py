"""RTMP admission: sockets that never publish cannot take a publisher's place.

The sans-IO pools (daemons/ingest/admission.py) with examples and a hypothesis state machine,
the lockout window, and the real daemon under idle and slow-handshake floods from other source
addresses while a real ffmpeg publishes.
"""

from __future__ import annotations

import trio
import trustme
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from daemons.ingest.admission import Admission, Admitted, Refused
from daemons.runtime.ratelimit import WindowLimiter
from tests.daemons import rtmp_probe
from tests.daemons.conftest import (
    add_stream,
    ffmpeg_publish_cmd,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)


def pools(**kw) -> Admission:
    return Admission(**{"max_pending": 4, "max_pending_per_address": 2, "max_publishers": 2, "deadline_s": 5.0, **kw})


# --- the sans-IO pools ------------------------------------------------------------------------


def test_the_per_address_cap_refuses_at_accept_and_logs_once_per_episode():
    a = pools()
    assert isinstance(a.connect("a1", "10.0.0.1", 0.0), Admitted)
    assert isinstance(a.connect("a2", "10.0.0.1", 0.0), Admitted)
    first, second = a.connect("a3", "10.0.0.1", 0.0), a.connect("a4", "10.0.0.1", 0.0)
    assert isinstance(first, Refused) and first.first
    assert isinstance(second, Refused) and not second.first
    assert isinstance(a.connect("b1", "10.0.0.2", 0.0), Admitted)  # other addresses are unaffected
    a.leave("a1")
    assert isinstance(a.connect("a5", "10.0.0.1", 0.0), Admitted)
    again = a.connect("a6", "10.0.0.1", 0.0)
    assert isinstance(again, Refused) and again.first  # a new episode
    assert a.stats.refused == 3


def test_a_full_pool_evicts_the_oldest_connection_of_the_busiest_address():
    a = pools(max_pending=4, max_pending_per_address=3)
    a.connect("p", "198.51.100.7", 0.0)  # the real publisher, alone on its address
    for i in range(3):
        a.connect(f"x{i}", "10.0.0.1", 1.0 + i)
    verdict = a.connect("y0", "10.0.0.2", 5.0)
    assert verdict == Admitted(10.0, ("x0",), first_eviction=True)
    verdict = a.connect("y1", "10.0.0.2", 6.0)
    assert verdict.evicted == ("x1",) and not verdict.first_eviction
    assert a.connect("y2", "10.0.0.2", 7.0).evicted == ("y0",)  # now the flood evicts its own
    assert a.connect("z", "10.0.0.3", 8.0).evicted == ("y1",)
    assert a.is_pending("p")
    # Only when every address holds as few as the publisher's does age alone decide.
    assert a.connect("w", "10.0.0.4", 9.0).evicted == ("p",)
    assert isinstance(a.connect("v", "10.0.0.5", 10.0), Admitted)  # x2 was next
    assert not a.is_pending("x2")
    assert a.stats.evicted == 6


def test_publisher_slots_are_apart_from_pending_ones():
    a = pools(max_pending=2, max_pending_per_address=2, max_publishers=1)
    a.connect("pub", "10.0.0.1", 0.0)
    assert a.publish("pub")
    assert a.pending == 0 and a.publishers == 1
    # The pending pool is whole again for others, and evicting never touches a publisher.
    a.connect("x", "10.0.0.2", 0.0)
    a.connect("y", "10.0.0.2", 0.0)
    assert a.connect("z", "10.0.0.3", 0.0).evicted == ("x",)
    assert a.is_publisher("pub")
    # Past max_publishers a publish is refused and the connection stays pending.
    assert not a.publish("z")
    assert a.is_pending("z") and a.stats.publishes_refused == 1
    a.leave("pub")
    assert a.publish("z")


def test_an_unpublished_connection_is_pending_again_with_a_new_deadline():
    a = pools()
    a.connect("c", "10.0.0.1", 0.0)
    a.publish("c")
    assert a.unpublish("c", 100.0) == 105.0
    assert a.is_pending("c") and a.publishers == 0
    a.leave("c")
    a.leave("c")  # idempotent
    assert a.pending == 0


async def test_the_lockout_window_is_configurable(autojump_clock):
    limiter = WindowLimiter(2, window_s=5.0)  # rtmp.auth_lockout_s = 5
    limiter.record("10.0.0.1")
    limiter.record("10.0.0.1")
    assert limiter.blocked("10.0.0.1")
    await trio.sleep(4.9)
    assert limiter.blocked("10.0.0.1")
    await trio.sleep(0.2)
    assert not limiter.blocked("10.0.0.1")


class AdmissionMachine(RuleBasedStateMachine):
    """Any sequence of connects, publishes, unpublishes and leaves keeps the pools' bounds."""

    def __init__(self):
        super().__init__()
        self.a = Admission(max_pending=6, max_pending_per_address=3, max_publishers=2, deadline_s=2.0)
        self.now = 0.0
        self.next_id = 0
        self.open: dict[int, str] = {}  # connection → address, as the caller sees them
        self.publishing: set[int] = set()

    @rule(address=st.sampled_from(["a", "b", "c", "d"]), dt=st.floats(0, 3))
    def connect(self, address, dt):
        self.now += dt
        conn, self.next_id = self.next_id, self.next_id + 1
        before = self.a.pending_from(address)
        verdict = self.a.connect(conn, address, self.now)
        if isinstance(verdict, Refused):
            assert before >= 3  # unpublished connections may have come back past the cap
            return
        assert verdict.deadline == self.now + 2.0
        for victim in verdict.evicted:
            assert victim in self.open and victim not in self.publishing and victim != conn
            del self.open[victim]
        self.open[conn] = address

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def publish(self, data):
        conn = data.draw(st.sampled_from(sorted(self.open)))
        was_full = len(self.publishing) >= 2 and conn not in self.publishing
        took = self.a.publish(conn)
        assert took != was_full
        if took:
            self.publishing.add(conn)

    @precondition(lambda self: self.publishing)
    @rule(data=st.data())
    def unpublish(self, data):
        conn = data.draw(st.sampled_from(sorted(self.publishing)))
        assert self.a.unpublish(conn, self.now) == self.now + 2.0
        self.publishing.discard(conn)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def leave(self, data):
        conn = data.draw(st.sampled_from(sorted(self.open)))
        self.a.leave(conn)
        del self.open[conn]
        self.publishing.discard(conn)

    @invariant()
    def bounds_hold_and_books_agree(self):
        a = self.a
        assert a.publishers == len(self.publishing) <= 2
        assert a.pending + a.publishers == len(self.open)
        for address in "abcd":
            pending_here = [c for c, ad in self.open.items() if ad == address and c not in self.publishing]
            assert a.pending_from(address) == len(pending_here)
        # Unpublished connections come back without the caps' check, so only connects are capped:
        # the pool never holds more than its cap plus those that came back.
        assert a.pending <= 6 + 2


AdmissionMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_admission_state_machine = AdmissionMachine.TestCase


# --- the real daemon ----------------------------------------------------------------------------


async def hold_connections(host: str, port: int, source: str, count: int, *, trickle: bool, stop: trio.Event,
                           closed_by_server: list[float]) -> None:
    """Keep `count` connections from `source` open until `stop`: silent ones, or ones trickling
    a handshake a byte a second. One the server closes is opened again a second later; how long
    each lasted is appended to `closed_by_server`."""

    async def one() -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream(host, port, local_address=source)
            except OSError:
                await trio.sleep(1)
                continue
            async with stream:
                opened = trio.current_time()
                try:
                    while True:
                        if trickle:
                            await stream.send_all(b"\x03")
                        with trio.move_on_after(1):
                            if await stream.receive_some(4096) == b"":
                                break
                except trio.BrokenResourceError:
                    pass
                closed_by_server.append(trio.current_time() - opened)
            await trio.sleep(1)

    async with trio.open_nursery() as n:
        for _ in range(count):
            n.start_soon(one)
        await stop.wait()
        n.cancel_scope.cancel()


@needs_ffmpeg
async def test_ffmpeg_goes_live_on_time_through_idle_and_slow_handshake_floods(nursery, tmp_path):
    inst = make_install(tmp_path / "var")  # the default limits
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    admission = running.daemon.admission
    stop = trio.Event()
    idle_closed: list[float] = []
    slow_closed: list[float] = []
    deadline = inst.config["rtmp.limits.handshake_timeout_s"]
    async with trio.open_nursery() as attack:
        attack.start_soon(lambda: hold_connections(running.host, running.port, "127.0.0.2", 200, trickle=False,
                                                   stop=stop, closed_by_server=idle_closed))
        attack.start_soon(lambda: hold_connections(running.host, running.port, "127.0.0.3", 200, trickle=True,
                                                   stop=stop, closed_by_server=slow_closed))
        cap = inst.config["rtmp.max_pending_per_address"]
        await wait_for(lambda: admission.pending_from("127.0.0.2") == cap and admission.pending_from("127.0.0.3") == cap)
        await wait_for(lambda: admission.stats.refused >= 2 * (200 - cap))
        started = trio.current_time()
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), 4))

        attack.start_soon(publish)
        await wait_for(lambda: s.stream["id"] in running.daemon.publishers, timeout=3)
        accepted_after = trio.current_time() - started
        pipeline = next(iter(running.daemon.pipelines.values()))
        await wait_for(lambda: pipeline.live, timeout=5)
        live_after = trio.current_time() - started
        # The attackers held what they may, and no more, the whole time.
        assert admission.pending_from("127.0.0.2") <= cap and admission.pending_from("127.0.0.3") <= cap
        await wait_for(lambda: "p" in result, timeout=15)
        # Admitted slow handshakes were closed at the pending deadline, not left to trickle on.
        await wait_for(lambda: any(t >= deadline - 0.5 for t in slow_closed), timeout=deadline + 5)
        stop.set()
    assert result["p"].returncode == 0, result["p"].stderr
    assert accepted_after < 2.0 and live_after < 4.0, (accepted_after, live_after)
    assert max(slow_closed) < deadline + 2
    assert idle_closed  # refused at accept
    await wait_for(lambda: running.daemon.connections == 0)


async def test_a_publisher_gets_in_while_a_flood_from_many_addresses_fills_the_pending_pool(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.max_pending_connections": 16, "rtmp.max_pending_per_address": 4})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    admission = running.daemon.admission
    stop = trio.Event()
    closed: list[float] = []
    async with trio.open_nursery() as attack:
        for i in range(10, 20):  # 10 addresses × 4 = 40 sockets for 16 places
            attack.start_soon(lambda src=f"127.0.0.{i}": hold_connections(
                running.host, running.port, src, 4, trickle=False, stop=stop, closed_by_server=closed))
        await wait_for(lambda: admission.stats.evicted >= 16 and admission.pending == 16)
        assert await rtmp_probe.status_of(running.host, running.port, s.key) == "NetStream.Publish.Start"
        stop.set()
    await wait_for(lambda: running.daemon.connections == 0)


async def test_the_per_address_cap_closes_the_extra_connection_at_accept(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.max_pending_per_address": 3})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    held = [await trio.open_tcp_stream(running.host, running.port, local_address="127.0.0.2") for _ in range(3)]
    try:
        await wait_for(lambda: running.daemon.admission.pending_from("127.0.0.2") == 3)
        async with await trio.open_tcp_stream(running.host, running.port, local_address="127.0.0.2") as extra:
            with trio.fail_after(2):  # well before the pending deadline
                assert await extra.receive_some(100) == b""
        # Another address is not affected.
        assert await rtmp_probe.status_of(running.host, running.port, s.key) == "NetStream.Publish.Start"
    finally:
        for h in held:
            await h.aclose()


async def test_the_pending_deadline_covers_the_tls_handshake(nursery, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    inst = make_install(tmp_path / "var", **{
        "rtmp.rtmps_listen": "127.0.0.1:0", "rtmp.tls_cert": str(cert_path), "rtmp.tls_key": str(key_path),
        "rtmp.limits.handshake_timeout_s": 0.5,
    })
    running = await start_ingest(nursery, inst)
    port = next(p for scheme, _, p in running.daemon.addresses if scheme == "rtmps")
    async with await trio.open_tcp_stream(running.host, port) as silent:
        opened = trio.current_time()
        await wait_for(lambda: running.daemon.admission.pending == 1)
        with trio.fail_after(5):
            assert await silent.receive_some(100) == b""
        assert trio.current_time() - opened >= 0.4
    await wait_for(lambda: running.daemon.admission.pending == 0)


async def test_the_lockout_ends_after_rtmp_auth_lockout_s(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.auth_failures_per_minute": 2, "rtmp.auth_lockout_s": 1.0})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    bad = "sk0000000000_" + "B" * 32
    for _ in range(2):
        assert await rtmp_probe.status_of(running.host, running.port, bad) == "NetStream.Publish.BadName"
    locked_at = trio.current_time()
    assert await rtmp_probe.status_of(running.host, running.port, s.key) == "NetStream.Publish.BadName"
    # The valid key gets in once the failures are older than the window.
    while await rtmp_probe.status_of(running.host, running.port, s.key) != "NetStream.Publish.Start":
        assert trio.current_time() - locked_at < 5
        await trio.sleep(0.1)
    assert trio.current_time() - locked_at >= 0.9
