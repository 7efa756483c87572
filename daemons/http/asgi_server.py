"""Hypercorn's trio worker, with what its `serve()` lacks: connection limits, a request-head
deadline, and sockets we bind ourselves (SO_REUSEPORT, so `http.workers` processes share one port).

This mirrors `hypercorn.trio.run.worker_serve` (lifespan, then one `TCPServer` per connection)
but every connection goes through a `ConnectionTable` (connections.py, sans-IO): a per-address
cap at accept, and at `http.max_connections` a connection waiting for a request head gives way
to a newcomer from an address that holds fewer (else the newcomer is refused); when all have
requests in progress the accept loop waits and the kernel's backlog holds newcomers (no failed accepts, no running out of file
descriptors). hypercorn itself only closes a connection whose head is late when its keep-alive
timer fires, and keeps a connection whose client left without a request until then too:
`_TCPServer` ends the read at the head deadline and stops that timer once reading is over, and
starts hypercorn's machinery for a connection only once its first request head is whole.
Pinned to hypercorn 0.17–0.18's worker and `TCPServer` API.
"""

from __future__ import annotations

import errno
import logging
import socket

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.events import Closed, RawData, Updated
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from daemons.http.connections import FULL, ConnectionTable, Refused
from daemons.runtime import logging as slog

log = slog.get("http")

ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        return stream.socket.getpeername()[0]
    except OSError:
        return "unknown"


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


class _TCPServer(TCPServer):
    """One connection: hypercorn's, with the table's head deadline and a way to give way.

    Until its first request head is whole a connection is only this object, one task and a
    buffer: hypercorn's machinery (a task group, a protocol, a keep-alive timer) costs about a
    third of a millisecond of CPU per connection, which an attacker reopening thousands of
    connections at once would make the worker spend while health checks queue behind them."""

    def __init__(self, app, config: Config, context: WorkerContext, state: ConnectionState,
                 stream: trio.SocketStream, table: ConnectionTable, room: "_Room"):
        super().__init__(app, config, context, state, stream)
        self.table = table
        self.room = room
        self.giving_way = False
        self.read_scope = trio.CancelScope()
        self.first_bytes = b""  # read before hypercorn started: its first request head

    def give_way(self) -> None:
        """Evicted: end the read (hypercorn then closes the connection as when its client leaves)."""
        self.giving_way = True
        self.read_scope.cancel()

    async def run(self) -> None:
        if await self._first_head():
            await super().run()

    async def protocol_send(self, event) -> None:
        if isinstance(event, Updated):
            if event.idle:
                self.table.request_done(self)
                self.room.changed()
            else:
                self.table.request_started(self)
        await super().protocol_send(event)

    async def _receive(self) -> bytes | None:
        """The next bytes (b"" at the client's EOF), or None: closed, evicted, or the head is late."""
        if self.giving_way:
            return None
        with trio.CancelScope(deadline=self.table.deadline(self)) as self.read_scope:
            try:
                data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return None
        if self.read_scope.cancelled_caught:
            if not self.giving_way:
                self.table.timed_out(self)
                self.room.changed()
            return None
        if data:
            self.table.received(self, trio.current_time())
        return data

    async def _first_head(self) -> bool:
        """Read until the first request head is whole (or too long for one: hypercorn answers
        that); False when the connection ends first."""
        buffer = bytearray()
        while True:
            data = await self._receive()
            if not data:
                return False
            buffer += data
            if b"\r\n\r\n" in buffer or b"\n\n" in buffer or len(buffer) > self.config.h11_max_incomplete_size:
                self.first_bytes = bytes(buffer)
                return True

    async def _read_data(self) -> None:
        # hypercorn's loop (its read_timeout is unset here), with the head deadline and eviction.
        data = self.first_bytes
        while data is not None:
            await self.protocol.handle(RawData(bytes(data)))
            if not data:
                break
            data = await self._receive()
        await self.idle_task.stop()  # nothing more to read: do not keep the connection for keep-alive
        await self.protocol.handle(Closed())


class _Room:
    """Wakes an accept loop waiting for a connection to finish or to turn idle."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def changed(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def serve(app, config: Config, sockets: list[socket.socket], table: ConnectionTable,
                *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    room = _Room()

    async def handle(server: _TCPServer) -> None:
        try:
            await server
        finally:
            table.close(server)
            room.changed()
            await trio.aclose_forcefully(server.stream)  # hypercorn's own close may have been cancelled

    async def admit(stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        address = _peer_address(stream)
        server = _TCPServer(wrapped, config, context, ConnectionState(lifespan_state.copy()), stream, table, room)
        while True:
            verdict = table.accept(server, address, trio.current_time())
            if verdict is not FULL:
                break
            await room.wait()  # every connection has a request in progress
        if isinstance(verdict, Refused):
            if verdict.first and verdict.full:
                slog.log(log, logging.WARNING, "http.max_connections reached: refusing addresses that hold their share",
                         address=address, limit=table.max_connections)
            elif verdict.first:
                slog.log(log, logging.WARNING, "connections refused: http.max_connections_per_address reached",
                         address=address, limit=table.max_per_address)
            await trio.aclose_forcefully(stream)
            return
        if verdict.first_eviction:
            slog.log(log, logging.WARNING, "http.max_connections reached: closing the connections waiting longest for a request",
                     limit=table.max_connections)
        if verdict.evicted is not None:
            verdict.evicted.give_way()
        nursery.start_soon(handle, server)

    async def accept_loop(listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                if e.errno not in ACCEPT_ERRORS:
                    raise
                slog.log(log, logging.WARNING, "accept failed; retrying", error=e)
                await trio.sleep(0.1)
                continue
            try:
                await admit(stream, nursery)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise

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
