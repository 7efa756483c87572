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
from tests.http.conftest import make_http_install
from tests.http.spool_writer import GenerationWriter


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def test_two_workers_share_the_port_and_survive_a_crash(tmp_path):
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
    try:
        await wait_for(lambda: port_open(port) and len(children(main.pid)) == 1, timeout=20)
        [worker] = children(main.pid)

        async def load() -> None:
            # New connections each time: the kernel spreads them over both listening sockets.
            for _ in range(60):
                async with httpx.AsyncClient() as c:
                    r = await c.get(f"http://127.0.0.1:{port}{gen.url('1.m4s')}")
                    assert r.status_code == 200

        def served_by_both():
            counts = []
            for name in ("http-0", "http-1"):
                doc = read_fresh_stats(inst.state_dir, name) or {}
                counts.append(sum(n for kind, code, n in doc.get("requests", ()) if kind == "segment"))
            return all(counts) and sum(counts) == 60 and counts  # stats files are a second behind

        await load()
        await wait_for(served_by_both, timeout=10)

        os.kill(worker, signal.SIGKILL)
        replacement = await wait_for(lambda: (c := children(main.pid)) and c[0] != worker and c[0], timeout=20)
        await load()  # still served, with no errors
    finally:
        main.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            code = await main.wait()
    assert code == 0
    assert not _alive(replacement)  # the pool stops with its first worker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
