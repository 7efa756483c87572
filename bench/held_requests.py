#!/usr/bin/env python3
"""Held requests: N concurrent blocking playlist reloads on sender-http, then one part lands.

Issue 5's held-requests benchmark. Goals: 10,000 concurrent blocking playlist requests held by
one process with RSS ≤ 300 MB; when the awaited part lands, all of them answered at ≥ 4,000
responses/s per process (the playlist rendered once and the bytes shared by every waiter).

One run:

1. a fresh install (`sender init --dir`, `http.listen`, `http.max_connections 20000`,
   `http.workers`), one public stream (`sender stream create`), and in the spool one live
   generation whose `source/index.m3u8` has just closed segment 105 (6 segments, 200 ms parts,
   preload hint `106.0.m4s`, built with `daemons.media.hls`); `sender daemon http` started with
   RLIMIT_NOFILE raised (inherited from this process);
2. the client (`bench/heldclient.py`, one or more processes, asyncio on raw sockets) opens N
   connections and sends `GET /hls/<sid>/<gid>/source/index.m3u8?_HLS_msn=106&_HLS_part=0` on
   each, every one with its own X-Playback-Session-Id;
3. once every request is sent and the daemon reports them all held (`blocked_now` summed over
   its workers' stats files `<state_dir>/stats/http-<n>.json`), its RSS (every process, VmRSS)
   is sampled for a second;
4. the part is published exactly as the packager does: `106.0.m4s` and the new `index.m3u8`
   written to a temporary name and renamed into place, then the spool-event datagram
   (`SpoolEventSender(state_dir).send(encode("<sid>/<gid>/source", 106, 0))`);
5. release time = from just before that write to the last of the N full responses received
   (CLOCK_MONOTONIC, shared with the client) → responses/s. The responses must all be 200 with
   the same body, listing the new part.

Every wait is bounded, and the whole run has a hard limit (`--timeout`).

Run from the checkout:  .venv/bin/python bench/held_requests.py [--count 10000] [--workers 1,2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))  # daemons.media.hls and daemons.runtime.spool_events, used as libraries

import trio  # noqa: E402

from harness import (  # noqa: E402
    finish_report,
    CLK_TCK,
    SetupError,
    cpu_split_ticks,
    descendants,
    distribution,
    export_revision,
    http_machine_facts,
    process_name,
    raise_nofile,
    rss_kb,
    sender_cli,
    snapshot_worktree,
    stop_process,
    system_busy_ticks,
    tail,
    wait_until,
)
from http_serving import (  # noqa: E402
    FIRST_MSN,
    HOST,
    LIVE_SEGMENTS,
    RENDITION,
    BareHypercorn,
    SenderHTTP,
    fetch,
    live_playlist,
    render_checked,
    write_atomic,
)

from daemons.runtime import spool_events  # noqa: E402

GOAL_RSS_MB = 300.0
GOAL_RESPONSES_PER_S = 4000.0
PART_BYTES = 75_000  # 200 ms of a 3 Mbps stream


def log(msg: str) -> None:
    print(f"[held_requests {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Deadline(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise Deadline()


class ClientProcess:
    """One heldclient.py process and the JSON lines it prints (read by a thread)."""

    def __init__(self, python: str, port: int, path: str, count: int, offset: int, timeout_s: float, log_path: Path):
        self.log_path = log_path
        self.stderr = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [python, str(BENCH_DIR / "heldclient.py"), "--host", HOST, "--port", str(port), "--path", path,
             "--count", str(count), "--offset", str(offset), "--timeout", str(timeout_s)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.events: dict[str, dict] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            self.lines.put(doc)

    def poll_events(self) -> None:
        while True:
            try:
                doc = self.lines.get_nowait()
            except queue.Empty:
                return
            self.events[doc.get("event", "?")] = doc

    def wait_event(self, name: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while name not in self.events:
            try:
                doc = self.lines.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
                self.events[doc.get("event", "?")] = doc
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise SetupError(f"the client exited with {self.proc.returncode} before '{name}': {tail(self.log_path)}")
                if time.monotonic() > deadline:
                    raise SetupError(f"timed out after {timeout_s:.0f} s waiting for the client's '{name}'")
        return self.events[name]

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=5)
        self.stderr.close()


class _Delegate:
    """port, pid, log, problem() and stop() of the server process behind a target."""

    server = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def log(self) -> Path:
        return self.server.log

    def problem(self) -> str | None:
        return self.server.problem() if self.server is not None else None

    def stop(self) -> int | None:
        return self.server.stop() if self.server is not None else None


class SenderTarget(_Delegate):
    """sender-http on a fresh install; the part is published as the packager does (files, then a spool event)."""

    kind = "sender"

    def __init__(self, root: Path, sender: Path, source: Path, workers: int, args: argparse.Namespace):
        self.workers = workers
        self.label = f"sender-http (http.workers {workers})"
        self.server = SenderHTTP(root, sender, source, workers=workers,
                                 config={"http.max_connections": str(max(4096, 2 * args.count)),
                                         "http.max_connections_per_address": str(max(256, 2 * args.count))})

    def prepare(self, init: bytes, before: bytes) -> str:
        s = self.server
        s.setup()
        generation_id = "gen_" + secrets.token_hex(8)
        self.dir = s.rendition_dir(generation_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "init.mp4", init)
        write_atomic(self.dir / "index.m3u8", before)
        self.rendition_path = f"{s.stream_id}/{generation_id}/{RENDITION}"
        return f"/hls/{self.rendition_path}/index.m3u8"

    def start(self) -> None:
        self.server.start()
        if self.workers > 1 and (n := self.server.running_workers()) < self.workers:
            raise SetupError(f"http.workers {self.workers}: only {n} worker(s) write stats")

    def held(self) -> int:
        """`blocked_now` summed over the workers' stats files (each written every second)."""
        return sum(doc.get("blocked_now", 0) for doc in self.server.stats().values())

    def release(self, msn: int, part: int, after: bytes) -> float:
        """Write the part and the new playlist (temporary + rename), then send the spool event,
        as the packager does; returns the monotonic time just before the first write."""
        data = os.urandom(PART_BYTES)

        async def go() -> float:
            events = spool_events.SpoolEventSender(self.server.state_dir)
            try:
                t0 = time.monotonic()
                write_atomic(self.dir / f"{msn}.{part}.m4s", data)
                write_atomic(self.dir / "index.m3u8", after)
                events.send(spool_events.encode(self.rendition_path, msn, part))
                return t0
            finally:
                events.close()

        return trio.run(go)


