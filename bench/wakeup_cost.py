#!/usr/bin/env python3
"""What the ingest daemon's unit operations cost on this machine, in CPU µs each (issue 16).

A native publisher costs sender-ingest about 110 socket reads, 5 parts (a few files written and
renamed) and a handful of thread hand-offs a second; this prints what one of each costs here, so
the per-stream figure of `bench/ingest_load.py` can be taken apart:

* a socket read woken by epoll: plain Python (`select.epoll` + `recv`), trio's
  `SocketStream.receive_some` (what the RTMP loop uses), and trio's `wait_readable` + `recv`;
  a peer thread sends 500 bytes every millisecond, the reader's own thread CPU is counted;
* `trio.to_thread.run_sync` of a no-op (the spool writer and the store worker hand work to a
  thread this way): the whole process's CPU per call;
* writing a spool file as `daemons.core.files.atomic_write` does (temporary name, write,
  rename), new names and over an existing file, 3 kB (a playlist) and 90 kB (a part).

Run from the checkout:  .venv/bin/python bench/wakeup_cost.py [--reads 2000]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemons.core.files import atomic_write  # noqa: E402

CHUNK = b"x" * 500


def _feeder(sock: socket.socket, count: int) -> None:
    for _ in range(count + 50):
        try:
            sock.send(CHUNK)
        except OSError:
            return
        time.sleep(0.001)


def _per_read(reader, count: int) -> float:
    """µs of the reader thread's CPU per read that returned data."""
    a, b = socket.socketpair()
    feeder = threading.Thread(target=_feeder, args=(b, count), daemon=True)
    feeder.start()
    try:
        cpu, reads = reader(a, count * len(CHUNK))
    finally:
        b.close()
        a.close()
        feeder.join()
    return 1e6 * cpu / reads


def raw_epoll(sock: socket.socket, total: int) -> tuple[float, int]:
    sock.setblocking(False)
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN)
    got = reads = 0
    t0 = time.thread_time()
    while got < total:
        ep.poll()
        got += len(sock.recv(65536))
        reads += 1
    ep.close()
    return time.thread_time() - t0, reads


def trio_stream(sock: socket.socket, total: int) -> tuple[float, int]:
    async def main():
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        got = reads = 0
        t0 = time.thread_time()
        while got < total:
            got += len(await stream.receive_some(65536))
            reads += 1
        return time.thread_time() - t0, reads
    return trio.run(main)


def trio_wait_readable(sock: socket.socket, total: int) -> tuple[float, int]:
    async def main():
        sock.setblocking(False)
        got = reads = 0
        t0 = time.thread_time()
        while got < total:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            got += len(data)
            reads += 1
        return time.thread_time() - t0, reads
    return trio.run(main)


def thread_hop(count: int) -> float:
    """µs of process CPU per to_thread.run_sync(no-op), net of the 1 ms sleeps between calls."""
    async def main():
        limiter = trio.CapacityLimiter(1)
        for _ in range(50):
            await trio.to_thread.run_sync(lambda: None, limiter=limiter)
        t0 = time.process_time()
        for _ in range(count):
            await trio.to_thread.run_sync(lambda: None, limiter=limiter)
            await trio.sleep(0.001)
        hops = time.process_time() - t0
        t0 = time.process_time()
        for _ in range(count):
            await trio.sleep(0.001)
        return 1e6 * (hops - (time.process_time() - t0)) / count
    return trio.run(main)


def file_writes(directory: Path, count: int) -> dict[str, float]:
    out = {}
    for label, size, same_name in (("3 kB, new name", 3000, False), ("3 kB, over an existing file", 3000, True),
                                   ("90 kB, new name", 90000, False)):
        data = b"y" * size
        t0 = time.process_time()
        for i in range(count):
            atomic_write(directory / ("same" if same_name else f"f{label[:2]}{i}"), data)
        out[label] = 1e6 * (time.process_time() - t0) / count
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reads", type=int, default=2000, help="reads per reader (one a millisecond; default 2000)")
    p.add_argument("--files", type=int, default=1000, help="files written per case (default 1000)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.2f} at the start (figures are this machine's)")
    print("| operation | CPU µs each |")
    print("|---|---:|")
    for label, reader in (("socket read: select.epoll + recv (plain Python)", raw_epoll),
                          ("socket read: trio SocketStream.receive_some", trio_stream),
                          ("socket read: trio wait_readable + recv", trio_wait_readable)):
        print(f"| {label} | {_per_read(reader, args.reads):.0f} |")
    print(f"| trio.to_thread.run_sync(no-op), whole process | {thread_hop(args.reads // 2):.0f} |")
    with tempfile.TemporaryDirectory(prefix="sender-bench-files-", dir=os.environ.get("SPOOL_DIR")) as d:
        for label, us in file_writes(Path(d), args.files).items():
            print(f"| spool file write + rename, {label} | {us:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
