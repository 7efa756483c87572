"""A real nginx caching proxy configured by `sender cache-config nginx`, in a prefix of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from sender_cli.commands.cache_config import render_nginx
from tests.daemons.conftest import wait_for
from tests.daemons.test_up import free_port, port_open

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@asynccontextmanager
async def nginx_cache(upstream: str, prefix: Path, *, target_duration_s: int = 1):
    """nginx in front of `upstream` (HOST:PORT); yields its base URL."""
    port = free_port()
    (prefix / "logs").mkdir(parents=True)
    snippet = prefix / "sender-cache.conf"
    snippet.write_text(render_nginx(upstream=upstream, listen=f"127.0.0.1:{port}",
                                    cache_dir=str(prefix / "cache"), target_duration_s=target_duration_s))
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root (CI), nginx's workers would drop to `nobody`, who cannot enter pytest's 0700 tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'};\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{ access_log off; {temp} include {snippet}; }}\n"
    )
    proc = await trio.lowlevel.open_process([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                                            stdin=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open(port), timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
