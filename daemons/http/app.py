"""The HTTP daemon's ASGI application: HLS on a raw ASGI path, everything else through Quart.

`/hls/…` is the hot path (thousands of players, every part): it goes straight to
`HLSHandler`, which costs a regex and a dict lookup before the bytes. The APIs, metrics and
pages are a quart-trio app (`api.py`), where a framework's conveniences are worth their cost.
`HTTPContext` is what both share: the install, the store worker, and the worker's in-memory
state (streams, viewers, counters, spool view, the edge's pull-through).
"""

from __future__ import annotations

import ipaddress

import trio
from dataclasses import dataclass, field

from daemons.core.install import Install
from daemons.http import admin, endpoint_reports, pages
from daemons.http.api import create_api
from daemons.http.hls_route import HLSHandler
from daemons.http.pull_through import PullThrough
from daemons.http.spool_view import FileCache, SpoolView
from daemons.http.state import Counters, ViewerTracker
from daemons.runtime.stream_directory import StreamDirectory
from daemons.runtime.ratelimit import WindowLimiter
from daemons.runtime.store import StoreWorker


FRONT_NETWORKS = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")]


@dataclass
class HTTPContext:
    install: Install
    store: StoreWorker
    worker: int = 0
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        c = self.install.config
        self.config = c
        self.secret = self.install.secret()
        self.distribution_key = self.install.distribution_key()
        self.playback_secret = self.distribution_key or self.secret  # tokens every node of the distribution accepts
        self.directory = StreamDirectory(self.store)
        self.viewers = ViewerTracker(c["http.viewer_window_s"])
        self.spool = SpoolView(self.install.spool_root, self.install.state_dir, name=f"http-{self.worker}")
        self.files = FileCache(self.install.spool_root, c["http.file_cache_bytes"])
        self.pull = PullThrough(spool_root=self.install.spool_root, files=self.files, counters=self.counters,
                                node_key=self.distribution_key, enabled=c["edge_fill.pull_through"],
                                timeout_s=c["edge_fill.request_timeout_s"])
        self.telemetry_limiter = WindowLimiter(c["http.telemetry_events_per_minute"])
        self.auth_failures = WindowLimiter(c["management.auth_failures_per_minute"])
        self.trusted_proxies = [ipaddress.ip_network(n, strict=False) for n in c["http.trusted_proxies"]]
        if c["front.kind"]:
            # The front tier Sender runs reaches sender-http on loopback: its X-Forwarded-* are the viewer's.
            self.trusted_proxies += [n for n in FRONT_NETWORKS if n not in self.trusted_proxies]

    @property
    def stats_name(self) -> str:
        return f"http-{self.worker}"

    # --- who is asking: X-Forwarded-* only from trusted proxies ---------------------------

    def is_trusted_proxy(self, address: str) -> bool:
        """Whether `address` is one of http.trusted_proxies (their X-Forwarded-* count; no per-address cap)."""
        if not self.trusted_proxies:
            return False  # asked at every accept: no address parsing when there are none
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    def client_of(self, scope) -> str:
        """The viewer's address: the peer, or the nearest untrusted hop of X-Forwarded-For when
        the peer is a trusted proxy."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        if not self.trusted_proxies or not self.is_trusted_proxy(peer):
            return peer
        forwarded = _header(scope, b"x-forwarded-for")
        if not forwarded:
            return peer
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.is_trusted_proxy(hop):
                return hop
        return hops[0] if hops else peer

    def base_url_of(self, scope) -> str:
        """scheme://host as the viewer sees this server (X-Forwarded-Proto/Host from trusted proxies)."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        scheme = scope.get("scheme", "http")
        host = _header(scope, b"host") or self.config["node.public_base_url"].split("://", 1)[-1]
        if self.trusted_proxies and self.is_trusted_proxy(peer):
            scheme = (_header(scope, b"x-forwarded-proto") or scheme).split(",")[0].strip()
            host = (_header(scope, b"x-forwarded-host") or host).split(",")[0].strip()
        return f"{scheme}://{host}"


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def shield_last_send(app):
    """hypercorn ends a response's connection cycle (recycles it for keep-alive, or closes it
    when the request body is still arriving) inside the app's last `send`. quart-trio cancels its
    own request task as soon as hypercorn then reports the disconnect, which can cancel that
    teardown half-way: the connection is neither closed nor recycled and the client's next request
    on it hangs (a 405, 413 or 429 answered before the body arrived). The last send is shielded.
    Only the Quart app needs this: the HLS handler's task is never cancelled by a disconnect."""

    async def shielded_app(scope, receive, send):
        async def shielded_send(message):
            if message.get("type") == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await app(scope, receive, shielded_send)

    return shielded_app


class SenderApp:
    """The ASGI entry: /hls/ → HLSHandler, the rest → the Quart app."""

    def __init__(self, ctx: HTTPContext):
        self.ctx = ctx
        self.quart = create_api(ctx)
        pages.register(self.quart, ctx)  # /, /watch/<slug>, /static/<name>
        admin.register(self.quart, ctx)  # /admin
        endpoint_reports.register(self.quart, ctx)  # external endpoints' own snapshot reports
        self.api = shield_last_send(self.quart)
        self.hls = HLSHandler(spool=ctx.spool, files=ctx.files, directory=ctx.directory, viewers=ctx.viewers,
                              counters=ctx.counters, secret=ctx.playback_secret, node_key=ctx.distribution_key,
                              client_of=ctx.client_of, pull=ctx.pull)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["raw_path"].startswith(b"/hls/"):
            await self.hls(scope, receive, send)
        else:
            await self.api(scope, receive, send)
