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
from tests.daemons.conftest import make_install, wait_for
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


async def origin_saw(http: RunningHTTP, kind: str, expected: int, status: int = 200) -> int:
    """sender-http's count of one kind of answer, once it has counted `expected` of them: it
    counts after sending, so the count may trail the answer the client already has."""
    await wait_for(lambda: origin_count(http, kind, status) >= expected)
    return origin_count(http, kind, status)


async def viewers_blocked_on_the_next_part(http: RunningHTTP, proxy: str, viewers: int = 50) -> list[httpx.Response]:
    """`viewers` players ask a caching proxy for the playlist blocked on part 3.0, which does not
    exist yet; nobody may be answered until it appears (then it is added)."""
    gen = await generation(http)
    results = []
    async with httpx.AsyncClient(base_url=proxy, limits=httpx.Limits(max_connections=100), timeout=30) as c:
        async with trio.open_nursery() as n:
            async def viewer(i: int) -> None:
                results.append(await c.get(gen.url(), params={"_HLS_msn": 3, "_HLS_part": 0, "session": f"viewer-{i}"}))

            for i in range(viewers):
                n.start_soon(viewer, i)
            # Held upstream: one request, however many viewers wait behind the proxy.
            view_path = f"{gen.stream_id}/{gen.generation_id}/{gen.rendition}"
            await wait_for(lambda: (v := http.daemon.ctx.spool.views.get(view_path)) is not None and v.waiters >= 1)
            assert results == []  # nobody is answered before the part exists
            gen.add_part()
    return results
