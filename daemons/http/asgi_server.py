"""Hypercorn's trio worker, with the two things its `serve()` lacks: a connection limit and
sockets we bind ourselves (SO_REUSEPORT, so `http.workers` processes share one port).

This mirrors `hypercorn.trio.run.worker_serve` (lifespan, then one `TCPServer` per
connection) but accepts through a `trio.CapacityLimiter`: at `http.max_connections` open
connections it stops accepting and the kernel's backlog holds newcomers, instead of failing
them or running out of file descriptors. Pinned to hypercorn 0.17–0.18's worker API.
"""

from __future__ import annotations

import errno
import logging
import socket

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from daemons.runtime import logging as slog

log = slog.get("http")

ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def bind_socket(host: str, port: int, *, reuse_port: bool, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve(app, config: Config, sockets: list[socket.socket], max_connections: int,
                *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    limiter = trio.CapacityLimiter(max_connections)

    async def handle(stream: trio.SocketStream, token: object) -> None:
        try:
            await TCPServer(wrapped, config, context, ConnectionState(lifespan_state.copy()), stream)
        finally:
            limiter.release_on_behalf_of(token)
            await trio.aclose_forcefully(stream)  # hypercorn's own close may have been cancelled

    async def accept_loop(listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            token = object()
            await limiter.acquire_on_behalf_of(token)
            try:
                stream = await listener.accept()
            except OSError as e:
                limiter.release_on_behalf_of(token)
                if e.errno not in ACCEPT_ERRORS:
                    raise
                slog.log(log, logging.WARNING, "accept failed; retrying", error=e)
                await trio.sleep(0.1)
                continue
            except BaseException:
                limiter.release_on_behalf_of(token)
                raise
            nursery.start_soon(handle, stream, token)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    binds = []
                    for sock in sockets:
                        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                        binds.append(repr_socket_addr(sock.family, sock.getsockname()))
                        acceptors.start_soon(accept_loop, listener, connections)
                    task_status.started(binds)
                    try:
                        await trio.sleep_forever()
                    finally:
                        # Shutting down (the daemon's scope is cancelled, open requests with it):
                        # tell hypercorn's keep-alive loops to close their connections.
                        with trio.CancelScope(shield=True):
                            await context.terminated.set()
        finally:
            for sock in sockets:
                sock.close()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(config.graceful_timeout):
                    try:
                        await lifespan.wait_for_shutdown()
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        pass  # the lifespan task was cancelled with the daemon: nothing to tell
            lifespan_nursery.cancel_scope.cancel()
