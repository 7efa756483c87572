"""`http.workers` = 2: one port, two processes, both serving; a crashed worker comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from daemons.core import domain
from daemons.core.stats import read_fresh_stats
from tests.daemons.conftest import wait_for
from tests.daemons.test_up import free_port, port_open
from tests.http.test_management import add_token, bearer
from tests.http.conftest import make_http_install
from tests.http.spool_writer import GenerationWriter


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def start_pool(tmp_path) -> tuple:
    """sender-http with `http.workers` = 2 as `sender daemon http` runs it, and a stream to serve:
    (install, port, generation, the first worker's process)."""
    port = free_port()
    inst = make_http_install(tmp_path / "var", **{"http.listen": f"127.0.0.1:{port}", "http.workers": 2})
    with inst.open_store() as store:
        stream = domain.streams.create(store, "busy")
    gen = GenerationWriter(inst.spool_root, inst.state_dir, stream["id"])
    gen.add_segments(2)
    main = await trio.lowlevel.open_process(
        [sys.executable, "-m", "sender_cli", "--config", str(inst.config.path), "daemon", "http"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return inst, port, gen, main


async def load(port: int, gen: GenerationWriter, n: int = 60) -> None:
    # New connections each time: the kernel spreads them over both listening sockets.
    for _ in range(n):
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}{gen.url('1.m4s')}")
            assert r.status_code == 200


def segments_served(inst) -> list[int]:
    """Segment answers counted by worker 0 and worker 1 (their stats files are a second behind)."""
    counts = []
    for name in ("http-0", "http-1"):
        doc = read_fresh_stats(inst.state_dir, name) or {}
        counts.append(sum(n for kind, code, n in doc.get("requests", ()) if kind == "segment"))
    return counts


async def stop_pool(main) -> int:
    main.send_signal(signal.SIGTERM)
    with trio.fail_after(20):
        code = await main.wait()
    await main.stderr.aclose()
    return code


async def test_two_workers_share_the_port_and_survive_a_crash(tmp_path):
    inst, port, gen, main = await start_pool(tmp_path)
    try:
        await wait_for(lambda: port_open(port) and len(children(main.pid)) == 1, timeout=20)
        [worker] = children(main.pid)
        await load(port, gen)
        await wait_for(lambda: all(c := segments_served(inst)) and sum(c) == 60, timeout=10)

        os.kill(worker, signal.SIGKILL)
        replacement = await wait_for(lambda: (c := children(main.pid)) and c[0] != worker and c[0], timeout=20)
        await load(port, gen)  # still served, with no errors
    finally:
        code = await stop_pool(main)
    assert code == 0
    assert not _alive(replacement)  # the pool stops with its first worker


async def test_the_second_worker_still_serves_after_thirty_seconds(tmp_path):
    """Issue 14: extra workers were started with `trio.lowlevel.open_process(preexec_fn=
    die_with_parent())`, i.e. forked in one of trio's worker threads. PR_SET_PDEATHSIG is per
    thread: once load had made worker 0 start more threads than it keeps busy, the forking one
    idled out after 10 s and the kernel SIGKILLed the worker (then restarted: its viewers dropped).
    Here a control plane's burst of `stream.status` calls (each reads the ingest stats in a
    thread) is that load; tests/ops/test_children.py reproduces the kill in isolation."""
    inst, port, gen, main = await start_pool(tmp_path)
    token = add_token(inst)
    try:
        await wait_for(lambda: port_open(port) and len(children(main.pid)) == 1, timeout=20)
        [worker] = children(main.pid)
        started = trio.current_time()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer(token),
                                     limits=httpx.Limits(max_connections=100)) as c:
            async def status() -> None:
                r = await c.post("/api/admin/management", json={"jsonrpc": "2.0", "id": 1, "method": "stream.status",
                                                               "params": {"stream": "busy"}})
                assert r.status_code == 200 and "result" in r.json(), r.text

            for _ in range(3):
                async with trio.open_nursery() as n:
                    for _ in range(100):
                        n.start_soon(status)
        # The defect is a kill 10 s after the threads idle, so this waits for real: nothing to poll for.
        await trio.sleep_until(started + 30)
        assert children(main.pid) == [worker] and _alive(worker)  # never killed, never replaced
        await load(port, gen)
        await wait_for(lambda: all(c := segments_served(inst)) and sum(c) == 60, timeout=10)  # and it serves
    finally:
        code = await stop_pool(main)
    assert code == 0
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
