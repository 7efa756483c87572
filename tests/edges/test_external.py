"""An edge following an external origin: any HLS origin (here ffmpeg's own HLS muxer, served by a
plain HTTP file server), its master playlist and every rendition in it, LL-HLS or not."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import trio

from daemons.media.hls.validate import check_media_playlist
from tests.daemons.conftest import FFMPEG, FFPROBE, ffmpeg_publish_cmd, needs_ffmpeg
from tests.daemons.test_up import free_port, port_open
from tests.edges.conftest import RecordingOrigin, link, stream_and_key, wait_until

pytestmark = [needs_ffmpeg, pytest.mark.slow]


def ffmpeg_hls(directory, seconds: int, *, segment_type: str, ladder: bool) -> list[str]:
    """ffmpeg as an external mux: a live HLS output with 1 s segments (two renditions or one)."""
    common = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-b:a", "64k",
              "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
              "-hls_flags", "delete_segments+independent_segments+temp_file", "-hls_segment_type", segment_type]
    inputs = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
              "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds)]
    ext = "m4s" if segment_type == "fmp4" else "ts"
    if ladder:
        return [*inputs, "-filter_complex", "[0:v]split=2[a][b];[b]scale=160:120[b2]",
                "-map", "[a]", "-map", "[b2]", "-map", "1:a", "-map", "1:a", *common,
                "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0,name:hi v:1,a:1,name:lo",
                "-hls_segment_filename", f"{directory}/%v/seg%d.{ext}", f"{directory}/%v/index.m3u8"]
    return [*inputs, *common, "-hls_segment_filename", f"{directory}/seg%d.{ext}", f"{directory}/index.m3u8"]


@pytest.mark.parametrize("segment_type, ladder", [("fmp4", True), ("mpegts", False)])
async def test_an_edge_carries_an_external_origin(make_node, tmp_path, segment_type, ladder):
    mux_dir = tmp_path / "mux"
    mux_dir.mkdir()
    port = free_port()
    files = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(mux_dir), str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mux = subprocess.Popen(ffmpeg_hls(mux_dir, 40, segment_type=segment_type, ladder=ladder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    entry = "master.m3u8" if ladder else "index.m3u8"
    edge = make_node("edge-a")
    link(edge, {"mux": ("external_origin", f"http://127.0.0.1:{port}/{entry}", []),
                "edge-a": ("tribes_edge", edge.base_url, ["mux"])})
    try:
        await wait_until(lambda: port_open(port) and (mux_dir / entry).exists(), 20, "the external origin serves")
        await edge.start("http", "edge-fill")
        async with httpx.AsyncClient(timeout=10) as client:
            async def live():
                r = await client.get(f"{edge.base_url}/api/streams/mux/playback")
                return r.json() if r.status_code == 200 and r.json().get("status") == "live" and r.json().get("master_url") else None

            info = await wait_until(live, 30, "the external stream is live at the edge")
            master = (await client.get(info["master_url"])).text
            names = ["hi", "lo"] if ladder else ["source"]
            assert [line.split("/")[0] for line in master.splitlines() if line.endswith("index.m3u8")] == names

            # Every rendition's playlist at the edge stays valid while it grows, and lists its
            # segments under the edge's own names with the mux's bytes.
            base = info["master_url"].rsplit("/", 1)[0]
            for name in names:
                previous, seen = None, 0
                with trio.fail_after(20):
                    while seen < 3:
                        r = await client.get(f"{base}/{name}/index.m3u8")
                        p = check_media_playlist(r.text, previous=previous)
                        if previous is None or p.next_msn > previous.next_msn:
                            seen += 1
                        previous = p
                        await trio.sleep(0.25)
                newest = previous.segments[-1]
                ours = (await client.get(f"{base}/{name}/{newest.uri}")).content
                mux_name = f"seg{newest.msn}.{'m4s' if segment_type == 'fmp4' else 'ts'}"
                theirs = (await client.get(f"http://127.0.0.1:{port}/{name + '/' if ladder else ''}{mux_name}")).content
                assert ours == theirs and len(ours) > 1000
                expected_suffix = ".m4s" if segment_type == "fmp4" else ".ts"
                assert newest.uri == f"{newest.msn}{expected_suffix}"

            probe = await trio.run_process([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", info["master_url"]],
                                           capture_stdout=True, check=False)
            assert probe.returncode == 0
            kinds = {s["codec_type"] for s in json.loads(probe.stdout)["streams"]}
            assert kinds == {"video", "audio"}
    finally:
        for p in (mux, files):
            p.kill()
            p.wait()


async def test_a_restarted_external_origin_becomes_a_new_generation_at_the_edge(make_node, tmp_path):
    mux_dir = tmp_path / "mux"
    mux_dir.mkdir()
    port = free_port()
    files = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(mux_dir), str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mux = subprocess.Popen(ffmpeg_hls(mux_dir, 60, segment_type="fmp4", ladder=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    edge = make_node("edge-a")
    link(edge, {"mux": ("external_origin", f"http://127.0.0.1:{port}/index.m3u8", []),
                "edge-a": ("tribes_edge", edge.base_url, ["mux"])})
    try:
        await wait_until(lambda: port_open(port) and (mux_dir / "index.m3u8").exists(), 20, "the external origin serves")
        await edge.start("http", "edge-fill")
        async with httpx.AsyncClient(timeout=10) as client:
            async def playing(not_gid=None):
                r = await client.get(f"{edge.base_url}/api/streams/mux/playback")
                doc = r.json() if r.status_code == 200 else {}
                ok = doc.get("status") == "live" and doc.get("master_url") and doc.get("generation_id") != not_gid
                return doc if ok else None

            first = await wait_until(playing, 30, "the first broadcast is live at the edge")
            url = first["master_url"].replace("master.m3u8", "source/index.m3u8")

            async def window_slid():
                r = await client.get(url)
                return r.status_code == 200 and check_media_playlist(r.text).media_sequence >= 3
            await wait_until(window_slid, 30, "the edge's window slid past the start")

            # The mux restarts: its numbering starts again at 0.
            mux.kill()
            mux.wait()
            mux = subprocess.Popen(ffmpeg_hls(mux_dir, 60, segment_type="fmp4", ladder=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            second = await wait_until(lambda: playing(first["generation_id"]), 30, "a new generation at the edge")
            ended = (await client.get(url)).text
            assert "#EXT-X-ENDLIST" in ended
            check_media_playlist(ended)
            fresh = check_media_playlist((await client.get(second["master_url"].replace("master.m3u8", "source/index.m3u8"))).text)
            assert fresh.media_sequence < 3
    finally:
        for p in (mux, files):
            p.kill()
            p.wait()


async def test_an_ll_hls_external_origin_is_followed_with_blocking_reloads(make_node):
    """Another Sender, seen as any LL-HLS origin (its master playlist URL, no node token):
    parts, preload hints and blocking reloads go through the external-origin path."""
    origin = make_node("origin", **{"distribution.key_file": ""})
    edge = make_node("edge-a")
    stream, key = stream_and_key(origin)
    await origin.start("ingest", "http")
    publisher = subprocess.Popen(ffmpeg_publish_cmd(origin.rtmp_url(key), 40), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async def origin_live():
                r = await client.get(f"{origin.base_url}/api/streams/show/playback")
                return r.json() if r.status_code == 200 and r.json().get("master_url") else None

            info = await wait_until(origin_live, 30, "live at the origin")
            link(edge, {"ll-mux": ("external_origin", info["master_url"], []),
                        "edge-a": ("tribes_edge", edge.base_url, ["ll-mux"])})
            await edge.start("http", "edge-fill")

            async def edge_live():
                r = await client.get(f"{edge.base_url}/api/streams/ll-mux/playback")
                return r.json() if r.status_code == 200 and r.json().get("status") == "live" and r.json().get("master_url") else None

            at_edge = await wait_until(edge_live, 30, "live at the edge")
            url = at_edge["master_url"].replace("master.m3u8", "source/index.m3u8")
            previous = None
            for _ in range(10):  # a player's blocking reloads at the edge, part after part
                q = ""
                if previous is not None:
                    nxt = (previous.next_msn, len(previous.partial_parts)) if previous.partial_parts else (previous.next_msn, 0)
                    q = f"?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}"
                r = await client.get(url + q)
                assert r.status_code == 200
                previous = check_media_playlist(r.text, previous=previous)
            assert previous.part_target and previous.preload_hint and previous.server_control.can_block_reload
            # The edge's newest part is the origin's, byte for byte, under the same position.
            newest = previous.partial_parts[-1] if previous.partial_parts else previous.segments[-1].parts[-1]
            ours = (await client.get(url.replace("index.m3u8", newest.uri))).content
            theirs = (await client.get(info["master_url"].replace("master.m3u8", f"source/{newest.uri}"))).content
            assert ours == theirs
    finally:
        publisher.kill()
        publisher.wait()


async def test_an_external_origin_gets_no_node_token_and_cannot_send_the_edge_elsewhere(make_node):
    async with trio.open_nursery() as nursery:
        elsewhere = RecordingOrigin({})
        await nursery.start(elsewhere.serve)
        other = f"http://127.0.0.1:{elsewhere.port}"
        media = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
                 f"#EXTINF:1.0,\n{other}/secret/0.ts\n#EXTINF:1.0,\n1.ts\n").encode()
        master = (f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n{other}/internal/index.m3u8\n"
                  f"#EXT-X-STREAM-INF:BANDWIDTH=2000\nv/index.m3u8\n").encode()
        mux = RecordingOrigin({"/master.m3u8": master, "/v/index.m3u8": media, "/v/1.ts": b"x" * 2000})
        await nursery.start(mux.serve)
        edge = make_node("edge-a")
        link(edge, {"mux": ("external_origin", f"http://127.0.0.1:{mux.port}/master.m3u8", []),
                    "edge-a": ("tribes_edge", edge.base_url, ["mux"])})
        await edge.start("http", "edge-fill")
        await wait_until(lambda: any(p == "/v/index.m3u8" for p, _ in mux.requests) and len(mux.requests) > 5, 20,
                         "the edge follows the mux")
        # The variant on another host is dropped, and so is nothing fetched from there; a
        # segment URI pointing elsewhere makes the playlist unusable rather than followed.
        assert elsewhere.requests == []
        assert all(b"authorization" not in headers for _, headers in mux.requests)
        nursery.cancel_scope.cancel()
