"""Spool events between real sockets, in a state directory longer than a socket address holds
(107 bytes): readers bind and the sender reaches them through the directory's descriptor."""

from __future__ import annotations

import trio

from daemons.runtime import spool_events
from daemons.runtime.spool_events import SOCKET_PATH_MAX, SpoolEventReceiver, SpoolEventSender


async def _round_trip(state_dir) -> tuple:
    receiver = SpoolEventReceiver(state_dir, "http-0")
    await receiver.bind()
    sender = SpoolEventSender(state_dir)
    try:
        assert receiver.path.exists()
        sender.send(spool_events.encode("st_0123456789abcdef/gen_0123456789abcdef/hd_720", 12, 3))
        with trio.fail_after(5):
            return await receiver.receive()
    finally:
        sender.close()
        receiver.close()


async def test_events_reach_a_reader_in_a_short_and_in_a_long_state_directory(tmp_path):
    short = tmp_path / "s"
    deep = tmp_path / ("d" * 100) / ("e" * 60)
    assert len(str(deep / "run" / "spool-events" / "http-0.sock")) > SOCKET_PATH_MAX
    for state_dir in (short, deep):
        assert await _round_trip(state_dir) == ("st_0123456789abcdef/gen_0123456789abcdef/hd_720", 12, 3)
        assert not (spool_events.events_dir(state_dir) / "http-0.sock").exists()  # removed on close
