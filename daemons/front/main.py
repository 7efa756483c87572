"""sender-front (`sender daemon front`): runs the front tier and keeps it matching sender.toml.

The front is nginx (front.kind = "nginx"; daemons/front/nginx.py): its generated config written
beside sender.toml (`/etc/sender/front/`), nginx a child of this process (it dies with it), READY
once it listens; then this process watches sender.toml (once a second) and reloads nginx on a
change or on SIGHUP (the unit's ExecReload: a renewed certificate is taken by `systemctl reload
sender-front`), and pushes every playlist version viewers ask for into nginx
(daemons/front/pusher.py). nginx exiting ends this process with an error: its supervisor
(systemd, `sender up`) starts the front again.
"""

from __future__ import annotations

import logging

import trio

from daemons.core.front_config import binaries, install_hint  # noqa: F401 - the front's programs
from daemons.core.install import Install
from daemons.front.nginx import NginxFront
from daemons.runtime import daemon
from daemons.runtime import logging as slog
from daemons.runtime.store import StoreWorker

log = slog.get("front")


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    front = NginxFront(install, store)
    try:
        await front.start()
        slog.log(log, logging.INFO, "front listening", https=install.config["front.listen"] or None,
                 http=install.config["front.http_listen"] or None, upstream=install.config["http.listen"])
        task_status.started()
        await front.watch()
    finally:
        await front.stop()


def main(config_path: str | None = None) -> None:
    install = Install.load(config_path)
    if install.config["front.kind"] != "nginx":
        slog.setup(install.config["log.level"])
        slog.log(log, logging.CRITICAL, "refusing to start: front.kind is not set "
                 "(`sender config set front.kind nginx`, or `sender install --front nginx`)")
        raise SystemExit(1)
    daemon.run("front", serve, config_path)
