"""The replay page (`/watch/<slug>/<generation>`) in headless Chromium, with a recording made by
ffmpeg publishing into a real ingest daemon (issue 17).

While the broadcast is live the page plays its DVR playlist from the start; the viewer jumps to
the live end, seeks back 20 s and it plays from there. Once it ended the page plays the VOD
playlist: the seek bar of Video.js's video skin (clicked, as a person would) moves the playback,
seeking back 20 s plays; hls.js runs *not* in low-latency mode; nothing breaks the page's CSP.
The watch page of the ended broadcast links its replay. A private stream's replay page needs its
token and carries it.
"""

from __future__ import annotations

import threading
import time

import pytest
import trio
from playwright.sync_api import sync_playwright

from daemons.core import domain
from daemons.core.domain import playback
from tests.daemons.conftest import (
    add_stream,
    ffmpeg_publish_cmd,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)
from tests.http.conftest import start_http
from tests.web.test_watch_page import CHROMIUM, Browser, status, wait_status

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]

PUBLISH_S = 40


def seek(page, seconds: float) -> None:
    page.evaluate(f"() => {{ document.querySelector('hls-video').target.currentTime = {seconds}; }}")


def plays_from(page, position: float, what: str, *, timeout: float = 20) -> dict:
    """Playing, at least 2 s past `position` and not far beyond it: it played from there."""
    return wait_status(page, lambda x: position + 2 <= x["currentTime"] <= position + 12 and not x["paused"], timeout, what)


CONTROLS_SHOWN = """() => { const c = document.querySelector('video-skin').shadowRoot.querySelector('media-controls');
  return getComputedStyle(c).opacity === '1'; }"""
SEEK_BAR_BOX = """() => { const r = document.querySelector('video-skin').shadowRoot.querySelector('media-time-slider')
  .getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }"""


def click_seek_bar(page, fraction: float) -> dict:
    stage = page.locator("section.stage").bounding_box()
    deadline = time.monotonic() + 10
    step = 0
    while not page.evaluate(CONTROLS_SHOWN):
        assert time.monotonic() < deadline, "the player's controls never showed under the pointer"
        step += 1
        page.mouse.move(stage["x"] + stage["width"] / 2 + (step % 2) * 20, stage["y"] + stage["height"] / 2)
        time.sleep(0.1)
    box = page.evaluate(SEEK_BAR_BOX)
    assert box["width"] > 100 and box["height"] > 0, box
    page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    return box


def assert_replay_engine(s: dict) -> None:
    assert s["mode"] == "replay" and s["engine"] == "hls.js" and s["lowLatencyMode"] is False, s
    assert s["videoSrc"].startswith("blob:"), s


