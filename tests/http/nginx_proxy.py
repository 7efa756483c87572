"""A real nginx caching proxy configured by `sender cache-config nginx`: in a prefix of its own,
or in Debian's stock nginx layout moved under a directory standing in for /."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio

from sender_cli.commands.cache_config import render_nginx
from tests.daemons.conftest import wait_for
from tests.daemons.test_up import free_port, port_open

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
STOCK = Path("/etc/nginx")  # Debian's nginx package: nginx.conf, the default site
# Where Debian's nginx.conf (and its compiled-in defaults) write: moved under the fake root.
WRITTEN = re.compile(r"(?<![\w/])(/etc/nginx/(?:conf\.d|sites-enabled)|/run|/var/log/nginx)(?=[/;\s])")
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@asynccontextmanager
async def running_nginx(conf: Path, port: int):
    """nginx in the foreground with `conf`, until it listens on `port`."""
    proc = await trio.lowlevel.open_process([NGINX, "-c", str(conf), "-g", "daemon off;"], stdin=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open(port), timeout=10)
        yield proc
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def nginx_cache(upstream: str, prefix: Path, *, target_duration_s: int = 1):
    """nginx in front of `upstream` (HOST:PORT); yields its base URL."""
    port = free_port()
    (prefix / "logs").mkdir(parents=True)
    snippet = prefix / "sender-cache.conf"
    snippet.write_text(render_nginx(upstream=upstream, listen=f"127.0.0.1:{port}",
                                    cache_dir=str(prefix / "cache"), target_duration_s=target_duration_s))
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in TEMP_PATHS)
    # As root (CI), nginx's workers would drop to `nobody`, who cannot enter pytest's 0700 tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'};\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{ access_log off; {temp} include {snippet}; }}\n"
    )
    async with running_nginx(prefix / "nginx.conf", port):
        yield f"http://127.0.0.1:{port}"


def has_debian_nginx() -> bool:
    return NGINX is not None and (STOCK / "nginx.conf").is_file() and (STOCK / "sites-enabled" / "default").exists()


@contextmanager
def debian_root(port: int):
    """Debian's stock nginx as its package installs it, under a directory standing in for / (a
    runbook's `/etc/nginx/...` is ROOT/etc/nginx/...): nginx.conf and the default site as
    shipped, except that what they write (pid, logs, conf.d, sites-enabled, temp files) lives
    under ROOT and the default site listens on 127.0.0.1:port instead of port 80. ROOT is
    outside pytest's private tmp dirs: the stock `user www-data` workers must reach it."""
    root = Path(tempfile.mkdtemp(prefix="sender-debian-nginx-"))
    try:
        root.chmod(0o755)
        etc = root / "etc/nginx"
        for d in (etc / "conf.d", etc / "sites-enabled", root / "run", root / "var/log/nginx", root / "var/cache", root / "var/lib/nginx"):
            d.mkdir(parents=True)
        conf = WRITTEN.sub(lambda m: f"{root}{m.group(1)}", (STOCK / "nginx.conf").read_text())
        (etc / "nginx.conf").write_text(conf)
        site = (STOCK / "sites-enabled" / "default").read_text()
        site = re.sub(r"^\s*listen\s+\[::\]:80\b.*$", "", site, flags=re.M)
        site = re.sub(r"^(\s*listen\s+)80\b", rf"\g<1>127.0.0.1:{port}", site, flags=re.M)
        (etc / "sites-enabled" / "default").write_text(site)
        # Debian's compiled-in temp paths (/var/lib/nginx/...), moved under ROOT as well.
        (etc / "conf.d" / "00-debian-temp-paths.conf").write_text(
            "".join(f"{kind}_temp_path {root}/var/lib/nginx/{kind};\n" for kind in TEMP_PATHS))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
