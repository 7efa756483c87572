"""sd_notify in a few lines: READY, STOPPING, STATUS and WATCHDOG pings from a trio task.

Does nothing when NOTIFY_SOCKET is unset (not under systemd or `sender up`), and nothing when its
listener is gone, so daemons call it unconditionally.
"""

from __future__ import annotations

import os
import socket

import trio


def notify(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(addr)
            s.sendall(state.encode())
        except OSError:  # the listener is gone (e.g. `sender up` was killed): nobody to tell
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, when systemd asks this process for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


async def watchdog_loop() -> None:
    """Ping the watchdog while the trio loop runs; a stuck loop stops the pings."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)
