"""`sender up --front nginx` as an admin runs it: Debian's nginx with its Lua module, HTTPS with a
certificate from a throwaway CA (trustme), a real ffmpeg publisher per stream.

One node for the module: a public stream `show` and a private stream `members`, each with its
own publisher, live before any test runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.daemons.conftest import FFMPEG, ffmpeg_publish_cmd
from tests.daemons.test_up import SENDER, free_port, port_open, sender

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NGINX_LUA = all(Path(p).exists() for p in ("/usr/lib/nginx/modules/ngx_http_lua_module.so", "/usr/share/lua/5.1/ngx/semaphore.lua"))
needs_nginx_front = pytest.mark.skipif(NGINX is None or not NGINX_LUA, reason="needs Debian's nginx, libnginx-mod-http-lua and lua-resty-core (run .ci/bootstrap --test)")
needs_front = [needs_nginx_front, pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (run .ci/bootstrap --test)")]
START_S = 60.0


def poll(condition, timeout: float, what: str, interval: float = 0.1):
    """A condition polled until it holds, in a sync fixture (no trio there)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


@dataclass
class FrontNode:
    kind: str
    dir: Path
    env: dict
    ports: dict
    ca_file: Path
    stream_ids: dict = field(default_factory=dict)
    up: subprocess.Popen | None = None
    publishers: list = field(default_factory=list)

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.ports['https']}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http_front']}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return sender(self.env, *args)

    def http_stats(self) -> dict:
        return json.loads((self.dir / "state" / "stats" / "http-0.json").read_text())

    def origin_requests(self, kind: str, status: int = 200) -> int:
        """sender-http's own count of its answers (its stats file, written every second)."""
        return sum(n for k, c, n in self.http_stats()["requests"] if k == kind and c == status)

    def log(self) -> str:
        return (self.dir / "up.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def front_node(tmp_path_factory):
    kind = "nginx"
    d = tmp_path_factory.mktemp("front") / "var"
    env = {**os.environ, "SENDER_CONFIG": str(d / "sender.toml")}
    ports = {k: free_port() for k in ("rtmp", "http", "https", "http_front", "proxy")}
    assert sender(env, "init", "--dir", str(d)).returncode == 0
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = d / "tls"
    tls.mkdir()
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(tls / "cert.pem"), append=True)
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    settings = {
        "rtmp.listen": f"127.0.0.1:{ports['rtmp']}", "http.listen": f"127.0.0.1:{ports['http']}",
        "front.listen": f"127.0.0.1:{ports['https']}", "front.http_listen": f"127.0.0.1:{ports['http_front']}",
        "front.proxy_listen": f"127.0.0.1:{ports['proxy']}", "front.tls_cert": str(tls / "cert.pem"),
        "front.tls_key": str(tls / "key.pem"), "front.access_log": str(d / "state" / "front-access.log"),
    }
    for key, value in settings.items():
        assert sender(env, "config", "set", key, value).returncode == 0
    node = FrontNode(kind, d, env, ports, tls / "ca.pem")
    keys = {}
    for slug, visibility in (("show", "public"), ("members", "private")):
        created = json.loads(sender(env, "stream", "create", slug, "--visibility", visibility, "--json").stdout)
        node.stream_ids[slug] = created["id"]
        keys[slug] = json.loads(sender(env, "key", "create", slug, "--json").stdout)["key"]
    with (d / "up.log").open("wb") as out:
        node.up = subprocess.Popen([str(SENDER), "up", "--front", kind], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: node.up.poll() is not None or all(port_open(ports[k]) for k in ("rtmp", "http", "https", "http_front")),
             START_S, f"sender up --front {kind} listening")
        assert node.up.poll() is None, node.log()
        for slug in keys:
            node.publishers.append(subprocess.Popen(
                ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{ports['rtmp']}/live/{keys[slug]}", 600),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for slug in keys:
            poll(lambda: json.loads(sender(env, "stream", "status", slug, "--json").stdout)["generation"]["status"] == "live",
                 30, f"{slug} live")
        yield node
    finally:
        for p in node.publishers:
            p.kill()
            p.wait()
        node.up.send_signal(signal.SIGINT)
        try:
            node.up.wait(30)
        except subprocess.TimeoutExpired:
            node.up.kill()
            node.up.wait()
