"""Multi-node fixtures: an origin and edge nodes on loopback, each a separate install (config,
store, spool, ports) running real daemon processes (`sender daemon …`), sharing one distribution key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from daemons.core import config as config_mod
from daemons.core import domain, install
from daemons.core.install import Install
from daemons.core.stats import read_stats
from daemons.media.hls.parse import parse_media_playlist
from tests.daemons.conftest import ffmpeg_publish_cmd
from tests.daemons.test_up import free_port, port_open

SENDER = str(Path(sys.executable).parent / "sender")
SEGMENT_TARGET_S = 1.0  # TARGETDURATION 1 with a 1 s GOP: failover within 2 s is the bar
PART_TARGET_S = 0.2


@dataclass
class Node:
    """One Sender node: its install and its daemon processes."""

    name: str
    install: Install
    http_port: int
    rtmp_port: int
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def config_path(self) -> str:
        return str(self.install.config.path)

    def store(self):
        return self.install.open_store()

    async def start(self, *daemons: str) -> None:
        for d in daemons:
            out = open(self.log_dir / f"{self.name}-{d}.log", "ab")
            self.procs[d] = subprocess.Popen([SENDER, "--config", self.config_path, "daemon", d],
                                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            out.close()
        if "http" in daemons:
            await wait_until(lambda: port_open(self.http_port), 20, f"{self.name} http listening")
        if "ingest" in daemons:
            await wait_until(lambda: port_open(self.rtmp_port), 20, f"{self.name} ingest listening")

    def kill(self, *daemons: str) -> None:
        for d in daemons or list(self.procs):
            p = self.procs.pop(d, None)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def spool(self, stream_id: str, generation_id: str) -> Path:
        return self.install.spool_root / "streams" / stream_id / generation_id


async def wait_until(predicate, timeout: float, what: str):
    """Poll a condition (sync or async) until it holds."""
    with trio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - fail_after raises first


@pytest.fixture
def distribution_key(tmp_path) -> Path:
    path = tmp_path / "distribution.key"
    path.write_text(os.urandom(24).hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def make_node(tmp_path, distribution_key):
    nodes: list[Node] = []

    def make(name: str, **overrides) -> Node:
        root = tmp_path / name
        result = install.init(directory=root)
        cfg = config_mod.load(result.config_path)
        http_port, rtmp_port = free_port(), free_port()
        values = {
            "node.id": name, "node.public_base_url": f"http://127.0.0.1:{http_port}",
            "http.listen": f"127.0.0.1:{http_port}", "rtmp.listen": f"127.0.0.1:{rtmp_port}",
            "distribution.key_file": str(distribution_key),
            "hls.segment_target_s": SEGMENT_TARGET_S, "hls.part_target_s": PART_TARGET_S,
            "edge_fill.discovery_interval_s": 0.5, "log.level": "info", **overrides,
        }
        for k, v in values.items():
            cfg = cfg.with_value(k, v)
        config_mod.write(cfg, result.config_path)
        node = Node(name, Install.load(result.config_path), http_port, rtmp_port, tmp_path)
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.stop()


def link(node: Node, graph: dict[str, tuple[str, str, list[str]]]) -> None:
    """Write the distribution graph into a node's store: id → (type, base_url, sources)."""
    with node.store() as store:
        for endpoint_id, (kind, base_url, _sources) in graph.items():
            domain.endpoints.upsert(store, endpoint_id, type=kind, public_base_url=base_url)
        for endpoint_id, (_kind, _url, sources) in graph.items():
            if sources:
                domain.endpoints.link(store, endpoint_id, sources)


def stream_and_key(node: Node, slug: str = "show") -> tuple[dict, str]:
    """A stream on the node and a stream key for it."""
    with node.store() as store:
        stream = domain.streams.create(store, slug)
        _, key = domain.keys.create(store, node.install.secret(), slug)
    return stream, key


@asynccontextmanager
async def origin_and_edge(make_node, *, seconds: int, hop: "CountingProxy | None" = None, edge_daemons=("http", "edge-fill"),
                          **edge_config):
    """An origin (ingest + http) publishing a test pattern with ffmpeg for `seconds`, and one edge
    (`edge-a`) following it — through `hop` when given. Yields (origin, edge, stream)."""
    origin, edge = make_node("origin"), make_node("edge-a", **edge_config)
    link(origin, {"origin": ("tribes_origin", origin.base_url, []), "edge-a": ("tribes_edge", edge.base_url, ["origin"])})
    if hop is not None:
        hop.upstream = origin.base_url
    link(edge, {"origin": ("tribes_origin", hop.base_url if hop else origin.base_url, []),
                "edge-a": ("tribes_edge", edge.base_url, ["origin"])})
    stream, key = stream_and_key(origin)
    await origin.start("ingest", "http")
    await edge.start(*edge_daemons)
    publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), seconds), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield origin, edge, stream
    finally:
        publisher.kill()
        publisher.wait()


async def get_playlist(client: httpx.AsyncClient, url: str):
    r = await client.get(url)
    if r.status_code != 200:
        return None
    return parse_media_playlist(r.text)


class CountingProxy:
    """A real HTTP hop between an edge and its source that counts every request it forwards
    (path and query): what the origin is asked, request by request. Requests `hang` picks (by
    path and query) are accepted and never answered: a source that stopped giving them."""

    def __init__(self, upstream: str = ""):
        self.upstream = upstream
        self.requests: dict[str, int] = {}
        self.hang: Callable[[str], bool] = lambda key: False
        self.port = free_port()
        self.client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=512))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        key = scope["raw_path"].decode() + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        self.requests[key] = self.requests.get(key, 0) + 1
        if self.hang(key):
            await trio.sleep_forever()
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() == b"authorization"}
        try:
            r = await self.client.get(self.upstream + key, headers=headers)
            status, body = r.status_code, r.content
            out = [(k.encode(), v.encode()) for k, v in r.headers.items()
                   if k.lower() in ("content-type", "cache-control", "etag", "last-modified")]
        except httpx.HTTPError:
            status, body, out = 502, b"upstream unreachable\n", []
        await send({"type": "http.response.start", "status": status, "headers": out + [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        async with self.client:
            await serve(self.app, config, task_status=task_status)

    def media_requests(self) -> dict[str, int]:
        return {k: v for k, v in self.requests.items() if k.endswith((".m4s", ".mp4"))}

    def playlist_requests(self) -> dict[str, int]:
        return {k: v for k, v in self.requests.items() if ".m3u8" in k}


class RecordingOrigin:
    """A tiny HTTP origin in the test process: fixed answers by path (`pages`, changed by the test
    as it likes), every request recorded."""

    def __init__(self, pages: dict[str, bytes]):
        self.pages, self.requests, self.port = pages, [], free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        self.requests.append((scope["path"], dict(scope["headers"])))
        body = self.pages.get(scope["path"])
        await send({"type": "http.response.start", "status": 200 if body is not None else 404,
                    "headers": [(b"content-length", b"%d" % len(body or b""))]})
        await send({"type": "http.response.body", "body": body or b""})

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED):
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind, config.accesslog, config.errorlog = [f"127.0.0.1:{self.port}"], None, None
        await serve(self.app, config, task_status=task_status)


def source_of(node: Node) -> str | None:
    """The source the node's edge-fill follows its (first) generation from, as its stats say."""
    gens = (read_stats(node.install.state_dir, "edge-fill") or {}).get("generations") or []
    return gens[0]["source"] if gens else None
