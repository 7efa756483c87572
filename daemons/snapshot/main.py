"""Entry point of sender-snapshot (`sender daemon snapshot`)."""

from __future__ import annotations

import trio

from daemons.core.install import Install
from daemons.runtime import daemon
from daemons.runtime.store import StoreWorker
from daemons.snapshot.daemon import SnapshotDaemon


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    await SnapshotDaemon(install, store).serve(task_status=task_status)


def main(config_path: str | None = None) -> None:
    daemon.run("snapshot", serve, config_path)
