"""Entry point of sender-edge-fill (`sender daemon edge-fill`)."""

from __future__ import annotations

import trio

from daemons.core.install import Install
from daemons.edge_fill.daemon import EdgeFillDaemon
from daemons.runtime import daemon
from daemons.runtime.store import StoreWorker


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    await EdgeFillDaemon(install, store).serve(task_status=task_status)


def main(config_path: str | None = None) -> None:
    daemon.run("edge-fill", serve, config_path)
