"""End to end: ffmpeg publishes RTMP → the real ingest daemon packages LL-HLS into the spool → the
spool is served over real HTTP on 127.0.0.1 → hls.js in headless Chromium plays the master
playlist, and ffprobe reads it over the same HTTP (issue 4's acceptance).

It runs twice: through sender-http (blocking reload, preload hints, delta updates; the page comes
from another origin, so CORS is exercised too), and through a small static file server of the
test's own: plain files, so blocking-reload and skip directives (_HLS_msn, _HLS_part, _HLS_skip)
are ignored and answered with the current playlist, as a static web server or a CDN without
LL-HLS support would. The player page (player.html) and hls.js (vendor/, see vendor/README.md)
always come from the static server.

Two viewers watch: one opens the page the moment the master playlist appears (the first viewer of
a new broadcast), one once the playlist lists whole segments (a viewer joining a running stream).
Both must play through hls.js on MediaSource (never Chromium's native HLS) with no fatal error.
The test prints what hls.js reported (latency, stalls, errors) for each.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit

import pytest
import trio
from playwright.sync_api import sync_playwright

from tests.http.conftest import start_http
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

PUBLISH_S = 15          # the publisher runs this long; the viewers play while it does
PLAYED_S = 2.0          # acceptance: hls.js plays at least this much media
PLAY_TIMEOUT_S = 20     # from a viewer's page load to PLAYED_S played (or a fatal hls.js error)
LATE_JOIN_SEGMENTS = 2  # the second viewer opens once the playlist lists this many whole segments

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]


# --- a static file server for the spool -------------------------------------------------------


class _SpoolRequestHandler(http.server.SimpleHTTPRequestHandler):
    """GET /e2e/<file> from this folder; GET [/viewer/<name>]/<path> from the spool root (the
    optional prefix only tells the viewers' requests apart in the log)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real player's HTTP server would
    content_types = {
        ".m3u8": "application/vnd.apple.mpegurl",
        ".mp4": "video/mp4",
        ".m4s": "video/mp4",
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
    }

    def _route(self) -> tuple[str, str, str]:
        """(viewer, directory, path inside it) for this request."""
        path = urlsplit(self.path).path
        if path.startswith("/e2e/"):
            return "", str(E2E_DIR), path[len("/e2e"):]
        viewer = ""
        if path.startswith("/viewer/"):
            viewer, _, rest = path[len("/viewer/"):].partition("/")
            path = "/" + rest
        return viewer, str(self.server.spool_root), path

    def translate_path(self, path: str) -> str:
        _, self.directory, inner = self._route()
        return super().translate_path(inner)

    def guess_type(self, path) -> str:
        return self.content_types.get(Path(path).suffix, "application/octet-stream")

    def do_GET(self) -> None:
        # Playlists are rewritten several times a second; Last-Modified has whole seconds, so a
        # conditional request could get a 304 for a playlist that did change. Always send it.
        del self.headers["If-Modified-Since"]
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        viewer, _, path = self._route()
        self.server.requests.append((viewer, path, int(getattr(code, "value", code))))

    def log_message(self, format, *args) -> None:
        pass


class SpoolHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, spool_root: Path):
        self.spool_root = spool_root
        self.requests: list[tuple[str, str, int]] = []  # (viewer, path, status), every request answered
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


# --- the browser side (Playwright's sync API, all in one worker thread) -----------------------


@dataclass
class Viewer:
    name: str
    ready: Callable[[], bool]  # when this viewer opens the page (called from the browser thread)
    opened: float | None = None  # time.monotonic() when the page had loaded
    at_played: dict | None = None  # the player's status once PLAYED_S had played, or it failed
    samples: list[dict] = field(default_factory=list)  # while the publisher ran, after that
    final: dict | None = None  # the status when the publisher was done
    console: list[str] = field(default_factory=list)  # the page's console errors and warnings


STATUS = "playerStatus()"


