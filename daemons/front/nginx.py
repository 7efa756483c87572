"""sender-front with front.kind = "nginx": nginx as a child, its config kept matching sender.toml,
and the playlist pusher feeding it.

Writes nginx.conf and the Lua module beside sender.toml (`/etc/sender/front/`,
daemons/core/front_nginx.py), checks the config with `nginx -t`, starts nginx in the foreground
(its master a child of this process: it dies with it), READY once it listens, then runs the
pusher (daemons/front/pusher.py). A change of the front.* keys (or of what the config is made
from) rewrites the files and reloads nginx with SIGHUP — new workers, new certificates, kept
listeners; a config nginx rejects is logged and the running one kept. nginx exiting ends this
process with an error: its supervisor (systemd, `sender up`) starts the front again.
"""

from __future__ import annotations

import logging
import os
import signal

import trio

from daemons.core import config as config_mod
from daemons.core.errors import SenderError
from daemons.core.front_nginx import NginxFiles, nginx_argv, nginx_test_argv, push_key
from daemons.core.install import Install
from daemons.front.pusher import PlaylistPusher
from daemons.runtime import children
from daemons.runtime import logging as slog
from daemons.runtime.front_files import nginx_binary, write_files
from daemons.runtime.store import StoreWorker

log = slog.get("front")

WATCH_INTERVAL_S = 1.0
STOP_GRACE_S = 10.0
# Keys the generated config is made from: a change reloads nginx.
CONFIG_KEYS = ("http.listen", "http.keep_alive_s", "http.max_request_body", "node.state_dir", "spool.root",
               "hls.segment_target_s")


def _values(cfg: config_mod.Config) -> dict:
    return {k: v for k, v in cfg.values.items() if k.startswith("front.") or k in CONFIG_KEYS}


START_TIMEOUT_S = 30.0


class FrontExited(SenderError):
    pass


async def _listening(host: str, port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]"), port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def wait_listening(child: children.Child, name: str, addresses: list[tuple[str, int]]) -> None:
    """Until `child` accepts connections on every address; FrontExited if it exits or takes too long."""
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            if child.returncode is not None or child.popen.poll() is not None:
                raise FrontExited(f"{name} exited with status {child.popen.returncode} at its start (its log above says why)")
            if all([await _listening(h, p) for h, p in addresses]):
                return
            await trio.sleep(0.05)
    raise FrontExited(f"{name} did not listen on {', '.join(f'{h}:{p}' for h, p in addresses)} within {START_TIMEOUT_S:g} s")


def mtime(path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class NginxFront:
    def __init__(self, install: Install, store: StoreWorker):
        self.install = install
        self.cfg = install.config
        self.files = NginxFiles.of(self.cfg)
        self.nginx = nginx_binary()
        self.child: children.Child | None = None
        self.key = push_key(install.secret())
        self.pusher = PlaylistPusher(self.cfg, install.state_dir, store, self.key)

    async def _check(self) -> str | None:
        done = await trio.run_process(nginx_test_argv(self.files, self.nginx), capture_stdout=True, capture_stderr=True,
                                      check=False)
        return None if done.returncode == 0 else (done.stdout + done.stderr).decode(errors="replace").strip()

    async def start(self) -> None:
        if self.nginx is None:
            raise FrontExited("front.kind = \"nginx\" needs nginx with its Lua module: "
                              "apt install nginx libnginx-mod-http-lua lua-resty-core")
        await trio.to_thread.run_sync(write_files, self.cfg, self.files, self.key)
        problem = await self._check()
        if problem:
            raise FrontExited(f"nginx rejects the generated config {self.files.conf}: {problem}")
        argv = nginx_argv(self.files, self.nginx)
        slog.log(log, logging.INFO, "starting nginx", argv=" ".join(argv))
        self.child = children.spawn(argv, death_signal=signal.SIGTERM)
        keys = [k for k in ("front.listen", "front.http_listen", "front.proxy_listen") if self.cfg[k]]
        await wait_listening(self.child, "nginx", [self.cfg.listen(k) for k in keys])

    async def reload(self) -> None:
        try:
            new = await trio.to_thread.run_sync(config_mod.load, self.cfg.path)
        except SenderError as e:
            slog.log(log, logging.ERROR, "config not reloaded", error=e.message)
            return
        if _values(new) == _values(self.cfg):
            return
        old, self.cfg = self.cfg, new
        await trio.to_thread.run_sync(write_files, new, self.files, self.key)
        problem = await self._check()
        if problem:
            slog.log(log, logging.ERROR, "nginx rejects the new config: the running one is kept", error=problem)
            self.cfg = old
            await trio.to_thread.run_sync(write_files, old, self.files, self.key)
            return
        self.child.send_signal(signal.SIGHUP)  # new workers with the new config and certificates
        slog.log(log, logging.INFO, "reloaded nginx")

    async def watch(self) -> None:
        path = self.cfg.path
        seen = mtime(path)
        with trio.open_signal_receiver(signal.SIGHUP) as hups:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.pusher.run)

                async def reload_on_hup():
                    async for _ in hups:
                        await self.reload()

                nursery.start_soon(reload_on_hup)
                while True:
                    if self.child.popen.poll() is not None:
                        raise FrontExited(f"nginx exited with status {self.child.popen.returncode}")
                    current = mtime(path)
                    if current != seen:
                        seen = current
                        await self.reload()
                    await trio.sleep(WATCH_INTERVAL_S)

    async def stop(self) -> None:
        with trio.CancelScope(shield=True):
            if self.child is not None:
                await self.child.stop(grace_s=STOP_GRACE_S)
                await self.child.aclose()
