"""A real Varnish, configured by `sender cache-config varnish`, in front of sender-http: the VCL
compiles, LL-HLS with blocking reloads works through it, concurrent misses reach the origin once
(request coalescing), and what must not be kept (404s for future parts, private streams) is not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import trio
from typer.testing import CliRunner

from daemons.core.domain import playback
from sender_cli.app import app
from sender_cli.commands.cache_config import render_varnish
from tests.daemons.conftest import wait_for
from tests.daemons.test_up import free_port, port_open
from tests.http.conftest import generation, make_http_install, origin_saw, viewers_blocked_on_the_next_part
from tests.http.spool_writer import part_bytes
from tests.http.test_playback import live_generation

VARNISHD = shutil.which("varnishd") or ("/usr/sbin/varnishd" if Path("/usr/sbin/varnishd").exists() else None)
pytestmark = pytest.mark.skipif(VARNISHD is None, reason="varnish not installed (run .ci/bootstrap --test)")

# `-j none`: no privilege-separation jail. As root (CI) the default jail runs the VCL compiler and
# the cache process as the `varnish`/`vcache` users, who cannot enter pytest's 0700 tmp dirs.
# `-T none`: no management CLI port; `-n`: a working directory of the test's own.
JAIL = ["-j", "none"]


def compile_vcl(vcl: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([VARNISHD, *JAIL, "-C", "-n", str(workdir), "-f", str(vcl)], capture_output=True, text=True)


@pytest.fixture
async def proxy(http, tmp_path):
    """varnishd with the generated VCL, in the foreground, as this test's own process."""
    port = free_port()
    vcl = tmp_path / "sender.vcl"
    vcl.write_text(render_varnish(upstream=f"{http.host}:{http.port}", listen=f"127.0.0.1:{port}", target_duration_s=1))
    log = tmp_path / "varnishd.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [VARNISHD, "-F", *JAIL, "-T", "none", "-n", str(tmp_path / "varnish"), "-a", f"127.0.0.1:{port}",
             "-f", str(vcl), "-s", "malloc,64m"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        await wait_for(lambda: proc.returncode is not None or port_open(port), timeout=30)
        assert proc.returncode is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()  # the manager stops its cache child on SIGTERM
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_generated_vcl_compiles(tmp_path):
    out = CliRunner().invoke(app, ["cache-config", "varnish", "--upstream", "10.0.0.5:8080", "--listen", "6081",
                                   "--target-duration", "4", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["proxy"] == "varnish" and doc["install_as"] == "/etc/varnish/default.vcl"
    assert doc["command"].startswith("varnishd -a :6081 -f /etc/varnish/default.vcl -s malloc,")
    text = doc["config"]
    assert '.host = "10.0.0.5";' in text and '.port = "8080";' in text
    assert ".first_byte_timeout = 24s;" in text  # above 3 x TARGETDURATION (12 s), like nginx's read timeout
    vcl = tmp_path / "sender.vcl"
    vcl.write_text(text)
    compiled = compile_vcl(vcl, tmp_path / "varnish")
    assert compiled.returncode == 0, compiled.stderr


async def test_media_is_fetched_from_the_origin_once(http, proxy):
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=proxy) as c:
        first = await c.get(gen.url("1.m4s"))
        others = [await c.get(gen.url("1.m4s"), params={"session": f"viewer-{i}"}) for i in range(3)]  # not in the key
    assert {r.status_code for r in [first, *others]} == {200} and all(r.content == first.content for r in others)
    assert [r.headers["x-cache-status"] for r in [first, *others]] == ["MISS", "HIT", "HIT", "HIT"]
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
        again = await c.get(gen.url("3.1.m4s"))
    assert missing.status_code == 404
    assert present.status_code == 200 and present.content == part_bytes(3, 1)
    assert again.headers["x-cache-status"] == "HIT"  # once it exists, it is kept
    assert await origin_saw(http, "part", 1) == 1


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
    """The origin is asked exactly what the cache key names: an argument Varnish does not key on
    (here `_HLS_msn` percent-encoded, which sender-http would decode) cannot change an answer."""
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=proxy, timeout=30) as c:
        r = await c.get(gen.url() + "?_HLS_msn=1&_HLS_part=0&_HLS_%6Dsn=9&session=s1")
    assert r.status_code == 200  # msn 1 exists: answered at once, not held for msn 9 (400 too far ahead)
    assert await origin_saw(http, "playlist", 1) == 1


@pytest.fixture
def http_install(tmp_path):
    """sender-http believing X-Forwarded-* from Varnish (on 127.0.0.1), as the runbook says."""
    return make_http_install(tmp_path / "var", **{"http.trusted_proxies": ["127.0.0.1/32"]})


async def test_apis_pass_through_with_the_viewers_host_and_scheme(http, proxy):
    await live_generation(http, "proxied", "public")
    async with httpx.AsyncClient(base_url=proxy) as c:
        # A client's own X-Forwarded-Proto is replaced by what Varnish knows (plain HTTP).
        answers = [await c.get("/api/streams/proxied/playback", headers={"Host": "tv.example", "X-Forwarded-Proto": "https"})
                   for _ in range(2)]
    assert {r.status_code for r in answers} == {200}
    assert all(r.json()["master_url"].startswith("http://tv.example/hls/") for r in answers)
    # Passed, not cached: no cache status, and each answer is Varnish's own fetch (one XID, not two).
    assert all("x-cache-status" not in r.headers and len(r.headers["x-varnish"].split()) == 1 for r in answers)
