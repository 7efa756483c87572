"""sender-front (`sender daemon front`): runs the front tier and keeps it matching sender.toml.

With `front.kind = "nginx"` the runner is daemons/front/nginx.py (nginx as a child, and the
playlist pusher that feeds it: daemons/front/pusher.py). This module runs the other one:

With `front.kind = "varnish"`: writes the VCL and hitch's config (daemons/core/front_config.py) beside
sender.toml (`/etc/sender/front/`), starts `varnishd -F` (the cache: every viewer request is
answered there, sender-http sees one request per object and per playlist version) and, when
HTTPS is on, `hitch` (TLS and HTTP/2 in front of Varnish), each a child of this process
(`daemons.runtime.children`: they die with it). READY once both listen.

It then watches sender.toml (once a second) and reloads on SIGHUP (the unit's ExecReload): a
change of the front.* keys — or of http.listen, which the VCL points at — is applied without a
restart: a new VCL through `varnishadm vcl.load`/`vcl.use` (cached objects and connections
stay), hitch re-reads its config and certificates on SIGHUP (so a renewed certificate is taken
by `systemctl reload sender-front`). Only what varnishd takes on its command line (the cache's
size and path, its listen addresses) restarts varnishd. A child that exits ends this process
with an error: its supervisor (systemd, `sender up`) starts the front again.

This process does no request work: it waits on its children and a one-second timer (with
nginx, it also pushes each playlist version).
"""

from __future__ import annotations

import logging
import os
import signal

import trio

from daemons.core import config as config_mod
from daemons.core.config import Config
from daemons.core.errors import SenderError
from daemons.core.install import Install
from daemons.core import front_config as render
from daemons.core.front_config import binaries, install_hint  # noqa: F401 - the front's programs
from daemons.runtime import children, daemon
from daemons.runtime import logging as slog
from daemons.runtime.front_files import write_atomically
from daemons.runtime.store import StoreWorker
from daemons.front.common import FrontExited, mtime, wait_listening

log = slog.get("front")

WATCH_INTERVAL_S = 1.0
STOP_GRACE_S = 10.0
# What a change restarts varnishd for (its command line); anything else is a reload.
VARNISHD_KEYS = ("front.cache_size", "front.cache_path", "front.proxy_listen", "front.http_listen", "node.state_dir")


def write_files(cfg: Config, files: render.FrontFiles) -> None:
    """The VCL (and hitch's config when HTTPS is on), each renamed into place."""
    files.config_dir.mkdir(parents=True, exist_ok=True)
    files.workdir.mkdir(parents=True, exist_ok=True)
    outputs = {files.vcl: render.render_owned_vcl(cfg)}
    if render.https_on(cfg):
        outputs[files.hitch_conf] = render.render_hitch(cfg)
    for path, text in outputs.items():
        write_atomically(path, text)


def _front_values(cfg: Config) -> dict:
    return {k: v for k, v in cfg.values.items() if k.startswith("front.") or k in ("http.listen", "node.state_dir", "hls.segment_target_s")}


