"""A real nginx, configured by `sender cache-config nginx`, in front of sender-http: LL-HLS with
blocking reloads works through it, concurrent misses reach the origin once, and what must not be
kept (404s for future parts, private streams) is not."""

from __future__ import annotations

import os
import pwd
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from daemons.core.domain import playback
from sender_cli.commands.cache_config import NGINX_CACHE_DIR
from tests.daemons.test_up import free_port
from tests.http.conftest import generation, origin_saw, viewers_blocked_on_the_next_part
from tests.http.nginx_proxy import NGINX, debian_root, has_debian_nginx, nginx_cache, running_nginx
from tests.http.spool_writer import part_bytes

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbooks" / "edges.md"
SENDER = Path(sys.executable).parent / "sender"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed (run .ci/bootstrap --test)")


@pytest.fixture
async def proxy(http, tmp_path):
    async with nginx_cache(f"{http.host}:{http.port}", tmp_path / "nginx") as url:
        yield url


async def test_media_is_fetched_from_the_origin_once(http, proxy):
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=proxy) as c:
        first = await c.get(gen.url("1.m4s"))
        second = await c.get(gen.url("1.m4s"), params={"session": "another-viewer"})  # the session id is not in the key
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
    assert await origin_saw(http, "segment", 1) == 1


async def test_blocking_reloads_through_the_cache_collapse_into_one_origin_request(http, proxy):
    results = await viewers_blocked_on_the_next_part(http, proxy)
    assert len(results) == 50 and {r.status_code for r in results} == {200}
    assert all("3.0.m4s" in r.text for r in results)
    assert await origin_saw(http, "playlist", 1) == 1


async def test_a_404_for_a_future_part_is_not_kept(http, proxy):
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=proxy) as c:
        missing = await c.get(gen.url("3.1.m4s"))
        gen.add_part()
        gen.add_part()  # 3.0 and 3.1 now exist
        present = await c.get(gen.url("3.1.m4s"))
    assert missing.status_code == 404
    assert present.status_code == 200 and present.content == part_bytes(3, 1)


async def test_private_streams_are_not_cached(http, proxy):
    gen = await generation(http, "private")
    token = playback.mint_token(http.install.secret(), gen.stream_id, 600)["token"]
    async with httpx.AsyncClient(base_url=proxy) as c:
        for _ in range(2):
            r = await c.get(gen.url("1.m4s"), params={"token": token})
            assert r.status_code == 200 and r.headers["x-cache-status"] != "HIT"
        assert (await c.get(gen.url("1.m4s"))).status_code == 403  # and never served without a token
    assert await origin_saw(http, "segment", 2) == 2


async def test_arguments_outside_the_key_never_reach_the_origin(http, proxy):
    """sender-http is asked exactly what the cache key names: a duplicated or percent-encoded
    directive (nginx keys on the first, undecoded; sender-http would take the last, decoded)
    cannot put another answer under this key."""
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=proxy, timeout=30) as c:
        r = await c.get(gen.url() + "?_HLS_msn=1&_HLS_part=0&_HLS_%6Dsn=9&_HLS_msn=9&session=s1")
        assert r.status_code == 200  # msn 1 exists: answered at once, not held for msn 9 (or 400: too far ahead)
        plain = await c.get(gen.url() + "?_HLS_skip=&_HLS_skip=YES")
        assert plain.status_code == 200 and "#EXT-X-SKIP" not in plain.text


async def http_get(conn: trio.SocketStream, path: str) -> tuple[bytes, bytes]:
    """One GET on a kept-alive connection, read to the end of its body: (head, body)."""
    await conn.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            data += await conn.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\ncontent-length: *([0-9]+)", head, re.I).group(1))
        while len(body) < length:
            body += await conn.receive_some(65536)
    return head, body


def runbook_nginx_steps() -> str:
    """The shell block of the runbook's nginx section, as a person would paste it."""
    section = RUNBOOK.read_text().split("### nginx on the same or another machine", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(not has_debian_nginx(), reason="needs Debian's nginx package (its stock /etc/nginx)")
async def test_the_runbook_steps_work_in_debians_stock_nginx(http):
    """The runbook's commands, pasted into Debian's stock nginx (moved under a directory standing
    in for /): `nginx -t` passes, nginx creates the cache directory for its workers, requests
    reach sender-http through the printed server (not Debian's default site on the same port)
    and the second one is a HIT; a part is not held back by the stock `tcp_nopush on`."""
    port = free_port()
    steps = runbook_nginx_steps()
    assert "10.0.0.5:8080" in steps and "--listen 80 " in steps  # what the test points elsewhere
    with debian_root(port) as root:
        conf = root / "etc/nginx/nginx.conf"
        assert {"sendfile on;", "tcp_nopush on;", "user www-data;"} <= {line.strip() for line in conf.read_text().splitlines()}
        script = (steps.replace("/etc/nginx/", f"{root}/etc/nginx/").replace("10.0.0.5:8080", f"{http.host}:{http.port}")
                  .replace("--listen 80 ", f"--listen 127.0.0.1:{port} "))
        shell = (
            "set -eu\n"
            f'nginx() {{ {NGINX} -c {conf} "$@"; }}\n'
            f'systemctl() {{ echo "$*" >> {root}/systemctl.log; }}\n'  # the test runs nginx below
            # The printed default cache directory, under the stand-in root.
            f'sender() {{ [ "$1 $2" = "cache-config nginx" ] && set -- "$@" --cache-dir {root}{NGINX_CACHE_DIR}; {SENDER} "$@"; }}\n'
            + script
        )
        done = await trio.run_process(["bash", "-c", shell], capture_stdout=True, capture_stderr=True, check=False,
                                      env={k: v for k, v in os.environ.items() if k != "SENDER_CONFIG"})
        assert done.returncode == 0, done.stderr.decode()
        assert (root / "systemctl.log").read_text() == "reload nginx\n", "nginx -t failed"
        cache = root / NGINX_CACHE_DIR.lstrip("/")
        assert f"proxy_cache_path {cache} " in (root / "etc/nginx/conf.d/sender.conf").read_text()
        assert cache.is_dir()  # nginx made it (the runbook does not)
        if os.geteuid() == 0:
            assert cache.stat().st_uid == pwd.getpwnam("www-data").pw_uid

        gen = await generation(http)
        # A part the size of a 3 Mb/s stream's (a third of a second), written before anyone asked for it.
        part = os.urandom(125_000)
        (gen.dir / gen.rendition / "2.1.m4s").write_bytes(part)
        async with running_nginx(conf, port), await trio.open_tcp_stream("127.0.0.1", port) as conn:
            head, body = await http_get(conn, gen.url("2.1.m4s"))
            assert head.startswith(b"HTTP/1.1 200 ") and body == part, head
            assert b"\r\nX-Cache-Status: MISS" in head
            assert await origin_saw(http, "part", 1) == 1
            # The same part again and again on this one kept-alive connection: HITs, each sent at
            # once. Corked by the stock `tcp_nopush on`, each waited ~44 ms for the client's
            # delayed ACK (0.2 ms without: measured with this loop).
            took = []
            for _ in range(15):
                start = time.perf_counter()
                head, body = await http_get(conn, gen.url("2.1.m4s"))
                took.append(time.perf_counter() - start)
                assert b"\r\nX-Cache-Status: HIT" in head and body == part, head
            assert statistics.median(took) < 0.02, [f"{t * 1000:.1f} ms" for t in took]
        assert await origin_saw(http, "part", 1) == 1
