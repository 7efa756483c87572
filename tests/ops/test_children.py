"""`daemons.runtime.children`: a child lives as long as its daemon, and never longer.

The defect behind it (issue 14): sender-http started its extra workers with
`trio.lowlevel.open_process(..., preexec_fn=die_with_parent())`. trio forks in one of its cached
worker threads, and PR_SET_PDEATHSIG belongs to the forking *thread*: when that thread has been
idle for 10 s it exits and the kernel SIGKILLs the child, while the parent runs on. The first test
shows both side by side: the old way is killed at ~10 s, `spawn()`'s child is alive at 30 s.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from daemons.runtime import children
from tests.daemons.conftest import wait_for


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False


async def test_a_child_outlives_trios_idle_worker_thread_where_the_old_way_is_killed():
    old_way = await trio.lowlevel.open_process(["sleep", "60"], preexec_fn=children.die_with_parent())
    child = children.spawn(["sleep", "60"])
    started = trio.current_time()
    try:
        # The reproduction: killed by the kernel when trio's worker thread exits, parent alive.
        with trio.fail_after(25):
            assert await old_way.wait() == -signal.SIGKILL
        assert trio.current_time() - started >= 9
        # The defect is a kill when the forking thread idles out (10 s): past that, the helper's
        # child still runs. (tests/http/test_workers.py holds a real HTTP worker for 30 s.)
        await trio.sleep_until(started + 12)
        assert child.returncode is None and alive(child.pid)
    finally:
        if old_way.returncode is None:
            old_way.kill()
            await old_way.wait()
        await child.aclose()
    assert child.returncode == -signal.SIGKILL  # aclose() kills what still runs
    assert not alive(child.pid)


async def test_spawn_refuses_to_fork_off_the_main_thread():
    with pytest.raises(RuntimeError, match="main thread"):
        await trio.to_thread.run_sync(children.spawn, ["true"])


PARENT = textwrap.dedent("""
    import signal, sys, trio
    from daemons.runtime import children

    async def main():
        child = children.spawn(["sleep", "60"], death_signal=getattr(signal, sys.argv[1]))
        print(child.pid, flush=True)
        await trio.sleep_forever()

    trio.run(main)
""")


@pytest.mark.parametrize("death_signal", ["SIGKILL", "SIGTERM"])
async def test_a_child_dies_with_its_parent(death_signal):
    parent = await trio.lowlevel.open_process([sys.executable, "-c", PARENT, death_signal], stdout=subprocess.PIPE,
                                              cwd=Path(__file__).parents[2])
    async with parent.stdout:
        with trio.fail_after(20):
            line = b""
            while not line.endswith(b"\n"):
                line += await parent.stdout.receive_some()
        pid = int(line)
        assert alive(pid)
        parent.kill()  # no chance to stop its child: only the kernel's death signal is left
        assert await parent.wait() == -signal.SIGKILL
        await wait_for(lambda: not alive(pid), timeout=5)


async def test_stop_kills_a_group_that_ignores_sigterm_after_the_grace(autojump_clock):
    # sh and its sleep both ignore SIGTERM (an ignored signal stays ignored across exec).
    stubborn = children.spawn(["sh", "-c", "trap '' TERM; echo ignoring; sleep 60; :"], stdout=children.PIPE)
    try:
        assert await stubborn.stdout.receive_some() == b"ignoring\n"
        assert await stubborn.stop(grace_s=5) == -signal.SIGKILL
        assert trio.current_time() >= 5
    finally:
        await stubborn.aclose()


async def test_stop_ends_a_polite_child_with_sigterm():
    polite = children.spawn(["sleep", "60"], stdout=children.PIPE)
    try:
        async with polite.stdout:
            with trio.fail_after(10):
                assert await polite.stop(grace_s=3600) == -signal.SIGTERM
                assert await polite.stdout.receive_some() == b""  # its end of the pipe went with it
    finally:
        await polite.aclose()


async def test_pipes_and_exit_status():
    child = children.spawn(["sh", "-c", "cat; echo done >&2; exit 3"], stdin=children.PIPE, stdout=children.PIPE,
                           stderr=children.PIPE)
    try:
        await child.stdin.send_all(b"hello")
        await child.stdin.aclose()
        out = err = b""
        while chunk := await child.stdout.receive_some():
            out += chunk
        while chunk := await child.stderr.receive_some():
            err += chunk
        assert await child.wait() == 3 and child.returncode == 3
        assert (out, err) == (b"hello", b"done\n")
        child.kill()  # reaped: signalling it is a no-op, never a stranger with the same pid
    finally:
        await child.aclose()
