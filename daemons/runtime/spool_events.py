"""Wake-ups for spool readers: "this rendition's playlist changed", as Unix datagrams.

The state files in the spool are the truth; these datagrams only say when to look again, so a
reader (each HTTP worker, later the edge-fill daemon) holds thousands of blocking requests with
no polling per request. Each reader binds its own socket in `<state_dir>/run/spool-events/`;
the ingest daemon sends every change to each socket there. A lost datagram costs a reader one
fallback poll interval, nothing else; a full or dead reader never slows the packager (sends are
non-blocking and errors are ignored).

Message: b"<stream_id>/<generation_id>/<rendition> <msn> <part>" (part -1: a whole segment).

A socket address holds at most 107 bytes and a state directory may be longer: a socket whose
path does not fit is addressed through the directory's open descriptor
(`/proc/self/fd/<fd>/<name>.sock`, which the kernel resolves to the same file).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import trio

REFRESH_S = 1.0
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included


class _Directory:
    """The events directory, and short addresses of the sockets in it."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def address(self, name: str) -> str:
        full = str(self.path / name)
        if len(os.fsencode(full)) <= SOCKET_PATH_MAX:
            return full
        if self._fd is None:
            self._fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{name}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def events_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "run" / "spool-events"


def encode(rendition_path: str, msn: int, part: int | None) -> bytes:
    return f"{rendition_path} {msn} {-1 if part is None else part}".encode()


def decode(data: bytes) -> tuple[str, int, int | None]:
    path, msn, part = data.decode().split(" ")
    return path, int(msn), None if part == "-1" else int(part)


class SpoolEventSender:
    """Sends to every reader socket in the events directory (re-listed at most once a second)."""

    def __init__(self, state_dir: Path):
        self.directory = events_dir(state_dir)
        self._dir = _Directory(self.directory)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._targets: list[str] = []
        self._listed_at = -REFRESH_S

    def send(self, message: bytes, now: float | None = None) -> None:
        """`now`: trio's clock, given by a caller outside trio (the ingest daemon's media thread)."""
        now = trio.current_time() if now is None else now
        if now - self._listed_at >= REFRESH_S:
            self._listed_at = now
            try:
                self._targets = [self._dir.address(p.name) for p in self.directory.glob("*.sock")]
            except OSError:
                self._targets = []
        for target in self._targets:
            try:
                self._sock.sendto(message, target)
            except OSError:  # reader gone, or its queue full: it falls back to polling
                pass

    def close(self) -> None:
        self._sock.close()
        self._dir.close()


class SpoolEventReceiver:
    """A reader's socket: `async for message in receiver` yields decoded events."""

    def __init__(self, state_dir: Path, name: str | None = None):
        d = events_dir(state_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"{name or os.getpid()}.sock"
        self.path.unlink(missing_ok=True)
        self._dir = _Directory(d)
        self._sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._bound = False

    async def bind(self) -> None:
        await self._sock.bind(self._dir.address(self.path.name))
        self._bound = True

    async def receive(self) -> tuple[str, int, int | None]:
        return decode(await self._sock.recv(4096))

    def close(self) -> None:
        self._sock.close()
        self._dir.close()
        if self._bound:
            self.path.unlink(missing_ok=True)