class Front:
    """varnishd (and hitch) as children, and what reloads them."""

    def __init__(self, install: Install):
        self.install = install
        self.cfg = install.config
        self.files = render.FrontFiles.of(self.cfg)
        self.varnishd: children.Child | None = None
        self.hitch: children.Child | None = None
        self.vcl_generation = 0
        self.bins = binaries(self.cfg)

    async def start_varnishd(self) -> None:
        argv = render.varnishd_argv(self.cfg, self.files, self.bins["varnishd"])
        slog.log(log, logging.INFO, "starting varnishd", argv=" ".join(argv))
        self.varnishd = children.spawn(argv, death_signal=signal.SIGTERM)
        await self._wait_listening(self.varnishd, "varnishd", ["front.proxy_listen", "front.http_listen"])

    async def start_hitch(self) -> None:
        argv = render.hitch_argv(self.files, self.bins["hitch"])
        slog.log(log, logging.INFO, "starting hitch", argv=" ".join(argv))
        self.hitch = children.spawn(argv, death_signal=signal.SIGTERM)
        await self._wait_listening(self.hitch, "hitch", ["front.listen"])

    async def _wait_listening(self, child: children.Child, name: str, keys: list[str]) -> None:
        await wait_listening(child, name, [self.cfg.listen(k) for k in keys if self.cfg[k]])

    async def start(self) -> None:
        await trio.to_thread.run_sync(write_files, self.cfg, self.files)
        await self.start_varnishd()
        if render.https_on(self.cfg):
            await self.start_hitch()

    async def reload(self) -> None:
        """Apply sender.toml as it is now: reload what can be reloaded, restart varnishd only
        for what it takes on its command line."""
        try:
            new = await trio.to_thread.run_sync(config_mod.load, self.cfg.path)
        except SenderError as e:
            slog.log(log, logging.ERROR, "config not reloaded", error=e.message)
            return
        if _front_values(new) == _front_values(self.cfg):
            return
        old, self.cfg = self.cfg, new
        self.bins = binaries(new) or self.bins
        await trio.to_thread.run_sync(write_files, new, self.files)
        if any(old[k] != new[k] for k in VARNISHD_KEYS):
            slog.log(log, logging.INFO, "restarting varnishd: its command line changed")
            await self._stop(self.varnishd)
            await self.start_varnishd()
        else:
            self.vcl_generation += 1
            name = f"sender_{os.getpid()}_{self.vcl_generation}"
            await self._varnishadm("vcl.load", name, str(self.files.vcl))
            await self._varnishadm("vcl.use", name)
            slog.log(log, logging.INFO, "reloaded the VCL", vcl=name)
        if render.https_on(new) and self.hitch is None:
            await self.start_hitch()
        elif not render.https_on(new) and self.hitch is not None:
            await self._stop(self.hitch)
            self.hitch = None
        elif self.hitch is not None:
            self.hitch.send_signal(signal.SIGHUP)  # hitch re-reads its config and certificates
            slog.log(log, logging.INFO, "reloaded hitch (config and certificates)")

    async def _varnishadm(self, *args: str) -> None:
        done = await trio.run_process([self.bins["varnishadm"], "-n", str(self.files.workdir), *args],
                                      capture_stdout=True, capture_stderr=True, check=False)
        if done.returncode != 0:
            raise FrontExited(f"varnishadm {' '.join(args)} failed: {(done.stdout + done.stderr).decode(errors='replace').strip()}")

    async def watch(self) -> None:
        """A child's exit ends the front (its supervisor restarts it); config changes and
        SIGHUP reload it."""
        path = self.cfg.path
        seen = mtime(path)
        with trio.open_signal_receiver(signal.SIGHUP) as hups:
            async with trio.open_nursery() as nursery:
                async def reload_on_hup():
                    async for _ in hups:
                        await self.reload()

                nursery.start_soon(reload_on_hup)
                while True:
                    for name, child in (("varnishd", self.varnishd), ("hitch", self.hitch)):
                        if child is not None and child.popen.poll() is not None:
                            raise FrontExited(f"{name} exited with status {child.returncode}")
                    current = mtime(path)
                    if current != seen:
                        seen = current
                        await self.reload()
                    await trio.sleep(WATCH_INTERVAL_S)

    async def _stop(self, child: children.Child | None) -> None:
        if child is None:
            return
        await child.stop(grace_s=STOP_GRACE_S)
        await child.aclose()

    async def stop(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stop(self.hitch)
            await self._stop(self.varnishd)


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    if install.config["front.kind"] == "nginx":
        from daemons.front.nginx import NginxFront  # the nginx front's own module: its pusher, its Lua
        front = NginxFront(install, store)
    else:
        front = Front(install)
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
    if install.config["front.kind"] not in ("nginx", "varnish"):
        slog.setup(install.config["log.level"])
        slog.log(log, logging.CRITICAL, "refusing to start: front.kind is not set "
                 "(`sender config set front.kind nginx`, or `sender install --front nginx`)")
        raise SystemExit(1)
    daemon.run("front", serve, config_path)
