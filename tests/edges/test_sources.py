"""An edge against sources the test plays itself (`RecordingOrigin`: fixed answers over real HTTP
on loopback), for what a real origin does only by chance: rendition reports ahead of what an
edge has, a stale source listing the generation before."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from daemons.core import domain
from daemons.edge_fill.mirror import listed_names
from daemons.media.hls import MediaPlaylist, Part, RenditionReport, Segment, parse_media_playlist
from tests.edges.conftest import RecordingOrigin, link, wait_until

pytestmark = pytest.mark.slow

SID, GID = "st_5feceb66ffc86f38", "gen_6b86b273ff34fce1"
PARTS_PER_SEGMENT = 4


def sender_playlist(parts: int, *, reports: tuple[RenditionReport, ...] = ()) -> MediaPlaylist:
    """A Sender-style LL-HLS playlist after `parts` parts (4 to a segment). No blocking reloads:
    the scripted source answers every request at once, so the edge reloads on its own rhythm."""
    complete, partial = divmod(parts, PARTS_PER_SEGMENT)
    return MediaPlaylist(
        target_duration=1, media_sequence=0, part_target=0.25,
        segments=tuple(Segment(n, f"{n}.m4s", 1.0, map_uri="init.mp4",
                               parts=tuple(Part(f"{n}.{i}.m4s", 0.25, i == 0) for i in range(PARTS_PER_SEGMENT)))
                       for n in range(complete)),
        partial_parts=tuple(Part(f"{complete}.{i}.m4s", 0.25, i == 0) for i in range(partial)),
        next_map_uri="init.mp4" if partial else None,
        preload_hint=f"{complete}.{partial}.m4s", rendition_reports=reports,
    )


def listing(generation: dict, *, stream_id: str = SID) -> bytes:
    """A Sender source's /api/distribution answer: one stream, one generation."""
    stream = {"id": stream_id, "slug": "show", "title": "Show", "visibility": "public", "generation": generation}
    return json.dumps({"version": 1, "node_id": "origin", "load": None, "streams": [stream]}).encode()


def generation(gid: str, *, renditions: list[str], status: str = "live", started_at: str = "2026-11-27T00:00:00.000Z") -> dict:
    return {"id": gid, "status": status, "started_at": started_at, "live_at": started_at, "ended_at": None,
            "discontinuity_count": 0, "renditions": [{"name": n, "kind": "source" if n == "hi" else "transcode"} for n in renditions]}


def publish(source: RecordingOrigin, rendition: str, playlist: MediaPlaylist) -> None:
    """The scripted source's files for one playlist version: every object it lists, then the playlist."""
    base = f"/hls/{SID}/{GID}/{rendition}/"
    for name in listed_names(playlist):
        source.pages.setdefault(base + name, f"{rendition}/{name}".encode())
    source.pages[base + "index.m3u8"] = playlist.render().encode()


