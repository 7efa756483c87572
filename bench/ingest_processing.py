#!/usr/bin/env python3
"""What the native ingest's media work costs without its I/O shell (issue 16): the sans-IO part
of a publish, apart from trio, sockets, threads and files.

A real ffmpeg publishes the cached 720p30 3 Mbps clip of the other benchmarks (harness.SourceClip,
`-re -c copy`) for `--seconds` through a TCP relay into a real `sender daemon ingest` (native
backend) on 127.0.0.1; the relay keeps every piece of bytes the publisher sent, as the daemon's
reads received them. Then, timed in CPU time of this thread (best of `--rounds`), those pieces
go through what the daemon does with them in pure Python: `rtmp.ServerConnection` (handshake,
chunks, messages), the native backend's `SourceRemux` (CMAF fragments per frame) and a
`GenerationPackager` (parts, segments, the LL-HLS playlist, states) — everything but the reads,
the wake-ups, the sinks' glue, the spool's files and the events to sender-http.

The result says how much of a native stream's CPU (bench/ingest_load.py measures the whole
daemon) is media work and how much is the shell around it.

With `--cadence-ms N` the pieces are also processed the way the daemon meets them: each after a
sleep of N ms (the daemon sleeps in epoll between reads), and the same work is timed again, less
what the sleeps alone cost. On a VM whose caches go cold while a thread sleeps, the same Python
costs several times more at the daemon's cadence than in a tight loop.

Run from the checkout:  .venv/bin/python bench/ingest_processing.py [--seconds 20] [--rounds 5] [--json]
Needs: ffmpeg (Debian's package).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

from harness import SourceClip, free_port, machine_facts, require_tools, run_checked, sender_cli, stop_process  # noqa: E402
from servers import SenderIngest  # noqa: E402

from daemons.ingest.native import SourceRemux  # noqa: E402
from daemons.media import rtmp  # noqa: E402
from daemons.media.fmp4 import Fragment, InitSegment  # noqa: E402
from daemons.media.generation import GenerationPackager  # noqa: E402
from daemons.media.packager import PackagerConfig, utc_now  # noqa: E402

HOST = "127.0.0.1"


class Relay:
    """One TCP connection relayed to the daemon; what the client sent is kept, read by read."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server((HOST, free_port(HOST)))
        self.port = self.listener.getsockname()[1]
        self.pieces: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection((HOST, self.upstream_port))

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass  # the publisher's side ended first
        answers = threading.Thread(target=back, daemon=True)
        answers.start()
        while data := client.recv(65536):
            self.pieces.append(data)
            upstream.sendall(data)
        upstream.shutdown(socket.SHUT_WR)
        answers.join(timeout=10)
        upstream.close()
        client.close()


def capture(tools: dict[str, str], clip: Path, seconds: float, work: Path) -> list[bytes]:
    server = SenderIngest(work / "sender", sender_cli())
    server.setup(1)
    server._cli("config", "set", "backend.kind", "native")
    server._cli("config", "set", "thumbnails.enabled", "false")
    server.start()
    try:
        relay = Relay(server.port)
        run_checked([tools["ffmpeg"], "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip),
                     "-t", str(seconds), "-c", "copy", "-f", "flv", f"rtmp://{HOST}:{relay.port}/live/{server.keys[0]}"],
                    "publishing the clip through the relay", timeout=seconds + 60)
        relay.thread.join(timeout=10)
        return relay.pieces
    finally:
        if server.proc is not None:
            stop_process(server.proc)


def process(pieces: list[bytes], gap_s: float = 0.0) -> dict:
    """The pieces through the sans-IO path once (each after a sleep of `gap_s`, if any); counts
    of what it made."""
    conn = rtmp.ServerConnection(limits=rtmp.Limits(), fourccs=())
    remux = SourceRemux()
    packager = GenerationPackager.new(PackagerConfig(), ["source"])
    packager.start_timeline()
    messages = fragments = batches = 0
    for data in pieces:
        if gap_s:
            time.sleep(gap_s)
        conn.receive_data(data)
        while (event := conn.next_event()) is not rtmp.NEED_DATA:
            if isinstance(event, rtmp.PublishRequest):
                conn.accept_publish()
            elif isinstance(event, (rtmp.VideoData, rtmp.AudioData)):
                messages += 1
                now = utc_now()
                for item in remux.push(event):
                    if isinstance(item, InitSegment):
                        batch = packager.on_init("source", item)
                    elif isinstance(item, Fragment):
                        fragments += 1
                        batch = packager.on_fragment("source", item, now)
                    else:
                        batch = None
                    if batch is not None:
                        batches += 1
                        packager.written(batch)
            elif isinstance(event, rtmp.ConnectionClosed):
                break
        conn.data_to_send()
    return {"media_messages": messages, "fragments": fragments, "batches": batches}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of the clip published (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="times the capture is processed; the best is shown (default 5)")
    parser.add_argument("--cadence-ms", type=float, default=0.0,
                        help="also process the pieces with this sleep before each, as the daemon meets them (e.g. 6)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    tools = require_tools(nginx=False)
    clip = SourceClip().ensure(tools["ffmpeg"])
    with tempfile.TemporaryDirectory(prefix="sender-bench-processing-") as tmp:
        pieces = capture(tools, clip, args.seconds, Path(tmp))
    counts = process(pieces)  # warm
    times = []
    for _ in range(args.rounds):
        started = time.thread_time()
        process(pieces)
        times.append(time.thread_time() - started)
    best = min(times)
    report = {
        "machine": machine_facts(tools),
        "published_seconds": args.seconds,
        "reads": len(pieces),
        "bytes": sum(map(len, pieces)),
        **counts,
        "cpu_s_best": round(best, 4),
        "cpu_s_rounds": [round(t, 4) for t in times],
        "us_per_media_message": round(best / max(counts["media_messages"], 1) * 1e6, 1),
        "pct_of_a_core_per_stream": round(best / args.seconds * 100, 3),
    }
    if args.cadence_ms:
        gap = args.cadence_ms / 1000
        started = time.thread_time()
        for _ in pieces:
            time.sleep(gap)
        sleeps = time.thread_time() - started
        started = time.thread_time()
        process(pieces, gap)
        paced = time.thread_time() - started - sleeps
        report["cadence"] = {"gap_ms": args.cadence_ms, "sleeps_cpu_s": round(sleeps, 4), "cpu_s": round(paced, 4),
                             "times_tight_loop": round(paced / best, 2),
                             "pct_of_a_core_per_stream": round(paced / args.seconds * 100, 3)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Captured: {report['reads']} reads, {report['bytes'] / 1e6:.2f} MB, {counts['media_messages']} media messages, "
          f"{counts['fragments']} fragments, {counts['batches']} batches (parts, segments, playlists) in {args.seconds:g} s of media")
    print(f"Sans-IO path (RTMP parse + native remux + packager), best of {args.rounds}: {best * 1000:.0f} ms of CPU "
          f"= {report['pct_of_a_core_per_stream']:.2f} % of a core per stream, {report['us_per_media_message']:.1f} µs per media message")
    if args.cadence_ms:
        c = report["cadence"]
        print(f"The same with {c['gap_ms']:g} ms of sleep before each read (the daemon's cadence): {c['cpu_s'] * 1000:.0f} ms "
              f"= {c['pct_of_a_core_per_stream']:.2f} % of a core, {c['times_tight_loop']:.1f}x the tight loop "
              f"(the sleeps alone: {c['sleeps_cpu_s'] * 1000:.0f} ms, not counted)")
    print("Compare with the whole daemon's CPU per stream: bench/ingest_load.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
