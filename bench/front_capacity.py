#!/usr/bin/env python3
"""Front capacity: how many full-pace LL-HLS viewers one box carries, direct and through the front.

Issue 15's benchmark. One `sender init --dir` install on 127.0.0.1; `sender daemon ingest` with one
ffmpeg publisher looping the cached 720p30 3 Mbps clip (Sender's defaults: LL-HLS, 2 s segments,
200 ms parts). Then, one configuration after the other, against the same live stream:

* **direct-w1** / **direct-w2**: `sender daemon http` with `http.workers` 1 and 2, viewers on it;
* **front-nginx**: the front tier Sender runs (`front.kind = nginx`: `sender daemon front`, nginx
  before sender-http on loopback; plain HTTP here, HTTPS measured apart with --tls-seconds);
* **nginx-printed** / **varnish-printed**: what `sender cache-config nginx|varnish` prints, run by
  a plain nginx (2 workers) / varnishd in front of sender-http (1 worker).

For each configuration and each viewer count (a round each): N simulated viewers (this file,
`--viewer-process`: asyncio BufferedProtocol connections, HTTP/1.1 keep-alive, part bodies
counted and dropped, split over one process per core)
each fetch the live playlist and init.mp4, then in a loop a blocking playlist reload for the next
part (`_HLS_msn`/`_HLS_part`, as hls.js does) and the part it lists: 10 requests a second per
viewer at full pace. After a warm-up, over `--seconds`:

* **part delay**: for every part fetched, the time from its first listing in the spool's
  playlist (inotify on the rendition directory, the playlist read at each rename; same machine,
  same monotonic clock) to the end of its body at the viewer; p50/p95; **on time** = the share of
  (viewer, part listed in the window) fetched within one part duration (200 ms) of its listing;
* **server CPU** of every process of the configuration (sender-http's workers, nginx,
  sender-front, varnishd) from /proc, per viewer-second, and its RSS at the end; the generator's
  own CPU; sender-http's requests per second (its stats file) — flat through a cache;
* **viewers counted**: the playback API's `viewers` at the end of the round (sessions are
  unique per round; `http.viewer_window_s` 5 s, rounds 10 s apart) against N.

The largest N with ≥ 95 % on time is the configuration's capacity on this machine.

Run from the checkout:  .venv/bin/python bench/front_capacity.py [--seconds 15] [--json]
Needs: ffmpeg, nginx with libnginx-mod-http-lua, varnish (varnishd, for varnish-printed), wrk for
the TLS step. (The Varnish front measured in docs/performance.md is `--configs front` at b6ba4f7.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

from harness import (  # noqa: E402
    CLK_TCK,
    IN_MOVED_TO,
    Inotify,
    Publishers,
    SetupError,
    SourceClip,
    cpu_ticks,
    descendants,
    export_revision,
    finish_report,
    free_port,
    machine_facts,
    percentile,
    port_open,
    require_tools,
    rss_kb,
    run_checked,
    run_wrk,
    sender_cli,
    stop_process,
    system_busy_ticks,
    tail,
    wait_until,
)

HOST = "127.0.0.1"
SLUG = "show"
RENDITION = "source"
PART_S = 0.2
ON_TIME_GOAL = 0.95
CONFIGS = ("direct-w1", "direct-w2", "front-nginx", "nginx-printed", "varnish-printed")
FRONTS = {"front-nginx": "nginx"}  # configuration → front.kind
DEFAULT_VIEWERS = {
    "direct-w1": (50, 150, 200, 250, 300),
    "direct-w2": (100, 300, 400, 500),
    "front-nginx": (10, 100, 1000, 1500, 2000),
    "nginx-printed": (10, 100, 1000),
    "varnish-printed": (10, 100, 1000),
}
LABELS = {
    "direct-w1": "sender-http direct, http.workers 1",
    "direct-w2": "sender-http direct, http.workers 2",
    "front-nginx": "front tier (front.kind nginx) + sender-http w1",
    "nginx-printed": "sender cache-config nginx (nginx, 2 workers)",
    "varnish-printed": "sender cache-config varnish (varnishd)",
}
_ITEM = re.compile(r'#EXT-X-PART:[^\n]*URI="([0-9]+)\.([0-9]+)\.m4s"')
_PART_NAME = re.compile(r"([0-9]+)\.([0-9]+)\.m4s")


def log(message: str) -> None:
    print(f"[front_capacity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the viewers (own processes) ---------------------------------------------------------------


def listed_parts(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in _ITEM.findall(text)]


def next_part(parts: list[tuple[int, int]], after: tuple[int, int], text: str) -> tuple[int, int]:
    """The part after `after`: the next one listed, else (msn, part+1), or (msn+1, 0) once the
    segment `msn` is closed in the playlist (its EXTINF line names `<msn>.m4s`)."""
    if after in parts:
        i = parts.index(after)
        if i + 1 < len(parts):
            return parts[i + 1]
    if f"\n{after[0]}.m4s" in text:
        return after[0] + 1, 0
    return after[0], after[1] + 1


class Connection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection of a viewer, lean: the kernel reads into one buffer
    (no bytes object per read), a part's body is counted and dropped, a playlist's kept."""

    def __init__(self):
        self.buffer = bytearray(1 << 18)
        self.view = memoryview(self.buffer)
        self.pos = 0
        self.head: tuple[int, int, int] | None = None  # (status, head length, body length)
        self.keep = False
        self.dropped = 0  # body bytes already dropped (parts)
        self.waiter: asyncio.Future | None = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        if self.pos >= len(self.buffer):  # a kept body larger than the buffer: grow
            self.buffer.extend(bytes(len(self.buffer)))
            self.view = memoryview(self.buffer)
        return self.view[self.pos:]

    def buffer_updated(self, nbytes):
        self.pos += nbytes
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n", 0, self.pos)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            length = int(head[i + 17:head.find(b"\r\n", i + 2) if head.find(b"\r\n", i + 2) > 0 else None]) if i >= 0 else 0
            self.head = (int(head[9:12]), end + 4, length)
        status, head_len, length = self.head
        if not self.keep and self.pos > head_len:  # drop what arrived of a part's body
            self.dropped += self.pos - head_len
            self.pos = head_len
        if self.dropped + self.pos - head_len >= length:
            body = bytes(self.buffer[head_len:head_len + length]) if self.keep else b""
            waiter, self.waiter = self.waiter, None
            self.pos, self.head, self.dropped = 0, None, 0
            if waiter is not None and not waiter.done():
                waiter.set_result((status, length, body))

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def get(self, request: bytes, keep: bool) -> tuple[int, int, bytes]:
        self.keep = keep
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def viewer_process(port: int, base: str, count: int, warmup: float, seconds: float, tag: str) -> dict:
    stats = {"requests": 0, "errors": {}, "statuses": {}, "fetched": {}, "bytes": 0}
    start = time.monotonic()
    deadline = start + warmup + seconds
    loop = asyncio.get_running_loop()

    async def viewer(i: int) -> None:
        await asyncio.sleep(i * 1.0 / max(1, count))  # joins spread over a second
        headers = (f" HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: sender-bench-front\r\n"
                   f"X-Playback-Session-Id: {tag}-{i}\r\n\r\n").encode()
        try:
            _, conn = await loop.create_connection(Connection, HOST, port)
        except OSError as e:
            stats["errors"][type(e).__name__] = stats["errors"].get(type(e).__name__, 0) + 1
            return

        async def request(target: str, keep: bool) -> tuple[int, bytes]:
            status, n, body = await conn.get(b"GET " + target.encode() + headers, keep)
            stats["requests"] += 1
            stats["bytes"] += n
            stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
            return status, body

        try:
            status, body = await request(base + "index.m3u8", True)
            await request(base + "init.mp4", False)
            text = body.decode(errors="replace")
            parts = listed_parts(text)
            pos = next_part(parts, parts[-1], text) if parts else None
            while time.monotonic() < deadline:
                if pos is None:
                    await asyncio.sleep(0.1)
                    status, body = await request(base + "index.m3u8", True)
                    text = body.decode(errors="replace")
                    parts = listed_parts(text)
                    pos = next_part(parts, parts[-1], text) if parts else None
                    continue
                msn, part = pos
                status, body = await request(f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}", True)
                if status != 200:
                    pos = None
                    continue
                text = body.decode(errors="replace")
                parts = listed_parts(text)
                asked = pos if pos in parts else (msn + 1, 0)
                if asked not in parts:
                    pos = None
                    continue
                status, _ = await request(f"{base}{asked[0]}.{asked[1]}.m4s", False)
                if status == 200:
                    stats["fetched"].setdefault(f"{asked[0]}.{asked[1]}", []).append(round(time.monotonic(), 4))
                pos = next_part(parts, asked, text)
        except (OSError, ConnectionError, ValueError) as e:
            stats["errors"][type(e).__name__] = stats["errors"].get(type(e).__name__, 0) + 1
        finally:
            conn.transport.close()

    tasks = [asyncio.ensure_future(viewer(i)) for i in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 5)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2)
    r = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu_s"] = r.ru_utime + r.ru_stime
    return stats


