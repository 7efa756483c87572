"""Entry point of sender-http (`sender daemon http`)."""

from __future__ import annotations

import trio

from daemons.core.install import Install
from daemons.http.server import HTTPDaemon
from daemons.runtime import daemon
from daemons.runtime.store import StoreWorker


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    await HTTPDaemon(install, store).serve(task_status=task_status)


def main(config_path: str | None = None) -> None:
    daemon.run("http", serve, config_path)
