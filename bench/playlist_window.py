#!/usr/bin/env python3
"""What the live window costs per playlist response: bytes and render time of the full LL-HLS
playlist and of its delta update (`_HLS_skip=YES`), and sender-http's requests/s and CPU per
response for both, at windows of 6, 15, 30, 60 and 150 segments of 2 s (issue 13: choose the
default `spool.live_window_segments`).

With `CAN-SKIP-UNTIL` = 6 × TARGETDURATION (12 s), a delta update can skip only the segments that
lie wholly more than 12 s back: at a 12 s window (6 segments) there is nothing to skip and every
`_HLS_skip=YES` is answered with the whole playlist. hls.js asks for delta updates on every live
reload once the playlist offers them, so the delta is what a watching player costs.

The playlists are built as the packager writes them (`bench/http_serving.live_playlist`: PDT on
every segment, parts on the newest segments, a preload hint) and pass the strict checker. The
render time is the model's (`render()` / `render(skip=True)`, once per playlist version in
sender-http, shared by every viewer); the per-response cost is wrk against one sender-http worker
(`-t1 -c16`), the playlist rewritten into its spool for each window.

Run from the checkout:  .venv/bin/python bench/playlist_window.py [--seconds 5] [--json]
Needs: wrk (installed automatically when running as root)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

from harness import cpu_ticks, CLK_TCK, descendants, require_wrk, run_wrk, sender_cli, SetupError  # noqa: E402
from http_serving import FIRST_MSN, HOST, SenderHTTP, live_playlist, render_checked, write_atomic  # noqa: E402

WINDOWS = (6, 15, 30, 60, 150)
NEXT_PARTS = 5


def render_us(fn, repeat: int = 200) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def measure(seconds: float) -> dict:
    wrk = require_wrk()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sender-window-") as tmp:
        server = SenderHTTP(Path(tmp) / "sender", sender_cli(), None)
        server.setup()
        generation = "gen_0000000000000001"
        rendition = server.rendition_dir(generation)
        rendition.mkdir(parents=True)
        server.start()
        try:
            for window in WINDOWS:
                playlist = live_playlist(NEXT_PARTS, segments=window)
                full = render_checked(playlist)
                delta = playlist.render(skip=True).encode()
                write_atomic(rendition / "index.m3u8", full)
                base = f"http://{HOST}:{server.port}/hls/{server.stream_id}/{generation}/source/index.m3u8"
                row = {
                    "window_segments": window, "window_s": window * 2,
                    "skipped_segments": playlist.skippable_segments(),
                    "full_bytes": len(full), "delta_bytes": len(delta),
                    "render_full_us": round(render_us(playlist.render), 1),
                    "render_delta_us": round(render_us(lambda: playlist.render(skip=True)), 1),
                }
                for kind, url in (("full", base), ("delta", base + "?_HLS_skip=YES")):
                    run_wrk(wrk, url, threads=1, connections=16, seconds=1)  # warm-up
                    pids = descendants(server.pid)  # the server and its children
                    c0 = cpu_ticks(pids)
                    result = run_wrk(wrk, url, threads=1, connections=16, seconds=seconds)
                    cpu_s = (cpu_ticks(pids) - c0) / CLK_TCK
                    requests = result["requests"] or 0
                    row[f"{kind}_requests_per_s"] = round(result["requests_per_s"])
                    row[f"{kind}_cpu_us_per_response"] = round(cpu_s / requests * 1e6, 1) if requests else None
                    row[f"{kind}_p50_ms"] = round((result["latency_s"].get("p50") or 0) * 1000, 2)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            server.stop()
    return {"first_msn": FIRST_MSN, "next_parts": NEXT_PARTS, "rows": rows}


def table(report: dict) -> str:
    head = ("window", "skipped", "full B", "delta B", "render full µs", "render delta µs",
            "full req/s", "delta req/s", "full CPU µs/resp", "delta CPU µs/resp")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        lines.append("| " + " | ".join(str(x) for x in (
            f"{r['window_segments']} ({r['window_s']} s)", r["skipped_segments"], r["full_bytes"], r["delta_bytes"],
            r["render_full_us"], r["render_delta_us"], r["full_requests_per_s"], r["delta_requests_per_s"],
            r["full_cpu_us_per_response"], r["delta_cpu_us_per_response"])) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="wrk run per window and kind (default 5)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args()
    try:
        report = measure(args.seconds)
    except SetupError as e:
        print(f"playlist_window: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
