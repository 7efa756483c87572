"""A real nginx, configured by `sender cache-config nginx`, in front of sender-http: LL-HLS with
blocking reloads works through it, concurrent misses reach the origin once, and what must not be
kept (404s for future parts, private streams) is not."""

from __future__ import annotations


import httpx
import pytest

from daemons.core.domain import playback
from tests.http.conftest import generation, origin_saw, viewers_blocked_on_the_next_part
from tests.http.nginx_proxy import NGINX, nginx_cache
from tests.http.spool_writer import part_bytes

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