async def test_replay_page_seeks_back_while_live_and_once_ended(nursery, tmp_path, record_property):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "recording.enabled": True, "rtmp.record": False})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, "demo", title="Test pattern")
    await http.daemon.ctx.directory.refresh()
    published, stopped = trio.Event(), threading.Event()
    out: dict = {}

    async def publish():
        out["publisher"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), PUBLISH_S), timeout=PUBLISH_S + 30)
        published.set()

    nursery.start_soon(publish)
    pipeline = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None), timeout=15)
    gen = pipeline.generation_id
    # 28 s in: a DVR replay with room to seek back 20 s from its live end.
    await wait_for(lambda: (r := pipeline.packagers["source"].recording) is not None and r.segments >= 14, timeout=40)
    shot = tmp_path / "replay.png"

    def browse():
        with sync_playwright() as pw:
            b = Browser(pw)
            try:
                page = b.open(f"{http.base_url}/watch/demo/{gen}")
                out["live_start"] = first = wait_status(page, lambda x: x["playing"] and x["currentTime"] > 0.5, 20, "DVR replay plays")
                out["live_badge"] = page.inner_text("#badge")
                assert_replay_engine(first)
                edge = status(page)["seekable"][1]
                seek(page, edge - 1)  # the live end, as far as the DVR playlist goes now
                out["at_edge"] = at = wait_status(page, lambda x: x["currentTime"] >= edge - 1 and not x["paused"], 15, "at the live end")
                back = at["currentTime"] - 20
                seek(page, back)
                out["live_back"] = plays_from(page, back, "DVR: 20 s back, playing")
                out["live_back_from"] = back
                page.close()

                stopped.wait(60)
                page = b.open(f"{http.base_url}/watch/demo/{gen}")
                out["vod_start"] = wait_status(page, lambda x: x["playing"] and x["replayEnded"] and x["duration"] > 30, 20,
                                               "VOD replay plays")
                assert_replay_engine(out["vod_start"])
                out["vod_badge"] = page.inner_text("#badge")
                # The seek bar, clicked at three quarters, as a person would: the pointer over the
                # player shows the controls (they hide while idle), then a click on the bar.
                box = click_seek_bar(page, 0.75)
                out["seek_bar"] = box
                duration = out["vod_start"]["duration"]
                out["clicked"] = clicked = wait_status(page, lambda x: abs(x["currentTime"] - 0.75 * duration) < 4 and not x["paused"],
                                                       10, "the seek bar moved the playback")
                back = clicked["currentTime"] - 20
                seek(page, back)
                out["vod_back"] = plays_from(page, back, "VOD: 20 s back, playing")
                out["vod_back_from"] = back
                page.screenshot(path=str(shot))
                out["csp"] = page.evaluate("window.__csp || []")
                page.close()

                # The ended broadcast's watch page links its replay.
                page = b.open(f"{http.base_url}/watch/demo")
                out["watch_ended"] = wait_status(page, lambda x: x["shown"] == "ended" and x["replayUrl"], 20, "replay linked")
                out["replay_link"] = page.get_attribute("a.replay-link", "href")
                out["listed"] = page.get_attribute("#replays a", "href")
            finally:
                out["console"] = b.console
                b.close()

    async def stop_after_publish():
        with trio.fail_after(PUBLISH_S + 40):
            await published.wait()
        await ingest.publisher_left(s.stream["id"])
        with inst.open_store() as store:
            domain.streams.stop(store, "demo")
        await wait_for(lambda: (pipeline.directory / "master-vod.m3u8").exists(), timeout=10)
        stopped.set()

    async with trio.open_nursery() as n:
        n.start_soon(stop_after_publish)
        await trio.to_thread.run_sync(browse)

    record_property("replay_screenshot", str(shot))
    print(f"\n[replay page] {({k: out.get(k) for k in ('live_back', 'vod_back', 'clicked', 'console')})}")
    assert out["publisher"].returncode == 0, out["publisher"].stderr
    assert out["live_badge"].lower() == "live replay" and out["vod_badge"].lower() == "replay"
    assert out["live_start"]["currentTime"] < 10  # a replay starts at the start
    # While live the seek bar spans the DVR playlist so far (a duration, not infinity), and grows.
    assert 20 <= out["live_start"]["duration"] <= out["live_back"]["duration"] < PUBLISH_S + 3, (out["live_start"], out["live_back"])
    assert out["at_edge"]["currentTime"] >= 24
    assert out["vod_start"]["replayEnded"] and abs(out["vod_start"]["duration"] - PUBLISH_S) <= 3
    assert out["csp"] == [], out["csp"]
    assert shot.stat().st_size > 10_000
    assert out["replay_link"] == out["listed"] == f"/watch/demo/{gen}"


async def test_a_private_replay_page_needs_the_streams_token(nursery, tmp_path):
    import httpx

    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "recording.enabled": True, "rtmp.record": False})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, "secret", title="Members only", visibility="private")
    other = add_stream(inst, "other")
    await http.daemon.ctx.directory.refresh()
    await run_publisher([c for c in ffmpeg_publish_cmd(ingest.url(s.key), 6) if c != "-re"])
    await ingest.publisher_left(s.stream["id"])
    with inst.open_store() as store:
        gen = domain.streams.stop(store, "secret")["id"]
        unrecorded, _ = domain.streams.start(store, "other")  # not recorded (recording.enabled is read by the caller)
    await wait_for(lambda: (inst.spool_root / "streams" / s.stream["id"] / gen / "master-vod.m3u8").exists(), timeout=10)
    token = playback.mint_token(inst.playback_secret(), s.stream["id"], 600)["token"]
    async with httpx.AsyncClient(base_url=http.base_url) as client:
        denied = await client.get(f"/watch/secret/{gen}")
        assert denied.status_code == 403 and "private" in denied.text and denied.headers["cache-control"] == "no-store"
        page = await client.get(f"/watch/secret/{gen}", params={"token": token})
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert f'data-master="/hls/{s.stream["id"]}/{gen}/master-vod.m3u8"' in page.text and 'data-live="false"' in page.text
        assert "<video-player>\n<video-skin>" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        # The stream's watch page lists the replay, with the token, for a viewer who has one.
        watch = await client.get("/watch/secret", params={"token": token})
        assert f'href="/watch/secret/{gen}?token={token}"' in watch.text
        assert "/watch/secret/gen_" not in (await client.get("/watch/secret")).text
        for path in (f"/watch/other/{gen}", f"/watch/other/{unrecorded['id']}", "/watch/secret/gen_0000000000000000",
                     "/watch/secret/not-a-generation", f"/watch/nobody/{gen}"):
            missing = await client.get(path, params={"token": token})
            assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store", path
    assert other.stream["slug"] == "other"
