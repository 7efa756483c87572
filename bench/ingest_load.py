#!/usr/bin/env python3
"""Ingest load: CPU and RSS of Sender's ingest daemon (native and ffmpeg media backends) vs
nginx-rtmp, 1 and 8 publishers at 3 Mbps.

For each publisher count N and each server (Sender's `sender daemon ingest` with `backend.kind =
"native"` and with `"ffmpeg"`, thumbnails off; nginx with libnginx-mod-rtmp configured as the
team's peer config): start the server on 127.0.0.1, start N
ffmpeg publishers looping a pre-encoded 720p30 3 Mbps FLV with `-c copy`, wait until all N are
accepted and writing, warm up, then measure the server's process tree over a fixed window:
CPU (utime+stime from /proc/PID/stat), RSS (VmRSS, sampled), and the bytes the server itself
counts as received (Sender: its stats file; nginx: rtmp_stat) to confirm ~3 Mbps per stream.

What each server does with the media is part of its cost, as configured: Sender packages LL-HLS
(the native backend in the daemon; the ffmpeg one with an ffmpeg remux per publish, a child of the
daemon and measured with it); nginx-rtmp writes HLS (2 s MPEG-TS fragments and a playlist per
stream). Issue 16's goals for the native backend: <= 2.0 % of a core per stream with 1 and with 8
publishers, and RSS growth <= 3 MB per added stream.

Run from the checkout:  .venv/bin/python bench/ingest_load.py [--seconds 15] [--json]
Needs: apt-get install nginx libnginx-mod-rtmp ffmpeg
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    NGINX_RTMP_MODULE,
    Publishers,
    SetupError,
    SourceClip,
    Window,
    export_revision,
    machine_facts,
    require_tools,
    sender_cli,
    wait_until,
)
from servers import NginxRtmp, SenderIngest  # noqa: E402

GOAL_PCT_PER_STREAM = 2.0  # issue 16, the native backend (issue 3's was 3 % for the RTMP layer alone)
GOAL_RSS_MB_PER_ADDED_STREAM = 3.0  # issue 16
GOAL_SERVER = "native"
ACCEPT_TIMEOUT_S = 45.0
BUSY_MACHINE_PCT = 50.0  # other processes' CPU (% of a core) above which a run is flagged
LOW_BITRATE_MBPS = 2.7  # below this per stream, the run did not carry the intended load
SERVERS = ("native", "ffmpeg", "sender", "nginx")
LABELS = {"native": "Sender (native)", "ffmpeg": "Sender (ffmpeg)", "sender": SenderIngest.label, "nginx": NginxRtmp.label}
BACKENDS = {"native": "native", "ffmpeg": "ffmpeg"}


def log(message: str) -> None:
    print(f"[ingest_load] {message}", file=sys.stderr, flush=True)


def measure(server_name: str, n: int, root: Path, tools: dict, clip: Path, seconds: float, warmup: float,
            sender_source: Path | None) -> dict:
    """One server, N publishers: set up, load, measure one window, tear down."""
    root.mkdir(parents=True)
    if server_name == "nginx":
        server = NginxRtmp(root / "server", tools["nginx"], NGINX_RTMP_MODULE)
    else:
        server = SenderIngest(root / "server", sender_cli(), sender_source)
        server.name, server.label = server_name, LABELS[server_name]
    publishers = Publishers(tools["ffmpeg"], clip, root / "publishers")

    def problem() -> str | None:
        return server.problem() or publishers.problem()

    def check() -> None:
        if (p := problem()):
            raise SetupError(f"{server.label} with {n} publisher(s): {p}")

    log(f"{server.label}, {n} publisher(s): setting up in {root}")
    server.setup(n)
    if server_name != "nginx":
        if server_name in BACKENDS:
            server._cli("config", "set", "backend.kind", BACKENDS[server_name])
        try:  # thumbnails are a feature of their own (an ffmpeg per stream every few seconds)
            server._cli("config", "set", "thumbnails.enabled", "false")
        except SetupError:
            pass  # a revision before thumbnails
    exit_code = None
    try:
        server.start()
        t0 = time.monotonic()
        publishers.start(server.urls())
        wait_until(server.accepted, ACCEPT_TIMEOUT_S, f"{server.label} to accept {n} publisher(s) and write their output",
                   interval_s=0.2, alive=problem)
        accepted_s = time.monotonic() - t0
        log(f"{server.label}: {n} publisher(s) accepted after {accepted_s:.1f} s; warm-up {warmup:g} s, then {seconds:g} s window")
        time.sleep(warmup)
        check()

        window = Window(server.pid, publishers.pids)
        window.begin()
        t_in0, bytes0 = server.bytes_in()
        out0 = server.output_bytes()
        window.run_for(seconds, check=check)
        figures = window.end()
        out1 = server.output_bytes()
        if server_name != "nginx":
            time.sleep(1.1)  # the daemon writes its stats every second: take a sample from after the window
        t_in1, bytes1 = server.bytes_in()
        check()
    finally:
        publishers.stop()
        exit_code = server.stop()

    mbps = (bytes1 - bytes0) * 8 / max(1e-3, t_in1 - t_in0) / n / 1e6
    result = {
        "server": server_name,
        "label": server.label,
        "publishers": n,
        "accepted_after_s": round(accepted_s, 2),
        **figures,
        "cpu_pct_per_stream": figures["cpu_pct_of_core"] / n,
        "ingest_mbps_per_stream": mbps,
        "output_mb_per_s": None if out0 is None else (out1 - out0) / figures["seconds"] / 1e6,
        "exit_code": exit_code,
    }
    log(f"{server.label}, {n}: CPU {result['cpu_pct_of_core']:.2f} % of a core "
        f"({result['cpu_pct_per_stream']:.2f} %/stream), RSS peak {result['rss_mb_peak']:.1f} MB, "
        f"{mbps:.2f} Mbps/stream in, stopped with exit code {exit_code}")
    if mbps < LOW_BITRATE_MBPS:
        log(f"WARNING: {server.label} received only {mbps:.2f} Mbps per stream (expected ~3.1)")
    return result


def summarize(runs: list[dict], servers: list[str], counts: list[int]) -> tuple[list[dict], list[dict], dict]:
    """Median over rounds per (server, N); Sender/nginx ratios per N; the goal verdict."""
    rows = []
    for n in counts:
        for s in servers:
            rs = [r for r in runs if r["server"] == s and r["publishers"] == n]
            if not rs:
                continue
            cpu = [r["cpu_pct_of_core"] for r in rs]
            rows.append({
                "server": s, "label": LABELS[s], "publishers": n, "rounds": len(rs),
                "cpu_pct_of_core": statistics.median(cpu),
                "cpu_pct_of_core_min": min(cpu), "cpu_pct_of_core_max": max(cpu),
                "cpu_pct_per_stream": statistics.median(cpu) / n,
                "rss_mb_peak": max(r["rss_mb_peak"] for r in rs),
                "rss_mb_mean": statistics.median(r["rss_mb_mean"] for r in rs),
                "pss_mb_mean": statistics.median(r["pss_mb_mean"] for r in rs),
                "ingest_mbps_per_stream": statistics.median(r["ingest_mbps_per_stream"] for r in rs),
                "publishers_cpu_pct_of_core": statistics.median(r["publishers_cpu_pct_of_core"] for r in rs),
                "machine_busy_pct_of_core": statistics.median(r["machine_busy_pct_of_core"] for r in rs),
                "cpu_user_share": statistics.median(r["cpu_user_share"] or 0 for r in rs),
            })
    by = {(r["server"], r["publishers"]): r for r in rows}
    ratios = []
    for n in counts:
        b = by.get(("nginx", n))
        for s in servers:
            a = by.get((s, n))
            if s != "nginx" and a and b:
                ratios.append({
                    "server": s, "publishers": n,
                    "cpu": a["cpu_pct_of_core"] / b["cpu_pct_of_core"] if b["cpu_pct_of_core"] > 0 else None,
                    "rss_peak": a["rss_mb_peak"] / b["rss_mb_peak"],
                    "pss_mean": a["pss_mb_mean"] / b["pss_mb_mean"],
                })
    marginal, rss_growth = {}, {}
    if len(counts) >= 2:
        lo, hi = min(counts), max(counts)
        for s in servers:
            if (s, lo) in by and (s, hi) in by:
                marginal[s] = (by[(s, hi)]["cpu_pct_of_core"] - by[(s, lo)]["cpu_pct_of_core"]) / (hi - lo)
                rss_growth[s] = (by[(s, hi)]["rss_mb_peak"] - by[(s, lo)]["rss_mb_peak"]) / (hi - lo)
    per_stream = {n: by[(GOAL_SERVER, n)]["cpu_pct_per_stream"] for n in counts if (GOAL_SERVER, n) in by}
    worst = {n: by[(GOAL_SERVER, n)]["cpu_pct_of_core_max"] / n for n in counts if (GOAL_SERVER, n) in by}
    growth = rss_growth.get(GOAL_SERVER)
    goal = {
        "server": GOAL_SERVER,
        "limit_pct_of_core_per_stream": GOAL_PCT_PER_STREAM,
        "pct_per_stream": per_stream,
        "pct_per_stream_worst_round": worst,
        "marginal_pct_per_added_stream": marginal,
        "rss_mb_per_added_stream": rss_growth,
        "limit_rss_mb_per_added_stream": GOAL_RSS_MB_PER_ADDED_STREAM,
        "cpu_met": bool(per_stream) and all(v <= GOAL_PCT_PER_STREAM for v in per_stream.values()),
        "rss_met": growth is not None and growth <= GOAL_RSS_MB_PER_ADDED_STREAM,
    }
    return rows, ratios, goal


def render(report: dict) -> str:
    f, clip, rows, ratios, goal = report["machine"], report["clip"], report["summary"], report["ratios"], report["goal"]
    out = [
        f"Machine: {f['nproc']} CPUs, {f['cpu_model']}, Linux {f['kernel']}, load {' '.join(f['loadavg_at_start'])} at start",
        f"Sender: {report['sender_code'] if report['sender_code'] != 'working tree' else 'working tree at ' + f['sender_revision']}"
        f", on {f['sender_python']}; {f.get('ffmpeg')}; {f.get('nginx', '-')}"
        + (f" + libnginx-mod-rtmp {f['libnginx-mod-rtmp']}" if f.get("libnginx-mod-rtmp") else ""),
        f"Source: {clip['description']}, {clip['duration_s']} s looped, {clip['total_bitrate_mbps']} Mbps total",
        f"Window: {report['settings']['seconds']:g} s after {report['settings']['warmup']:g} s warm-up; "
        f"rounds: {report['settings']['rounds']} (median shown)",
        "",
    ]
    header = ["server", "pubs", "CPU % core", "per stream", "RSS MB peak", "RSS MB mean", "PSS MB", "Mbps/stream in",
              "publishers CPU %"]
    table = [header]
    for r in rows:
        cpu = f"{r['cpu_pct_of_core']:.2f}"
        if r["rounds"] > 1:
            cpu += f" ({r['cpu_pct_of_core_min']:.2f}–{r['cpu_pct_of_core_max']:.2f})"
        table.append([r["label"], str(r["publishers"]), cpu, f"{r['cpu_pct_per_stream']:.2f}", f"{r['rss_mb_peak']:.1f}",
                      f"{r['rss_mb_mean']:.1f}", f"{r['pss_mb_mean']:.1f}", f"{r['ingest_mbps_per_stream']:.2f}",
                      f"{r['publishers_cpu_pct_of_core']:.1f}"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    if ratios:
        out.append("")
        for q in ratios:
            cpu = f"{q['cpu']:.1f}x" if q["cpu"] is not None else "n/a"
            out.append(f"{LABELS[q['server']]} / nginx-rtmp, {q['publishers']} publisher(s): CPU {cpu}, RSS peak "
                       f"{q['rss_peak']:.1f}x, PSS {q['pss_mean']:.1f}x")
    if goal["marginal_pct_per_added_stream"]:
        out.append("Marginal CPU per added stream: " + ", ".join(
            f"{LABELS[s]} {v:.2f} % of a core" for s, v in goal["marginal_pct_per_added_stream"].items()))
        out.append("RSS growth per added stream (peak): " + ", ".join(
            f"{LABELS[s]} {v:.1f} MB" for s, v in goal["rss_mb_per_added_stream"].items()))
    if goal["pct_per_stream"]:
        label = LABELS[goal["server"]]
        out.append(f"Goal ({label}) <= {goal['limit_pct_of_core_per_stream']:g} % of one core per 3 Mbps stream: "
                   f"{'MET' if goal['cpu_met'] else 'NOT MET'} ("
                   + ", ".join(f"{n} pub: {v:.2f} %" + (f" (worst round {goal['pct_per_stream_worst_round'][n]:.2f} %)"
                                                             if report["settings"]["rounds"] > 1 else "")
                               for n, v in goal["pct_per_stream"].items()) + ")")
        growth = goal["rss_mb_per_added_stream"].get(goal["server"])
        if growth is not None:
            out.append(f"Goal ({label}) RSS growth <= {goal['limit_rss_mb_per_added_stream']:g} MB per added stream: "
                       f"{'MET' if goal['rss_met'] else 'NOT MET'} ({growth:.1f} MB)")
    for w in report["warnings"]:
        out.append(f"WARNING: {w}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0, help="measurement window per run (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after all publishers are accepted (default 3)")
    p.add_argument("--publishers", default="1,8", help="comma-separated publisher counts (default 1,8; at most 32)")
    p.add_argument("--servers", default="native,ffmpeg,nginx",
                   help="comma-separated: native, ffmpeg (Sender with that backend.kind), sender (as configured by "
                        "default), nginx (default native,ffmpeg,nginx)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every run this many times; medians are shown (default 1)")
    p.add_argument("--sender-rev", metavar="REV",
                   help="measure this git revision of Sender (exported with git archive) instead of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout instead of the table")
    p.add_argument("--keep", action="store_true", help="keep the work directory (installs, logs, spool, HLS)")
    args = p.parse_args(argv)
    try:
        args.counts = sorted({int(x) for x in args.publishers.split(",") if x.strip()})
    except ValueError:
        p.error("--publishers: comma-separated integers, e.g. 1,8")
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.counts or not all(1 <= n <= 32 for n in args.counts):
        p.error("--publishers: between 1 and 32 each")
    if not args.server_list or any(s not in SERVERS for s in args.server_list):
        p.error("--servers: native, ffmpeg, sender and/or nginx")
    if not (3 <= args.seconds <= 300) or not (0 <= args.warmup <= 60) or not (1 <= args.rounds <= 5):
        p.error("bounds: 3 <= --seconds <= 300, 0 <= --warmup <= 60, 1 <= --rounds <= 5")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-ingest-"))
    try:
        tools = require_tools(nginx="nginx" in args.server_list)
        if any(s != "nginx" for s in args.server_list):
            sender_cli()
        sender_source = None
        if args.sender_rev:
            commit = export_revision(args.sender_rev, workdir / "sender-source")
            sender_source = workdir / "sender-source"
            log(f"measuring Sender at {args.sender_rev} = {commit} (git archive), not the working tree")
        clip = SourceClip()
        log("source clip: " + ("cached" if clip.path().exists() else "encoding once (cached under bench/.cache)"))
        clip_path = clip.ensure(tools["ffmpeg"])
        report = {
            "benchmark": "ingest_load",
            "machine": machine_facts(tools),
            "sender_code": f"git archive {args.sender_rev} ({commit})" if args.sender_rev else "working tree",
            "clip": clip.probe(tools["ffprobe"]),
            "settings": {"seconds": args.seconds, "warmup": args.warmup, "publishers": args.counts,
                         "servers": args.server_list, "rounds": args.rounds},
            "runs": [],
            "warnings": [],
        }
        for rnd in range(args.rounds):
            for n in args.counts:
                order = args.server_list if rnd % 2 == 0 else list(reversed(args.server_list))
                for s in order:
                    r = measure(s, n, workdir / f"r{rnd + 1}-{s}-{n}", tools, clip_path, args.seconds, args.warmup,
                                sender_source)
                    r["round"] = rnd + 1
                    report["runs"].append(r)
                    if r["ingest_mbps_per_stream"] < LOW_BITRATE_MBPS:
                        report["warnings"].append(f"{r['label']} with {n} publisher(s) received {r['ingest_mbps_per_stream']:.2f} Mbps/stream")
                    others = r["machine_busy_pct_of_core"] - r["cpu_pct_of_core"] - r["publishers_cpu_pct_of_core"]
                    r["other_load_pct_of_core"] = others
                    if others > BUSY_MACHINE_PCT:
                        report["warnings"].append(
                            f"{r['label']} with {n} publisher(s), round {rnd + 1}: other processes used {others:.0f} % of a "
                            f"core during the window (the figures are the server's own CPU time, but contention can inflate them)")
                    if r["exit_code"] not in (0, None):
                        report["warnings"].append(f"{r['label']} with {n} publisher(s) exited with {r['exit_code']} on SIGTERM")
    except SetupError as e:
        print(f"ingest_load: setup failed: {e}", file=sys.stderr)
        if any(workdir.iterdir()):
            print(f"ingest_load: work directory kept for inspection (logs, installs): {workdir}", file=sys.stderr)
        else:
            workdir.rmdir()
        return 2
    except KeyboardInterrupt:
        print("ingest_load: interrupted", file=sys.stderr)
        return 130
    report["summary"], report["ratios"], report["goal"] = summarize(report["runs"], args.server_list, args.counts)
    if args.keep:
        log(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
