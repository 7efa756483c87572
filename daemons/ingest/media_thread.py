"""The media thread: steady publishes read, parsed, packaged and written outside trio's loop.

A publisher's socket is read about a hundred times a second, and each read through trio costs a
wake-up of the scheduler (~100 µs of Python on the reference machine, against ~20 µs for a plain
`epoll` + `read`; bench/wakeup_cost.py): with the glue around each message, that was most of a
native stream's CPU (docs/performance.md, "Where a native stream's CPU goes"). So once a publish
is steady, its connection is *leased* to this thread: one OS thread with an epoll of its own,
registered once per lease, which reads the socket, feeds the sans-IO `rtmp.ServerConnection`,
and hands each coded audio/video frame to the publish's `Work` (stats, the native backend, the
packager, the spool writes, the spool events) synchronously.

Between the frames that complete something nothing can be published, so the thread does not
read a real-time publisher in between: after a read it asks the work for the media time of the
next frame whose arrival may publish something (`Work.publish_at_s`: the open part's last frame,
or the keyframe expected to end the segment — the packager counts it), learns from the
connection's `ArrivalClock` when that frame can first arrive (the publisher's least lag behind
its timestamps, from the kernel's receive times), and stops watching the socket until just
after. Then it reads what came meanwhile in one go: usually the whole part, its last frame
included, in one wake-up instead of one per message — on a VM, where a thread's caches go cold
while it sleeps, the same Python costs several times more one message at a time
(bench/ingest_processing.py --cadence-ms). A frame later than that is read as it comes (the
socket is watched again); one earlier than the clock allows waits at most until then. Until the
clock has samples, the thread reads as bytes come; a socket a turn could not drain is read on at
once; spells of several publishers that end within `COALESCE_S` end in one wake-up.

The thread does only the steady state. The first thing it cannot do itself ends the lease, and
the connection goes back to its trio task (`ConnectionHandler` in server.py) with what is left:

* an event other than a coded frame (metadata, a sequence header, an unpublish, a close);
* a follow-up of a frame it took (`Work.take`): a new init segment, a timeline break or a
  dropped packet from the native backend, a batch whose aftermath needs the store or the
  master playlist (the generation going live, a new bandwidth peak or 5 % step of the average,
  a discontinuity), a batch the spool refused, a slow disk;
* the end of the stream, a socket error, a protocol error, the idle timeout, bytes the socket
  would not take at once.

Trio takes the connection back on its own with `reclaim` (a kick, a shutdown, a change of
restream targets). One owner at a time: while leased, nothing in trio touches the connection,
the publish's sinks or its pipeline's packager, so none of them needs a lock.

Times given to `Work.take` are on trio's clock (its offset from `time.perf_counter`, taken when
the lease begins), so stats and spool deletions compare with what trio measures.
"""

from __future__ import annotations

import collections
import heapq
import math
import os
import select
import socket
import struct
import threading
import time
from typing import Protocol

import trio

from daemons.media import rtmp
from daemons.runtime import logging as slog

log = slog.get("ingest.media")

RECEIVE_SIZE = 65536
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux (asm-generic); also the cmsg type
ANCILLARY_SIZE = socket.CMSG_SPACE(16)  # a struct timespec
READS_PER_TURN = 16  # reads of one socket before the others get their turn
IDLE_CHECK_S = 1.0  # the idle timeout fires at most this late
MIN_QUIET_S = 0.005  # a shorter quiet is not worth a timer
MAX_QUIET_S = 0.25  # at most this much of a publisher waits in the kernel's buffer
ARRIVAL_SLACK_S = 0.002  # a spell ends this long after the awaited frame's earliest arrival
COALESCE_S = 0.002  # spells ending this soon after a wake-up end with it


