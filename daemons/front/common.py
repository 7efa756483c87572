"""What both fronts' runners share (daemons/front/main.py: Varnish; nginx.py): the error that ends
sender-front, waiting for a child to listen, and the config file's modification time."""

from __future__ import annotations

import os

import trio

from daemons.core.errors import SenderError
from daemons.runtime import children

START_TIMEOUT_S = 30.0


class FrontExited(SenderError):
    pass


async def _listening(host: str, port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]"), port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def wait_listening(child: children.Child, name: str, addresses: list[tuple[str, int]]) -> None:
    """Until `child` accepts connections on every address; FrontExited if it exits or takes too long."""
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            if child.returncode is not None or child.popen.poll() is not None:
                raise FrontExited(f"{name} exited with status {child.popen.returncode} at its start (its log above says why)")
            if all([await _listening(h, p) for h, p in addresses]):
                return
            await trio.sleep(0.05)
    raise FrontExited(f"{name} did not listen on {', '.join(f'{h}:{p}' for h, p in addresses)} within {START_TIMEOUT_S:g} s")


def mtime(path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
