#!/usr/bin/env python3
"""HTTP serving: sender-http vs a bare hypercorn ASGI app vs nginx, same files, same run (wrk).

Issue 5's serving benchmark. One spool holds one real-looking live generation: a stream created
with the CLI (so the HTTP daemon knows its id), and in `<spool>/streams/<sid>/<gid>/source/` an
LL-HLS `index.m3u8` (6 segments of 2 s, 200 ms parts near the live edge, a preload hint; built
with `daemons.media.hls` and checked with its strict checker), `init.mp4` and one 0.8 MB segment
`105.m4s` (random bytes). The same two URLs are then served by:

* **sender**: `sender daemon http` on that install (a public stream), the working tree as it was
  at the start (or `--sender-rev`);
* **sender-w2**: the same with `sender config set http.workers 2` — measured only if the daemon
  really starts two workers (otherwise the row is skipped and the report says why);
* **bare**: `bench/bare_asgi.py:app` on `hypercorn --worker-class trio` (one worker), the same
  bytes from memory with nothing else;
* **quart**: `bench/bare_asgi.py:quart_app`, the same through one quart-trio route;
* **nginx**: a plain nginx (one worker process, sendfile) with `location /hls/` aliased to the
  spool's `streams/` directory.

Every server first answers both URLs once and its bytes are compared with the files. Then for
each round and each server: `wrk -t2 -c64 -d<seconds>s --latency` against the playlist and then
the segment (after a 1 s warm-up run each), with the server's CPU from /proc over each run.

Run from the checkout:  .venv/bin/python bench/http_serving.py [--seconds 10] [--rounds 3] [--json]
Needs: apt-get install nginx wrk  (wrk is installed automatically when running as root)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))  # daemons.media.hls: the playlist model, used as a library

from harness import (  # noqa: E402
    finish_report,
    CLK_TCK,
    SetupError,
    cpu_ticks,
    descendants,
    export_revision,
    find_nginx,
    free_port,
    http_machine_facts,
    port_open,
    raise_nofile,
    require_wrk,
    rss_kb,
    run_checked,
    run_wrk,
    sender_cli,
    snapshot_worktree,
    stop_process,
    system_busy_ticks,
    tail,
    wait_until,
)

from daemons.media import hls  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
SEGMENT_BYTES = 800_000
BACKLOG = 4096  # listen backlog, as sender-http's (daemons/http/server.py); hypercorn's default is 100
RENDITION = "source"
FIRST_MSN = 100
LIVE_SEGMENTS = 6
SEGMENT_S = 2.0
PART_S = 0.2
SERVERS = ("nginx", "bare", "quart", "sender", "sender-w2")
LABELS = {
    "nginx": "nginx (1 worker, sendfile)",
    "bare": "bare ASGI on hypercorn trio",
    "quart": "quart-trio route on hypercorn trio",
    "sender": "sender-http (http.workers 1)",
    "sender-w2": "sender-http (http.workers 2)",
}
BUSY_MACHINE_PCT = 25.0  # other processes' CPU during a run above which the report warns
GOAL_OVERHEAD = 0.20  # Sender within 20 % of bare hypercorn's throughput
GOAL_SEGMENT_VS_NGINX = 0.40  # Sender's segment bytes/s at least 40 % of nginx's


def log(msg: str) -> None:
    print(f"[http_serving {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the generation: a live LL-HLS playlist and its files ------------------------------------


def live_playlist(next_parts: int, *, first_msn: int = FIRST_MSN, segments: int = LIVE_SEGMENTS,
                  target_duration: int = 2, segment_s: float = SEGMENT_S, part_s: float = PART_S) -> hls.MediaPlaylist:
    """A playlist as Sender's packager writes it mid-stream: `segments` complete segments (parts
    listed on those starting within three target durations of the end, three segments at most
    counting the one being built), `next_parts` parts of the segment being built, the preload
    hint for the next part, server control as the packager sets it."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    parts_per_segment = round(segment_s / part_s)
    listed = []
    for i in range(segments):
        msn = first_msn + i
        with_parts = i >= segments - round(3 * target_duration / segment_s) + (1 if next_parts else 0)
        listed.append(hls.Segment(
            msn=msn, uri=f"{msn}.m4s", duration=segment_s, map_uri="init.mp4",
            program_date_time=start + timedelta(seconds=segment_s * i),
            parts=tuple(hls.Part(f"{msn}.{j}.m4s", part_s, j == 0) for j in range(parts_per_segment)) if with_parts else (),
        ))
    next_msn = first_msn + segments
    partial = tuple(hls.Part(f"{next_msn}.{j}.m4s", part_s, j == 0) for j in range(next_parts))
    return hls.MediaPlaylist(
        target_duration=target_duration, media_sequence=first_msn, segments=tuple(listed),
        partial_parts=partial, next_map_uri="init.mp4" if partial else None,
        next_program_date_time=start + timedelta(seconds=segment_s * segments) if partial else None,
        part_target=part_s,
        server_control=hls.ServerControl(can_block_reload=True, part_hold_back=3 * part_s,
                                         hold_back=3 * target_duration, can_skip_until=6 * target_duration),
        preload_hint=f"{next_msn}.{next_parts}.m4s",
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Temporary file, then rename: as the packager publishes every file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def render_checked(playlist: hls.MediaPlaylist) -> bytes:
    text = playlist.render()
    hls.check_media_playlist(text)  # the strict checker of the test suite: a valid LL-HLS playlist
    return text.encode()


# --- sender-http -----------------------------------------------------------------------------


class SenderHTTP:
    """`sender daemon http` on a fresh `sender init --dir` install with one public stream."""

    def __init__(self, root: Path, sender: Path, source: Path | None, *, workers: int = 1,
                 config: dict[str, str] | None = None):
        self.root = root
        self.sender = sender
        self.env = {**os.environ, "PYTHONPATH": str(source)} if source is not None else dict(os.environ)
        self.workers = workers
        self.extra_config = config or {}
        self.config = root / "sender.toml"
        self.port = 0
        self.stream_id = ""
        self.spool_root = Path()
        self.state_dir = Path()
        self.proc: subprocess.Popen | None = None
        self.log = root / "http.log"

    def cli(self, *args: str) -> str:
        return run_checked([str(self.sender), "--config", str(self.config), *args], f"sender {' '.join(args[:3])}",
                           env=self.env, cwd=self.root).stdout

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        run_checked([str(self.sender), "init", "--dir", str(self.root)], "sender init", env=self.env, cwd=self.root)
        self.port = free_port(HOST)
        self.cli("config", "set", "http.listen", f"{HOST}:{self.port}")
        if self.workers != 1:
            self.cli("config", "set", "http.workers", str(self.workers))
        for key, value in self.extra_config.items():
            self.cli("config", "set", key, value)
        try:
            self.stream_id = json.loads(self.cli("stream", "create", "bench", "--json"))["id"]
        except (ValueError, KeyError) as e:
            raise SetupError(f"sender stream create --json printed no id: {e}") from None
        self.spool_root = Path(self.cli("config", "get", "spool.root").strip())
        self.state_dir = Path(self.cli("config", "get", "node.state_dir").strip())

    def rendition_dir(self, generation_id: str) -> Path:
        return self.spool_root / "streams" / self.stream_id / generation_id / RENDITION

    def start(self) -> None:
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen([str(self.sender), "--config", str(self.config), "daemon", "http"],
                                         stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.root)
        wait_until(lambda: port_open(HOST, self.port), START_TIMEOUT_S,
                   f"sender-http to listen on {HOST}:{self.port}", alive=self.problem)

    def problem(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"sender-http exited with {self.proc.returncode}: {tail(self.log, 15)}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stats(self) -> dict[str, dict]:
        """Each worker's stats file (`<state_dir>/stats/http-<n>.json`, written every second)."""
        out = {}
        for path in sorted((self.state_dir / "stats").glob("http-*.json")):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                pass
        return out

    def running_workers(self, wait_s: float = 4.0) -> int:
        """How many workers write fresh stats files (each worker writes its own every second)."""
        deadline = time.monotonic() + wait_s
        seen: set[str] = set()
        while time.monotonic() < deadline:
            now = time.time()
            for path in (self.state_dir / "stats").glob("http-*.json"):
                try:
                    if now - path.stat().st_mtime < 3:
                        seen.add(path.stem)
                except OSError:
                    pass
            if len(seen) >= self.workers:
                break
            time.sleep(0.25)
        return len(seen)

    def stop(self) -> int | None:
        return stop_process(self.proc) if self.proc is not None else None


# --- the reference servers -------------------------------------------------------------------


class BareHypercorn:
    """`hypercorn --worker-class trio` (one worker) serving bench/bare_asgi.py from memory."""

    def __init__(self, root: Path, hypercorn: Path, files: dict[str, Path], *, quart: bool = False,
                 env: dict[str, str] | None = None):
        self.root = root
        self.extra_env = env or {}
        self.hypercorn = hypercorn
        self.files = files
        self.quart = quart
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = root / "hypercorn.log"

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port(HOST)

    def start(self) -> None:
        env = {**os.environ, **self.extra_env, "BARE_FILES": "\n".join(f"{u}={p}" for u, p in self.files.items())}
        env.pop("PYTHONPATH", None)
        if self.quart:
            env["BARE_QUART"] = "1"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                [str(self.hypercorn), "--worker-class", "trio", "--workers", "1", "--backlog", str(BACKLOG),
                 "--bind", f"{HOST}:{self.port}",
                 "bare_asgi:quart_app" if self.quart else "bare_asgi:app"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=BENCH_DIR)
        wait_until(lambda: port_open(HOST, self.port), START_TIMEOUT_S, f"hypercorn to listen on {HOST}:{self.port}",
                   alive=self.problem)

    def problem(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"hypercorn exited with {self.proc.returncode}: {tail(self.log, 10)}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        return stop_process(self.proc) if self.proc is not None else None


NGINX_HTTP_CONF = """\
{user}worker_processes {workers};
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path       {prefix}/tmp/proxy;
    fastcgi_temp_path     {prefix}/tmp/fastcgi;
    uwsgi_temp_path       {prefix}/tmp/uwsgi;
    scgi_temp_path        {prefix}/tmp/scgi;

    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp4 m4s mp4;
    }}
    default_type application/octet-stream;

    server {{
        listen {host}:{port};

        location /hls/ {{
            alias {streams}/;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
    }}
}}
"""


class NginxHTTP:
    """A plain nginx (no RTMP module) in its own prefix, serving the spool's files."""

    def __init__(self, root: Path, nginx: str, streams_dir: Path, *, workers: int = 1):
        self.root = root
        self.nginx = nginx
        self.streams_dir = streams_dir
        self.workers = workers
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = root / "logs" / "error.log"

    def setup(self) -> None:
        for d in ("conf", "logs", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.port = free_port(HOST)
        (self.root / "conf" / "nginx.conf").write_text(NGINX_HTTP_CONF.format(
            prefix=self.root, streams=self.streams_dir, host=HOST, port=self.port, workers=self.workers,
            # As root without `user`, workers would run as nobody and could not read the 0700 work dir.
            user="user root;\n" if os.geteuid() == 0 else "",
        ))
        run_checked([self.nginx, "-t", "-q", "-p", str(self.root), "-c", "conf/nginx.conf", "-e", str(self.log),
                     "-g", "daemon off;"], "nginx -t (config check)")

    def start(self) -> None:
        with open(self.root / "logs" / "stdout.log", "wb") as f:
            self.proc = subprocess.Popen(
                [self.nginx, "-p", str(self.root), "-c", "conf/nginx.conf", "-e", str(self.log), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(HOST, self.port), START_TIMEOUT_S, f"nginx to listen on {HOST}:{self.port}",
                   alive=self.problem)

    def problem(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"nginx exited with {self.proc.returncode}: {tail(self.log)}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        return stop_process(self.proc) if self.proc is not None else None


# --- one benchmark run -----------------------------------------------------------------------


def fetch(url: str, timeout_s: float = 10.0) -> tuple[int, dict, bytes]:
    """(status, headers, body); status 0 and the error as the body when there is no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, f"no answer: {e}".encode()


def check_same_bytes(name: str, urls: dict[str, str], files: dict[str, bytes]) -> list[str]:
    """GET each URL once: 200 and the file's exact bytes, else SetupError (a wrong answer is a finding)."""
    notes = []
    for kind, url in urls.items():
        status, headers, body = fetch(url)
        if status != 200:
            raise SetupError(f"{name}: GET {url} answered {status}: {body[:300]!r}")
        if body != files[kind]:
            raise SetupError(f"{name}: GET {url} answered {len(body)} bytes that differ from the file's {len(files[kind])}")
        notes.append(f"{kind}: 200, {len(body)} bytes, {headers.get('Content-Type') or headers.get('content-type')}")
    return notes


def measure(name: str, server, url: str, wrk: str, args: argparse.Namespace) -> dict:
    run_wrk(wrk, url, threads=args.threads, connections=args.connections, seconds=1)  # warm-up (caches, connections)
    if problem := server.problem():
        raise SetupError(f"{LABELS[name]} during the warm-up: {problem}")
    pids = descendants(server.pid)
    ticks0, t0, (busy0, total0) = cpu_ticks(pids), time.monotonic(), system_busy_ticks()
    result = run_wrk(wrk, url, threads=args.threads, connections=args.connections, seconds=args.seconds)
    elapsed = time.monotonic() - t0
    busy1, total1 = system_busy_ticks()
    pids = sorted(set(pids) | set(descendants(server.pid)))
    server_cpu_s = (cpu_ticks(pids) - ticks0) / CLK_TCK
    result["server_cpu_pct_of_core"] = 100.0 * server_cpu_s / elapsed
    # The server's CPU time per request: less sensitive than requests/s to what else runs on the machine.
    result["server_cpu_us_per_request"] = 1e6 * server_cpu_s / result["requests"] if result["requests"] else None
    machine = 100.0 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
    # What else ran on the machine meanwhile (other sessions' tests, say): neither the server nor wrk.
    result["other_cpu_pct_of_core"] = max(0.0, machine - result["server_cpu_pct_of_core"] - result["wrk_cpu_pct_of_core"])
    result["server_rss_mb"] = rss_kb(pids)[0] / 1024
    result["server_processes"] = len(pids)
    if problem := server.problem():
        raise SetupError(f"{LABELS[name]} during the run: {problem}")
    return result


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], servers: list[str]) -> tuple[dict, dict, dict]:
    summary: dict = {}
    for name in servers:
        entry = {}
        for kind in ("playlist", "segment"):
            rs = [r for r in runs if r["server"] == name and r["kind"] == kind]
            if not rs:
                continue
            entry[kind] = {
                "rounds": len(rs),
                "requests_per_s": med([r["requests_per_s"] for r in rs]),
                "requests_per_s_all": [round(r["requests_per_s"], 1) for r in rs],
                "bytes_per_s": med([r["bytes_per_s"] for r in rs]),
                "latency_p50_ms": med([1000 * r["latency_s"].get("p50", 0) for r in rs]),
                "latency_p99_ms": med([1000 * r["latency_s"].get("p99", 0) for r in rs]),
                "server_cpu_pct_of_core": med([r["server_cpu_pct_of_core"] for r in rs]),
                "server_cpu_us_per_request": med([r["server_cpu_us_per_request"] for r in rs]),
                "wrk_cpu_pct_of_core": med([r["wrk_cpu_pct_of_core"] for r in rs]),
                "other_cpu_pct_of_core_max": max(r["other_cpu_pct_of_core"] for r in rs),
                "errors": sum(sum(r["socket_errors"].values()) + r["non_2xx_3xx"] for r in rs),
            }
        if entry:
            summary[name] = entry
    ratios: dict = {}
    for a, b in (("sender", "bare"), ("sender", "quart"), ("sender", "nginx"), ("bare", "nginx"),
                 ("sender-w2", "sender"), ("sender-w2", "nginx")):
        if a in summary and b in summary:
            ratios[f"{a}/{b}"] = {kind: summary[a][kind]["requests_per_s"] / summary[b][kind]["requests_per_s"]
                                  for kind in ("playlist", "segment") if kind in summary[a] and kind in summary[b]}
            # The same, per CPU second of the server (requests per core-second): b's CPU per request / a's.
            ratios[f"{a}/{b}"].update({f"{kind}_per_cpu": summary[b][kind]["server_cpu_us_per_request"]
                                       / summary[a][kind]["server_cpu_us_per_request"]
                                       for kind in ("playlist", "segment") if kind in summary[a] and kind in summary[b]
                                       and summary[a][kind]["server_cpu_us_per_request"]
                                       and summary[b][kind]["server_cpu_us_per_request"]})
    goals: dict = {}
    if "sender/bare" in ratios:
        for kind in ("playlist", "segment"):
            if kind in ratios["sender/bare"]:
                r = ratios["sender/bare"][kind]
                goals[f"{kind}: overhead over bare hypercorn ≤ {GOAL_OVERHEAD:.0%}"] = {
                    "figure": f"sender = {r:.0%} of bare's {'req/s' if kind == 'playlist' else 'bytes/s'} "
                              f"({r - 1:+.0%} throughput; {1 / r - 1:+.0%} time per request); per CPU second "
                              f"{ratios['sender/bare'].get(kind + '_per_cpu', 0):.0%}",
                    "met": r >= 1 - GOAL_OVERHEAD}
    if "sender/nginx" in ratios and "segment" in ratios["sender/nginx"]:
        r = ratios["sender/nginx"]["segment"]
        goals[f"segment bytes/s ≥ {GOAL_SEGMENT_VS_NGINX:.0%} of nginx's"] = {
            "figure": f"{r:.0%} ({summary['sender']['segment']['bytes_per_s'] / 1e9:.2f} vs "
                      f"{summary['nginx']['segment']['bytes_per_s'] / 1e9:.2f} GB/s)",
            "met": r >= GOAL_SEGMENT_VS_NGINX}
    if "sender-w2/nginx" in ratios and "segment" in ratios["sender-w2/nginx"]:
        r = ratios["sender-w2/nginx"]["segment"]
        goals[f"segment bytes/s ≥ {GOAL_SEGMENT_VS_NGINX:.0%} of nginx's, with http.workers 2"] = {
            "figure": f"{r:.0%}", "met": r >= GOAL_SEGMENT_VS_NGINX}
    return summary, ratios, goals


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(report: dict) -> str:
    out = []
    m = report["machine"]
    tools = "; ".join(str(m[k]) for k in ("nginx", "wrk") if m.get(k))
    out.append(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, load at start "
               f"{' '.join(m['loadavg_at_start'])}; {tools}; hypercorn {m.get('hypercorn')}, "
               f"trio {m.get('trio')}, h11 {m.get('h11')}")
    out.append(f"sender: {report['sender_code']}")
    s = report["settings"]
    out.append(f"load: wrk -t{s['threads']} -c{s['connections']} -d{s['seconds']:g}s --latency, {s['rounds']} round(s); "
               f"playlist {report['files']['playlist_bytes']} B, segment {report['files']['segment_bytes']} B")
    for note in report["notes"]:
        out.append(f"note: {note}")
    out.append("")
    header = (f"{'server':<38} {'playlist req/s':>14} {'p50 ms':>7} {'p99 ms':>7} {'CPU %':>6} {'µs/req':>6} │ "
              f"{'segment req/s':>13} {'GB/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'CPU %':>6} {'µs/req':>6} │ {'wrk CPU %':>9}")
    out.append(header)
    out.append("─" * len(header))
    for name, e in report["summary"].items():
        p, g = e.get("playlist", {}), e.get("segment", {})
        out.append(f"{LABELS[name]:<38} {fmt(p.get('requests_per_s')):>14} {fmt(p.get('latency_p50_ms'), 1):>7} "
                   f"{fmt(p.get('latency_p99_ms'), 1):>7} {fmt(p.get('server_cpu_pct_of_core')):>6} "
                   f"{fmt(p.get('server_cpu_us_per_request')):>6} │ "
                   f"{fmt(g.get('requests_per_s')):>13} {fmt((g.get('bytes_per_s') or 0) / 1e9, 2):>6} "
                   f"{fmt(g.get('latency_p50_ms'), 1):>7} {fmt(g.get('latency_p99_ms'), 1):>7} "
                   f"{fmt(g.get('server_cpu_pct_of_core')):>6} {fmt(g.get('server_cpu_us_per_request')):>6} │ "
                   f"{fmt(p.get('wrk_cpu_pct_of_core')):>4}/{fmt(g.get('wrk_cpu_pct_of_core')):<4}")
        if report["settings"]["rounds"] > 1:
            out.append(f"{'':<38} rounds: playlist {p.get('requests_per_s_all')}, segment {g.get('requests_per_s_all')}")
        if p.get("errors") or g.get("errors"):
            out.append(f"{'':<38} ERRORS (socket errors + non-2xx/3xx): playlist {p.get('errors')}, segment {g.get('errors')}")
    out.append("")
    for pair, r in report["ratios"].items():
        out.append(f"{pair:<18} playlist {r.get('playlist', 0):.2f}×   segment {r.get('segment', 0):.2f}×   "
                   f"(per server CPU second: playlist {r.get('playlist_per_cpu', 0):.2f}×, segment {r.get('segment_per_cpu', 0):.2f}×)")
    out.append("")
    for goal, g in report["goals"].items():
        out.append(f"goal: {goal}: {g['figure']} → {'MET' if g['met'] else 'NOT MET'}")
    for w in report["warnings"]:
        out.append(f"WARNING: {w}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="wrk duration per server and URL (default 10)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every measurement, alternating the order (default 1)")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated subset of {', '.join(SERVERS)} (default all)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    p.add_argument("--sender-rev", metavar="REV",
                   help="measure this git revision of Sender (git archive) instead of a snapshot of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (installs, logs, spool)")
    args = p.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.server_list or any(s not in SERVERS for s in args.server_list):
        p.error(f"--servers: a subset of {', '.join(SERVERS)}")
    if not (1 <= args.seconds <= 300) or not (1 <= args.rounds <= 5) or not (1 <= args.threads <= 8) \
            or not (1 <= args.connections <= 1024):
        p.error("bounds: 1 <= --seconds <= 300, 1 <= --rounds <= 5, 1 <= --threads <= 8, 1 <= --connections <= 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-http-"))
    started: dict[str, object] = {}
    try:
        tools = {"wrk": require_wrk()}
        if "nginx" in args.server_list:
            nginx = find_nginx()
            if nginx is None:
                raise SetupError("missing: nginx; install it with: apt-get install nginx")
            tools["nginx"] = nginx
        sender = sender_cli()
        venv_python = str(sender.parent / "python")
        hypercorn = sender.parent / "hypercorn"
        if not hypercorn.exists():
            raise SetupError(f"hypercorn is not in {sender.parent}: run `bash .ci/bootstrap` in the checkout")
        raise_nofile(65536)
        source = workdir / "sender-source"
        if args.sender_rev:
            sender_code = f"git archive {args.sender_rev} ({export_revision(args.sender_rev, source)})"
        else:
            sender_code = "working tree at " + snapshot_worktree(source)
        log(f"measuring Sender: {sender_code}")
        report: dict = {
            "benchmark": "http_serving",
            "machine": http_machine_facts(tools, venv_python),
            "sender_code": sender_code,
            "settings": {"seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
                         "connections": args.connections, "servers": args.server_list},
            "notes": [], "warnings": [], "runs": [],
        }
        report["machine"]["sender_revision"] = sender_code

        # The install whose spool every server serves from; sender-w2 gets its own install with the same files.
        primary = SenderHTTP(workdir / "sender", sender, source)
        primary.setup()
        generation_id = "gen_" + secrets.token_hex(8)
        playlist = render_checked(live_playlist(next_parts=3))
        segment = os.urandom(SEGMENT_BYTES)
        init = os.urandom(1024)
        segment_name = f"{FIRST_MSN + LIVE_SEGMENTS - 1}.m4s"

        def write_generation(s: SenderHTTP) -> dict[str, Path]:
            d = s.rendition_dir(generation_id)
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(d / "init.mp4", init)
            write_atomic(d / segment_name, segment)
            write_atomic(d / "index.m3u8", playlist)
            return {"playlist": d / "index.m3u8", "segment": d / segment_name}

        files = write_generation(primary)
        url_paths = {"playlist": f"/hls/{primary.stream_id}/{generation_id}/{RENDITION}/index.m3u8",
                     "segment": f"/hls/{primary.stream_id}/{generation_id}/{RENDITION}/{segment_name}"}
        report["files"] = {"playlist_bytes": len(playlist), "segment_bytes": len(segment),
                           "url_paths": url_paths, "rendition_dir": str(files["playlist"].parent)}
        servers: dict[str, object] = {}
        for name in args.server_list:
            if name == "sender":
                servers[name] = primary
            elif name == "sender-w2":
                servers[name] = SenderHTTP(workdir / "sender-w2", sender, source, workers=2)
            elif name == "bare":
                servers[name] = BareHypercorn(workdir / "bare", hypercorn, {url_paths[k]: files[k] for k in files})
            elif name == "quart":
                servers[name] = BareHypercorn(workdir / "quart", hypercorn, {url_paths[k]: files[k] for k in files}, quart=True)
            elif name == "nginx":
                servers[name] = NginxHTTP(workdir / "nginx", tools["nginx"], primary.spool_root / "streams")
        urls: dict[str, dict[str, str]] = {}
        for name, server in list(servers.items()):
            if server is not primary:
                server.setup()
            paths = dict(url_paths)
            if isinstance(server, SenderHTTP) and server is not primary:
                # Its own stream id (a separate install), the same generation, the same bytes.
                write_generation(server)
                paths = {k: v.replace(primary.stream_id, server.stream_id) for k, v in url_paths.items()}
            log(f"starting {LABELS[name]}")
            server.start()
            started[name] = server
            urls[name] = {k: f"http://{HOST}:{server.port}{p}" for k, p in paths.items()}
            if name == "sender-w2":
                n = server.running_workers()
                if n < 2:
                    note = (f"sender-w2 skipped: with `sender config set http.workers 2` the daemon ran {n} worker "
                            f"(one stats file, one process): http.workers > 1 is not implemented in this revision "
                            f"(daemons/http/main.py starts one HTTPDaemon)")
                    report["notes"].append(note)
                    log(note)
                    server.stop()
                    del servers[name], started[name], urls[name]
                    continue
            for line in check_same_bytes(LABELS[name], urls[name], {"playlist": playlist, "segment": segment}):
                log(f"  {name} {line}")

        names = list(servers)
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else list(reversed(names))
            for name in order:
                for kind in ("playlist", "segment"):
                    log(f"round {rnd + 1}: {LABELS[name]}, {kind}: wrk {args.seconds:g} s")
                    r = measure(name, servers[name], urls[name][kind], tools["wrk"], args)
                    r.update(server=name, kind=kind, round=rnd + 1, url=urls[name][kind])
                    report["runs"].append(r)
                    log(f"  {r['requests_per_s']:,.0f} req/s, {r['bytes_per_s'] / 1e6:,.1f} MB/s, "
                        f"server CPU {r['server_cpu_pct_of_core']:.0f} %, wrk CPU {r['wrk_cpu_pct_of_core']:.0f} %, "
                        f"other processes {r['other_cpu_pct_of_core']:.0f} %")
                    if r["other_cpu_pct_of_core"] > BUSY_MACHINE_PCT:
                        report["warnings"].append(f"{LABELS[name]} {kind} round {rnd + 1}: other processes used "
                                                  f"{r['other_cpu_pct_of_core']:.0f} % of a core during the run")
                    errors = sum(r["socket_errors"].values()) + r["non_2xx_3xx"]
                    if errors:
                        report["warnings"].append(f"{LABELS[name]} {kind} round {rnd + 1}: {r['socket_errors']}, "
                                                  f"{r['non_2xx_3xx']} non-2xx/3xx responses")
        for name, server in started.items():
            if isinstance(server, SenderHTTP):
                for worker, doc in server.stats().items():
                    report.setdefault("sender_stats", {})[f"{name}/{worker}"] = {
                        "requests": doc.get("requests"), "bytes_sent": doc.get("bytes_sent")}
    except SetupError as e:
        print(f"http_serving: setup failed: {e}", file=sys.stderr)
        print(f"http_serving: work directory kept for inspection (logs, installs): {workdir}", file=sys.stderr)
        for server in started.values():
            server.stop()
        return 2
    except KeyboardInterrupt:
        print("http_serving: interrupted", file=sys.stderr)
        for server in started.values():
            server.stop()
        return 130
    for name, server in started.items():
        code = server.stop()
        if code not in (0, None, -15):
            report["warnings"].append(f"{LABELS[name]} exited with {code} on SIGTERM: {tail(server.log)}")
    report["summary"], report["ratios"], report["goals"] = summarize(report["runs"], list(report["settings"]["servers"]))
    text = render(report)
    return finish_report(report, text, workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    sys.exit(main())
