"""How the ingest daemon reads a connection (`daemons.ingest.server.Receiver`) and writes the
spool (`daemons.runtime.spool.SpoolWriter`), over real sockets and a real directory.

The receiver reads a plain TCP connection's descriptor itself instead of through
`SocketStream.receive_some` (issue 16: trio's machinery around each read was the largest share
of a native stream's CPU): it must still let other tasks run while a peer floods it, report the
end of stream and a reset as a stream does, and keep the idle timeout of a publisher that went
silent. The spool writer writes a batch on the event loop while the disk answers quickly, and
moves to a worker thread after a slow batch.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

import pytest
import trio

from daemons.ingest.server import IDLE_SLACK_S, RECEIVE_SIZE, Receiver
from daemons.media.packager import Write
from daemons.runtime import spool
from daemons.runtime.spool import SpoolWriter
from tests.daemons import rtmp_probe
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest

FLOOD_BYTES = 40 * RECEIVE_SIZE  # more reads than Receiver.CHECKPOINT_EVERY without a wait


async def connected_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


def queued(stream: trio.SocketStream) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


async def test_a_flood_already_queued_is_read_without_starving_other_tasks():
    client, server = await connected_pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * FLOOD_BYTES)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * FLOOD_BYTES)
    payload = bytes(range(256)) * (FLOOD_BYTES // 256)
    await client.send_all(payload)
    with trio.fail_after(10):
        while queued(server) < FLOOD_BYTES:  # all of it waits in the kernel: no read will block
            await trio.sleep(0.01)
    receiver = Receiver(server)
    got = bytearray()
    seen_mid_flood: list[int] = []
    done = trio.Event()

    async def other_task():
        while not done.is_set():
            if 0 < len(got) < FLOOD_BYTES:
                seen_mid_flood.append(len(got))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        while len(got) < FLOOD_BYTES:
            got += await receiver.receive()
        done.set()
    assert bytes(got) == payload
    assert seen_mid_flood, "the receiver read the whole flood without letting another task run"
    await client.aclose()
    await server.aclose()


async def test_end_of_stream_and_reset_read_as_a_stream_reports_them():
    client, server = await connected_pair()
    receiver = Receiver(server)
    await client.send_all(b"last bytes")
    await client.aclose()
    got = bytearray()
    while chunk := await receiver.receive():
        got += chunk
    assert bytes(got) == b"last bytes"
    await server.aclose()

    client, server = await connected_pair()
    receiver = Receiver(server)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()  # an abortive close: the peer sends a reset
    with pytest.raises(trio.BrokenResourceError):
        with trio.fail_after(5):
            while await receiver.receive():
                pass
    await server.aclose()


async def test_a_publisher_that_goes_silent_is_dropped_after_the_idle_timeout(nursery, tmp_path):
    idle_s = 2.0
    inst = make_install(tmp_path / "var", **{"rtmp.limits.idle_timeout_s": idle_s})
    fx = add_stream(inst)
    running = await start_ingest(nursery, inst)
    code, stream = await rtmp_probe.publish(running.host, running.port, fx.key)
    assert code == "NetStream.Publish.Start"
    silent_since = trio.current_time()
    await rtmp_probe.until_closed(stream, timeout=idle_s + 5)
    waited = trio.current_time() - silent_since
    # The deadline moves on at most once per min(IDLE_SLACK_S, idle_s / 2): never early, at most
    # that much late.
    assert idle_s - 0.05 <= waited <= idle_s + min(IDLE_SLACK_S, idle_s / 2) + 1.0
    await running.publisher_left(fx.stream["id"])


@needs_ffmpeg
async def test_a_short_idle_timeout_never_drops_a_publisher_that_keeps_sending(nursery, tmp_path):
    # The deadline moves on at most once per min(IDLE_SLACK_S, half the timeout): with a timeout
    # shorter than IDLE_SLACK_S it must still move on while bytes arrive.
    inst = make_install(tmp_path / "var", **{"rtmp.limits.idle_timeout_s": 0.4})
    fx = add_stream(inst)
    running = await start_ingest(nursery, inst)
    proc = await run_publisher(ffmpeg_publish_cmd(running.url(fx.key), 3))
    assert proc.returncode == 0, proc.stderr
    await running.publisher_left(fx.stream["id"])
    g = running.generation_dirs(fx.stream["id"])
    assert len(g) == 1 and len(list((g[0] / "source").glob("*.m4s"))) >= 10  # one publish, its parts


async def test_spool_batches_go_to_a_thread_after_a_slow_one_and_stay_in_order(tmp_path, monkeypatch):
    writer = SpoolWriter(tmp_path)
    (tmp_path / "r").mkdir()
    assert await writer.apply("r", [Write("a.m4s", b"a")], {"r/index.m3u8": b"1"})
    assert not writer.threaded  # fast: on the loop
    monkeypatch.setattr(spool, "SLOW_WRITE_S", 0.0)  # every batch now counts as slow
    assert await writer.apply("r", [Write("b.m4s", b"b")], {"r/index.m3u8": b"2"})
    assert writer.threaded
    # While threaded, batches from several tasks still land whole and in the order they were given.
    async with trio.open_nursery() as nursery:
        for i in range(3, 8):
            nursery.start_soon(writer.apply, "r", [Write(f"{i}.m4s", bytes([i]))], {"r/index.m3u8": str(i).encode()})
            await trio.lowlevel.checkpoint()
    assert (tmp_path / "r" / "index.m3u8").read_bytes() == b"7"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        ["a.m4s", "b.m4s", "index.m3u8", *(f"{i}.m4s" for i in range(3, 8))])
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]