class BareTarget(_Delegate):
    """bench/bare_asgi.py:app on hypercorn's trio worker: held requests wait for a datagram, then
    every one gets the playlist file read once. What hypercorn alone costs for the same release."""

    kind = "bare"
    workers = 1
    label = "bare ASGI on hypercorn trio"

    def __init__(self, root: Path, hypercorn: Path):
        self.root = root
        self.hypercorn = hypercorn

    def prepare(self, init: bytes, before: bytes) -> str:
        self.dir = self.root / "files"
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "index.m3u8", before)
        url_path = f"/hls/st_{secrets.token_hex(8)}/gen_{secrets.token_hex(8)}/{RENDITION}/index.m3u8"
        self.sock = self.root / "release.sock"
        self.server = BareHypercorn(self.root, self.hypercorn, {url_path: self.dir / "index.m3u8"},
                                    env={"BARE_RELEASE_SOCK": str(self.sock)})
        self.server.setup()
        return url_path

    def start(self) -> None:
        self.server.start()
        wait_until(self.sock.exists, 10, "the bare app's release socket")

    def held(self) -> int:
        status, _, body = fetch(f"http://{HOST}:{self.server.port}/_held")
        return int(body) if status == 200 else 0

    def release(self, msn: int, part: int, after: bytes) -> float:
        data = os.urandom(PART_BYTES)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            t0 = time.monotonic()
            write_atomic(self.dir / f"{msn}.{part}.m4s", data)
            write_atomic(self.dir / "index.m3u8", after)
            s.sendto(spool_events.encode("bare", msn, part), str(self.sock))
        return t0


