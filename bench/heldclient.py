#!/usr/bin/env python3
"""The client of bench/held_requests.py: N HTTP/1.1 GETs on N connections, held open, each timed.

Plain asyncio protocols on raw sockets (no HTTP library): one connection per request, the request
written as soon as the connection is up, the response parsed just enough (status line,
Content-Length, body) and timed on CLOCK_MONOTONIC, which the benchmark shares (same machine).
Connections are opened at most `--connect-concurrency` at a time.

It prints JSON lines on stdout:

    {"event": "sent", ...}   every request is written (or its connection failed)
    {"event": "done", ...}   every response arrived (or failed, or --timeout): the times
                             of every response, status counts, distinct bodies, its own CPU

Connections stay open after their response (a player keeps its connection alive) and are all
closed after the "done" figures are taken.

Each request carries its own X-Playback-Session-Id (bench-<offset+i>), as N separate players would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import sys
import time
from collections import Counter


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Client:
    def __init__(self, count: int):
        self.count = count
        self.sent = 0
        self.connect_errors: Counter = Counter()
        self.finished = 0  # responses complete + connections failed
        self.times: list[float] = []
        self.statuses: Counter = Counter()
        self.bodies: Counter = Counter()
        self.lost: Counter = Counter()  # connection closed before a full response
        self.open = 0
        self.protocols: list[Held] = []
        self.all_finished = asyncio.Event()

    def finish(self) -> None:
        self.finished += 1
        if self.finished >= self.count:
            self.all_finished.set()


class Held(asyncio.Protocol):
    __slots__ = ("client", "request", "transport", "buffer", "status", "length", "head_end", "done")

    def __init__(self, client: Client, request: bytes):
        self.client = client
        self.request = request
        self.buffer = bytearray()
        self.status = 0
        self.length = -1
        self.head_end = -1
        self.done = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client.open += 1
        transport.write(self.request)
        self.client.sent += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head_end < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            head = bytes(self.buffer[:end]).split(b"\r\n")
            self.status = int(head[0].split(b" ", 2)[1])
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self.length = int(value.strip())
        if self.length >= 0 and len(self.buffer) - self.head_end >= self.length:
            now = time.monotonic()
            c = self.client
            c.times.append(now)
            c.statuses[self.status] += 1
            c.bodies[hashlib.blake2b(bytes(self.buffer[self.head_end:self.head_end + self.length]), digest_size=8).hexdigest()] += 1
            self.done = True
            c.finish()
            # The connection stays open, as a player's keep-alive connection would: closing it here
            # would add the server's connection teardown to the release being measured.
            self.buffer = bytearray()

    def connection_lost(self, exc) -> None:
        self.client.open -= 1
        if not self.done:
            self.done = True
            self.client.lost[type(exc).__name__ if exc else "closed by server"] += 1
            self.client.finish()


async def run(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    client = Client(args.count)
    limit = asyncio.Semaphore(args.connect_concurrency)
    started = time.monotonic()

    async def one(i: int) -> None:
        request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                   f"User-Agent: sender-bench-heldclient\r\nX-Playback-Session-Id: bench-{args.offset + i}\r\n"
                   f"Accept: */*\r\n\r\n").encode()
        async with limit:
            try:
                _, protocol = await loop.create_connection(lambda: Held(client, request), args.host, args.port)
                client.protocols.append(protocol)
            except OSError as e:
                client.connect_errors[e.strerror or type(e).__name__] += 1
                client.finish()

    await asyncio.gather(*(one(i) for i in range(args.count)))
    print(json.dumps({"event": "sent", "t": time.monotonic(), "sent": client.sent, "connect_s": time.monotonic() - started,
                      "connect_errors": dict(client.connect_errors), "finished_early": client.finished,
                      "cpu_s": cpu_s()}), flush=True)
    try:
        await asyncio.wait_for(client.all_finished.wait(), timeout=max(1.0, args.timeout - (time.monotonic() - started)))
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    result = {"event": "done", "t": time.monotonic(), "count": args.count, "sent": client.sent, "timed_out": timed_out,
            "responses": len(client.times), "statuses": {str(k): v for k, v in client.statuses.items()},
            "distinct_bodies": len(client.bodies), "lost": dict(client.lost),
            "connect_errors": dict(client.connect_errors), "cpu_s": cpu_s(), "times": client.times}
    print(json.dumps(result), flush=True)
    for protocol in client.protocols:  # after the figures: the server's teardown is not measured
        protocol.transport.close()
    await asyncio.sleep(0.5)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True, help="request target, e.g. /hls/…/index.m3u8?_HLS_msn=106&_HLS_part=0")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--offset", type=int, default=0, help="first session id number (several clients: distinct ids)")
    p.add_argument("--connect-concurrency", type=int, default=256)
    p.add_argument("--timeout", type=float, default=120.0, help="give up this long after starting (seconds)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