def viewer_main(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    try:
        import uvloop  # noqa: F401 - leaner if installed; plain asyncio otherwise
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    stats = asyncio.run(viewer_process(args.port, args.base, args.count, args.warmup, args.seconds, args.tag))
    print(json.dumps(stats), flush=True)
    return 0


# --- listing times: when each part was first listed --------------------------------------------


class Listings(threading.Thread):
    """First time each part appears in the rendition's playlist (read at each rename of it)."""

    def __init__(self, directory: Path):
        super().__init__(daemon=True)
        self.directory = directory
        self.first: dict[str, float] = {}
        self.stopping = threading.Event()
        self.inotify = Inotify()
        self.inotify.watch(directory, IN_MOVED_TO)

    def run(self) -> None:
        while not self.stopping.is_set():
            at, events = self.inotify.read(0.2)
            if any(name == "index.m3u8" for _, _, name in events):
                try:
                    text = (self.directory / "index.m3u8").read_text()
                except OSError:
                    continue
                for msn, part in listed_parts(text):
                    self.first.setdefault(f"{msn}.{part}", at)

    def stop(self) -> None:
        self.stopping.set()
        self.join(2)
        self.inotify.close()


# --- the install and the servers ---------------------------------------------------------------


class Install:
    def __init__(self, root: Path, sender: Path, source: Path):
        self.root, self.sender = root, sender
        self.config = root / "sender.toml"
        self.env = {**os.environ, "SENDER_CONFIG": str(self.config), "PYTHONPATH": str(source)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {k: free_port(HOST) for k in ("rtmp", "http", "front_http", "front_tls", "front_proxy")}

    def cli(self, *args: str) -> str:
        return run_checked([str(self.sender), *args], f"sender {' '.join(args[:3])}", env=self.env, cwd=self.root).stdout

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cli("init", "--dir", str(self.root))
        for key, value in {"rtmp.listen": f"{HOST}:{self.ports['rtmp']}", "http.listen": f"{HOST}:{self.ports['http']}",
                           "http.viewer_window_s": "5", "front.http_listen": f"{HOST}:{self.ports['front_http']}",
                           "front.proxy_listen": f"{HOST}:{self.ports['front_proxy']}",
                           "log.level": "warning"}.items():
            self.cli("config", "set", key, value)
        # HTTPS on the front too (a self-signed certificate): the TLS cost step measures it.
        tls = self.root / "tls"
        tls.mkdir()
        run_checked(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls / "key.pem"),
                     "-out", str(tls / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1"], "openssl req (a certificate)")
        for key, value in {"front.listen": f"{HOST}:{self.ports['front_tls']}", "front.tls_cert": str(tls / "cert.pem"),
                           "front.tls_key": str(tls / "key.pem"), "front.redirect_http": "false"}.items():
            self.cli("config", "set", key, value)
        self.stream_id = json.loads(self.cli("stream", "create", SLUG, "--json"))["id"]
        self.key = json.loads(self.cli("key", "create", SLUG, "--json"))["key"]
        self.spool = Path(self.cli("config", "get", "spool.root").strip())
        self.state = Path(self.cli("config", "get", "node.state_dir").strip())

    def start(self, daemon: str, wait_port: int | None) -> subprocess.Popen:
        logf = open(self.root / f"{daemon}.log", "ab")
        proc = subprocess.Popen([str(self.sender), "daemon", daemon], env=self.env, cwd=self.root,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        self.procs[daemon] = proc
        if wait_port:
            wait_until(lambda: port_open(HOST, wait_port), 60, f"sender-{daemon} on {wait_port}",
                       alive=lambda: None if proc.poll() is None else f"exited {proc.returncode}: {tail(self.root / f'{daemon}.log')}")
        return proc

    def stop(self, daemon: str) -> None:
        proc = self.procs.pop(daemon, None)
        if proc is not None:
            stop_process(proc, timeout_s=20)

    def http_requests(self) -> int:
        total = 0
        for path in (self.state / "stats").glob("http-*.json"):
            try:
                total += sum(n for _, _, n in json.loads(path.read_text()).get("requests", ()))
            except (OSError, ValueError):
                pass
        return total


class Printed:
    """A printed cache config (`sender cache-config nginx|varnish`) run by its own server."""

    def __init__(self, kind: str, root: Path, sender: Path, upstream: str, tools: dict, env: dict):
        self.kind, self.root, self.sender, self.upstream, self.tools, self.env = kind, root, sender, upstream, tools, env
        self.port = free_port(HOST)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        listen = f"{HOST}:{self.port}"
        if self.kind == "nginx":
            text = run_checked([str(self.sender), "cache-config", "nginx", "--upstream", self.upstream, "--listen", listen,
                                "--cache-dir", str(self.root / "cache")], "sender cache-config nginx", env=self.env).stdout
            (self.root / "sender.conf").write_text(text)
            temp = " ".join(f"{k}_temp_path {self.root / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            user = "user root;\n" if os.geteuid() == 0 else ""
            (self.root / "nginx.conf").write_text(
                f"{user}worker_processes 2;\npid {self.root / 'nginx.pid'};\nerror_log {self.root / 'error.log'};\n"
                f"events {{ worker_connections 8192; }}\n"
                f"http {{ access_log off; keepalive_requests 1000000; {temp} include {self.root / 'sender.conf'}; }}\n")
            argv = [self.tools["nginx"], "-c", str(self.root / "nginx.conf"), "-g", "daemon off;"]
        else:
            text = run_checked([str(self.sender), "cache-config", "varnish", "--upstream", self.upstream, "--listen", listen,
                                "--target-duration", "2"], "sender cache-config varnish", env=self.env).stdout
            (self.root / "sender.vcl").write_text(text)
            argv = [self.tools["varnishd"], "-F", "-j", "none", "-T", "none", "-n", str(self.root / "varnish"),
                    "-a", listen, "-f", str(self.root / "sender.vcl"), "-s", "malloc,512m"]
        logf = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        wait_until(lambda: port_open(HOST, self.port), 60, f"{self.kind} on {self.port}",
                   alive=lambda: None if self.proc.poll() is None else f"exited: {tail(self.root / 'server.log')}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=20)
            self.proc = None


# --- one round ---------------------------------------------------------------------------------


def server_pids(inst: Install, extra: subprocess.Popen | None, config: str) -> list[int]:
    roots = [inst.procs["http"].pid]
    if config in FRONTS:
        roots.append(inst.procs["front"].pid)
    if extra is not None:
        roots.append(extra.pid)
    return sorted({p for r in roots for p in descendants(r)})


def viewers_counted(inst: Install, port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/streams/{SLUG}/playback", timeout=5) as r:
            return json.loads(r.read())["viewers"]
    except (OSError, ValueError, KeyError):
        return None


def run_round(config: str, n: int, inst: Install, port: int, extra, gen_id: str, listings: Listings,
              args: argparse.Namespace, tag: str) -> dict:
    base = f"/hls/{inst.stream_id}/{gen_id}/{RENDITION}/"
    procs = max(1, min(args.generators, n))
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    gens = []
    for i, share in enumerate(shares):
        gens.append(subprocess.Popen(
            [sys.executable, __file__, "--viewer-process", "--port", str(port), "--base", base, "--count", str(share),
             "--warmup", str(args.warmup), "--seconds", str(args.seconds), "--tag", f"{tag}-{i}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(args.warmup)
    pids = server_pids(inst, extra, config)
    t0, ticks0, http_ticks0 = time.monotonic(), cpu_ticks(pids), cpu_ticks(descendants(inst.procs["http"].pid))
    ingest_ticks0 = cpu_ticks(descendants(inst.procs["ingest"].pid))
    busy0 = system_busy_ticks()
    req0 = inst.http_requests()
    time.sleep(args.seconds - 1.0)
    counted = viewers_counted(inst, port)  # before the viewers stop
    time.sleep(1.0)
    elapsed = time.monotonic() - t0
    pids = sorted(set(pids) | set(server_pids(inst, extra, config)))
    cpu_s = (cpu_ticks(pids) - ticks0) / CLK_TCK
    http_cpu_s = (cpu_ticks(descendants(inst.procs["http"].pid)) - http_ticks0) / CLK_TCK
    ingest_cpu_s = (cpu_ticks(descendants(inst.procs["ingest"].pid)) - ingest_ticks0) / CLK_TCK
    busy1 = system_busy_ticks()
    rss = rss_kb(pids)[0] / 1024
    time.sleep(1.5)  # the requests counted in the stats file (written every second)
    req1 = inst.http_requests()
    window = (t0, t0 + elapsed)
    outs = []
    for g in gens:
        out, err = g.communicate(timeout=args.warmup + args.seconds + 30)
        try:
            outs.append(json.loads(out))
        except ValueError:
            raise SetupError(f"a viewer process failed: {err[-500:]}") from None
    delays, fetched_on_time, expected = [], 0, 0
    listed_in_window = {p: t for p, t in listings.first.items() if window[0] <= t <= window[1] - PART_S}
    for o in outs:
        for part, times in o["fetched"].items():
            t_list = listed_in_window.get(part)
            if t_list is None:
                continue
            for t in times:
                delays.append(t - t_list)
                fetched_on_time += (t - t_list) <= PART_S
    expected = len(listed_in_window) * n
    generator_cpu = sum(o["cpu_s"] for o in outs)
    requests = sum(o["requests"] for o in outs)
    ncpu = os.cpu_count() or 1
    return {
        "config": config, "viewers": n, "seconds": round(elapsed, 2),
        "on_time": fetched_on_time / expected if expected else None,
        "parts_listed": len(listed_in_window),
        "delay_ms": {"p50": _ms(percentile(delays, 50)), "p95": _ms(percentile(delays, 95)), "n": len(delays)},
        "server_cpu_pct_of_core": 100 * cpu_s / elapsed,
        "server_cpu_us_per_viewer_s": 1e6 * cpu_s / (n * elapsed),
        "server_cpu_us_per_request": 1e6 * cpu_s / max(1, requests * elapsed / (args.warmup + args.seconds)),
        "sender_http_cpu_pct_of_core": 100 * http_cpu_s / elapsed,
        "sender_http_requests_per_s": (req1 - req0) / (elapsed + 1.5),
        "ingest_cpu_pct_of_core": 100 * ingest_cpu_s / elapsed,
        "server_rss_mb": rss,
        "generator_cpu_pct_of_core": 100 * generator_cpu / (args.warmup + args.seconds),
        "machine_busy_pct_of_core": 100 * ncpu * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        "viewer_requests_per_s": requests / (args.warmup + args.seconds),
        "viewers_counted": counted,
        "errors": {k: v for o in outs for k, v in o["errors"].items()},
        "statuses": {k: v for o in outs for k, v in o["statuses"].items()},
    }


def tls_cost(inst: Install, gen_id: str, listings: Listings, args: argparse.Namespace) -> dict:
    """The same part fetched with wrk over plain HTTP and over HTTPS (nginx's own TLS): the
    front's CPU per request each way; the difference is TLS."""
    wrk = run_checked(["sh", "-c", "command -v wrk"], "wrk (apt-get install wrk)").stdout.strip()
    part = sorted(listings.first.items(), key=lambda kv: kv[1])[-10][0]
    path = f"/hls/{inst.stream_id}/{gen_id}/{RENDITION}/{part}.m4s"
    size = len(urllib.request.urlopen(f"http://{HOST}:{inst.ports['front_http']}{path}", timeout=10).read())
    out = {"part": part, "part_bytes": size}
    for name, url in (("http", f"http://{HOST}:{inst.ports['front_http']}{path}"),
                      ("https", f"https://{HOST}:{inst.ports['front_tls']}{path}")):
        pids = sorted({p for p in descendants(inst.procs["front"].pid)})
        ticks0, t0 = cpu_ticks(pids), time.monotonic()
        r = run_wrk(wrk, url, threads=1, connections=32, seconds=args.tls_seconds)
        cpu_s = (cpu_ticks(pids) - ticks0) / CLK_TCK
        out[name] = {"requests_per_s": r["requests_per_s"], "front_cpu_us_per_request": 1e6 * cpu_s / max(1, r["requests"]),
                     "front_cpu_pct_of_core": 100 * cpu_s / (time.monotonic() - t0), "wrk_cpu_pct_of_core": r["wrk_cpu_pct_of_core"],
                     "errors": r["non_2xx_3xx"] + sum(r["socket_errors"].values())}
        log(f"    TLS cost, {name}: {r['requests_per_s']:,.0f} req/s, front {out[name]['front_cpu_us_per_request']:.1f} µs/request")
    return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1000 * v, 1)


# --- the report --------------------------------------------------------------------------------


def render(report: dict) -> str:
    m = report["machine"]
    out = [f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, load at start {' '.join(m['loadavg_at_start'])}",
           f"sender: {m['sender_revision']}; {report['settings']}", ""]
    head = (f"{'configuration':<48} {'viewers':>7} {'on time':>8} {'p50 ms':>7} {'p95 ms':>7} {'srv CPU%':>8} "
            f"{'µs/viewer-s':>11} {'µs/req':>7} {'http CPU%':>9} {'http req/s':>10} {'RSS MB':>7} {'gen CPU%':>8} "
            f"{'counted':>7} {'busy%':>6}")
    out += [head, "─" * len(head)]
    for r in report["rounds"]:
        f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
        out.append(f"{LABELS[r['config']]:<48} {r['viewers']:>7} {f(100 * r['on_time'] if r['on_time'] is not None else None, 1):>7}% "
                   f"{f(r['delay_ms']['p50'], 1):>7} {f(r['delay_ms']['p95'], 1):>7} {f(r['server_cpu_pct_of_core']):>8} "
                   f"{f(r['server_cpu_us_per_viewer_s']):>11} {f(r['server_cpu_us_per_request'], 1):>7} "
                   f"{f(r['sender_http_cpu_pct_of_core'], 1):>9} {f(r['sender_http_requests_per_s']):>10} "
                   f"{f(r['server_rss_mb']):>7} {f(r['generator_cpu_pct_of_core']):>8} {f(r['viewers_counted']):>7} "
                   f"{f(r['machine_busy_pct_of_core']):>6}" + (f"  errors {r['errors']}" if r["errors"] else ""))
    out.append("")
    for config, cap in report["capacity"].items():
        out.append(f"{LABELS[config]}: largest on-time viewer count measured: {cap}")
    for config, t in report.get("tls_cost", {}).items():
        out.append(f"TLS cost, {LABELS[config]} (wrk -t1 -c32, one part of {t['part_bytes']:,} B): "
                   + "; ".join(f"{k} {t[k]['requests_per_s']:,.0f} req/s, front {t[k]['front_cpu_us_per_request']:.1f} µs/request"
                               for k in ("http", "https")))
    return "\n".join(out)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewer-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per round (default 15)")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring (default 4)")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--viewers", action="append", default=[], metavar="CONFIG=N,N",
                   help="viewer counts of one configuration, e.g. front=10,100,1000 (repeatable)")
    p.add_argument("--tls-seconds", type=float, default=8.0, help="wrk seconds per scheme for the TLS cost step (0: skip)")
    p.add_argument("--generators", type=int, default=os.cpu_count() or 2, help="viewer processes (default: one per core)")
    p.add_argument("--sender-rev", default="HEAD", metavar="REV",
                   help="the Sender revision measured (git archive; default HEAD: committed code, not the working tree)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.viewer_process:
        return args
    args.config_list = [c for c in args.configs.split(",") if c]
    if any(c not in CONFIGS for c in args.config_list):
        p.error(f"--configs: a subset of {', '.join(CONFIGS)}")
    args.counts = dict(DEFAULT_VIEWERS)
    for spec in args.viewers:
        name, _, counts = spec.partition("=")
        args.counts[name] = tuple(int(c) for c in counts.split(","))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.viewer_process:
        return viewer_main(args)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-front-"))
    inst = None
    publishers = None
    listings = None
    try:
        tools = require_tools(nginx=False)
        tools.update({k: run_checked(["sh", "-c", f"command -v {k} || echo /usr/sbin/{k}"], k).stdout.strip()
                      for k in ("varnishd", "nginx")})
        sender = sender_cli()
        report = {"benchmark": "front_capacity", "machine": machine_facts(tools),
                  "settings": {"seconds": args.seconds, "warmup": args.warmup, "generators": args.generators}, "rounds": []}
        clip = SourceClip().ensure(tools["ffmpeg"])
        source = workdir / "sender-source"
        report["machine"]["sender_revision"] = f"git archive {args.sender_rev} ({export_revision(args.sender_rev, source)})"
        inst = Install(workdir / "sender", sender, source)
        inst.setup()
        inst.start("ingest", inst.ports["rtmp"])
        publishers = Publishers(tools["ffmpeg"], clip, workdir / "publishers")
        publishers.start([f"rtmp://{HOST}:{inst.ports['rtmp']}/live/{inst.key}"])
        stream_dir = inst.spool / "streams" / inst.stream_id
        wait_until(lambda: any(stream_dir.glob(f"*/{RENDITION}/index.m3u8")), 60, "the first playlist",
                   alive=publishers.problem)
        gen_dir = next(stream_dir.glob(f"*/{RENDITION}/index.m3u8")).parent
        gen_id = gen_dir.parent.name
        listings = Listings(gen_dir)
        listings.start()
        for config in args.config_list:
            extra = None
            workers = "2" if config == "direct-w2" else "1"
            inst.cli("config", "set", "http.workers", workers)
            inst.cli("config", "set", "front.kind", FRONTS.get(config, ""))
            inst.start("http", inst.ports["http"])
            port = inst.ports["http"]
            if config in FRONTS:
                inst.start("front", inst.ports["front_http"])
                port = inst.ports["front_http"]
            elif config.endswith("-printed"):
                extra = Printed(config.split("-")[0], workdir / config, sender, f"{HOST}:{inst.ports['http']}", tools, inst.env)
                extra.start()
                port = extra.port
            log(f"{LABELS[config]} on port {port}")
            time.sleep(2)
            for n in args.counts[config]:
                if n <= 0:
                    continue
                log(f"  {n} viewers …")
                r = run_round(config, n, inst, port, extra.proc if extra else None, gen_id, listings, args,
                              tag=f"{config}-{n}-{int(time.time())}")
                report["rounds"].append(r)
                log(f"    on time {100 * (r['on_time'] or 0):.1f} %, p50 {r['delay_ms']['p50']} ms, p95 {r['delay_ms']['p95']} ms, "
                    f"server {r['server_cpu_pct_of_core']:.0f} % ({r['server_cpu_us_per_viewer_s']:.0f} µs/viewer-s), "
                    f"sender-http {r['sender_http_requests_per_s']:.0f} req/s, generator {r['generator_cpu_pct_of_core']:.0f} %, "
                    f"counted {r['viewers_counted']}, machine {r['machine_busy_pct_of_core']:.0f} %")
                time.sleep(6)  # past http.viewer_window_s: the next round's count starts from 0
                if (r["delay_ms"]["p50"] or 0) > 1000:
                    break  # far past capacity (viewers seconds behind): larger counts only take longer
            if config in FRONTS and args.tls_seconds > 0:
                report.setdefault("tls_cost", {})[config] = tls_cost(inst, gen_id, listings, args)
            if extra is not None:
                extra.stop()
            inst.stop("front")
            inst.stop("http")
        report["capacity"] = {}
        for config in args.config_list:
            ok = [r["viewers"] for r in report["rounds"] if r["config"] == config and (r["on_time"] or 0) >= ON_TIME_GOAL]
            report["capacity"][config] = max(ok) if ok else 0
    except SetupError as e:
        print(f"front_capacity: setup failed: {e}; work directory kept: {workdir}", file=sys.stderr)
        return 2
    finally:
        if listings is not None:
            listings.stop()
        if publishers is not None:
            publishers.stop()
        if inst is not None:
            for d in list(inst.procs):
                inst.stop(d)
    return finish_report(report, render(report), workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
