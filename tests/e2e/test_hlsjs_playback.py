"""End to end: ffmpeg publishes RTMP → the real ingest daemon packages LL-HLS into the spool → the
spool is served over real HTTP on 127.0.0.1 → hls.js in headless Chromium plays the master
playlist (issue 4's acceptance), and ffprobe reads it over the same HTTP.

sender-http does not exist yet, so the test serves the spool with a small static file server of
its own (plain files: blocking-reload and skip directives are ignored and answered with the
current playlist, as any static web server or CDN without LL-HLS support would). The player page
(player.html) and hls.js (vendor/, see vendor/README.md) are served from the same origin.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import trio
from playwright.sync_api import sync_playwright

from tests.daemons.conftest import (
    FFPROBE,
    add_stream,
    ffmpeg_publish_cmd,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)

E2E_DIR = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
# What works on these machines (no GPU, no network but loopback, running as root). Playwright's
# launch() gives every browser a fresh temporary profile (--user-data-dir) and removes it on close.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--autoplay-policy=no-user-gesture-required",
]

PUBLISH_S = 10          # the publisher runs this long; the page plays while it does
PLAYED_S = 2.0          # acceptance: hls.js plays at least this much media
PLAY_TIMEOUT_S = 20     # from page load to PLAYED_S played (or a fatal hls.js error)

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]


# --- a static file server for the spool -------------------------------------------------------


class _SpoolRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves /e2e/<file> from this folder and every other path from the spool root."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real player's HTTP server would
    content_types = {
        ".m3u8": "application/vnd.apple.mpegurl",
        ".mp4": "video/mp4",
        ".m4s": "video/mp4",
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
    }

    def translate_path(self, path: str) -> str:
        if urlsplit(path).path.startswith("/e2e/"):
            self.directory = str(E2E_DIR)
            path = path[len("/e2e"):]
        else:
            self.directory = str(self.server.spool_root)
        return super().translate_path(path)  # drops the query (_HLS_msn, _HLS_part, _HLS_skip)

    def guess_type(self, path) -> str:
        return self.content_types.get(Path(path).suffix, "application/octet-stream")

    def do_GET(self) -> None:
        # Playlists are rewritten many times a second; Last-Modified has whole seconds, so a
        # conditional request could get a 304 for a playlist that did change. Always send it.
        del self.headers["If-Modified-Since"]
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        self.server.requests.append((urlsplit(self.path).path, int(getattr(code, "value", code))))

    def log_message(self, format, *args) -> None:
        pass


class SpoolHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, spool_root: Path):
        self.spool_root = spool_root
        self.requests: list[tuple[str, int]] = []  # (path, status) of every request answered
        self.connection_errors = 0  # e.g. a player aborting a request it no longer needs
        super().__init__(("127.0.0.1", 0), _SpoolRequestHandler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address) -> None:
        self.connection_errors += 1

    def __enter__(self) -> SpoolHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


# --- the browser side (Playwright's sync API, in one worker thread) ---------------------------


def play_in_chromium(page_url: str, publisher_done: threading.Event, deadline: float) -> dict:
    """Loads the player page, waits until hls.js has played PLAYED_S seconds (or failed fatally),
    then keeps sampling the player until the publisher is done. Returns what the page reported.
    Every wait is bounded by `deadline` (time.monotonic()); the browser is always closed."""
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type in ("error", "warning") and console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(page_url, wait_until="load", timeout=10_000)
            started = time.monotonic()
            page.wait_for_function(
                f"() => {{ const s = window.playerStatus(); return s.fatal !== null || s.played >= {PLAYED_S}; }}",
                polling=100,
                timeout=max(1.0, min(PLAY_TIMEOUT_S, deadline - time.monotonic())) * 1000,
            )
            at_played = page.evaluate("playerStatus()")
            at_played["seconds_to_play"] = time.monotonic() - started
            samples = []
            while at_played["fatal"] is None and time.monotonic() < deadline and not publisher_done.wait(0.25):
                s = page.evaluate("playerStatus()")
                samples.append({k: s[k] for k in ("currentTime", "latency", "pdtLatency", "waiting")})
                if s["fatal"] is not None:
                    break
            final = page.evaluate("playerStatus()")
            return {"at_played": at_played, "final": final, "samples": samples, "console": console}
        finally:
            browser.close()


# --- the test ----------------------------------------------------------------------------------


def _ffprobe_over_http(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-rw_timeout", "5000000", "-show_streams", "-of", "json", url],
        capture_output=True, text=True, timeout=20, env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


async def test_hlsjs_in_chromium_plays_the_live_master_playlist(nursery, tmp_path, capsys, record_property):
    inst = make_install(tmp_path / "var")
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    publisher_done = threading.Event()
    result: dict = {}

    with SpoolHTTPServer(inst.spool_root) as server:
        async with trio.open_nursery() as n:

            async def publish():
                try:
                    result["publisher"] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), PUBLISH_S), timeout=PUBLISH_S + 20)
                finally:
                    publisher_done.set()

            n.start_soon(publish)
            pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None), timeout=15)
            await wait_for(lambda: pipeline.live and (pipeline.directory / "master.m3u8").exists(), timeout=15)
            master_path = "/" + quote(str((pipeline.directory / "master.m3u8").relative_to(inst.spool_root)))
            master_url = server.base_url + master_path
            page_url = f"{server.base_url}/e2e/player.html?src={quote(master_path, safe='')}"

            async def probe():
                result["ffprobe"] = await trio.to_thread.run_sync(_ffprobe_over_http, master_url)

            n.start_soon(probe)
            # Playwright's sync API runs in one worker thread; every wait in it is bounded.
            deadline = time.monotonic() + PUBLISH_S + 15
            result["browser"] = await trio.to_thread.run_sync(play_in_chromium, page_url, publisher_done, deadline)

    browser = result["browser"]
    at_played, final = browser["at_played"], browser["final"]
    statuses = {}
    for path, status in server.requests:
        statuses.setdefault(status, []).append(path)
    problems = [f"{e['type']}/{e['details']} fatal={e['fatal']} status={e['status']} url={e['url']} {e['reason'] or ''}" for e in final["errors"]]

    report = [
        f"hls.js {at_played['hlsVersion']} in {CHROMIUM} (MSE, Hls.isSupported()={at_played['hlsSupported']}, "
        f"native canPlayType={at_played['nativeHls']!r}, low-latency parts={at_played['lowLatency']})",
        f"played {at_played['played']:.2f} s of media {at_played['seconds_to_play']:.2f} s after page load; "
        f"hls.latency={at_played['latency']:.3f} s (target {at_played['targetLatency']:.3f} s), "
        f"PROGRAM-DATE-TIME latency={_fmt(at_played['pdtLatency'])} s",
        f"while the publisher ran: median hls.latency={_fmt(_median(x['latency'] for x in browser['samples']))} s, "
        f"median PDT latency={_fmt(_median(x['pdtLatency'] for x in browser['samples']))} s over {len(browser['samples'])} samples; "
        f"final hls.latency={_fmt(final['latency'])} s, stalls={final['waiting']}, "
        f"parts buffered={final['partsBuffered']}, segments buffered={final['fragsBuffered']}, playlist loads={final['levelLoads']}",
        f"HTTP: {len(server.requests)} requests, by status {({k: len(v) for k, v in sorted(statuses.items())})}, "
        f"connection errors {server.connection_errors}",
    ]
    report += [f"HTTP {status}: {sorted(set(paths))[:10]}" for status, paths in sorted(statuses.items()) if status >= 400]
    report += [f"hls.js error event: {p}" for p in problems[:20]]
    report += [f"hls.js log: {w}" for w in final["warnings"][:20]]
    report += [f"console: {c}" for c in browser["console"][:20]]
    with capsys.disabled():
        print("\n[e2e hls.js] " + "\n[e2e hls.js] ".join(report))
    record_property("hlsjs_latency_s", at_played["latency"])
    record_property("hlsjs_report", "\n".join(report))

    # hls.js (not Chromium's native HLS) played the live master playlist, with no fatal error.
    assert at_played["hlsSupported"] is True
    assert at_played["attached"] and at_played["videoSrc"].startswith("blob:"), at_played["videoSrc"]
    assert at_played["fatal"] is None and final["fatal"] is None, "\n".join(report)
    assert at_played["played"] >= PLAYED_S and at_played["currentTime"] - at_played["playingAt"] >= PLAYED_S - 0.5, report
    assert (at_played["videoWidth"], at_played["videoHeight"]) == (320, 240)
    assert at_played["lowLatency"] is True  # hls.js read the LL-HLS parts
    assert at_played["latency"] is not None and 0 < at_played["latency"] < 10

    # ffprobe read the same master playlist over the same HTTP while it was live.
    kinds = {st["codec_type"]: st for st in result["ffprobe"]["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"

    assert result["publisher"].returncode == 0, result["publisher"].stderr
    # Every playlist, part and segment the players asked for was there.
    assert not [p for st, paths in statuses.items() if st >= 400 for p in paths if p.startswith("/streams/")], statuses


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