def watch_in_chromium(viewers: list[Viewer], page_url: Callable[[Viewer], str], publisher_done: threading.Event, deadline: float) -> None:
    """Opens each viewer's page once it is ready, waits until each has played PLAYED_S (or hit a
    fatal hls.js error, or PLAY_TIMEOUT_S passed), then samples the players until the publisher is
    done. Every wait ends by `deadline` (time.monotonic()); the browser is always closed."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            pages = {}
            while any(v.at_played is None for v in viewers) and time.monotonic() < deadline:
                for v in viewers:
                    if v.name not in pages and v.ready():
                        page = pages[v.name] = browser.new_context().new_page()
                        page.on("console", lambda m, v=v: m.type in ("error", "warning") and v.console.append(f"{m.type}: {m.text}"))
                        page.on("pageerror", lambda e, v=v: v.console.append(f"pageerror: {e}"))
                        page.goto(page_url(v), wait_until="load", timeout=10_000)
                        v.opened = time.monotonic()
                    elif v.name in pages and v.at_played is None:
                        status = pages[v.name].evaluate(STATUS)
                        waited = time.monotonic() - v.opened
                        if status["fatal"] is not None or status["played"] >= PLAYED_S or waited > PLAY_TIMEOUT_S:
                            v.at_played = {**status, "seconds_to_play": waited}
                time.sleep(0.1)  # poll interval of the condition above
            while not publisher_done.wait(0.25) and time.monotonic() < deadline:
                for v in viewers:
                    if v.name in pages:
                        s = pages[v.name].evaluate(STATUS)
                        v.samples.append({k: s[k] for k in ("currentTime", "latency", "pdtLatency", "waiting", "fatal")})
            for v in viewers:
                if v.name in pages:
                    v.final = pages[v.name].evaluate(STATUS)
        finally:
            browser.close()


# --- the test ----------------------------------------------------------------------------------


def _median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _viewer_report(v: Viewer, requests: list[tuple[str, str, int]]) -> list[str]:
    name = f"[{v.name}]"
    if v.at_played is None:
        return [f"{name} never opened or never reported (ready={v.ready()})"]
    a, final = v.at_played, v.final or v.at_played
    mine = [(path, status) for viewer, path, status in requests if viewer == v.name]
    parts = [path for path, _ in mine if path.count(".") == 2 and path.endswith(".m4s")]
    refetched = sum(n - 1 for n in Counter(parts).values())
    lines = [
        f"{name} hls.js {a['hlsVersion']} on MediaSource (Hls.isSupported()={a['hlsSupported']}, src {a['videoSrc'][:5]}…, "
        f"native canPlayType={a['nativeHls']!r} not used); LL-HLS parts seen: {a['lowLatency']}",
        f"{name} played {a['played']:.2f} s {a['seconds_to_play']:.2f} s after page load; then hls.latency={_fmt(a['latency'])} s "
        f"(target {_fmt(a['targetLatency'])} s), wall clock - PROGRAM-DATE-TIME={_fmt(a['pdtLatency'])} s",
        f"{name} while the publisher ran: median hls.latency={_fmt(_median(x['latency'] for x in v.samples))} s, "
        f"median PDT latency={_fmt(_median(x['pdtLatency'] for x in v.samples))} s ({len(v.samples)} samples); "
        f"stalls={final['waiting']}, parts buffered={final['partsBuffered']}, segments buffered={final['fragsBuffered']}, "
        f"playlist loads={final['levelLoads']}",
        f"{name} HTTP: {len(mine)} requests {dict(Counter(status for _, status in mine))}, "
        f"{len(parts)} part requests of which {refetched} re-fetched a part already fetched",
    ]
    lines += [f"{name} HTTP {status}: {path}" for path, status in mine if status >= 400][:10]
    lines += [
        f"{name} hls.js error event: {e['type']}/{e['details']} fatal={e['fatal']} status={e['status']} url={e['url']} {e['reason'] or ''}"
        for e in final["errors"][:10]
    ]
    lines += [f"{name} hls.js said: {w}" for w in final["warnings"][:10]]
    lines += [f"{name} console: {c}" for c in v.console[:10]]
    return lines


@pytest.mark.parametrize("via", ["sender-http", "static-files"])
async def test_hlsjs_in_chromium_plays_the_live_master_playlist(nursery, tmp_path, capsys, record_property, via):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0"})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    http = await start_http(nursery, inst) if via == "sender-http" else None
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
            master = pipeline.directory / "master.m3u8"
            await wait_for(lambda: pipeline.live and master.exists(), timeout=15)
            generation_path = "/" + quote(str(pipeline.directory.relative_to(inst.spool_root)))
            if http is not None:
                await http.daemon.ctx.directory.refresh()
                base = f"{http.base_url}/hls{generation_path.removeprefix('/streams')}"
            else:
                base = None
            [variant] = [line for line in master.read_text().splitlines() if line and not line.startswith("#")]
            media_playlist = pipeline.directory / variant

            def segments_listed() -> int:
                try:
                    return media_playlist.read_text().count("#EXTINF")
                except FileNotFoundError:
                    return 0

            async def probe():
                # ffprobe's HLS reader knows no LL-HLS parts: it needs whole segments listed.
                await wait_for(lambda: segments_listed() >= 1, timeout=15)
                env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
                with trio.fail_after(20):
                    out = await trio.run_process(
                        [FFPROBE, "-v", "error", "-rw_timeout", "5000000", "-show_streams", "-of", "json",
                         f"{base}/master.m3u8" if base else f"{server.base_url}/viewer/ffprobe{generation_path}/master.m3u8"],
                        capture_stdout=True, capture_stderr=True, check=False, env=env,
                    )
                result["ffprobe"] = out

            n.start_soon(probe)
            viewers = [
                Viewer("first", ready=lambda: True),
                Viewer("joining", ready=lambda: segments_listed() >= LATE_JOIN_SEGMENTS),
            ]

            def page_url(v: Viewer) -> str:
                src = f"{base}/master.m3u8" if base else f"/viewer/{v.name}{generation_path}/master.m3u8"
                return f"{server.base_url}/e2e/player.html?src={quote(src, safe='')}"

            deadline = time.monotonic() + PUBLISH_S + PLAY_TIMEOUT_S
            await trio.to_thread.run_sync(watch_in_chromium, viewers, page_url, publisher_done, deadline)

    report = [f"HTTP server: {len(server.requests)} requests, {server.connection_errors} connections dropped mid-request"]
    if http is not None:
        report.append(f"sender-http answered: {dict(sorted(http.daemon.ctx.counters.requests.items()))}")
    for v in viewers:
        report += _viewer_report(v, server.requests)
    text = "\n".join(report)
    with capsys.disabled():
        print("\n[e2e hls.js] " + text.replace("\n", "\n[e2e hls.js] "))
    record_property("hlsjs_report", text)
    for v in viewers:
        record_property(f"hlsjs_latency_s_{v.name}", v.at_played and v.at_played["latency"])

    for v in viewers:
        a = v.at_played
        assert a is not None, f"viewer {v.name} never reported\n{text}"
        # hls.js on MediaSource (not Chromium's native HLS) played the live master playlist.
        assert a["hlsSupported"] is True and a["attached"], text
        assert a["videoSrc"].startswith("blob:"), a["videoSrc"]
        assert a["fatal"] is None and v.final is not None and v.final["fatal"] is None, text
        assert a["played"] >= PLAYED_S and a["currentTime"] - a["playingAt"] >= PLAYED_S - 0.5, text
        assert (a["videoWidth"], a["videoHeight"]) == (320, 240)
        assert a["lowLatency"] is True, text  # hls.js read the LL-HLS parts
        assert a["latency"] is not None and 0 < a["latency"] < 15, text

    # ffprobe read the same master playlist over the same HTTP while it was live.
    assert result["ffprobe"].returncode == 0, result["ffprobe"].stderr
    kinds = {st["codec_type"]: st for st in json.loads(result["ffprobe"].stdout)["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    assert (kinds["video"]["width"], kinds["video"]["height"]) == (320, 240)

    assert result["publisher"].returncode == 0, result["publisher"].stderr
    # Everything the players asked for in the spool was there.
    missing = [(viewer, path) for viewer, path, status in server.requests if status >= 400 and path.startswith("/streams/")]
    assert not missing, missing
    if http is not None:
        failed = {k: n for k, n in http.daemon.ctx.counters.requests.items() if k[1] >= 400}
        assert not failed, failed
