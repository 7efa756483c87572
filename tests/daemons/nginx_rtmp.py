"""A real nginx-rtmp (Debian's nginx + libnginx-mod-rtmp) in a prefix of its own on 127.0.0.1, as
bench/servers.py runs it: the stand-in for YouTube in the restream tests. Application `live`
takes any publish and writes HLS (what the tests read back with ffprobe); `refuse` turns every
publish away (on_publish answers 403), as a platform does with a wrong stream key."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
needs_nginx_rtmp = pytest.mark.skipif(NGINX is None or not MODULE.exists(),
                                      reason="nginx with libnginx-mod-rtmp not installed (run .ci/bootstrap --test)")

CONF = """\
load_module {module};
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {prefix}/hls;
            hls_fragment 1s;
            hls_playlist_length 60s;
            hls_cleanup off;
        }}
        application refuse {{
            live on;
            notify_method get;
            on_publish http://127.0.0.1:{http_port}/refuse;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        location = /refuse {{ return 403; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class NginxRtmp:
    """nginx-rtmp in `prefix`: start, stop (kill, as a crash), start again on the same ports."""

    def __init__(self, prefix: Path):
        self.prefix = Path(prefix)
        self.hls = self.prefix / "hls"
        self.rtmp_port, self.http_port = free_port(), free_port()
        while self.http_port == self.rtmp_port:
            self.http_port = free_port()
        for d in ("hls", "tmp"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (self.prefix / "nginx.conf").write_text(CONF.format(
            module=MODULE, prefix=self.prefix, rtmp_port=self.rtmp_port, http_port=self.http_port,
            user="user root;\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen | None = None

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{name}"

    def start(self) -> None:
        log = open(self.prefix / "stdout.log", "ab")
        try:
            self.proc = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", "nginx.conf", "-e", str(self.prefix / "error.log")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while not (_listening(self.rtmp_port) and _listening(self.http_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx-rtmp did not start: {(self.prefix / 'error.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Die as a crashed server does: SIGKILL to the master and its worker."""
        if self.proc is not None and self.proc.poll() is None:
            pid = self.proc.pid
            workers = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
            self.proc.kill()
            self.proc.wait()
            for w in workers:
                try:
                    os.kill(int(w), 9)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while _listening(self.rtmp_port) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def playlist(self, name: str) -> Path:
        return self.hls / f"{name}.m3u8"


@pytest.fixture
def nginx_rtmp(tmp_path):
    server = NginxRtmp(tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        server.stop()
