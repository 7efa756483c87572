"""Origin and edge nodes on loopback: real daemons, a real ffmpeg publisher, real HLS clients."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest
import trio

from daemons.core import domain
from daemons.core.domain import playback
from daemons.core.stats import read_stats
from daemons.core.domain.common import parse_time
from daemons.media.hls.validate import check_media_playlist
from tests.daemons.conftest import FFPROBE, ffmpeg_publish_cmd, needs_ffmpeg
from daemons.media.hls.parse import parse_media_playlist
from tests.edges.conftest import CountingProxy, get_playlist, link, origin_and_edge, source_of, stream_and_key, wait_until
from tests.http.nginx_proxy import NGINX, nginx_cache

pytestmark = [needs_ffmpeg, pytest.mark.slow]


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
    async with origin_and_edge(make_node, seconds=30, edge_daemons=("http", "edge-fill", "snapshot")) as (origin, edge, stream):
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
            names = [s.uri for s in e.segments] + [p.uri for p in e.partial_parts]
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
            # Closed segments were assembled from the parts already here (and compared above).
            assert stats["counters"]["assembled"] >= 1
            assert stats["edges"]["edge-a"]["sources"][0]["status"] == "healthy"

            # The edge's own snapshots: healthy, a viewer, and how far it trails its source.
            def edge_snapshot():
                with edge.store() as store:
                    row = store.one("SELECT * FROM endpoint_snapshots WHERE endpoint_id = 'edge-a' AND generation_id = ?", (gid,))
                return row if row and row["segment_lag"] is not None and row["viewers"] >= 1 else None
            row = await wait_until(edge_snapshot, 20, "the edge's snapshot of the generation")
            assert row["status"] == "healthy" and row["segment_lag"] <= 1, row
            # When the edge's newest segment arrived (its spool has no packager state.json):
            # a segment closes every second, so it is recent.
            row = await wait_until(lambda: (r := edge_snapshot()) and r["last_segment_at"] and r, 10, "last_segment_at")
            assert abs(parse_time(row["last_segment_at"]) - parse_time(row["observed_at"])) < 5, row


def _parts_between(o, e) -> int:
    """How many parts the edge position e trails the origin position o (positions as (msn, part))."""
    (om, op), (em, ep) = o, e
    if om == em:
        return max(0, op - ep)
    return op + 1 if om == em + 1 else 99


class PlaylistWatcher:
    """A player-like client of one node: blocking reloads for the next part, every version
    checked against the one before (the strict checker), the time each new position arrived."""

    def __init__(self, client: httpx.AsyncClient, url: str):
        self.client, self.url = client, url
        self.previous = None
        self.advances: list[tuple[float, tuple[int, int]]] = []
        self.discontinuities = 0

    async def run(self) -> None:
        while True:
            query = ""
            if self.previous is not None:
                p = self.previous
                nxt = (p.next_msn, len(p.partial_parts)) if p.partial_parts else (p.next_msn, 0)
                query = f"?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}"
            try:
                r = await self.client.get(self.url + query, timeout=10)
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                await trio.sleep(0.05)
                continue
            playlist = check_media_playlist(r.text, previous=self.previous)
            if self.previous is None or position(playlist) > position(self.previous):
                self.advances.append((trio.current_time(), position(playlist)))
            self.discontinuities = max(self.discontinuities, playlist.discontinuity_sequence + sum(s.discontinuity for s in playlist.segments))
            self.previous = playlist

    def longest_wait(self, since: float) -> float:
        times = [since] + [t for t, _ in self.advances if t > since]
        return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else float("inf")


async def test_an_edge_leaves_a_stalled_or_dead_source_within_two_target_durations_and_returns(make_node, record_property):
    origin, a, b = make_node("origin"), make_node("edge-a"), make_node("edge-b")
    graph = {
        "origin": ("tribes_origin", origin.base_url, []),
        "edge-a": ("tribes_edge", a.base_url, ["origin"]),
        "edge-b": ("tribes_edge", b.base_url, ["edge-a", "origin"]),
    }
    for n in (origin, a, b):
        link(n, graph)
    stream, key = stream_and_key(origin)
    await origin.start("ingest", "http")
    await a.start("http", "edge-fill")
    await b.start("http", "edge-fill")
    publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), 90), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def source_of_b():
        stats = read_stats(b.install.state_dir, "edge-fill") or {}
        gens = stats.get("generations") or []
        return gens[0]["source"] if gens else None

    try:
        async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
            at_b = await wait_until(lambda: live_generation(client, b, "show"), 30, "live at edge-b")
            url = f"{b.base_url}/hls/{stream['id']}/{at_b['generation_id']}/source/index.m3u8"
            watcher = PlaylistWatcher(client, url)
            nursery.start_soon(watcher.run)
            await wait_until(lambda: len(watcher.advances) > 10 and source_of_b() == "edge-a", 20, "edge-b follows edge-a")
            target = 2 * watcher.previous.target_duration

            # 1. edge-a's filler dies: edge-a still answers, but its playlist stops moving.
            a.kill("edge-fill")
            stalled_at = trio.current_time()
            await wait_until(lambda: source_of_b() == "origin", 3 * target, "edge-b left the stalled edge-a")
            await wait_until(lambda: watcher.advances[-1][0] > stalled_at + target, 3 * target, "edge-b moves on")
            record_property("stalled_source_gap_s", round(watcher.longest_wait(stalled_at), 3))
            assert watcher.longest_wait(stalled_at) <= target, watcher.advances[-15:]

            # 2. edge-a's filler comes back: edge-b returns to its first source.
            await a.start("edge-fill")
            await wait_until(lambda: source_of_b() == "edge-a", 30, "edge-b back on edge-a")

            # 3. edge-a dies altogether (SIGKILL): connections refused.
            await trio.sleep(0)  # let the watcher's next request start against edge-b as usual
            a.kill("http", "edge-fill")
            killed_at = trio.current_time()
            await wait_until(lambda: source_of_b() == "origin", 3 * target, "edge-b left the dead edge-a")
            await wait_until(lambda: watcher.advances[-1][0] > killed_at + target, 3 * target, "edge-b moves on")
            record_property("dead_source_gap_s", round(watcher.longest_wait(killed_at), 3))
            assert watcher.longest_wait(killed_at) <= target, watcher.advances[-15:]

            # Sources of one generation serve the same objects: no discontinuity, no gap.
            assert watcher.discontinuities == 0
            nursery.cancel_scope.cancel()
    finally:
        publisher.kill()
        publisher.wait()


async def test_a_rendition_added_during_a_live_generation_does_not_keep_the_edge_waiting(make_node):
    """The stream gains a rendition while its generation is live: the generation's packager does
    not run it, so the origin does not list it for that generation, and an edge that starts
    following then is playable as soon as the renditions the generation has are."""
    origin, edge = make_node("origin"), make_node("edge-a")
    graph = {"origin": ("tribes_origin", origin.base_url, []), "edge-a": ("tribes_edge", edge.base_url, ["origin"])}
    link(origin, graph)
    link(edge, graph)
    stream, key = stream_and_key(origin)
    await origin.start("ingest", "http")
    publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), 40), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            at_origin = await wait_until(lambda: live_generation(client, origin, "show"), 30, "live at the origin")
            with origin.store() as store:
                domain.renditions.upsert(store, stream["id"], {"name": "360p", "kind": "transcode", "height": 360,
                                                               "video_bitrate": 800_000})
            token = {"Authorization": f"Bearer {domain.distribution.node_token(origin.install.distribution_key())}"}
            listed = (await client.get(f"{origin.base_url}/api/distribution", headers=token)).json()
            [entry] = listed["streams"]
            assert entry["generation"]["id"] == at_origin["generation_id"]
            assert [r["name"] for r in entry["generation"]["renditions"]] == ["source"]

            await edge.start("http", "edge-fill")
            at_edge = await wait_until(lambda: live_generation(client, edge, "show"), 30, "live at the edge")
            assert at_edge["generation_id"] == at_origin["generation_id"]
            def mirrored():  # (its stats are written once a second)
                gens = (read_stats(edge.install.state_dir, "edge-fill") or {}).get("generations") or [{}]
                return gens[0] if gens[0].get("live") else None
            assert set((await wait_until(mirrored, 5, "stats say playable"))["renditions"]) == {"source"}
    finally:
        publisher.kill()
        publisher.wait()


PART_NAME = re.compile(r"/[0-9]+\.[0-9]+\.m4s")


async def test_a_source_that_never_answers_the_hinted_part_is_left_within_two_target_durations(make_node, record_property):
    """A source whose playlists move but whose parts (the preload-hinted one first) are accepted
    and never answered: the edge leaves it within 2 × TARGETDURATION, as it leaves a dead one."""
    async with trio.open_nursery() as nursery:
        relay = CountingProxy()  # a Sender source in front of the origin, hanging parts when told to
        await nursery.start(relay.serve)
        origin, edge = make_node("origin"), make_node("edge-a")
        relay.upstream = origin.base_url
        link(origin, {"origin": ("tribes_origin", origin.base_url, [])})
        link(edge, {"relay": ("tribes_origin", relay.base_url, []), "origin": ("tribes_origin", origin.base_url, []),
                    "edge-a": ("tribes_edge", edge.base_url, ["relay", "origin"])})
        stream, key = stream_and_key(origin)
        await origin.start("ingest", "http")
        await edge.start("http", "edge-fill")
        publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), 60), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as watching:
                at_edge = await wait_until(lambda: live_generation(client, edge, "show"), 30, "live at the edge")
                watcher = PlaylistWatcher(client, f"{edge.base_url}/hls/{stream['id']}/{at_edge['generation_id']}/source/index.m3u8")
                watching.start_soon(watcher.run)
                await wait_until(lambda: len(watcher.advances) > 10 and source_of(edge) == "relay", 20, "the edge follows the relay")
                target = 2 * watcher.previous.target_duration
                hinted_before = sum(n for k, n in relay.requests.items() if PART_NAME.search(k))

                relay.hang = lambda k: PART_NAME.search(k) is not None
                hung_at = trio.current_time()
                await wait_until(lambda: source_of(edge) == "origin", 3 * target, "the edge left the relay")
                await wait_until(lambda: watcher.advances[-1][0] > hung_at + 2 * target, 4 * target, "the edge moves on")
                gap = watcher.longest_wait(hung_at)
                record_property("hanging_part_gap_s", round(gap, 3))
                # The relay was asked for parts after it stopped answering them (the hint among them).
                assert sum(n for k, n in relay.requests.items() if PART_NAME.search(k)) > hinted_before
                assert gap <= target, watcher.advances[-15:]
                assert watcher.discontinuities == 0
                watching.cancel_scope.cancel()
        finally:
            publisher.kill()
            publisher.wait()
            nursery.cancel_scope.cancel()


async def test_two_hundred_viewers_on_an_edge_cost_the_origin_one_request_per_object(make_node, record_property):
    async with trio.open_nursery() as nursery:
        proxy = CountingProxy()
        await nursery.start(proxy.serve)
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        # The broadcast outlasts the viewers (killed when they are done): they never see its end.
        async with origin_and_edge(make_node, seconds=120, hop=proxy) as (origin, edge, stream), \
                httpx.AsyncClient(timeout=15, limits=limits) as client:
            at_edge = await wait_until(lambda: live_generation(client, edge, "show"), 30, "live at the edge")
            base = f"{edge.base_url}/hls/{stream['id']}/{at_edge['generation_id']}/source/"
            fetched = {"parts": 0, "errors": 0}
            refused: list[tuple[int, str]] = []  # (status, what) of any request refused
            served: list[int] = []  # parts per viewer

            async def viewer() -> None:
                # An LL-HLS player: blocking reload for the next part, then that part.
                r = await client.get(base + "index.m3u8")
                p = parse_media_playlist(r.text)
                assert (await client.get(base + "init.mp4")).status_code == 200
                served.append(0)
                me = len(served) - 1
                while True:
                    nxt = (p.next_msn, len(p.partial_parts)) if p.partial_parts else (p.next_msn, 0)
                    r = await client.get(f"{base}index.m3u8?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}")
                    if r.status_code != 200:
                        fetched["errors"] += 1
                        refused.append((r.status_code, f"index.m3u8 {nxt}"))
                        continue
                    p = parse_media_playlist(r.text)
                    newest = p.partial_parts[-1].uri if p.partial_parts else p.segments[-1].parts[-1].uri
                    part = await client.get(base + newest)
                    fetched["parts" if part.status_code == 200 else "errors"] += 1
                    if part.status_code != 200:
                        refused.append((part.status_code, newest))
                    served[me] += part.status_code == 200

            # Until the viewers together fetched 400 parts (two each on average), for at most 15 s:
            # bounded in time like every load test; a slow shared machine fetches fewer.
            with trio.move_on_after(15):
                async with trio.open_nursery() as viewers:
                    for _ in range(200):
                        viewers.start_soon(viewer)
                    await wait_until(lambda: len(served) == 200 and fetched["parts"] >= 400, 60, "400 parts")  # or the 15 s end
                    viewers.cancel_scope.cancel()
            edge_fill = read_stats(edge.install.state_dir, "edge-fill") or {}
        nursery.cancel_scope.cancel()

    media = proxy.media_requests()
    playlists = proxy.playlist_requests()
    record_property("viewer_parts", fetched["parts"])
    record_property("origin_media_requests", len(media))
    record_property("origin_playlist_requests", sum(playlists.values()))
    # Together the viewers fetched hundreds of parts from the edge, none refused.
    record_property("viewers_started", len(served))
    assert fetched["parts"] >= 100 and fetched["errors"] == 0, (fetched, refused, served)
    assert media and all(n == 1 for n in media.values()), ({k: v for k, v in media.items() if v > 1}, edge_fill.get("counters"))
    # Playlists: one blocking reload per position, however many viewers.
    assert all(n == 1 for k, n in playlists.items() if "_HLS_msn=" in k), playlists


@pytest.mark.skipif(NGINX is None, reason="nginx not installed (run .ci/bootstrap --test)")
async def test_nginx_from_sender_cache_config_in_front_of_an_edge_serves_ll_hls(make_node, tmp_path):
    async with origin_and_edge(make_node, seconds=40, **{"http.trusted_proxies": ["127.0.0.1/32"]}) as (origin, edge, stream):
        async with nginx_cache(f"127.0.0.1:{edge.http_port}", tmp_path / "nginx") as cache, \
                httpx.AsyncClient(timeout=10) as client:
            await wait_until(lambda: live_generation(client, edge, "show"), 30, "live at the edge")
            # The playback API through the cache names the cache (trusted proxy headers).
            info = (await client.get(f"{cache}/api/streams/show/playback")).json()
            assert info["master_url"].startswith(cache + "/hls/")
            base = info["master_url"].rsplit("/", 1)[0] + "/source/"
            p = parse_media_playlist((await client.get(base + "index.m3u8")).text)
            assert p.server_control is not None and p.server_control.can_block_reload
            # Blocking reloads through nginx: each answers when the next part exists, with it listed;
            # a second viewer asking the same gets the cached answer.
            for _ in range(8):
                nxt = (p.next_msn, len(p.partial_parts)) if p.partial_parts else (p.next_msn, 0)
                url = f"{base}index.m3u8?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}"
                first, second = await client.get(url), await client.get(url)
                assert first.status_code == second.status_code == 200
                assert second.headers["x-cache-status"] == "HIT" and second.text == first.text
                p = parse_media_playlist(first.text)
                assert position(p) >= (nxt[0], nxt[1]) if nxt[1] is not None else True
                newest = p.partial_parts[-1].uri if p.partial_parts else p.segments[-1].parts[-1].uri
                part = await client.get(base + newest)
                assert part.status_code == 200 and part.headers["content-type"] == "video/mp4"
            # ffprobe is no LL-HLS client: it needs a complete segment in the plain playlist.
            await wait_until(lambda: _has_segment(client, base + "index.m3u8"), 10, "a complete segment through the cache")
            probe = await trio.run_process([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", info["master_url"]],
                                           capture_stdout=True, check=False)
            assert probe.returncode == 0 and {s["codec_type"] for s in json.loads(probe.stdout)["streams"]} == {"video", "audio"}


async def _has_segment(client: httpx.AsyncClient, url: str) -> bool:
    r = await client.get(url)
    return r.status_code == 200 and "#EXTINF" in r.text


async def test_an_ended_generation_and_a_deleted_stream_reach_the_edge(make_node):
    async with origin_and_edge(make_node, seconds=60) as (origin, edge, stream):
        with origin.store() as store:  # a private stream: the edge fetches it with its node token
            domain.streams.update(store, "show", visibility="private")
        async with httpx.AsyncClient(timeout=10) as client:
            def edge_generation():  # None until the edge has mirrored the stream
                with edge.store() as store:
                    return store.one("SELECT * FROM stream_generations WHERE stream_id = ? ORDER BY started_at DESC",
                                     (stream["id"],))

            await wait_until(lambda: (g := edge_generation()) is not None and g["status"] == "live" and
                             (edge.spool(stream["id"], g["id"]) / "source" / "index.m3u8").exists(), 30, "mirrored and live")
            gid = edge_generation()["id"]
            # A private stream: the edge's copy needs a playback token, and one minted by the
            # origin works at the edge (the distribution key signs them).
            path = f"/hls/{stream['id']}/{gid}/source/index.m3u8"
            async def refused_without_token():  # once the edge's sender-http knows the mirrored stream (≤ 1 s)
                return (await client.get(edge.base_url + path)).status_code == 403
            await wait_until(refused_without_token, 5, "the edge refuses the private stream without a token")
            token = playback.mint_token(origin.install.playback_secret(), stream["id"])["token"]
            assert (await client.get(f"{edge.base_url}{path}?token={token}")).status_code == 200

            with origin.store() as store:
                domain.streams.stop(store, "show")
            await wait_until(lambda: edge_generation()["status"] == "ended", 15, "ended at the edge")

            async def ended_playlist():
                r = await client.get(f"{edge.base_url}{path}?token={token}")
                return r.status_code == 200 and "#EXT-X-ENDLIST" in r.text
            await wait_until(ended_playlist, 15, "the edge's playlist ends with ENDLIST")
            final = check_media_playlist((await client.get(f"{edge.base_url}{path}?token={token}")).text)
            # Every segment, the session's last one too (it may carry audio its parts do not), is
            # byte for byte the origin's.
            for seg in final.segments:  # (their URIs carry the viewer's token)
                a = await client.get(f"{origin.base_url}{path.replace('index.m3u8', seg.uri)}")
                b = await client.get(f"{edge.base_url}{path.replace('index.m3u8', seg.uri)}")
                assert a.status_code == b.status_code == 200 and a.content == b.content, seg.uri

            with origin.store() as store:
                domain.streams.delete(store, "show")

            def deleted_at_edge():
                with edge.store() as store:
                    return store.one("SELECT deleted_at FROM streams WHERE id = ?", (stream["id"],))["deleted_at"]
            await wait_until(deleted_at_edge, 15, "deleted at the edge")
            r = await client.get(f"{edge.base_url}/api/streams/show/playback?token={token}")
            assert r.status_code == 404
