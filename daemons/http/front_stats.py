"""Viewers and egress from the nginx front (front.kind = "nginx"), pulled once a second.

nginx answers most viewer requests itself, so sender-http cannot count them. The front's Lua
(daemons/front/sender_front.lua) counts every request it sees by (kind, status, handling) with
its bytes, and records each viewer its playlist answers saw (rendition, session id, address,
user agent); worker 0 pulls and clears that with `GET /stats` on the front's loopback control
listener once a second and feeds it to the same counters and viewer definition as direct
requests (`session_key`), so a session seen by both counts once. Requests nginx passes to
sender-http are counted by sender-http itself as viewers (handling "pass").

`parse` is sans-IO (fed garbage in tests); `pull_loop` is the thin trio loop around it.
"""

from __future__ import annotations

import logging

import trio

from daemons.http.state import Counters, ViewerTracker, session_key
from daemons.runtime import logging as slog

log = slog.get("http.front")

PULL_INTERVAL_S = 1.0
TIMEOUT_S = 2.0
MAX_BODY = 64 << 20  # viewers × renditions lines a second: far below this
MAX_HEAD = 16 * 1024


def parse(body: bytes) -> tuple[list[tuple[str, int, str, int, int]], list[tuple[str, str, str, str, str, str]], int]:
    """/stats' lines → (counts (kind, status, handling, requests, bytes), viewers (stream,
    generation, rendition, session, address, user agent), bad lines)."""
    counts, viewers, bad = [], [], 0
    for line in body.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        fields = line.split("\t")
        try:
            if fields[0] == "c" and len(fields) == 6:
                status, requests, nbytes = int(fields[2]), int(fields[4]), int(fields[5])
                if not (100 <= status <= 999 and 0 <= requests < 1 << 40 and 0 <= nbytes < 1 << 60):
                    raise ValueError(line)
                counts.append((fields[1], status, fields[3], requests, nbytes))
                continue
            if fields[0] == "v" and len(fields) == 5:
                stream, generation, rendition = fields[1].split("/")
                viewers.append((stream, generation, rendition, fields[2], fields[3], fields[4]))
                continue
        except ValueError:
            pass
        bad += 1
    return counts, viewers, bad


def apply(body: bytes, counters: Counters, tracker: ViewerTracker) -> int:
    """One pull into the counters and the viewers; returns the lines that were not ours."""
    counts, viewers, bad = parse(body)
    for kind, status, handling, requests, nbytes in counts:
        counters.count_front(kind, status, handling, nbytes, requests)
    for stream, generation, rendition, session, client, agent in viewers:
        tracker.seen(stream, generation, rendition, session_key(session, client, agent))
    return bad


async def _get(address: tuple[str, int], key: str) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(b"GET /stats HTTP/1.1\r\nHost: sender-http\r\nX-Sender-Key: %s\r\n"
                              b"Connection: close\r\n\r\n" % key.encode())
        data = b""
        while chunk := await stream.receive_some(1 << 16):
            data += chunk
            if len(data) > MAX_BODY + MAX_HEAD:
                raise ValueError("the front's /stats answer is too large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or len(head) > MAX_HEAD or not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"unexpected answer from the front: {head[:80]!r}")
    return body


async def pull_loop(address: tuple[str, int], key: str, counters: Counters, tracker: ViewerTracker) -> None:
    """Pull the front's counts once a second for as long as we run; a front that is not up yet
    (or restarting) is asked again at the next tick."""
    failing = False
    while True:
        await trio.sleep(PULL_INTERVAL_S)
        try:
            with trio.fail_after(TIMEOUT_S):
                body = await _get(address, key)
        except (OSError, ValueError, trio.TooSlowError) as e:
            if not failing:
                slog.log(log, logging.WARNING, "cannot pull the front's counts (retrying every second)", error=repr(e))
            failing = True
            continue
        if failing:
            slog.log(log, logging.INFO, "pulling the front's counts again")
        failing = False
        counters.front_bad_lines += apply(body, counters, tracker)
