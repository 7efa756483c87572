"""Fixtures for a real sender-http worker on 127.0.0.1 (and, where media is needed, ingest)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
import trio

from daemons.core.install import Install
from daemons.http.server import HTTPDaemon
from daemons.runtime.store import StoreWorker
from tests.daemons.conftest import make_install


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
