"""HLS serving over real HTTP: blocking reload, preload hints, headers, ranges, traversal."""

from __future__ import annotations

import os

import pytest
import trio

from daemons.core import domain
from daemons.media.hls import parse_media_playlist
from tests.http.conftest import answer_before_late_body
from tests.http.spool_writer import GenerationWriter, part_bytes, segment_bytes


def new_generation(http, slug="demo", visibility="public") -> GenerationWriter:
    with http.install.open_store() as store:
        stream = domain.streams.create(store, slug, visibility=visibility)
    return GenerationWriter(http.install.spool_root, http.install.state_dir, stream["id"])


async def known(http, gen: GenerationWriter) -> None:
    """The worker's stream directory (refreshed each second) knows the new stream."""
    await http.daemon.ctx.directory.refresh()


@pytest.fixture
async def gen(http):
    g = new_generation(http)
    g.add_segments(3)
    await known(http, g)
    return g


async def test_playlist_is_served_with_live_headers(http, gen):
    async with http.client() as c:
        r = await c.get(gen.url())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["cache-control"] == "public, max-age=1"
    assert r.headers["access-control-allow-origin"] == "*"
    assert parse_media_playlist(r.text) == gen.playlist()
    async with http.client() as c:
        again = await c.get(gen.url(), headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_blocking_reload_answers_at_once_when_the_position_is_listed(http, gen):
    async with http.client() as c:
        with trio.fail_after(2):
            r = await c.get(gen.url(), params={"_HLS_msn": 2})
            r2 = await c.get(gen.url(), params={"_HLS_msn": 2, "_HLS_part": 3})
    assert r.status_code == r2.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=3"  # 3 × TARGETDURATION: its answer never changes


async def test_blocking_reload_holds_until_the_part_lands(http, gen):
    results = {}
    async with http.client() as c, trio.open_nursery() as n:
        async def request():
            results["r"] = await c.get(gen.url(), params={"_HLS_msn": 3, "_HLS_part": 1})

        n.start_soon(request)
        view = await _view_with_waiters(http, gen)
        gen.add_part()  # 3.0 lands: not enough
        await _still_waiting(view)
        assert "r" not in results
        gen.add_part()  # 3.1 lands: answered
    r = results["r"]
    assert r.status_code == 200
    playlist = parse_media_playlist(r.text)
    assert [p.uri for p in playlist.partial_parts] == ["3.0.m4s", "3.1.m4s"]


async def test_thousand_waiters_share_one_render(http, gen):
    results = []
    limits = __import__("httpx").Limits(max_connections=1000)
    async with http.client(limits=limits) as c, trio.open_nursery() as n:
        async def request():
            r = await c.get(gen.url(), params={"_HLS_msn": 3, "_HLS_part": 0})
            results.append(r)

        for _ in range(200):
            n.start_soon(request)
        await _view_with_waiters(http, gen, count=200)
        gen.add_part()
    assert len(results) == 200 and {r.status_code for r in results} == {200}
    assert len({r.content for r in results}) == 1


async def test_blocking_reload_rules(http, gen):
    async with http.client() as c:
        assert (await c.get(gen.url(), params={"_HLS_part": 1})).status_code == 400  # part without msn
        assert (await c.get(gen.url(), params={"_HLS_msn": "x"})).status_code == 400
        assert (await c.get(gen.url(), params={"_HLS_msn": -1})).status_code == 400
        assert (await c.get(gen.url(), params={"_HLS_msn": 6})).status_code == 400  # > last (2) + 2
        assert (await c.get(gen.url(), params={"_HLS_skip": "NO"})).status_code == 400
        r = await c.get(gen.url(), params={"_HLS_msn": 9})
    assert r.status_code == 400 and r.headers["cache-control"] == "no-store"


async def test_held_too_long_is_a_503(http, gen, autojump_clock):
    # TARGETDURATION is 1: a request still unanswered after 3 s gets 503 (trio's clock jumps).
    async with http.client() as c:
        r = await c.get(gen.url(), params={"_HLS_msn": 3, "_HLS_part": 2})
    assert r.status_code == 503 and r.headers["cache-control"] == "no-store"


async def test_directives_are_ignored_once_the_playlist_ended(http, gen):
    gen.end()
    async with http.client() as c:
        r = await c.get(gen.url(), params={"_HLS_msn": 40, "_HLS_part": 2})
    assert r.status_code == 200 and r.text.endswith("#EXT-X-ENDLIST\n")
    assert r.headers["cache-control"] == "public, max-age=3600"


async def test_delta_update_skips_old_segments(http):
    gen = new_generation(http)
    gen.add_segments(12)
    await known(http, gen)
    async with http.client() as c:
        full = await c.get(gen.url())
        delta = await c.get(gen.url(), params={"_HLS_skip": "YES"})
    assert "#EXT-X-SKIP" not in full.text
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta.text
    assert delta.headers["etag"] != full.headers["etag"]
    skipped = int(delta.text.split("SKIPPED-SEGMENTS=")[1].split("\n")[0])
    assert skipped >= 5
    assert delta.text.count("#EXTINF") == full.text.count("#EXTINF") - skipped


async def test_preload_hinted_part_is_held_until_written(http, gen):
    results = {}
    hinted = gen.playlist().preload_hint
    assert hinted == "3.0.m4s"
    async with http.client() as c, trio.open_nursery() as n:
        async def request():
            results["r"] = await c.get(gen.url(hinted))

        n.start_soon(request)
        await _view_with_waiters(http, gen)
        gen.add_part()
    r = results["r"]
    assert r.status_code == 200 and r.content == part_bytes(3, 0)
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_unhinted_missing_part_is_404_no_store(http, gen):
    async with http.client() as c:
        r = await c.get(gen.url("3.2.m4s"))
        r2 = await c.get(gen.url("9.m4s"))
    assert r.status_code == r2.status_code == 404
    assert r.headers["cache-control"] == "no-store"


async def test_media_files_headers_etag_and_ranges(http, gen):
    data = segment_bytes(1)
    async with http.client() as c:
        r = await c.get(gen.url("1.m4s"))
        init = await c.get(gen.url("init.mp4"))
        head = await c.head(gen.url("1.m4s"))
        ranged = await c.get(gen.url("1.m4s"), headers={"Range": "bytes=10-19"})
        suffix = await c.get(gen.url("1.m4s"), headers={"Range": "bytes=-5"})
        bad = await c.get(gen.url("1.m4s"), headers={"Range": f"bytes={len(data)}-"})
        cached = await c.get(gen.url("1.m4s"), headers={"If-None-Match": r.headers["etag"]})
        master = await c.get(gen.url("master.m3u8", rendition=False))
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/mp4" and init.content == b"init segment"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["accept-ranges"] == "bytes" and "last-modified" in r.headers
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(data)
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert suffix.status_code == 206 and suffix.content == data[-5:]
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    assert cached.status_code == 304
    assert master.status_code == 200 and "source/index.m3u8" in master.text
    assert master.headers["cache-control"] == "public, max-age=1"


async def test_cors_preflight(http, gen):
    async with http.client() as c:
        r = await c.options(gen.url(), headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]
    async with http.client() as c:
        assert (await c.post(gen.url())).status_code == 405


@pytest.mark.parametrize("raw_path", [
    b"/hls/../../etc/passwd",
    b"/hls/%2e%2e/%2e%2e/etc/passwd",
    b"/hls/STREAM/GEN/source/..%2f..%2f..%2fsender.toml",
    b"/hls/STREAM/GEN/source/%2e%2e/index.m3u8",
    b"/hls/STREAM/GEN/source/1.m4s%00.txt",
    b"/hls/STREAM/GEN/../GEN/source/1.m4s",
    b"/hls/STREAM/GEN/source//1.m4s",
    b"/hls/STREAM/GEN/source/1.m4s/",
    b"/hls/STREAM/GEN/source/state.json",
    b"/hls/STREAM/GEN/generation.json",
    b"/hls/STREAM/GEN/ingest/0000.flv",
])
async def test_nothing_outside_the_served_files_is_reachable(http, gen, raw_path):
    raw_path = raw_path.replace(b"STREAM", gen.stream_id.encode()).replace(b"GEN", gen.generation_id.encode())
    status, _, body = await raw_get(http, raw_path)
    assert status == 404, (raw_path, body)


async def test_symlinks_out_of_the_spool_are_refused(http, gen, tmp_path):
    secret = tmp_path / "outside.m4s"
    secret.write_bytes(b"not for viewers")
    os.symlink(secret, gen.dir / "source" / "77.m4s")
    status, _, body = await raw_get(http, gen.url("77.m4s").encode())
    assert status == 404 and b"not for viewers" not in body


async def raw_get(http, raw_path: bytes) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 GET with the path sent byte for byte (clients normalise dots away)."""
    stream = await trio.open_tcp_stream(http.host, http.port)
    async with stream:
        await stream.send_all(b"GET " + raw_path + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def _view_with_waiters(http, gen, count: int = 1):
    """Wait (a condition, polled) until the daemon holds `count` requests on the rendition."""
    path = f"{gen.stream_id}/{gen.generation_id}/{gen.rendition}"
    with trio.fail_after(10):
        while True:
            view = http.daemon.ctx.spool.views.get(path)
            if view is not None and view.waiters >= count:
                return view
            await trio.sleep(0.01)


async def _still_waiting(view) -> None:
    """After a change that does not satisfy the waiter, it is waiting again."""
    with trio.fail_after(5):
        while view.waiters < 1:
            await trio.sleep(0.01)


async def test_a_keep_alive_connection_survives_a_405_sent_before_the_request_body(http, gen):
    """As for the Quart routes (test_openapi.py), on the raw-ASGI HLS path."""
    status, rest = await answer_before_late_body(http, "POST", gen.url().encode())
    assert status == b"HTTP/1.1 405 "
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200")  # closed, or answered: never hanging