def run_once(target, workdir: Path, args: argparse.Namespace) -> dict:
    clients: list[ClientProcess] = []
    result: dict = {"server": target.kind, "label": target.label, "workers": target.workers, "count": args.count}
    try:
        before = render_checked(live_playlist(next_parts=0, target_duration=args.target_duration,
                                              segment_s=float(args.target_duration)))
        after = render_checked(live_playlist(next_parts=1, target_duration=args.target_duration,
                                             segment_s=float(args.target_duration)))
        url_path = target.prepare(os.urandom(1024), before)
        msn = FIRST_MSN + LIVE_SEGMENTS
        log(f"{target.label}: starting")
        target.start()
        status, _, body = fetch(f"http://{HOST}:{target.port}{url_path}")
        if status != 200 or body != before:
            raise SetupError(f"GET {url_path} answered {status} with {len(body)} bytes (expected 200 and the playlist file)")
        time.sleep(1.0)
        pids = descendants(target.pid)
        result["idle_rss_mb"] = rss_kb(pids)[0] / 1024
        result["processes"] = [process_name(p) for p in pids]
        log(f"idle: {result['idle_rss_mb']:.1f} MB RSS in {len(pids)} process(es)")

        # Park N blocking requests.
        request_target = f"{url_path}?_HLS_msn={msn}&_HLS_part=0"
        result["request"] = f"GET {request_target}"
        per_client = [args.count // args.clients + (1 if i < args.count % args.clients else 0) for i in range(args.clients)]
        t_start = time.monotonic()
        offset = 0
        for i, n in enumerate(per_client):
            clients.append(ClientProcess(sys.executable, target.port, request_target, n, offset, args.park_timeout + 60,
                                         workdir / f"client-{i}.log"))
            offset += n
        sent = [c.wait_event("sent", args.park_timeout) for c in clients]
        result["all_sent_s"] = max(s["t"] for s in sent) - t_start
        result["connect_errors"] = [s["connect_errors"] for s in sent if s["connect_errors"]]
        log(f"{sum(s['sent'] for s in sent)} requests sent in {result['all_sent_s']:.2f} s; waiting until all are held")
        best, deadline = 0, time.monotonic() + args.park_timeout
        while True:
            held = target.held()
            best = max(best, held)
            if held >= args.count:
                break
            for c in clients:
                c.poll_events()
            early = [c.events["done"] for c in clients if "done" in c.events]
            if problem := target.problem():
                raise SetupError(problem)
            if early or time.monotonic() > deadline:
                result["held_max"] = best
                why = ("a client finished before the release: " + json.dumps({k: v for k, v in early[0].items() if k != "times"})
                       if early else "timed out")
                raise SetupError(f"{target.label}: only {best} of {args.count} requests were held at once ({why}); "
                                 f"server log: {tail(target.log, 5)}")
            time.sleep(0.1)
        result["all_held_s"] = time.monotonic() - t_start
        result["held_max"] = best
        log(f"all {args.count} held after {result['all_held_s']:.2f} s")

        samples = []
        pids = descendants(target.pid)
        for _ in range(5):
            samples.append(rss_kb(pids))
            time.sleep(0.2)
        result["held_rss_mb"] = max(s[0] for s in samples) / 1024
        result["held_pss_mb"] = max(s[1] for s in samples) / 1024
        per_process = {p: rss_kb([p])[0] / 1024 for p in pids}
        result["held_rss_mb_per_process"] = {f"{process_name(p)}[{p}]": v for p, v in per_process.items()}
        result["held_rss_mb_largest_process"] = max(per_process.values())
        result["rss_kb_per_held_request"] = (result["held_rss_mb"] - result["idle_rss_mb"]) * 1024 / args.count
        log(f"held: {result['held_rss_mb']:.1f} MB RSS ({result['rss_kb_per_held_request']:.1f} kB per request)")

        # Release: the part lands.
        user0, sys0 = cpu_split_ticks(pids)
        client_cpu0 = sum(s["cpu_s"] for s in sent)
        busy0, total0 = system_busy_ticks()
        t0 = target.release(msn, 0, after)
        done = [c.wait_event("done", args.park_timeout + 30) for c in clients]
        user1, sys1 = cpu_split_ticks(pids)
        busy1, total1 = system_busy_ticks()
        times = sorted(t for doc in done for t in doc["times"])
        statuses: dict[str, int] = {}
        for doc in done:
            for k, v in doc["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        after_release = [t - t0 for t in times if t >= t0]
        result.update({
            "responses": len(times), "responses_after_release": len(after_release),
            "responses_before_release": len(times) - len(after_release),
            "statuses": statuses, "lost": [doc["lost"] for doc in done if doc["lost"]],
            "timed_out": any(doc["timed_out"] for doc in done),
            "distinct_bodies": sum(doc["distinct_bodies"] for doc in done),
            "first_response_s": after_release[0] if after_release else None,
            "release_s": after_release[-1] if after_release else None,
            "response_times_s": distribution(after_release),
            "server_cpu_s_during_release": (user1 + sys1 - user0 - sys0) / CLK_TCK,
            "server_cpu_kernel_share": (sys1 - sys0) / max(1, user1 + sys1 - user0 - sys0),
            "client_cpu_s_during_release": sum(doc["cpu_s"] for doc in done) - client_cpu0,
            "machine_busy_cpu_s_during_release": (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
                                                 * (time.monotonic() - t0),
        })
        # Everything else on the machine during the release (other sessions' tests, say), in CPU seconds.
        result["other_cpu_s_during_release"] = max(0.0, result["machine_busy_cpu_s_during_release"]
                                                   - result["server_cpu_s_during_release"] - result["client_cpu_s_during_release"])
        result["responses_per_s"] = (len(after_release) / result["release_s"]) if result["release_s"] else None
        result["responses_per_s_per_process"] = result["responses_per_s"] / target.workers if result["responses_per_s"] else None
        # The bodies: the new playlist (listing part 0 of the awaited segment).
        status, _, body = fetch(f"http://{HOST}:{target.port}{request_target}")
        result["body_matches_new_playlist"] = status == 200 and body == after
        log(f"released: {len(after_release)} responses in {result['release_s'] or 0:.3f} s "
            f"({result['responses_per_s'] or 0:,.0f}/s), first after {1000 * (result['first_response_s'] or 0):.1f} ms; "
            f"statuses {statuses}, distinct bodies {result['distinct_bodies']}")
        if problem := target.problem():
            raise SetupError(problem)
    finally:
        for c in clients:
            c.stop()
        code = target.stop()
        result["exit_code"] = code
        result["server_log_tail"] = tail(target.log, 5)
    return result


def goals(runs: list[dict], count: int) -> dict:
    out = {}
    one = next((r for r in runs if r["server"] == "sender" and r["workers"] == 1), None)
    bare = next((r for r in runs if r["server"] == "bare"), None)
    ref = f"; bare hypercorn: {bare['responses_per_s'] or 0:,.0f}/s, {bare['held_rss_mb']:.0f} MB" if bare else ""
    if one is not None:
        ok = one["responses_after_release"] == count and one["statuses"] == {"200": count}
        out[f"{count} held requests on one process, RSS ≤ {GOAL_RSS_MB:.0f} MB"] = {
            "figure": f"{one['held_rss_mb']:.0f} MB ({one['rss_kb_per_held_request']:.1f} kB per held request)",
            "met": one["held_rss_mb"] <= GOAL_RSS_MB}
        out[f"released at ≥ {GOAL_RESPONSES_PER_S:,.0f} responses/s per process"] = {
            "figure": f"{one['responses_per_s'] or 0:,.0f}/s ({one['release_s'] or 0:.2f} s for {one['responses_after_release']}; "
                      f"first response after {1000 * (one['first_response_s'] or 0):.0f} ms){ref}",
            "met": ok and (one["responses_per_s"] or 0) >= GOAL_RESPONSES_PER_S}
        out["one render shared by every waiter (one distinct body, all 200)"] = {
            "figure": f"{one['distinct_bodies']} distinct bodies, statuses {one['statuses']}",
            "met": ok and one["distinct_bodies"] == 1}
    for r in runs:
        if r["server"] == "sender" and r["workers"] > 1 and one is not None:
            out[f"http.workers {r['workers']} spreads the viewers over cores"] = {
                "figure": f"{r['responses_per_s'] or 0:,.0f}/s vs {one['responses_per_s'] or 0:,.0f}/s with one worker; "
                          f"RSS {r['held_rss_mb']:.0f} MB in {len(r['processes'])} processes",
                "met": (r["responses_per_s"] or 0) > (one["responses_per_s"] or 0)}
    return out


def render(report: dict) -> str:
    m = report["machine"]
    st = report["settings"]
    out = [f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, load at start "
           f"{' '.join(m['loadavg_at_start'])}; hypercorn {m.get('hypercorn')}, trio {m.get('trio')}, h11 {m.get('h11')}",
           f"sender: {report['sender_code']}",
           f"load: {st['count']} blocking playlist requests from {st['clients']} client process(es); "
           f"TARGETDURATION {st['target_duration']} (sender-http holds a request {3 * st['target_duration']} s at most)", ""]
    header = (f"{'server':<32} {'idle RSS':>9} {'held RSS':>9} {'kB/req':>7} {'sent s':>7} {'held s':>7} "
              f"{'1st ms':>7} {'p50 ms':>7} {'release s':>9} {'resp/s':>8} {'srv CPU s':>9} {'kernel':>6} {'cli CPU s':>9} {'other CPU':>9}  statuses")
    out += [header, "─" * len(header)]
    for r in report["runs"]:
        out.append(f"{r['label']:<32} {r['idle_rss_mb']:>8.1f}M {r['held_rss_mb']:>8.1f}M {r['rss_kb_per_held_request']:>7.1f} "
                   f"{r['all_sent_s']:>7.2f} {r['all_held_s']:>7.2f} {1000 * (r['first_response_s'] or 0):>7.1f} "
                   f"{1000 * (r['response_times_s']['median'] or 0):>7.1f} "
                   f"{r['release_s'] or 0:>9.3f} {r['responses_per_s'] or 0:>8,.0f} {r['server_cpu_s_during_release']:>9.2f} "
                   f"{100 * r['server_cpu_kernel_share']:>5.0f}% {r['client_cpu_s_during_release']:>9.2f} "
                   f"{r['other_cpu_s_during_release']:>9.2f}  {r['statuses']}")
    out.append("")
    for goal, g in report["goals"].items():
        out.append(f"goal: {goal}: {g['figure']} → {'MET' if g['met'] else 'NOT MET'}")
    for w in report["warnings"]:
        out.append(f"WARNING: {w}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10_000, help="concurrent blocking requests (default 10000)")
    p.add_argument("--servers", default="bare,sender", help="comma-separated: bare, sender (default both; bare first)")
    p.add_argument("--workers", default="1", help="http.workers for sender-http, comma-separated, one run each (default 1; e.g. 1,2)")
    p.add_argument("--clients", type=int, default=1, help="client processes sharing the requests (default 1)")
    p.add_argument("--target-duration", type=int, default=2,
                   help="the playlist's TARGETDURATION: sender-http holds a request 3× this long (default 2, Sender's default)")
    p.add_argument("--park-timeout", type=float, default=60.0, help="most seconds to get every request sent and held (default 60)")
    p.add_argument("--timeout", type=float, default=400.0, help="hard limit for the whole run, seconds (default 400)")
    p.add_argument("--sender-rev", metavar="REV", help="measure this git revision (git archive) instead of a snapshot of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (install, logs, spool)")
    args = p.parse_args(argv)
    args.server_list = [x.strip() for x in args.servers.split(",") if x.strip()]
    try:
        args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        p.error("--workers: integers, e.g. 1,2")
    if not args.server_list or any(x not in ("bare", "sender") for x in args.server_list):
        p.error("--servers: bare and/or sender")
    if not args.worker_list or any(not 1 <= w <= 8 for w in args.worker_list) or not (1 <= args.count <= 50_000) \
            or not (1 <= args.clients <= 4) or not (1 <= args.target_duration <= 30) or not (10 <= args.timeout <= 1800):
        p.error("bounds: 1 <= workers <= 8, 1 <= --count <= 50000, 1 <= --clients <= 4, "
                "1 <= --target-duration <= 30, 10 <= --timeout <= 1800")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-held-"))
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.timeout))
    report: dict = {}
    try:
        sender = sender_cli()
        nofile = raise_nofile(args.count + 4096)
        if nofile < args.count + 100:
            raise SetupError(f"RLIMIT_NOFILE is {nofile}, too low for {args.count} connections (run as root or raise the hard limit)")
        source = workdir / "sender-source"
        if args.sender_rev:
            sender_code = f"git archive {args.sender_rev} ({export_revision(args.sender_rev, source)})"
        else:
            sender_code = "working tree at " + snapshot_worktree(source)
        log(f"measuring Sender: {sender_code}")
        report = {
            "benchmark": "held_requests",
            "machine": http_machine_facts({}, str(sender.parent / "python")),
            "sender_code": sender_code,
            "settings": {"count": args.count, "servers": args.server_list, "workers": args.worker_list, "clients": args.clients,
                         "target_duration": args.target_duration, "nofile": nofile},
            "runs": [], "warnings": [],
        }
        report["machine"]["sender_revision"] = sender_code
        targets = []
        for name in args.server_list:
            if name == "bare":
                hypercorn = sender.parent / "hypercorn"
                if not hypercorn.exists():
                    raise SetupError(f"hypercorn is not in {sender.parent}: run `bash .ci/bootstrap` in the checkout")
                targets.append(BareTarget(workdir / "bare", hypercorn))
            else:
                targets += [SenderTarget(workdir / f"sender-w{w}", sender, source, w, args) for w in args.worker_list]
        for i, target in enumerate(targets):
            (workdir / f"run-{i}").mkdir()
            r = run_once(target, workdir / f"run-{i}", args)
            report["runs"].append(r)
            if r["exit_code"] not in (0, None, -15):
                report["warnings"].append(f"{r['label']}: exited with {r['exit_code']} on SIGTERM: {r['server_log_tail']}")
            if r["responses_before_release"]:
                report["warnings"].append(f"{r['label']}: {r['responses_before_release']} responses arrived before the release")
            if r["lost"] or r["timed_out"]:
                report["warnings"].append(f"{r['label']}: connections lost {r['lost']}, timed out {r['timed_out']}")
    except SetupError as e:
        print(f"held_requests: setup failed: {e}", file=sys.stderr)
        print(f"held_requests: work directory kept for inspection (logs, install): {workdir}", file=sys.stderr)
        return 2
    except Deadline:
        print(f"held_requests: the whole run took longer than --timeout {args.timeout:g} s; work directory kept: {workdir}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("held_requests: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
    report["goals"] = goals(report["runs"], args.count)
    for r in report["runs"]:
        r["response_times_s"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r["response_times_s"].items()}
    text = render(report)
    return finish_report(report, text, workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    sys.exit(main())
