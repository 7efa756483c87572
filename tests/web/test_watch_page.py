"""The watch page in headless Chromium while ffmpeg publishes into Sender (issue 6).

ffmpeg → real ingest (LL-HLS packager) → real sender-http → `/watch/<slug>` in Chromium, driven by
Playwright's sync API in a worker thread (as tests/e2e/test_hlsjs_playback.py). The page is the
shipped one: Video.js v10's HTML player on its hls.js engine, built from web/ into
daemons/http/static/, under the page's strict Content-Security-Policy (any violation fails).

- public stream: the page shows "offline" before the publisher starts, then plays by itself;
  `video.currentTime` advances ≥ 3 s within 10 s; the live-edge distance is ≤ 2.5 s; it plays on
  MediaSource through hls.js (a blob: src), not Chromium's native HLS; the publisher reconnects
  mid-play and the page keeps playing, without a reload; its player events (with its session id)
  reach the API's store, and the viewer count is exactly one session. A screenshot is kept.
- private stream: without a token the page says so clearly; with `?token=` it plays.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import trio
from playwright.sync_api import sync_playwright

from daemons.core.domain import playback
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest, wait_for
from tests.http.conftest import start_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--autoplay-policy=no-user-gesture-required",
]
# Collected before any page script runs (init scripts are exempt from the page's CSP).
CSP_WATCH = """document.addEventListener("securitypolicyviolation",
  (e) => (window.__csp = window.__csp || []).push(e.violatedDirective + " " + e.blockedURI));"""
STATUS = "window.senderPlayer ? window.senderPlayer() : null"

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]


class Browser:
    """One Chromium page; every call runs in the thread that made it (Playwright's sync API)."""

    def __init__(self, pw):
        self.browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000)
        self.console: list[str] = []

    def open(self, url: str):
        page = self.browser.new_context(viewport={"width": 960, "height": 640}).new_page()
        page.add_init_script(CSP_WATCH)
        page.on("console", lambda m: m.type in ("error", "warning") and self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.goto(url, wait_until="load", timeout=10_000)
        return page

    def close(self):
        self.browser.close()
        if self.console:
            print("[watch page] console:\n  " + "\n  ".join(self.console[:30]))


def status(page) -> dict:
    return page.evaluate(STATUS) or {}


DEBUG = """() => { const m = document.querySelector("hls-video"); return {
  hasEngine: "engine" in m, engine: String(m.engine), target: String(m.target), src: m.src,
  pref: m.preferPlayback, type: m.type, attrs: m.getAttributeNames(), csp: window.__csp || [] }; }"""


def wait_status(page, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(page)
        if s and predicate(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last status {s}; {page.evaluate(DEBUG)}")
        time.sleep(0.1)


def assert_hlsjs(page, s: dict) -> None:
    """Playing through the shipped hls.js on MediaSource, though this Chromium plays HLS natively."""
    assert s["engine"] == "hls.js" and s["lowLatencyMode"] is True, s
    assert s["videoSrc"] and s["videoSrc"].startswith("blob:"), s
    assert page.evaluate("document.createElement('video').canPlayType('application/vnd.apple.mpegurl')") != ""


async def test_watch_page_offline_then_live_plays_low_latency_through_a_reconnect(nursery, tmp_path, record_property):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0"})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, "demo", title="Test pattern")
    await http.daemon.ctx.directory.refresh()
    shot = tmp_path / "watch.png"
    offline_seen, reconnected, done = threading.Event(), threading.Event(), threading.Event()
    out: dict = {}

    def browse():
        with sync_playwright() as pw:
            b = Browser(pw)
            try:
                page = b.open(f"{http.base_url}/watch/demo")
                out["offline"] = wait_status(page, lambda x: x["pageStatus"] == "offline", 10, "offline state")
                out["offline_badge"] = page.inner_text("#badge")
                offline_seen.set()
                out["first_playing"] = first = wait_status(page, lambda x: x["playing"] and x["currentTime"] > 0, 30, "autoplay once live")
                t0, c0 = time.monotonic(), first["currentTime"]
                out["advanced"] = adv = wait_status(page, lambda x: x["currentTime"] - c0 >= 3, 10, "currentTime +3 s")
                out["advance_s"] = (adv["currentTime"] - c0, time.monotonic() - t0)
                edges = []
                for _ in range(5):
                    edges.append(status(page)["liveEdge"])
                    time.sleep(0.2)
                out["edges"] = edges
                out["live_badge"] = page.inner_text("#badge")
                page.screenshot(path=str(shot))
                assert_hlsjs(page, status(page))
                out["viewers"] = wait_status(page, lambda x: True, 1, "status")  # noqa
                out["viewers_text"] = page.inner_text("#viewers")
                reconnected.wait(40)
                at = status(page)
                out["reconnect_at"] = at
                out["after_reconnect"] = wait_status(page, lambda x: x["currentTime"] - at["currentTime"] >= 3 and not x["paused"],
                                                     20, "playing on after the publisher reconnected")
                out["viewers_text"] = page.inner_text("#viewers")
                time.sleep(5.5)  # one telemetry flush
                out["final"] = status(page)
                out["csp"] = page.evaluate("window.__csp || []")
            finally:
                out["console"] = b.console
                b.close()
                done.set()

    async def publish():
        with trio.fail_after(60):
            await trio.to_thread.run_sync(offline_seen.wait, 20)
        out["p1"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 14), timeout=40)
        await wait_for(lambda: s.stream["id"] not in ingest.daemon.publishers, timeout=10)
        reconnected.set()
        out["p2"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 8), timeout=30)

    async with trio.open_nursery() as n:
        n.start_soon(publish)
        await trio.to_thread.run_sync(browse)

    record_property("watch_screenshot", str(shot))
    record_property("watch_report", {k: out.get(k) for k in ("advance_s", "edges", "first_playing", "final", "console")})
    print(f"\n[watch page] advance {out.get('advance_s')} edges {out.get('edges')} final {out.get('final')}\n"
          f"console {out.get('console')}")
    assert out["p1"].returncode == 0, out["p1"].stderr
    assert out["p2"].returncode == 0, out["p2"].stderr
    assert out["offline"]["status"] == "offline" and out["offline_badge"].lower() == "offline"
    assert "offline" in out["offline"]["overlay"].lower()
    advanced_by, seconds = out["advance_s"]
    assert advanced_by >= 3 and seconds <= 10
    assert out["live_badge"].lower() == "live"
    assert min(e for e in out["edges"] if e is not None) <= 2.5, out["edges"]
    assert sorted(e for e in out["edges"] if e is not None)[len(out["edges"]) // 2] <= 2.5, out["edges"]
    assert shot.stat().st_size > 10_000
    final = out["final"]
    # the same broadcast and page all along: the reconnect was a discontinuity, not a reload
    assert final["generationId"] == out["first_playing"]["generationId"] and final["sessionId"] == out["first_playing"]["sessionId"]
    assert final["pageStatus"] == "live" and final["startupMs"] is not None, final
    assert out["csp"] == [], out["csp"]
    assert out["viewers_text"] == "1 viewer"

    with inst.open_store() as store:
        rows = store.query("SELECT kind, value, session_id, generation_id FROM player_events")
    mine = [r for r in rows if r["session_id"] == final["sessionId"]]
    kinds = {r["kind"] for r in mine}
    assert {"startup", "playing", "live_edge"} <= kinds, rows
    assert all(r["generation_id"] == final["generationId"] for r in mine)
    edges = [r["value"] for r in mine if r["kind"] == "live_edge"]
    assert min(edges) <= 2.5, edges


async def test_private_stream_plays_with_a_token_and_says_so_without(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0"})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, "secret", title="Members only", visibility="private")
    await http.daemon.ctx.directory.refresh()
    token = playback.mint_token(inst.secret(), s.stream["id"], 600)["token"]
    out: dict = {}

    def browse():
        with sync_playwright() as pw:
            b = Browser(pw)
            try:
                page = b.open(f"{http.base_url}/watch/secret")
                out["denied"] = wait_status(page, lambda x: x["pageStatus"] == "forbidden", 10, "private without token")
                out["denied_text"] = page.inner_text("#overlay")
                out["denied_title"] = page.inner_text("#title")
                page = b.open(f"{http.base_url}/watch/secret?token={token}")
                first = wait_status(page, lambda x: x["playing"] and x["currentTime"] > 0, 30, "private stream plays")
                out["played"] = wait_status(page, lambda x: x["currentTime"] - first["currentTime"] >= 2, 10, "currentTime +2 s")
                assert_hlsjs(page, out["played"])
                out["title"] = page.inner_text("#title")
                out["csp"] = page.evaluate("window.__csp || []")
            finally:
                out["console"] = b.console
                b.close()

    async with trio.open_nursery() as n:
        async def publish():
            out["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 10), timeout=40)

        n.start_soon(publish)
        await trio.to_thread.run_sync(browse)

    assert "private" in out["denied_text"].lower() and "token" in out["denied_text"].lower(), out["denied_text"]
    assert "Members only" not in out["denied_title"]  # nothing about a private stream without its token
    assert out["title"] == "Members only"
    assert out["played"]["masterUrl"].endswith(f"?token={token}")
    assert out["csp"] == [], out["csp"]


ERROR_DIALOG = """() => { const d = document.querySelector("live-video-skin").shadowRoot.querySelector("media-error-dialog");
  return d ? {open: d.hasAttribute("data-open"), visible: !!(d.offsetWidth || d.offsetHeight) && getComputedStyle(d).visibility !== "hidden"
              && getComputedStyle(d).display !== "none", text: d.textContent.replace(/\\s+/g, " ").trim()} : null; }"""


async def test_watch_page_through_reconnecting_the_end_and_a_new_broadcast(nursery, tmp_path):
    """Publisher killed → "reconnecting" over the last frame (no spinner, no error box); back within
    the grace → plays on; killed again past the grace → only "The broadcast has ended."; a new
    publish → the new broadcast plays on the same page, without a reload."""
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "rtmp.reconnect_grace": "6s"})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, "demo", title="Lifecycle")
    await http.daemon.ctx.directory.refresh()
    cue = {name: threading.Event() for name in ("playing", "reconnecting", "resumed", "ended", "replaying")}
    out: dict = {}

    def browse():
        with sync_playwright() as pw:
            b = Browser(pw)
            try:
                page = b.open(f"{http.base_url}/watch/demo")
                out["first"] = wait_status(page, lambda x: x["playing"] and x["currentTime"] > 1, 30, "plays once live")
                cue["playing"].set()
                out["reconnecting"] = wait_status(page, lambda x: x["shown"] == "reconnecting", 10, "reconnecting shown")
                out["reconnecting_overlay"] = page.inner_text("#overlay")
                out["reconnecting_badge"] = page.inner_text("#badge")
                time.sleep(2.5)  # the scenario: the viewer watches the reconnecting state for a while
                out["reconnecting_later"] = status(page)
                out["dialog_reconnecting"] = page.evaluate(ERROR_DIALOG)
                cue["reconnecting"].set()
                out["resumed"] = wait_status(page, lambda x: x["shown"] == "live" and not x["paused"] and not x["halted"], 15,
                                             "plays again after the publisher came back")
                c0 = out["resumed"]["currentTime"]
                out["resumed_advancing"] = wait_status(page, lambda x: x["currentTime"] - c0 >= 1.5, 10, "advancing after the return")
                cue["resumed"].set()
                out["ended"] = wait_status(page, lambda x: x["shown"] == "ended", 25, "ended shown after the grace")
                time.sleep(3)  # the scenario: an ended page left open; nothing else may appear
                out["ended_later"] = status(page)
                out["ended_overlay"] = page.inner_text("#overlay")
                out["ended_badge"] = page.inner_text("#badge")
                out["dialog_ended"] = page.evaluate(ERROR_DIALOG)
                cue["ended"].set()
                out["replaying"] = wait_status(page, lambda x: x["shown"] == "live" and x["playing"] and x["currentTime"] > 1
                                               and x["generationId"] != out["first"]["generationId"], 30, "a new broadcast plays")
                out["csp"] = page.evaluate("window.__csp || []")
            finally:
                out["console"] = b.console
                b.close()
                for e in cue.values():
                    e.set()

    async def waited(name: str) -> None:
        await trio.to_thread.run_sync(cue[name].wait, 60)

    async def publish_until(cue: str) -> None:
        """A publisher from now until the browser reaches `cue`; then it dies (no goodbye)."""
        proc = await trio.lowlevel.open_process(ffmpeg_publish_cmd(ingest.url(s.key), 120), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
        try:
            await waited(cue)
        finally:
            proc.kill()
            await proc.wait()

    async def publish():
        await publish_until("playing")
        await waited("reconnecting")
        await publish_until("resumed")
        await waited("ended")
        await publish_until("replaying")

    async with trio.open_nursery() as n:
        n.start_soon(publish)
        await trio.to_thread.run_sync(browse)

    print(f"\n[watch page lifecycle] console {out.get('console')}")
    assert out["reconnecting_overlay"] == "The broadcaster is reconnecting…"
    assert out["reconnecting_badge"].lower() == "reconnecting"
    later = out["reconnecting_later"]
    assert later["paused"] and later["halted"] and later["playerError"] is None  # last frame, no spinner, no error
    assert later["generationId"] == out["first"]["generationId"]
    assert out["dialog_reconnecting"] is not None and not out["dialog_reconnecting"]["open"]
    assert out["resumed"]["generationId"] == out["first"]["generationId"]  # the same broadcast goes on
    assert out["ended_overlay"] == "The broadcast has ended."
    assert out["ended_badge"].lower() == "ended"
    assert out["ended_later"]["shown"] == "ended" and out["ended_later"]["playerError"] is None
    assert not out["dialog_ended"]["open"] and not out["dialog_ended"]["visible"], out["dialog_ended"]
    replay = out["replaying"]
    assert replay["sessionId"] == out["first"]["sessionId"]  # the same page: no reload
    assert replay["overlay"] == "" and out["csp"] == []