class Work(Protocol):
    """What a leased publish does with its frames (server.py builds it from the publish's sinks)."""

    def take(self, event: rtmp.AudioData | rtmp.VideoData, now: float) -> list | None:
        """None: not for the thread (nothing done; trio handles the event). Otherwise the frame
        was taken, and the list holds what trio must finish (empty: nothing)."""

    def publish_at_s(self) -> float | None:
        """The media time (seconds, the publisher's timestamps) of the first frame whose arrival
        may publish something; None if not known."""


class ArrivalClock:
    """When a publisher's frames arrive against their timestamps: the least lag (arrival minus
    media time) over the last `WINDOW_S` to `2 * WINDOW_S` (trio's clock). A real-time
    publisher's frame does not come before its media time plus that lag (one whose clock runs
    fast lowers the lag as it goes; one that runs slow raises it a window later). Audio and
    video alike: where an encoder's video lags its audio, video frames are awaited a little early.

    Arrival is the kernel's receive time of a read's last bytes (SO_TIMESTAMPNS), sampled for
    the last frame the read completes: a read after a quiet spell happens well after its bytes
    came, and read times would feed the lag its own lateness. One clock per connection, across
    its leases."""

    WINDOW_S = 5.0
    READY = 10  # samples before the clock is trusted

    def __init__(self) -> None:
        self.samples = 0
        self._lag = math.inf
        self._older = math.inf
        self._rotate_at = -math.inf

    def sample(self, media_s: float, arrival: float) -> None:
        if arrival >= self._rotate_at:
            self._older, self._lag, self._rotate_at = self._lag, math.inf, arrival + self.WINDOW_S
        self._lag = min(self._lag, arrival - media_s)
        self.samples += 1

    def arrival(self, media_s: float) -> float | None:
        """The earliest the frame of that media time arrives; None until the clock is trusted."""
        lag = min(self._lag, self._older)
        return None if self.samples < self.READY or lag == math.inf else media_s + lag


class Lease:
    """One connection in the media thread, from `MediaThread.run` until the thread gives it back.

    What the trio task finds when it ends: `events` (one the thread did not take), `follow_ups`
    (of a frame it took), `unsent` (bytes for the peer), `data` (b"" at the end of the stream),
    `error` (trio.BrokenResourceError, rtmp.RTMPProtocolError, or a bug's exception), `idle` (no bytes for the idle timeout)."""

    def __init__(self, fd: int, conn: rtmp.ServerConnection, work: Work, idle_timeout: float, arrivals: ArrivalClock):
        self.fd = fd
        self.arrivals = arrivals
        # A second descriptor of the same socket, for recvmsg (the kernel's receive times); the
        # connection's own stays with its trio stream.
        self.sock = socket.socket(fileno=os.dup(fd))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no receive times: read times stand in (arrivals then look later than they were)
        self.wall_offset = trio.current_time() - time.time()  # receive times are wall-clock
        self.conn = conn
        self.work = work
        self.idle_timeout = idle_timeout
        self.clock_offset = trio.current_time() - time.perf_counter()
        self.last_data = time.perf_counter()
        self.events: list = []
        self.follow_ups: list = []
        self.unsent = b""
        self.data: bytes | None = None
        self.error: BaseException | None = None
        self.idle = False
        self.done = trio.Event()
        self.quiet_until: float | None = None  # (perf_counter) not watched until then
        self._token = trio.lowlevel.current_trio_token()
        self._returned = False

    def why(self) -> str:
        """Why the lease ends, in a word (stats)."""
        if self.error is not None:
            return "error"
        if self.idle:
            return "idle"
        if self.data is not None:
            return "end of stream"
        if self.unsent:
            return "unsent"
        if self.follow_ups:
            return "follow-up"
        return "event" if self.events else "reclaimed"

    def give_back(self) -> None:
        """(The media thread) End the lease: wake the trio task."""
        if not self._returned:
            self._returned = True
            self.sock.close()
            self._token.run_sync_soon(self.done.set)


