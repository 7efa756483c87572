"""sender-http: one worker process — the ASGI app on hypercorn, plus its background loops.

Background loops: the stream directory (visibility, once a second), the spool view (spool
events → waiters), the edge's pull-through (its upstream client and fetches), and the stats writer (counters and viewers → `stats/http-<n>.json` every
second, read by `/metrics` in sibling workers and by the snapshot daemon). Behind a front tier
(front.kind), worker 0 also learns what the front answered itself (viewers and egress) by pulling
its counts once a second (front_stats.py).
"""

from __future__ import annotations

import logging
import socket

import trio
from hypercorn.config import Config as HypercornConfig

from daemons.core.install import Install
from daemons.core.stats import write_stats
from daemons.core import front_nginx
from daemons.http import asgi_server, front_stats, metrics
from daemons.http.app import HTTPContext, SenderApp
from daemons.http.connections import ConnectionTable
from daemons.runtime.small_io import SmallIO
from daemons.runtime import logging as slog
from daemons.runtime.store import StoreWorker

log = slog.get("http")

STATS_INTERVAL_S = 1.0
MAX_REQUEST_HEAD = 16 * 1024  # request line + headers
BACKLOG = 4096


class HTTPDaemon:
    def __init__(self, install: Install, store: StoreWorker, *, worker: int = 0, port: int | None = None):
        self.small_io = SmallIO()  # the stats file, written on the loop while the disk is quick
        self.install = install
        self.ctx = HTTPContext(install, store, worker)
        self.port = port  # a pool's workers share the port the first one bound
        c = install.config
        self.connections = ConnectionTable(
            max_connections=c["http.max_connections"], max_per_address=c["http.max_connections_per_address"],
            head_timeout_s=c["http.request_head_timeout_s"], exempt=self.ctx.is_trusted_proxy,
        )
        self.addresses: list[tuple[str, str, int]] = []
        self.ctx.counters.behind_front = bool(c["front.kind"])

    def hypercorn_config(self) -> HypercornConfig:
        c = self.install.config
        hc = HypercornConfig()
        hc.keep_alive_timeout = c["http.keep_alive_s"]
        hc.h11_max_incomplete_size = MAX_REQUEST_HEAD
        hc.graceful_timeout = 2.0
        hc.accesslog = None
        hc.errorlog = slog.get("http.hypercorn")
        hc.include_server_header = False
        return hc

    def bind(self) -> list[socket.socket]:
        host, port = self.install.config.listen("http.listen")
        reuse_port = self.install.config["http.workers"] > 1
        return [asgi_server.bind_socket(host, self.port or port, reuse_port=reuse_port, backlog=BACKLOG)]

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        ctx = self.ctx
        sockets = self.bind()
        app = SenderApp(ctx)
        async with trio.open_nursery() as nursery:
            await nursery.start(ctx.directory.run)
            await nursery.start(ctx.spool.run)
            await nursery.start(ctx.pull.run)
            nursery.start_soon(self._stats_loop)
            if ctx.worker == 0 and self.install.config["front.kind"] == "nginx":
                nursery.start_soon(front_stats.pull_loop, front_nginx.push_address(self.install.config),
                                   front_nginx.push_key(self.install.secret()), ctx.counters, ctx.viewers)
            await nursery.start(asgi_server.serve, app, self.hypercorn_config(), sockets, self.connections)
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                self.addresses.append(("http", host, port))
                slog.log(log, logging.INFO, "listening", address=f"http://{host}:{port}", worker=ctx.worker)
            task_status.started(self.addresses)

    async def _stats_loop(self) -> None:
        state_dir = self.install.state_dir
        while True:
            payload = metrics.worker_stats(self.ctx)
            try:
                await self.small_io.run(write_stats, state_dir, self.ctx.stats_name, payload)
            except OSError as e:
                slog.log(log, logging.WARNING, "cannot write stats", error=e)
            await trio.sleep(STATS_INTERVAL_S)
