"""Playlists captured from a live run (real ffmpeg → ingest → sender-http) judged by independent
parsers: npm hls-parser in strict mode and the m3u8 library — live, blocking, delta and ended."""

from __future__ import annotations

import re

import httpx
import trio

from daemons.core import domain
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest
from tests.http.conftest import start_http
from tests.judges import assert_every_judge_accepts, hls_parser_strict, needs_hls_parser

pytestmark = [needs_ffmpeg, needs_hls_parser]


async def test_live_blocking_delta_and_ended_playlists_satisfy_strict_parsers(nursery, tmp_path):
    # 1 s segments (GOP 1 s) so that the skip boundary (6 x TARGETDURATION) is passed quickly.
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "hls.segment_target_s": 1.0})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst)
    await http.daemon.ctx.directory.refresh()
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 60))  # until the stop disconnects it
    texts: dict[str, list[str]] = {"live": [], "blocking": [], "delta": [], "ended": []}
    async with httpx.AsyncClient(base_url=f"http://{http.host}:{http.port}", timeout=10) as client:
        async def playback():
            return (await client.get("/api/streams/demo/playback")).json()

        doc = None

        async def has_master():
            nonlocal doc
            doc = await playback()
            return doc["master_url"]

        with trio.fail_after(20):
            while not await has_master():
                await trio.sleep(0.1)
        master = (await client.get(doc["master_url"])).text
        media_url = doc["master_url"].rsplit("/", 1)[0] + "/" + re.search(r"^(\S+\.m3u8)$", master, re.M).group(1)
        # Until a delta update really skips segments (more than 6 s of playlist), every 0.3 s:
        # the live playlist, a blocking reload for the next part, and a delta update.
        with trio.fail_after(30):
            while True:
                live = (await client.get(media_url)).text
                texts["live"].append(live)
                msn, part = _next_part(live)
                blocking = await client.get(media_url, params={"_HLS_msn": msn, "_HLS_part": part})
                assert blocking.status_code == 200
                texts["blocking"].append(blocking.text)
                delta = (await client.get(media_url, params={"_HLS_skip": "YES"})).text
                texts["delta"].append(delta)
                if "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta and len(texts["live"]) >= 5:
                    break
                await trio.sleep(0.3)
        with inst.open_store() as store:
            domain.streams.stop(store, "demo")

        async def ended():
            text = (await client.get(media_url)).text
            return "#EXT-X-ENDLIST" in text and text

        with trio.fail_after(10):
            while not (text := await ended()):
                await trio.sleep(0.1)
        texts["ended"].append(text)
        texts["ended"].append((await client.get(media_url, params={"_HLS_skip": "YES"})).text)  # ENDLIST: no skip
    for kind, found in texts.items():
        assert found, kind
        assert_every_judge_accepts(found)
    results = hls_parser_strict([texts["delta"][-1], texts["ended"][0], master])
    assert results[0]["skipped"] > 0  # the delta update really skips
    assert results[1]["ended"]
    assert results[2]["master"] and results[2]["variants"] == 1
    assert all("#EXT-X-PART:" in t for t in texts["blocking"])


def _next_part(text: str) -> tuple[int, int]:
    """The position after the newest part listed (what hls.js asks a blocking reload for)."""
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"', text)
    return int(hint.group(1)), int(hint.group(2))
