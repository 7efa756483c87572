"""What keeps an idle daemon cheap: the store's change watch (a stat instead of queries through the
store's thread), the ingest control loop's gate, and small writes on the loop while the disk is
quick. Real SQLite stores and real files; time on trio's MockClock where it matters."""

from __future__ import annotations

import os
import threading
import time

import pytest
import trio
import trio.testing

from daemons.core import domain
from daemons.core.store import Store
from daemons.ingest.control import ControlGate
from daemons.runtime.small_io import SmallIO
from daemons.runtime.store import StoreChanges


def _age(paths, seconds: float = 60.0) -> None:
    """Make the files look written `seconds` ago (instead of waiting for RECENT_S to pass)."""
    when = time.time_ns() - int(seconds * 1e9)
    for p in paths:
        if p.exists():
            os.utime(p, ns=(when, when))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "sender.db") as s:
        yield s


def test_the_watch_sees_another_connections_write_and_is_quiet_without_one(store, tmp_path):
    changes = StoreChanges(store.path)
    assert changes.look()  # the first look: anything may have happened
    _age(changes.paths)
    changes.look()
    assert not changes.look() and not changes.look()  # nothing written: nothing to ask

    with Store.open(tmp_path / "sender.db") as other:  # the CLI, another daemon
        domain.streams.create(other, "demo")
    assert changes.look()
    _age(changes.paths)
    assert changes.look()  # the ageing itself changed the times
    assert not changes.look()


def test_a_write_that_keeps_size_and_time_within_a_recent_tick_is_still_seen(store, tmp_path):
    changes = StoreChanges(store.path)
    domain.streams.create(store, "demo")
    assert changes.look()  # written just now: recent
    wal = changes.paths[1]
    stat = os.stat(wal)
    # Another write lands in the same timestamp tick and leaves the size alone (a WAL restarted
    # after a checkpoint overwrites frames): the signature is what it was at the last look.
    with open(wal, "r+b") as f:
        f.seek(stat.st_size - 1)
        f.write(f.read(1) or b"\0")
    os.utime(wal, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert changes.look()  # not trusted while recent: asked again


def test_a_missing_wal_and_its_return_are_changes(store, tmp_path):
    changes = StoreChanges(store.path)
    store.close()  # the last connection checkpoints and removes the WAL
    _age(changes.paths)
    changes.look()
    assert not changes.paths[1].exists() and not changes.look()
    with Store.open(tmp_path / "sender.db") as again:
        domain.streams.create(again, "demo")
        assert changes.look()


def test_the_gate_asks_on_a_change_new_questions_a_deadline_or_the_refresh():
    gate = ControlGate(refresh_s=30.0)
    q = ([("gen_1", "key_1")], [], ["gen_1"])
    assert gate.due(0.0, q, store_changed=False)  # never asked
    gate.answered(0.0, q, deadline_in_s=None)
    assert not gate.due(0.5, q, store_changed=False)
    assert gate.due(0.5, q, store_changed=True)
    assert gate.due(0.5, ([], [], ["gen_1"]), store_changed=False)  # the publisher left
    assert not gate.due(29.9, q, store_changed=False)
    assert gate.due(30.0, q, store_changed=False)  # the refresh
    gate.answered(30.0, q, deadline_in_s=4.2)  # a publisher away, its grace ends in 4.2 s
    assert not gate.due(34.1, q, store_changed=False)
    assert gate.due(34.2, q, store_changed=False)
    gate.answered(35.0, q, deadline_in_s=-1.0)  # already past (ended next step): ask at once
    assert gate.due(35.0, q, store_changed=False)


async def test_small_writes_run_on_the_loop_until_one_is_slow_then_in_a_thread_for_a_while(mock_clock):
    io = SmallIO(slow_s=0.02, cooldown_s=60.0)
    loop_thread = threading.get_ident()

    def quick():
        return threading.get_ident()

    def slow():
        time.sleep(0.03)
        return threading.get_ident()

    assert await io.run(quick) == loop_thread
    assert await io.run(slow) == loop_thread  # measured as it runs: this one was on the loop
    assert io.threaded
    assert await io.run(quick) != loop_thread
    mock_clock.jump(59.0)
    assert await io.run(quick) != loop_thread
    mock_clock.jump(1.0)
    assert not io.threaded and await io.run(quick) == loop_thread
    with pytest.raises(ZeroDivisionError):  # errors pass through, from either place
        await io.run(lambda: 1 / 0)


async def test_small_writes_keep_their_order():
    io = SmallIO(slow_s=0.0)  # every call slow: all but the first in a thread
    done: list[int] = []
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(io.run, done.append, i)
            await trio.testing.wait_all_tasks_blocked()
    assert done == list(range(20))
