"""Fixtures for a real sender-http worker on 127.0.0.1 (and, where media is needed, ingest)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
import trio

from daemons.core import domain
from daemons.core.install import Install
from daemons.http.server import HTTPDaemon
from daemons.runtime.store import StoreWorker
from tests.daemons.conftest import make_install
from tests.http.spool_writer import GenerationWriter


@dataclass
class RunningHTTP:
    daemon: HTTPDaemon
    install: Install
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, **kw) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=kw.pop("timeout", 30), **kw)


def make_http_install(root, **overrides) -> Install:
    return make_install(root, **{"http.listen": "127.0.0.1:0", **overrides})


async def start_http(nursery: trio.Nursery, inst: Install, **kw) -> RunningHTTP:
    daemon = HTTPDaemon(inst, StoreWorker(inst.open_store()), **kw)
    addresses = await nursery.start(daemon.serve)
    _, host, port = addresses[0]
    return RunningHTTP(daemon, inst, host, port)


@pytest.fixture
def http_install(tmp_path) -> Install:
    return make_http_install(tmp_path / "var")


@pytest.fixture
async def http(nursery, http_install) -> RunningHTTP:
    return await start_http(nursery, http_install)


async def generation(http: RunningHTTP, visibility: str = "public") -> GenerationWriter:
    """A stream with a live generation of 3 segments (0-2), for the caching-proxy tests."""
    with http.install.open_store() as store:
        stream = domain.streams.create(store, f"cached-{visibility}", visibility=visibility)
    gen = GenerationWriter(http.install.spool_root, http.install.state_dir, stream["id"])
    gen.add_segments(3)
    await http.daemon.ctx.directory.refresh()
    return gen


def origin_count(http: RunningHTTP, kind: str, status: int = 200) -> int:
    """How many requests of one kind sender-http answered with one status."""
    return http.daemon.ctx.counters.requests[(kind, status)]


async def answer_before_late_body(running: RunningHTTP, method: str, path: bytes) -> tuple[bytes, bytes]:
    """A request whose 7-byte body arrives only after the server answered it, then a GET of the
    same path on the same connection. (first answer's status line, what came after it): the
    connection must be answered or closed, never left hanging (a regression schemathesis found)."""
    stream = await trio.open_tcp_stream(running.host, running.port)
    async with stream:
        await stream.send_all(method.encode() + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
            while len(body) < length:
                body += await stream.receive_some()
        await trio.sleep(0.1)  # the body, late (the point of the test: it comes after the answer)
        rest = body[length:]
        with trio.fail_after(5):
            try:
                await stream.send_all(b'{"a":1}' + b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while chunk := await stream.receive_some():
                    rest += chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    return head.split(b"\r\n", 1)[0], rest