async def test_rendition_reports_at_an_edge_never_point_past_its_own_siblings(make_node):
    source = RecordingOrigin({})
    # The source reports `lo` far ahead of the `lo` playlist it serves: what an edge sees when a
    # sibling's copy trails the origin's (the origin's reports are newer than the edge's siblings).
    ahead = (RenditionReport("../lo/index.m3u8", 40, 2),)
    publish(source, "lo", sender_playlist(6))
    publish(source, "hi", sender_playlist(6, reports=ahead))
    source.pages[f"/hls/{SID}/{GID}/master.m3u8"] = (
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nhi/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=500000\nlo/index.m3u8\n")
    source.pages["/api/distribution"] = listing(generation(GID, renditions=["hi", "lo"]))
    edge = make_node("edge-a")
    link(edge, {"origin": ("tribes_origin", source.base_url, []), "edge-a": ("tribes_edge", edge.base_url, ["origin"])})

    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as client:
        await nursery.start(source.serve)

        async def hi_moves():  # hi gains a part every 0.25 s, its reports always claiming lo at 40.2
            for parts in range(7, 200):
                await trio.sleep(0.25)
                publish(source, "hi", sender_playlist(parts, reports=ahead))

        nursery.start_soon(hi_moves)
        await edge.start("http", "edge-fill")
        base = f"{edge.base_url}/hls/{SID}/{GID}/"

        async def both() -> tuple[MediaPlaylist, MediaPlaylist] | None:
            hi, lo = await client.get(base + "hi/index.m3u8"), await client.get(base + "lo/index.m3u8")  # hi first: lo can only be newer
            if hi.status_code != 200 or lo.status_code != 200 or "#EXT-X-RENDITION-REPORT" not in hi.text:
                return None
            return parse_media_playlist(hi.text), parse_media_playlist(lo.text)

        # (Until edge-fill has published a rendition, sender-http forwards the source's playlist.)
        published = [edge.spool(SID, GID) / r / "index.m3u8" for r in ("hi", "lo")]
        await wait_until(lambda: all(p.exists() for p in published), 20, "edge-fill published hi and lo")
        await wait_until(both, 10, "the edge serves hi (with a report) and lo")
        for _ in range(12):
            hi, lo = await both()
            [report] = hi.rendition_reports
            assert report.uri == "../lo/index.m3u8"
            # What the edge reports of lo is what the edge has of lo: a player asking lo for it
            # is answered at once (the source's 40.2 was never copied).
            assert lo.contains(report.last_msn, report.last_part), (report, lo.last_msn_part())
            assert report == RenditionReport.for_playlist("../lo/index.m3u8", lo)
            await trio.sleep(0.25)
        nursery.cancel_scope.cancel()


def _add_generation(store, stream_id: str, gid: str, status: str, started_at: str) -> None:
    """A generation row of the origin's own, as its ingest daemon makes them."""
    with store.write() as db:
        db["stream_generations"].insert({"id": gid, "stream_id": stream_id, "status": status, "mode": "origin_ingest",
                                         "started_at": started_at, "live_at": started_at, "ended_at": None,
                                         "failure_reason": None, "discontinuity_count": 0, "updated_at": started_at})


async def test_a_stale_source_listing_the_previous_generation_never_brings_it_back(make_node):
    origin, edge = make_node("origin"), make_node("edge-a")
    before, after = "gen_d4735e3a265e16ee", "gen_4e07408562bedb8b"
    with origin.store() as store:
        stream = domain.streams.create(store, "show")
        _add_generation(store, stream["id"], before, "live", "2026-11-27T00:00:00.000Z")
    # What a source that stopped updating (its filler died, say) keeps answering: the previous
    # generation, live.
    stale = RecordingOrigin({"/api/distribution": listing(
        generation(before, renditions=["source"], started_at="2026-11-27T00:00:00.000Z"), stream_id=stream["id"])})
    # The stale source comes first in the edge's order, and it answers: it looks healthy.
    link(edge, {"stale": ("tribes_origin", stale.base_url, []), "origin": ("tribes_origin", origin.base_url, []),
                "edge-a": ("tribes_edge", edge.base_url, ["stale", "origin"])})

    def statuses() -> dict[str, str]:
        with edge.store() as store:
            return {g["id"]: g["status"] for g in store.query("SELECT id, status FROM stream_generations")}

    async with trio.open_nursery() as nursery:
        await nursery.start(stale.serve)
        await origin.start("http")
        await edge.start("edge-fill")
        await wait_until(lambda: statuses() == {before: "live"}, 20, "the first generation is live at the edge")
        with origin.store() as store:  # the broadcast ends at the origin, the next one starts
            with store.write() as db:
                db["stream_generations"].update(before, {"status": "ended", "ended_at": "2026-11-27T00:10:00.000Z"})
            _add_generation(store, stream["id"], after, "live", "2026-11-27T00:11:00.000Z")
        await wait_until(lambda: statuses().get(after) == "live", 20, "the newer generation is live at the edge")
        # Round after round (discovery every 0.5 s) the stale source lists the older one as live:
        # it never comes back, and the newer one stays.
        asked = len(stale.requests)
        for _ in range(40):
            assert statuses() == {before: "ended", after: "live"}, statuses()
            await trio.sleep(0.1)
        assert len(stale.requests) >= asked + 4  # and it was asked all along
        nursery.cancel_scope.cancel()
