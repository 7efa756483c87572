"""Origin and edge nodes on loopback: real daemons, a real ffmpeg publisher, real HLS clients."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import trio

from daemons.core import domain
from daemons.core.stats import read_stats
from tests.daemons.conftest import FFPROBE, ffmpeg_publish_cmd, needs_ffmpeg
from tests.edges.conftest import get_playlist, link, wait_until

pytestmark = [needs_ffmpeg, pytest.mark.slow]


def stream_and_key(node, slug="show"):
    with node.store() as store:
        stream = domain.streams.create(store, slug)
        _, key = domain.keys.create(store, node.install.secret(), slug)
    return stream, key


async def live_generation(client, node, slug):
    r = await client.get(f"{node.base_url}/api/streams/{slug}/playback")
    if r.status_code != 200:
        return None
    doc = r.json()
    return doc if doc.get("status") == "live" and doc.get("master_url") else None


def position(p):
    last = p.last_msn_part()
    return (last[0], -1 if last[1] is None else last[1])


async def test_an_edge_serves_the_origins_stream_with_the_same_urls_a_part_behind(make_node, tmp_path):
    origin = make_node("origin")
    edge = make_node("edge-a")
    for n in (origin, edge):
        link(n, {"origin": ("tribes_origin", origin.base_url, []), "edge-a": ("tribes_edge", edge.base_url, ["origin"])})
    stream, key = stream_and_key(origin)
    await origin.start("ingest", "http")
    await edge.start("http", "edge-fill")
    publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), 30), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            at_origin = await wait_until(lambda: live_generation(client, origin, "show"), 30, "live at the origin")
            at_edge = await wait_until(lambda: live_generation(client, edge, "show"), 30, "live at the edge")
            # The same generation, the same path: only the host differs.
            assert at_edge["generation_id"] == at_origin["generation_id"]
            assert at_edge["master_url"].replace(edge.base_url, "") == at_origin["master_url"].replace(origin.base_url, "")
            gid = at_origin["generation_id"]
            path = f"/hls/{stream['id']}/{gid}/source/index.m3u8"

            # The edge's playlist trails the origin's by at most one part, sampled many times.
            behind = []
            for _ in range(20):
                o = await get_playlist(client, origin.base_url + path)
                e = await get_playlist(client, edge.base_url + path)
                # blocking reload at the edge for the origin's newest position: answered when the edge has it
                last = o.last_msn_part()
                r = await client.get(f"{edge.base_url}{path}?_HLS_msn={last[0]}&_HLS_part={last[1]}")
                assert r.status_code == 200
                behind.append((position(o), position(e)))
                await trio.sleep(0.1)
            lags = [_parts_between(o, e) for o, e in behind]
            assert max(lags) <= 1, behind

            # Every object the edge lists is byte-identical to the origin's.
            e = await get_playlist(client, edge.base_url + path)
            names = [s.uri for s in e.segments[-2:]] + [p.uri for p in e.partial_parts]
            for name in names + ["init.mp4"]:
                a = await client.get(f"{origin.base_url}/hls/{stream['id']}/{gid}/source/{name}")
                b = await client.get(f"{edge.base_url}/hls/{stream['id']}/{gid}/source/{name}")
                assert a.status_code == b.status_code == 200 and a.content == b.content, name

            # ffprobe plays from the edge.
            probe = await trio.run_process(
                [FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", at_edge["master_url"]],
                capture_stdout=True, check=False)
            assert probe.returncode == 0
            kinds = sorted(s["codec_type"] for s in json.loads(probe.stdout)["streams"])
            assert "video" in kinds and "audio" in kinds

            stats = read_stats(edge.install.state_dir, "edge-fill")
            assert stats["generations"][0]["source"] == "origin"
            assert stats["edges"]["edge-a"]["sources"][0]["status"] == "healthy"
    finally:
        publisher.kill()
        publisher.wait()


def _parts_between(o, e) -> int:
    """How many parts the edge position e trails the origin position o (positions as (msn, part))."""
    (om, op), (em, ep) = o, e
    if om == em:
        return max(0, op - ep)
    return op + 1 if om == em + 1 else 99