class MediaThread:
    """The thread and its epoll (see the module docstring). `start` before the first lease,
    `stop` after the last has ended."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._commands: collections.deque = collections.deque()
        self._leases: dict[int, Lease] = {}
        self._quiet: list[tuple[float, int, Lease]] = []  # (until, tie-break, lease) heap
        self._quiet_count = 0
        self._thread = threading.Thread(target=self._run, name="sender-media", daemon=True)
        self.leases = 0  # leases begun
        self.frames = 0  # coded frames taken in the thread
        self.ended: collections.Counter = collections.Counter()  # why leases ended

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Blocking: end the thread (leases still held are given back) and close the epoll."""
        if self._thread.is_alive():
            self._command(("stop", None))
            self._thread.join()
        self._epoll.close()
        os.close(self._wake)

    def stats(self) -> dict:
        """For the daemon's stats file: leases begun and held, frames taken, quiet spells (a socket
        not watched until its part's end neared), why leases ended."""
        return {"leases": self.leases, "leased": len(self._leases), "frames": self.frames, "quiets": self._quiet_count,
                "ended": dict(self.ended)}

    async def run(self, lease: Lease) -> None:
        """Lease the connection to the thread until it gives it back. Cancelled (a kick, a
        shutdown): take it back first, then let the cancellation go on."""
        self._command(("add", lease))
        try:
            await lease.done.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.reclaim(lease)
            raise

    async def reclaim(self, lease: Lease) -> None:
        """Take the connection back now (if the thread still has it)."""
        if not lease.done.is_set():
            self._command(("reclaim", lease))
            await lease.done.wait()

    def _command(self, command: tuple) -> None:
        self._commands.append(command)
        os.eventfd_write(self._wake, 1)

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                timeout = IDLE_CHECK_S if self._leases else None  # no lease: nothing to check
                if self._quiet:
                    wait = max(0.0, self._quiet[0][0] - time.perf_counter())
                    timeout = wait if timeout is None else min(timeout, wait)
                for fd, _ in self._epoll.poll(timeout):
                    if fd == self._wake:
                        if not self._on_commands():
                            return
                        continue
                    lease = self._leases.get(fd)
                    if lease is not None:
                        self._turn(lease)
                self._wake_quiet()
                self._check_idle()
        finally:
            for lease in list(self._leases.values()):
                self._give_back(lease)

    def _on_commands(self) -> bool:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        while self._commands:
            what, lease = self._commands.popleft()
            if what == "stop":
                return False
            if what == "add":
                self._leases[lease.fd] = lease
                self.leases += 1
                self._epoll.register(lease.fd, select.EPOLLIN)
                # Bytes may already wait in the socket (epoll is level-triggered: it says so).
            elif what == "reclaim" and self._leases.get(lease.fd) is lease:
                self._give_back(lease)
        return True

    def _give_back(self, lease: Lease) -> None:
        self.ended[lease.why()] += 1
        if self._leases.get(lease.fd) is lease:
            del self._leases[lease.fd]
            try:
                self._epoll.unregister(lease.fd)
            except OSError:
                pass
        lease.give_back()

    def _check_idle(self) -> None:
        now = time.perf_counter()
        for lease in [lease for lease in self._leases.values()
                      if lease.quiet_until is None and now - lease.last_data > lease.idle_timeout]:
            lease.idle = True
            self._give_back(lease)

    def _turn(self, lease: Lease) -> None:
        """Serve the lease; then, if its part is far from done, stop watching it for a while."""
        heard = lease.last_data
        try:
            drained = self._serve(lease)
            if not drained or self._leases.get(lease.fd) is not lease or lease.last_data == heard:
                return  # more waiting, given back, or nothing came (a silent publisher meets the idle timeout)
            now = time.perf_counter()
            until = min(self._quiet_until(lease, now), now + MAX_QUIET_S, now + lease.idle_timeout / 4)
            if until - now >= MIN_QUIET_S:
                self._epoll.modify(lease.fd, 0)
                lease.quiet_until = until
                self._quiet_count += 1
                heapq.heappush(self._quiet, (until, self._quiet_count, lease))
        except Exception as e:  # a bug: the trio task ends the connection with it
            log.exception("media thread failed on a connection")
            lease.error = e
            self._give_back(lease)

    @staticmethod
    def _quiet_until(lease: Lease, now: float) -> float:
        """When to read the lease's socket next (perf_counter): just after the frame that may
        publish something can first have arrived."""
        at = lease.work.publish_at_s()
        arrival = None if at is None else lease.arrivals.arrival(at)
        if arrival is None:
            return now  # not known yet: read as bytes come
        return arrival + ARRIVAL_SLACK_S - lease.clock_offset

    def _wake_quiet(self) -> None:
        """Watch (and read at once) the leases whose quiet is over (or nearly: one wake-up for
        several publishers' spells)."""
        now = time.perf_counter() + COALESCE_S
        while self._quiet and self._quiet[0][0] <= now:
            _, _, lease = heapq.heappop(self._quiet)
            if self._leases.get(lease.fd) is lease and lease.quiet_until is not None:
                lease.quiet_until = None
                try:
                    self._epoll.modify(lease.fd, select.EPOLLIN)
                except OSError as e:  # cannot happen while the lease holds the socket open
                    lease.error = e
                    self._give_back(lease)
                    continue
                self._turn(lease)

    def _serve(self, lease: Lease) -> bool:
        """Read what the socket has (a few reads at most), and do what it brings. True if the
        socket is drained (as far as the last read tells)."""
        conn = lease.conn
        for _ in range(READS_PER_TURN):
            try:
                data, ancillary, _, _ = lease.sock.recvmsg(RECEIVE_SIZE, ANCILLARY_SIZE)
            except BlockingIOError:
                return True
            except OSError as e:
                lease.error = trio.BrokenResourceError(f"connection failed: {e}")
                self._give_back(lease)
                return True
            now = time.perf_counter()
            lease.last_data = now
            if not data:
                lease.data = b""
                self._give_back(lease)
                return True
            conn.receive_data(data)
            arrival = _receive_time(ancillary)
            arrival = now + lease.clock_offset if arrival is None else arrival + lease.wall_offset
            if not self._take_events(lease, now + lease.clock_offset, arrival):
                self._give_back(lease)
                return True
            out = conn.data_to_send()
            if out:
                try:
                    sent = os.write(lease.fd, out)
                except BlockingIOError:
                    sent = 0
                except OSError as e:
                    lease.error = trio.BrokenResourceError(f"connection failed: {e}")
                    self._give_back(lease)
                    return True
                if sent < len(out):
                    lease.unsent = out[sent:]
                    self._give_back(lease)
                    return True
            # A read that ended inside a message reads again before waiting: the rest is usually
            # there already (see server.py's `Receiver`); a full buffer may have more behind it.
            if len(data) < RECEIVE_SIZE and not conn.buffered_bytes:
                return True
        return False

    def _take_events(self, lease: Lease, now: float, arrival: float) -> bool:
        """Every complete event to the work; False (the lease ends) at the first it leaves.
        `arrival`: when the read's last bytes came (trio's clock), a sample for the last frame."""
        conn = lease.conn
        last = None
        try:
            while True:
                try:
                    event = conn.next_event()
                except rtmp.RTMPProtocolError as e:
                    lease.error = e
                    return False
                if event is rtmp.NEED_DATA:
                    return True
                if isinstance(event, (rtmp.AudioData, rtmp.VideoData)):
                    follow_ups = lease.work.take(event, now)
                    if follow_ups is not None:
                        self.frames += 1
                        last = event
                        if follow_ups:
                            lease.follow_ups = follow_ups
                            return False
                        continue
                lease.events.append(event)
                return False
        finally:
            if last is not None:
                lease.arrivals.sample(last.timestamp / 1000, arrival)


def _receive_time(ancillary: list) -> float | None:
    """The kernel's receive time of a read's last bytes (wall clock), if it gave one."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("@qq", data)
            return seconds + nanoseconds * 1e-9
    return None
