"""Signed snapshot reports to the control plane, queued and retried without blocking collection.

A report is a JSON body POSTed to `control_plane.report_url` with two headers:

    X-Sender-Timestamp: <unix seconds, when this attempt was sent>
    X-Sender-Signature: sha256=<hex HMAC-SHA256(key, timestamp + "." + body)>

The key is the shared secret in `control_plane.signing_key_file`; the signature scheme, and the
receiver's check (`daemons.core.signing.verify_report`: a timestamp further than `max_skew_s`
from its clock is refused, so a captured request cannot be replayed later), live in
`daemons.core.signing`. Each body carries a `report_id` for de-duplication within the window. Reports wait in a bounded queue: while the control plane is down the oldest
are dropped past `MAX_QUEUE` (counted, and logged), the rest are sent in order once it is back.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import httpx
import trio

from daemons.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from daemons.runtime import logging as slog

log = slog.get("snapshot")

MAX_QUEUE = 1000
BACKOFF_S = (0.5, 30.0)


def read_key(path: str) -> bytes:
    with open(path, "rb") as f:
        key = f.read().strip()
    if len(key) < 16:
        raise ValueError(f"{path}: the signing key must be at least 16 bytes")
    return key


class Reporter:
    """Holds reports in a bounded queue and POSTs them, oldest first, retrying with backoff."""

    def __init__(self, url: str, key: bytes, *, max_queue: int = MAX_QUEUE, backoff: tuple[float, float] = BACKOFF_S,
                 timeout_s: float = 10.0, wall_clock=time.time):
        self.url, self.key = url, key
        self.queue: deque[bytes] = deque()
        self.max_queue = max_queue
        self.backoff = backoff
        self.timeout_s = timeout_s
        self.wall_clock = wall_clock
        self.sent = 0
        self.dropped = 0  # oldest reports lost to a full queue
        self.rejected = 0  # refused by the control plane (4xx): retrying cannot help
        self.last_error: str | None = None
        self._wake = trio.Event()

    def put(self, body: bytes) -> None:
        """Queue one report (never blocks, never fails)."""
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                slog.log(log, logging.WARNING, "report queue full: dropping the oldest reports",
                         dropped=self.dropped, queue=self.max_queue, url=self.url)
        self.queue.append(body)
        self._wake.set()

    def stats(self) -> dict:
        return {"url": self.url, "queued": len(self.queue), "sent": self.sent, "dropped": self.dropped,
                "rejected": self.rejected, "last_error": self.last_error}

    async def run(self) -> None:
        delay = self.backoff[0]
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                if not self.queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                body = self.queue[0]
                ok = await self._post(client, body)
                if ok is not None:  # delivered, or refused for good: next one
                    if self.queue and self.queue[0] is body:
                        self.queue.popleft()
                    delay = self.backoff[0]
                    continue
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> bool | None:
        """True delivered, False refused (4xx), None: try again later."""
        ts = str(int(self.wall_clock()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self.key, ts, body)}
        try:
            r = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return self._failed(f"{type(e).__name__}: {e}")
        if 200 <= r.status_code < 300:
            if self.last_error is not None:
                slog.log(log, logging.INFO, "control plane reachable again", url=self.url, queued=len(self.queue))
            self.last_error = None
            self.sent += 1
            return True
        if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
            self.rejected += 1
            slog.log(log, logging.ERROR, "control plane refused a report", url=self.url, status=r.status_code)
            return False
        return self._failed(f"HTTP {r.status_code}")

    def _failed(self, error: str) -> None:
        if self.last_error is None:
            slog.log(log, logging.WARNING, "cannot reach the control plane; reports queued", url=self.url, error=error)
        self.last_error = error
        return None
