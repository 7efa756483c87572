#!/usr/bin/env python3
"""Slowloris: what sender-http still serves while thousands of connections trickle request heads.

Issue 14's drill, measured. One `sender daemon http` on a fresh install with the default limits
(http.max_connections 4096, http.max_connections_per_address 256, http.request_head_timeout_s
10, http.keep_alive_s 30) serves one live LL-HLS playlist (the playlist of `http_serving.py`).
Then:

1. **attack**: `--connections` (default 4,400) slowloris connections from `--addresses` source
   addresses 127.0.0.2, 127.0.0.3, … (spread evenly; 22 × 200 by default, under the per-address
   cap as a distributed attack would be). Each sends `GET <playlist> HTTP/1.1` and a Host line,
   then one more header line every `--trickle-s` (default 5 s), and never ends its head. A
   connection the server closes is opened again after `--reconnect-s` (default 0.5 s), so the
   attack keeps its count up the whole time;
   The attack runs in a process of its own (this script with `--attack`, trio), so that its
   4,400 sockets do not delay the probes' clock;
2. **warm-up**: until the attack has opened all its connections once (or 30 s);
3. **measure** for `--seconds` (default 30) while the attack goes on: from 127.0.0.1, a fresh
   connection every `--probe-interval-s` (default 0.2 s) alternately GETs `/healthz` and the live
   playlist (blocking sockets, a 10 s timeout). Latency = connect to the last byte of the
   answer. Also sampled every second: connections the attack holds open (its own count), and
   connections established to the server's port (`/proc/net/tcp`: the server's side, accepted or
   still in its backlog). CPU of sender-http, of the attack process and of the whole machine over
   the window say how busy the machine was.

Prints a table: probes answered / timed out, latency p50, p95 and max per URL, the attack's
connections held and reconnects per second, sender-http's CPU. `--sender-rev REV` measures a
committed revision instead of the working tree (e.g. the one before the connection table).

Run from the checkout:  .venv/bin/python bench/slowloris.py [--seconds 30] [--connections 4400] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

import trio  # noqa: E402

from harness import (  # noqa: E402
    SetupError,
    cpu_ticks,
    CLK_TCK,
    descendants,
    distribution,
    export_revision,
    finish_report,
    http_machine_facts,
    raise_nofile,
    sender_cli,
    snapshot_worktree,
    stop_process,
    system_busy_ticks,
    tail,
)
from http_serving import HOST, RENDITION, SenderHTTP, live_playlist, render_checked, write_atomic  # noqa: E402

PROBE_TIMEOUT_S = 10.0
WARMUP_LIMIT_S = 30.0


def log(msg: str) -> None:
    print(f"[slowloris {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def established_to(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server's side of each)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            pass
    return count


class Attack:
    def __init__(self, port: int, path: str, args: argparse.Namespace):
        self.port = port
        self.path = path
        self.args = args
        self.open = 0
        self.opened_total = 0
        self.closed_by_server = 0
        self.connect_errors = 0

    async def one(self, source: str) -> None:
        head = f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\n".encode()
        while True:
            try:
                stream = await trio.open_tcp_stream(HOST, self.port, local_address=source)
            except OSError:
                self.connect_errors += 1
                await trio.sleep(self.args.reconnect_s)
                continue
            self.opened_total += 1
            self.open += 1
            try:
                async with stream:
                    await stream.send_all(head)
                    while True:
                        with trio.move_on_after(self.args.trickle_s):
                            if await stream.receive_some(4096) == b"":
                                break
                        await stream.send_all(b"X-Slow: 1\r\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.open -= 1
            self.closed_by_server += 1
            await trio.sleep(self.args.reconnect_s)

    async def run(self) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self.report)
            for i in range(self.args.connections):
                n.start_soon(self.one, f"127.0.0.{2 + i % self.args.addresses}")
                if i % 200 == 199:
                    await trio.sleep(0)  # let the first ones connect while the rest start

    async def report(self) -> None:
        while True:
            print(json.dumps({"open": self.open, "opened_total": self.opened_total,
                              "closed_by_server": self.closed_by_server, "connect_errors": self.connect_errors}), flush=True)
            await trio.sleep(0.5)


class AttackProcess:
    """This script with --attack in a child process; its counters arrive as JSON lines."""

    def __init__(self, port: int, path: str, args: argparse.Namespace):
        cmd = [sys.executable, __file__, "--attack", "--port", str(port), "--path", path,
               "--connections", str(args.connections), "--addresses", str(args.addresses),
               "--trickle-s", str(args.trickle_s), "--reconnect-s", str(args.reconnect_s)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.latest: dict = {"open": 0, "opened_total": 0, "closed_by_server": 0, "connect_errors": 0}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.latest = json.loads(line)
            except ValueError:
                pass

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=10)  # SIGTERM: its default action, no traceback
        self._reader.join(timeout=5)


def probe(port: int, path: str) -> float | None:
    """Seconds from connect to the whole answer of one GET on a fresh connection; None on a
    timeout, a refusal or a non-200."""
    started = time.monotonic()
    data = b""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT_S) as s:
            s.settimeout(max(0.01, PROBE_TIMEOUT_S - (time.monotonic() - started)))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    return time.monotonic() - started


def measure(server: SenderHTTP, paths: dict[str, str], args: argparse.Namespace) -> dict:
    attack = AttackProcess(server.port, paths["playlist"], args)
    result: dict = {"probes": {k: [] for k in paths}, "failed": {k: 0 for k in paths}, "samples": [], "timeline": []}
    try:
        warm_until = time.monotonic() + WARMUP_LIMIT_S
        while attack.latest["opened_total"] < args.connections and time.monotonic() < warm_until:
            if attack.proc.poll() is not None:
                raise SetupError(f"the attack process exited with {attack.proc.returncode}")
            time.sleep(0.5)
        log(f"attack: {attack.latest['opened_total']} connections opened, {attack.latest['open']} open, "
            f"{established_to(server.port)} established to the port; measuring {args.seconds:g} s")
        pids = [server.pid, *descendants(server.pid)]
        ticks0, attack0, busy0, t0 = cpu_ticks(pids), cpu_ticks([attack.proc.pid]), system_busy_ticks(), time.monotonic()
        reconnects0 = attack.latest["closed_by_server"]
        end = t0 + args.seconds
        next_sample = t0
        kinds = list(paths)
        i = 0
        while time.monotonic() < end:
            kind = kinds[i % len(kinds)]
            i += 1
            at = time.monotonic() - t0
            latency = probe(server.port, paths[kind])
            result["timeline"].append([round(at, 2), kind, None if latency is None else round(latency, 4)])
            if latency is None:
                result["failed"][kind] += 1
            else:
                result["probes"][kind].append(latency)
            if time.monotonic() >= next_sample:
                result["samples"].append({"attack_open": attack.latest["open"], "established": established_to(server.port)})
                next_sample += 1.0
            time.sleep(args.probe_interval_s)
        elapsed = time.monotonic() - t0
        busy1 = system_busy_ticks()
        result["server_cpu_pct_of_core"] = 100.0 * (cpu_ticks(pids) - ticks0) / CLK_TCK / elapsed
        result["attack_cpu_pct_of_core"] = 100.0 * (cpu_ticks([attack.proc.pid]) - attack0) / CLK_TCK / elapsed
        result["machine_busy_pct"] = 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        result["reconnects_per_s"] = (attack.latest["closed_by_server"] - reconnects0) / elapsed
        result["attack"] = dict(attack.latest)
    finally:
        attack.stop()
    return result


def render(report: dict) -> str:
    r = report["result"]
    lines = [f"slowloris against sender-http ({report['sender_code']})",
             f"attack: {report['settings']['connections']} connections from {report['settings']['addresses']} addresses, "
             f"a header line every {report['settings']['trickle_s']:g} s, reopened {report['settings']['reconnect_s']:g} s after a close",
             "",
             f"{'URL':<10} {'answered':>9} {'failed':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"]
    for kind, d in r["latency"].items():
        fmt = lambda v: "-" if v is None else f"{v * 1000:.0f}"  # noqa: E731
        lines.append(f"{kind:<10} {d['n']:>9} {r['failed'][kind]:>7} {fmt(d['median']):>8} {fmt(d['p95']):>8} {fmt(d['max']):>8}")
    held, est = r["held"], r["established"]
    lines += ["",
              f"attack connections open: median {held['median']:.0f} (min {held['min']:.0f}, max {held['max']:.0f}); "
              f"established to the port: median {est['median']:.0f} (max {est['max']:.0f})",
              f"attack connections closed by the server and reopened: {r['reconnects_per_s']:.0f}/s",
              f"CPU: sender-http {r['server_cpu_pct_of_core']:.0f} % of a core, the attack {r['attack_cpu_pct_of_core']:.0f} %; "
              f"machine busy {r['machine_busy_pct']:.0f} % ({report['machine'].get('nproc', '?')} CPUs)"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="measuring window (default 30)")
    p.add_argument("--connections", type=int, default=4400, help="slowloris connections (default 4400)")
    p.add_argument("--addresses", type=int, default=22, help="source addresses 127.0.0.2… (default 22)")
    p.add_argument("--trickle-s", type=float, default=5.0, help="seconds between header lines (default 5)")
    p.add_argument("--reconnect-s", type=float, default=0.5, help="pause before reopening a closed connection (default 0.5)")
    p.add_argument("--probe-interval-s", type=float, default=0.2, help="pause between probes (default 0.2)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="a sender config value (repeatable)")
    p.add_argument("--sender-rev", metavar="REV", help="measure this git revision (git archive) instead of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--attack", action="store_true", help=argparse.SUPPRESS)  # the attack's child process
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not (1 <= args.addresses <= 250) or args.connections < 1 or args.seconds <= 0:
        p.error("bounds: 1 <= --addresses <= 250, --connections >= 1, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attack:
        trio.run(Attack(args.port, args.path, args).run)  # until SIGTERM
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-slowloris-"))
    server: SenderHTTP | None = None
    try:
        sender = sender_cli()
        nofile = raise_nofile(2 * args.connections + 8192)
        if nofile < args.connections + 1024:
            raise SetupError(f"RLIMIT_NOFILE is {nofile}: too low for {args.connections} connections")
        source = workdir / "sender-source"
        if args.sender_rev:
            sender_code = f"git archive {args.sender_rev} ({export_revision(args.sender_rev, source)})"
        else:
            sender_code = "working tree at " + snapshot_worktree(source)
        log(f"measuring Sender: {sender_code}")
        config = dict(kv.split("=", 1) for kv in args.config)
        server = SenderHTTP(workdir / "sender", sender, source, config=config)
        server.setup()
        generation_id = "gen_" + secrets.token_hex(8)
        d = server.rendition_dir(generation_id)
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "init.mp4", os.urandom(1024))
        write_atomic(d / "index.m3u8", render_checked(live_playlist(next_parts=3)))
        paths = {"healthz": "/healthz", "playlist": f"/hls/{server.stream_id}/{generation_id}/{RENDITION}/index.m3u8"}
        server.start()
        limits = {k: server.cli("config", "get", k).strip() for k in (
            "http.max_connections", "http.max_connections_per_address", "http.request_head_timeout_s", "http.keep_alive_s")}
        log(f"sender-http on {HOST}:{server.port}; {limits}")
        report: dict = {
            "benchmark": "slowloris",
            "machine": http_machine_facts({}, str(sender.parent / "python")),
            "sender_code": sender_code,
            "settings": {**{k: v for k, v in vars(args).items() if k not in ("json", "keep")}, "limits": limits},
            "notes": [], "warnings": [],
        }
        raw = measure(server, paths, args)
        report["result"] = {
            "latency": {k: distribution(v) for k, v in raw["probes"].items()},
            "failed": raw["failed"],
            "held": distribution([s["attack_open"] for s in raw["samples"]]),
            "established": distribution([s["established"] for s in raw["samples"]]),
            "reconnects_per_s": raw["reconnects_per_s"],
            "server_cpu_pct_of_core": raw["server_cpu_pct_of_core"],
            "attack_cpu_pct_of_core": raw["attack_cpu_pct_of_core"],
            "machine_busy_pct": raw["machine_busy_pct"],
            "attack": raw["attack"],
            "timeline": raw["timeline"],  # [seconds into the window, URL, latency or null]
            "samples": raw["samples"],  # once a second
        }
        if server.problem():
            report["warnings"].append(server.problem())
    except SetupError as e:
        print(f"slowloris: setup failed: {e}", file=sys.stderr)
        print(f"slowloris: work directory kept for inspection: {workdir}", file=sys.stderr)
        if server is not None:
            server.stop()
        return 2
    except KeyboardInterrupt:
        if server is not None:
            server.stop()
        return 130
    code = server.stop()
    if code not in (0, None, -15):
        report["warnings"].append(f"sender-http exited with {code} on SIGTERM: {tail(server.log)}")
    return finish_report(report, render(report), workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    sys.exit(main())
