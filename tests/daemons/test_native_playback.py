"""hls.js in Chromium plays an AV1 stream the native backend made from an Enhanced RTMP publish:
libsvtav1 + AAC sent as OBS 30+ sends it (tests/daemons/enhanced_rtmp.py), at real-time pace,
into the real ingest daemon (backend.kind = "native"), served live by the real sender-http
(blocking reload, parts) on 127.0.0.1; the player page and hls.js come from the e2e test's static
server (tests/e2e). hls.js must play it on MediaSource with LL-HLS parts, at its picture size,
with no fatal error. (hls.js 1.7 looks for caption SEI in every video sample as if it were NAL
units, AV1 too, and logs "Malformed SEI payload" to the console for AV1's OBUs: its own noise,
printed in the report, not an error of the stream.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import trio

from tests.daemons import enhanced_rtmp
from tests.daemons.conftest import (
    add_stream,
    make_install,
    needs_ffmpeg,
    start_ingest,
    wait_for,
)
from tests.e2e.test_hlsjs_playback import (
    CHROMIUM,
    PLAY_TIMEOUT_S,
    PLAYED_S,
    SpoolHTTPServer,
    Viewer,
    _viewer_report,
    watch_in_chromium,
)
from tests.http.conftest import start_http

FPS = 30
SECONDS = 14

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def av1_clip(tmp_path_factory) -> enhanced_rtmp.Clip:
    work: Path = tmp_path_factory.mktemp("native_playback")
    video = enhanced_rtmp.encode_video(work / "av1.mp4", "av01", SECONDS, fps=FPS)
    audio = enhanced_rtmp.encode_h264_aac(work / "aac.flv", SECONDS, size="160x90", fps=FPS)
    tags = enhanced_rtmp.interleave(enhanced_rtmp.video_tags(video), enhanced_rtmp.aac_tags(audio))
    return enhanced_rtmp.clip("av1_aac", video, tags, "mp4a.40.2", FPS)


async def test_hlsjs_in_chromium_plays_an_av1_publish_live(nursery, tmp_path, av1_clip, capsys):
    inst = make_install(tmp_path / "var", **{"backend.kind": "native", "http.listen": "127.0.0.1:0"})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    http = await start_http(nursery, inst)
    publisher_done = threading.Event()
    result: dict = {}
    with SpoolHTTPServer(inst.spool_root) as server:
        async with trio.open_nursery() as n:

            async def publish():
                try:
                    result["p"] = await enhanced_rtmp.publish(running.host, running.port, s.key, av1_clip)
                finally:
                    publisher_done.set()

            n.start_soon(publish)
            pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None), timeout=15)
            master = pipeline.directory / "master.m3u8"
            await wait_for(lambda: pipeline.live and master.exists(), timeout=15)
            assert f'CODECS="{av1_clip.video_codec},mp4a.40.2"' in master.read_text()
            await http.daemon.ctx.directory.refresh()
            base = f"{http.base_url}/hls/{quote(str(pipeline.directory.relative_to(inst.spool_root / 'streams')))}"
            viewer = Viewer("av1", ready=lambda: True)

            def page_url(v: Viewer) -> str:
                return f"{server.base_url}/e2e/player.html?src={quote(base + '/master.m3u8', safe='')}"

            deadline = time.monotonic() + SECONDS + PLAY_TIMEOUT_S
            await trio.to_thread.run_sync(watch_in_chromium, [viewer], page_url, publisher_done, deadline)
    report = "\n".join(_viewer_report(viewer, server.requests))
    with capsys.disabled():
        print("\n[native av1 hls.js] " + report.replace("\n", "\n[native av1 hls.js] "))
    a = viewer.at_played
    assert a is not None, report
    assert a["hlsSupported"] is True and a["videoSrc"].startswith("blob:"), report  # hls.js on MediaSource
    assert a["fatal"] is None and viewer.final is not None and viewer.final["fatal"] is None, report
    assert a["played"] >= PLAYED_S, report
    assert (a["videoWidth"], a["videoHeight"]) == (av1_clip.width, av1_clip.height), report
    assert a["lowLatency"] is True, report  # it read the LL-HLS parts
    assert result["p"].sent == len(av1_clip.tags) and not result["p"].closed_early
    failed = {k: n for k, n in http.daemon.ctx.counters.requests.items() if k[1] >= 400}
    assert not failed, failed
