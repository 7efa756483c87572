#!/usr/bin/env python3
"""Edges: what an edge node costs its origin, and how much later than the origin it has each part.

Issue 7's benchmark. One run on 127.0.0.1:

1. an origin and one edge, each a separate `sender init --dir` install (own config, store,
   spool, ports) sharing one distribution key file (`distribution.key_file`); the distribution
   graph written into each node's store with `sender endpoint upsert` (the edge's row for the
   origin points at a counting hop, so every request the edge makes to its origin goes through
   it); the origin runs `sender daemon ingest` + `sender daemon http`, the edge `sender daemon
   http` + `sender daemon edge-fill`, all as separate processes;
2. the counting hop (this file, `--counting-hop`: an asyncio HTTP/1.1 relay in its own process)
   logs every request it forwards: arrival time, path and query, status, body bytes;
3. one ffmpeg publisher loops the cached 720p30 3 Mbps clip (2 s GOP) into the origin
   (Sender's defaults: LL-HLS, 2 s segments, 200 ms parts);
4. once the edge serves the generation, for each viewer count (a round each): N simulated
   LL-HLS viewers (this file, `--viewer-process`: asyncio on raw sockets, keep-alive, split over
   several processes) on the edge's sender-http — init.mp4 once, then in a loop a blocking
   playlist reload for the next part (`_HLS_msn`/`_HLS_part`) and a GET of the newest part it
   lists — for `--seconds`;
5. per round: the origin's egress to the edge (the hop's log over the round), split by kind
   (playlist / part / segment / init / listing), and origin fetches per distinct object (goal:
   exactly 1.0 for any N); edge-added latency for every part and segment the origin wrote
   during the round = its mtime in the edge's spool − its mtime in the origin's spool (same
   machine, same clock; both written to a temporary name, then renamed), median and p95 (goal:
   p95 ≤ 100 ms); also when each was first listed in the edge's playlist vs the origin's
   (inotify on both rendition directories); what the viewers completed; CPU by role.

Run from the checkout:  .venv/bin/python bench/edges.py [--seconds 20] [--viewers 1,50,500] [--json]
Needs: ffmpeg (apt-get install ffmpeg).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
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

HOST = "127.0.0.1"
GOAL_FETCHES_PER_OBJECT = 1.0
GOAL_EDGE_P95_MS = 100.0
RENDITION = "source"
SLUG = "show"
START_TIMEOUT_S = 30.0
MEDIA_KINDS = ("part", "segment", "init")
KINDS = ("playlist", "part", "segment", "init", "listing", "other")
_PART = re.compile(r"(\d+)\.(\d+)\.m4s$")
_SEGMENT = re.compile(r"(\d+)\.m4s$")


def log(message: str) -> None:
    print(f"[edges {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def kind_of(target: str) -> str:
    path = target.split("?", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".m3u8"):
        return "playlist"
    if path.startswith("/api/"):
        return "listing"
    if name.startswith("init") and name.endswith(".mp4"):
        return "init"
    if _PART.fullmatch(name):
        return "part"
    if _SEGMENT.fullmatch(name):
        return "segment"
    return "other"


# --- HTTP/1.1 on asyncio streams: shared by the hop and the viewers ---------------------------


class HTTPError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader, *, head_request: bool = False,
                        relay: asyncio.StreamWriter | None = None) -> tuple[int, dict[str, str], int, bytes]:
    """One response: (status, headers (lowercase names), body length, body — empty when relaying).
    With `relay`, the head and body bytes are written there as they arrive instead of kept."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise HTTPError(f"bad status line {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if relay is not None:
        relay.write(head)
    body = bytearray()
    total = 0
    if head_request or status in (204, 304) or 100 <= status < 200:
        pass
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            chunk = await reader.read(min(left, 1 << 18))
            if not chunk:
                raise HTTPError("connection closed inside a body")
            left -= len(chunk)
            total += len(chunk)
            if relay is not None:
                relay.write(chunk)
                await relay.drain()
            else:
                body += chunk
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            data = await reader.readexactly(size + 2)
            if relay is not None:
                relay.write(size_line + data)
            else:
                body += data[:-2]
            total += size
            if size == 0:
                if relay is not None:
                    await relay.drain()
                break
    else:  # until the connection closes
        while chunk := await reader.read(1 << 18):
            total += len(chunk)
            if relay is not None:
                relay.write(chunk)
            else:
                body += chunk
        headers["connection"] = "close"
    return status, headers, total, bytes(body)


# --- the counting hop (a process of its own) --------------------------------------------------


async def counting_hop(port: int, upstream: str, log_path: Path) -> None:
    """Relay HTTP/1.1 requests to `upstream` (host:port), one upstream connection per downstream
    connection, and log each one as a JSON line: t (arrival, CLOCK_MONOTONIC), target, status,
    body bytes, seconds to the end of the response."""
    up_host, up_port = upstream.rsplit(":", 1)
    out = open(log_path, "a", buffering=1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r = up_w = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                t = time.monotonic()
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, target = request_line.split(" ")[:2]
                length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                status, nbytes = 502, 0
                try:
                    for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile: once more on a new one
                        fresh = up_w is None
                        if fresh:
                            up_r, up_w = await asyncio.open_connection(up_host, int(up_port), limit=1 << 20)
                        try:
                            up_w.write(head + body)
                            await up_w.drain()
                            status, headers, nbytes, _ = await read_response(up_r, head_request=method == "HEAD", relay=writer)
                            break
                        except (ConnectionError, asyncio.IncompleteReadError):
                            if fresh or attempt == 2 or status != 502:
                                raise
                            up_w.close()
                            up_r = up_w = None
                    await writer.drain()
                    if headers.get("connection", "").lower() == "close":
                        up_w.close()
                        up_r = up_w = None
                except (OSError, asyncio.IncompleteReadError, HTTPError, ValueError) as e:
                    if up_w is not None:
                        up_w.close()
                    up_r = up_w = None
                    if status == 502:  # nothing relayed yet: answer it ourselves
                        msg = f"hop: upstream failed: {type(e).__name__}\n".encode()
                        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
                    out.write(json.dumps({"t": t, "target": target, "status": status, "bytes": nbytes,
                                          "s": time.monotonic() - t, "error": type(e).__name__}) + "\n")
                    return
                out.write(json.dumps({"t": t, "target": target, "status": status, "bytes": nbytes,
                                      "s": round(time.monotonic() - t, 6)}) + "\n")
        finally:
            if up_w is not None:
                up_w.close()
            writer.close()

    server = await asyncio.start_server(handle, HOST, port, limit=1 << 20, backlog=1024)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    async with server:
        await server.serve_forever()


# --- simulated LL-HLS viewers (processes of their own) ----------------------------------------

_EXT_PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')


_ITEM = re.compile(r'#EXT-X-PART:[^\n]*URI="(?:[^"]*/)?(\d+)\.(\d+)\.m4s"|^(?:[^#\n]*/)?(\d+)\.m4s$', re.M)


def next_position(text: str, after: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The (msn, part) that follows part `after` (default: the newest part listed) in a media
    playlist's text: the next part listed after it, or (M+1, 0) when segment M is listed right
    after it (closed), or (M, P+1) when nothing follows yet."""
    items = [(int(m[0]), int(m[1])) if m[0] else (int(m[2]), None) for m in _ITEM.findall(text)]
    parts = [i for i in items if i[1] is not None]
    if not parts:
        return None
    if after is None:
        after = parts[-1]
    if after not in items:
        return after if after > parts[-1] else None  # not listed yet: ask for it / fell out of the playlist
    following = items[items.index(after) + 1:]
    if not following:
        return after[0], after[1] + 1
    if following[0][1] is None:  # the segment closed after this part
        return after[0] + 1, 0
    return following[0]


async def viewer_processes(port: int, base: str, count: int, seconds: float, offset: int) -> dict:
    stats = {"requests": 0, "by_kind": {"playlist": 0, "part": 0, "init": 0}, "statuses": {}, "bytes": 0,
             "errors": {}, "connected": 0, "parts_per_viewer": [], "reload_wait_s": [], "behind": 0}
    deadline = time.monotonic() + seconds

    def count_error(name: str) -> None:
        stats["errors"][name] = stats["errors"].get(name, 0) + 1

    async def viewer(i: int) -> None:
        parts = 0
        writer = None
        session = f"bench-edge-{offset + i}"

        async def get(target: str, kind: str) -> tuple[int, bytes]:
            nonlocal reader, writer
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
            writer.write((f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: sender-bench-edges\r\n"
                          f"X-Playback-Session-Id: {session}\r\nAccept: */*\r\n\r\n").encode())
            status, headers, n, body = await read_response(reader)
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
            stats["requests"] += 1
            stats["by_kind"][kind] += 1
            stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
            stats["bytes"] += n
            return status, body

        reader = None
        try:
            status, body = await get(base + "index.m3u8", "playlist")
            stats["connected"] += 1
            await get(base + "init.mp4", "init")
            text = body.decode(errors="replace")
            pos = next_position(text) if status == 200 else None
            while time.monotonic() < deadline:
                if pos is None:  # no usable playlist: start again from a plain reload
                    await asyncio.sleep(0.1)
                    status, body = await get(base + "index.m3u8", "playlist")
                    pos = next_position(body.decode(errors="replace")) if status == 200 else None
                    continue
                msn, part = pos
                t0 = time.monotonic()
                status, body = await get(f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}", "playlist")
                if status != 200:
                    pos = None  # e.g. a 503 after holding too long
                    continue
                stats["reload_wait_s"].append(round(time.monotonic() - t0, 4))
                text = body.decode(errors="replace")
                newest = next_position(text)
                # "part index past the last part" means part 0 of the next segment (the server answers for that)
                asked = pos if f'"{msn}.{part}.m4s"' in text or f"/{msn}.{part}.m4s" in text else (msn + 1, 0)
                if f'{asked[0]}.{asked[1]}.m4s"' not in text:
                    pos = None
                    continue
                if newest is not None and newest != next_position(text, asked):
                    stats["behind"] += 1  # the answer already lists parts past the one asked for
                status_part, _ = await get(f"{base}{asked[0]}.{asked[1]}.m4s", "part")
                parts += status_part == 200
                pos = next_position(text, asked)
        except (OSError, asyncio.IncompleteReadError, HTTPError, ValueError) as e:
            count_error(type(e).__name__)
        finally:
            stats["parts_per_viewer"].append(parts)
            if writer is not None:
                writer.close()

    tasks = [asyncio.ensure_future(viewer(i)) for i in range(count)]
    _done, pending = await asyncio.wait(tasks, timeout=seconds + 1)
    for t in pending:
        t.cancel()  # a blocking reload still held at the end: not counted as completed
    if pending:
        await asyncio.wait(pending, timeout=2)
    stats["cut_at_end"] = len(pending)
    r = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu_s"] = r.ru_utime + r.ru_stime
    return stats


def viewer_main(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    stats = asyncio.run(viewer_processes(args.port, args.base, args.count, args.seconds, args.offset))
    print(json.dumps(stats), flush=True)
    return 0


# --- the benchmark ----------------------------------------------------------------------------

from harness import (  # noqa: E402
    IN_MOVED_TO,
    CLK_TCK,
    Inotify,
    Publishers,
    SetupError,
    SourceClip,
    cpu_ticks,
    descendants,
    distribution,
    export_revision,
    finish_report,
    free_port,
    machine_facts,
    port_open,
    require_tools,
    run_checked,
    sender_cli,
    snapshot_worktree,
    stop_process,
    system_busy_ticks,
    tail,
    wait_until,
)


class Node:
    """One Sender node: a `sender init --dir` install and its daemons, each a child process."""

    def __init__(self, name: str, root: Path, sender: Path, env: dict, key_file: Path, extra: dict[str, str]):
        self.name, self.root, self.sender, self.env = name, root, sender, env
        self.config = root / "sender.toml"
        self.http_port = self.rtmp_port = 0
        self.key_file = key_file
        self.extra = extra
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def cli(self, *args: str) -> str:
        return run_checked([str(self.sender), "--config", str(self.config), *args], f"{self.name}: sender {' '.join(args[:3])}",
                           env=self.env, cwd=self.root).stdout

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        run_checked([str(self.sender), "init", "--dir", str(self.root)], f"{self.name}: sender init", env=self.env, cwd=self.root)
        self.http_port, self.rtmp_port = free_port(HOST), free_port(HOST)
        values = {"node.id": self.name, "node.public_base_url": self.base_url, "http.listen": f"{HOST}:{self.http_port}",
                  "rtmp.listen": f"{HOST}:{self.rtmp_port}", "distribution.key_file": str(self.key_file),
                  "edge_fill.discovery_interval_s": "0.5", **self.extra}
        for k, v in values.items():
            self.cli("config", "set", k, v)

    def start(self, daemon: str) -> None:
        with open(self.root / f"{daemon}.log", "ab") as f:
            # A session of its own: Ctrl-C reaches the benchmark only, which stops every daemon in order.
            self.procs[daemon] = subprocess.Popen([str(self.sender), "--config", str(self.config), "daemon", daemon],
                                                  stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                                  env=self.env, cwd=self.root, start_new_session=True)
        if daemon == "http":
            wait_until(lambda: port_open(HOST, self.http_port), START_TIMEOUT_S, f"{self.name}'s sender-http", alive=self.problem)
        if daemon == "ingest":
            wait_until(lambda: port_open(HOST, self.rtmp_port), START_TIMEOUT_S, f"{self.name}'s sender-ingest", alive=self.problem)

    def problem(self) -> str | None:
        for d, p in self.procs.items():
            if p.poll() is not None:
                return f"{self.name}'s `sender daemon {d}` exited with {p.returncode}: {tail(self.root / f'{d}.log')}"
        return None

    def rendition_dir(self, sid: str, gid: str) -> Path:
        return self.root / "spool" / "streams" / sid / gid / RENDITION

    def stop(self) -> dict[str, int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        codes = {d: stop_process(p, timeout_s=15) for d, p in self.procs.items()}
        self.procs.clear()
        return codes


class Helper:
    """A process of this file (the hop, or viewers) with its stdout read line by line."""

    def __init__(self, args: list[str], log_path: Path):
        self.log_path = log_path
        self.stderr = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, start_new_session=True)

    def line(self, timeout_s: float) -> dict:
        result: list = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout_s)
        if not result or not result[0]:
            raise SetupError(f"{self.log_path.stem}: no answer within {timeout_s:.0f} s (exit {self.proc.poll()}): {tail(self.log_path)}")
        return json.loads(result[0])

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


class SpoolWatch(threading.Thread):
    """Both rendition directories under inotify: every part/segment renamed into place (its
    mtime, and when it was seen), and every playlist version (when each part/segment was first
    listed). Times: mtime_ns on the realtime clock (kernel), seen/listed on CLOCK_MONOTONIC."""

    def __init__(self, dirs: dict[str, Path]):
        super().__init__(name="spool-watch", daemon=True)
        self.dirs = dirs
        self.files: dict[str, dict[str, tuple[int, float]]] = {k: {} for k in dirs}  # side → name → (mtime_ns, seen)
        self.listed: dict[str, dict[str, float]] = {k: {} for k in dirs}  # side → name → first listed
        self.stopping = threading.Event()
        self.error: str | None = None

    def _playlist(self, side: str, path: Path, at: float) -> None:
        try:
            text = path.read_text()
        except OSError:
            return
        names = _EXT_PART.findall(text) + [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        listed = self.listed[side]
        for n in names:
            n = n.rsplit("/", 1)[-1]
            if n not in listed:
                listed[n] = at

    def run(self) -> None:
        ino = Inotify()
        try:
            sides = {}
            for side, d in self.dirs.items():
                sides[ino.watch(d, IN_MOVED_TO)] = side
            by_path = {ino.paths[wd]: side for wd, side in sides.items()}
            for side, d in self.dirs.items():  # what is there already
                for e in os.scandir(d):
                    if _SEGMENT.search(e.name) and not e.name.startswith("."):
                        self.files[side].setdefault(e.name, (e.stat().st_mtime_ns, time.monotonic()))
                self._playlist(side, d / "index.m3u8", time.monotonic())
            while not self.stopping.is_set():
                at, events = ino.read(0.2)
                for directory, _mask, name in events:
                    side = by_path[directory]
                    if name == "index.m3u8":
                        self._playlist(side, directory / name, at)
                    elif _SEGMENT.search(name) and name not in self.files[side]:
                        try:
                            self.files[side][name] = (os.stat(directory / name).st_mtime_ns, at)
                        except OSError:
                            pass
        except Exception as e:  # noqa: BLE001 - reported with the figures
            self.error = f"{type(e).__name__}: {e}"
        finally:
            ino.close()


def fetch_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def read_hop_log(path: Path) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def egress(records: list[dict], seconds: float) -> dict:
    """The hop's records of one round: requests and bytes by kind, fetches per distinct object."""
    by_kind = {k: {"requests": 0, "ok": 0, "bytes": 0} for k in KINDS}
    per_object: dict[str, int] = {}
    positions: dict[str, int] = {}
    statuses: dict[str, int] = {}
    not_ok: list[str] = []
    for r in records:
        k = kind_of(r["target"])
        e = by_kind[k]
        e["requests"] += 1
        e["bytes"] += r["bytes"]
        e["ok"] += r["status"] == 200
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        if r["status"] != 200:
            not_ok.append(f"{r['status']} {r['target'].rsplit('/', 1)[-1]}")
        if k in MEDIA_KINDS and r["status"] == 200:
            per_object[r["target"]] = per_object.get(r["target"], 0) + 1
        if k == "playlist" and "_HLS_msn=" in r["target"]:
            positions[r["target"]] = positions.get(r["target"], 0) + 1
    fetched = sum(per_object.values())
    media_bytes = sum(by_kind[k]["bytes"] for k in MEDIA_KINDS)
    return {
        "requests": len(records), "statuses": statuses, "not_200": not_ok,
        "bytes": sum(e["bytes"] for e in by_kind.values()), "by_kind": by_kind,
        "media_fetches": fetched, "distinct_objects": len(per_object),
        "fetches_per_object": fetched / len(per_object) if per_object else None,
        "objects_fetched_more_than_once": {k: v for k, v in per_object.items() if v > 1},
        "blocking_reloads": sum(positions.values()), "distinct_positions": len(positions),
        "reloads_per_position": sum(positions.values()) / len(positions) if positions else None,
        "media_mbps": media_bytes * 8 / seconds / 1e6, "total_mbps": sum(e["bytes"] for e in by_kind.values()) * 8 / seconds / 1e6,
    }


def edge_latency(watch: SpoolWatch, t0_ns: int, t1_ns: int, m0: float, m1: float) -> dict:
    """For every part and segment the origin wrote in [t0_ns, t1_ns): edge mtime − origin mtime;
    and for every one first listed at the origin in [m0, m1): edge listing − origin listing."""
    origin, edge = dict(watch.files["origin"]), dict(watch.files["edge"])
    out: dict = {}
    for kind, pattern in (("part", _PART), ("segment", None)):
        names = [n for n, (mt, _) in origin.items() if t0_ns <= mt < t1_ns
                 and (pattern.fullmatch(n) if pattern else (not _PART.fullmatch(n) and _SEGMENT.fullmatch(n)))]
        deltas = [(edge[n][0] - origin[n][0]) / 1e6 for n in names if n in edge]
        missing = sorted(n for n in names if n not in edge)
        lo, le = watch.listed["origin"], watch.listed["edge"]
        listed_names = [n for n, t in lo.items() if m0 <= t < m1 and (_PART.fullmatch(n) if kind == "part"
                                                                     else (not _PART.fullmatch(n) and _SEGMENT.fullmatch(n)))]
        listed = [1000 * (le[n] - lo[n]) for n in listed_names if n in le]
        if kind == "segment":
            # A follower blocking on the next part learns that segment M closed only with part (M+1).0
            # (a part index past the last part means part 0 of the next segment): measured from there.
            nxt = [(edge[n][0] - origin[f"{int(n[:-4]) + 1}.0.m4s"][0]) / 1e6 for n in names
                   if n in edge and f"{int(n[:-4]) + 1}.0.m4s" in origin]
            out["segment_after_next_part0_ms"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in distribution(nxt).items()}
        out[kind] = {"file_ms": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in distribution(deltas).items()},
                     "never_at_edge": missing,
                     "listed_ms": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in distribution(listed).items()}}
    return out


def run_round(n: int, ctx: dict, args: argparse.Namespace, workdir: Path) -> dict:
    clients = max(1, min(args.max_clients, (n + args.viewers_per_client - 1) // args.viewers_per_client))
    split = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    log(f"round: {n} viewer(s) in {clients} process(es) for {args.seconds:g} s")
    roles = ctx["roles"]
    ticks0 = {r: cpu_ticks([p for pid in pids() for p in descendants(pid)]) for r, pids in roles.items()}
    busy0 = system_busy_ticks()
    hop_before = len(read_hop_log(ctx["hop_log"]))
    m0, t0_ns = time.monotonic(), time.time_ns()
    helpers, offset = [], 0
    try:
        for i, k in enumerate(split):
            helpers.append(Helper(["--viewer-process", "--port", str(ctx["edge_port"]), "--base", ctx["base"], "--count", str(k),
                                   "--seconds", str(args.seconds), "--offset", str(offset)], workdir / f"viewers-{n}-{i}.log"))
            offset += k
        results = [h.line(args.seconds + 30) for h in helpers]
        viewer_cpu = sum(r["cpu_s"] for r in results)
    finally:
        for h in helpers:
            h.stop()
    m1, t1_ns = time.monotonic(), time.time_ns()
    busy1 = system_busy_ticks()
    elapsed = m1 - m0
    cpu = {r: 100.0 * (cpu_ticks([p for pid in pids() for p in descendants(pid)]) - ticks0[r]) / CLK_TCK / elapsed
           for r, pids in roles.items()}
    cpu["viewers"] = 100.0 * viewer_cpu / elapsed
    cpu["machine"] = 100.0 * (os.cpu_count() or 1) * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    # Give the edge a moment for what the origin wrote at the very end, then take the figures.
    time.sleep(1.5)
    records = [r for r in read_hop_log(ctx["hop_log"])[hop_before:] if m0 <= r["t"] < m1]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    per_viewer = sorted(p for r in results for p in r["parts_per_viewer"])
    waits = [w for r in results for w in r["reload_wait_s"]]
    viewers = {
        "count": n, "processes": clients, "connected": sum(r["connected"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "requests_per_s": sum(r["requests"] for r in results) / args.seconds,
        "by_kind": {k: sum(r["by_kind"][k] for r in results) for k in ("playlist", "part", "init")},
        "statuses": statuses, "errors": errors,
        "bytes": sum(r["bytes"] for r in results), "behind": sum(r["behind"] for r in results),
        "parts_per_viewer": distribution(per_viewer), "cut_at_end": sum(r["cut_at_end"] for r in results),
        "reload_wait_ms": {k: (round(1000 * v, 1) if isinstance(v, float) else v) for k, v in distribution(waits).items()},
    }
    viewers["parts_per_viewer_per_s"] = (viewers["parts_per_viewer"]["median"] or 0) / args.seconds
    out = {"viewers": viewers, "seconds": round(elapsed, 2), "egress": egress(records, elapsed),
           "edge_added": edge_latency(ctx["watch"], t0_ns, t1_ns, m0, m1), "cpu_pct_of_core": {k: round(v, 1) for k, v in cpu.items()}}
    e = out["egress"]
    log(f"  viewers: {viewers['requests']} requests ({viewers['requests_per_s']:.0f}/s), {viewers['by_kind']['part']} parts, "
        f"statuses {statuses}; origin: {e['requests']} requests, {e['media_fetches']} media fetches of {e['distinct_objects']} "
        f"objects ({e['fetches_per_object'] or 0:.3f}/object); edge-added part p95 "
        f"{out['edge_added']['part']['file_ms']['p95']} ms")
    return out


def goals(rounds: list[dict]) -> dict:
    out = {}
    ratios = [(r["viewers"]["count"], r["egress"]["fetches_per_object"]) for r in rounds]
    out["origin fetches per distinct object = 1.0 for every viewer count"] = {
        "figure": ", ".join(f"{n} viewers: {v:.3f}" if v is not None else f"{n} viewers: –" for n, v in ratios),
        "met": all(v == GOAL_FETCHES_PER_OBJECT for _, v in ratios)}
    p95 = [(r["viewers"]["count"], r["edge_added"]["part"]["file_ms"]["p95"], r["edge_added"]["segment"]["file_ms"]["p95"]) for r in rounds]
    out[f"edge-added latency p95 ≤ {GOAL_EDGE_P95_MS:.0f} ms (parts and segments, file mtimes)"] = {
        "figure": ", ".join(f"{n} viewers: parts {a if a is not None else '–'} / segments {b if b is not None else '–'} ms" for n, a, b in p95),
        "met": all(a is not None and a <= GOAL_EDGE_P95_MS and (b is None or b <= GOAL_EDGE_P95_MS) for _, a, b in p95)}
    return out


def _ms(d: dict) -> str:
    return "–" if d["median"] is None else f"{d['median']:.1f} / {d['p95']:.1f}"


def render(report: dict) -> str:
    m = report["machine"]
    out = [f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, load at start {' '.join(m['loadavg_at_start'])}; {m['ffmpeg']}",
           f"sender: {report['sender_code']}",
           f"setup: origin (ingest + http) → counting hop → edge (edge-fill + http, http.workers {report['settings']['edge_workers']}); "
           f"1 publisher, {report['clip']['total_bitrate_mbps']} Mbps; LL-HLS 2 s segments, 200 ms parts; {report['settings']['seconds']:g} s per round",
           "", "Origin egress to the edge (requests through the hop during the round):", ""]
    h = (f"{'viewers':>7} {'playlist req':>12} {'blocking/pos':>12} {'parts':>6} {'segs':>5} {'init':>4} {'listing':>7} "
         f"{'MB parts':>8} {'MB segs':>7} {'MB total':>8} {'Mbps':>6} {'fetches/object':>14}")
    out += [h, "─" * len(h)]
    for r in report["rounds"]:
        e, k = r["egress"], r["egress"]["by_kind"]
        out.append(f"{r['viewers']['count']:>7} {k['playlist']['requests']:>12} {e['reloads_per_position'] or 0:>12.2f} "
                   f"{k['part']['requests']:>6} {k['segment']['requests']:>5} {k['init']['requests']:>4} {k['listing']['requests']:>7} "
                   f"{k['part']['bytes'] / 1e6:>8.2f} {k['segment']['bytes'] / 1e6:>7.2f} {e['bytes'] / 1e6:>8.2f} {e['total_mbps']:>6.2f} "
                   f"{(e['fetches_per_object'] or 0):>9.3f} ({e['media_fetches']}/{e['distinct_objects']})")
    out += ["", "Edge-added latency (median / p95 ms) and what the viewers completed:", ""]
    h = (f"{'viewers':>7} {'part file':>13} {'seg file':>13} {'seg−next .0':>13} {'part listed':>13} {'n parts':>7} {'requests':>8} {'req/s':>6} "
         f"{'parts':>6} {'parts/viewer/s':>14} {'behind':>6} {'statuses':<16} {'CPU % edge http/fill, origin, viewers, machine'}")
    out += [h, "─" * len(h)]
    for r in report["rounds"]:
        v, a, c = r["viewers"], r["edge_added"], r["cpu_pct_of_core"]
        out.append(f"{v['count']:>7} {_ms(a['part']['file_ms']):>13} {_ms(a['segment']['file_ms']):>13} {_ms(a['segment_after_next_part0_ms']):>13} {_ms(a['part']['listed_ms']):>13} "
                   f"{a['part']['file_ms']['n']:>7} {v['requests']:>8} {v['requests_per_s']:>6.0f} {v['by_kind']['part']:>6} "
                   f"{v['parts_per_viewer_per_s']:>14.2f} {v['behind']:>6} {json.dumps(v['statuses']):<16} "
                   f"{c['edge_http']:.0f}/{c['edge_fill']:.0f}, {c['origin']:.0f}, {c['viewers']:.0f}, {c['machine']:.0f}")
    out.append("")
    for r in report["rounds"]:
        dup = r["egress"]["objects_fetched_more_than_once"]
        if dup:
            out.append(f"{r['viewers']['count']} viewers: objects the origin served more than once: "
                       + ", ".join(f"{k.rsplit('/', 1)[-1]}×{v}" for k, v in list(dup.items())[:12]) + (" …" if len(dup) > 12 else ""))
        if r["egress"]["not_200"]:
            out.append(f"{r['viewers']['count']} viewers: origin answers other than 200: " + ", ".join(r["egress"]["not_200"][:12])
                       + (" …" if len(r["egress"]["not_200"]) > 12 else ""))
        missing = r["edge_added"]["part"]["never_at_edge"] + r["edge_added"]["segment"]["never_at_edge"]
        if missing:
            out.append(f"{r['viewers']['count']} viewers: written at the origin, never seen at the edge: {', '.join(missing[:12])}")
    for goal, g in report["goals"].items():
        out.append(f"goal: {goal}: {g['figure']} → {'MET' if g['met'] else 'NOT MET'}")
    for w in report["warnings"]:
        out.append(f"WARNING: {w}")
    return "\n".join(out)


class Deadline(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise Deadline()


def _terminate(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each round (default 20)")
    p.add_argument("--viewers", default="1,50,500", help="viewer counts, one round each (default 1,50,500)")
    p.add_argument("--viewers-per-client", type=int, default=125, help="viewers per client process (default 125)")
    p.add_argument("--max-clients", type=int, default=4, help="most viewer processes (default 4)")
    p.add_argument("--edge-workers", type=int, default=1, help="the edge's http.workers (default 1)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between rounds (default 3)")
    p.add_argument("--timeout", type=float, default=600.0, help="hard limit for the whole run, seconds (default 600)")
    p.add_argument("--sender-rev", metavar="REV", help="measure this git revision (git archive) instead of a snapshot of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (installs, daemon logs, spools, hop log)")
    args = p.parse_args(argv)
    try:
        args.viewer_counts = [int(x) for x in args.viewers.split(",") if x.strip()]
    except ValueError:
        p.error("--viewers: integers, e.g. 1,50,500")
    if not args.viewer_counts or any(not 1 <= n <= 5000 for n in args.viewer_counts) or not 3 <= args.seconds <= 300 \
            or not 1 <= args.edge_workers <= 8 or not 1 <= args.max_clients <= 16 or not 10 <= args.timeout <= 3600:
        p.error("bounds: 1 <= viewers <= 5000, 3 <= --seconds <= 300, 1 <= --edge-workers <= 8, "
                "1 <= --max-clients <= 16, 10 <= --timeout <= 3600")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--counting-hop"]:
        p = argparse.ArgumentParser()
        p.add_argument("--counting-hop", action="store_true")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--upstream", required=True)
        p.add_argument("--log", type=Path, required=True)
        a = p.parse_args(argv)
        asyncio.run(counting_hop(a.port, a.upstream, a.log))
        return 0
    if argv[:1] == ["--viewer-process"]:
        p = argparse.ArgumentParser()
        p.add_argument("--viewer-process", action="store_true")
        for name, kind in (("--port", int), ("--base", str), ("--count", int), ("--seconds", float), ("--offset", int)):
            p.add_argument(name, type=kind, required=True)
        return viewer_main(p.parse_args(argv))

    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-edges-"))
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _terminate)
    signal.alarm(int(args.timeout))
    nodes: list[Node] = []
    helpers: list[Helper] = []
    publishers: Publishers | None = None
    watch: SpoolWatch | None = None
    report: dict = {"benchmark": "edges", "rounds": [], "warnings": []}
    try:
        tools = require_tools(nginx=False)
        sender = sender_cli()
        source = workdir / "sender-source"
        if args.sender_rev:
            sender_code = f"git archive {args.sender_rev} ({export_revision(args.sender_rev, source)})"
        else:
            sender_code = "working tree at " + snapshot_worktree(source)
        log(f"measuring Sender: {sender_code}")
        env = {**os.environ, "PYTHONPATH": str(source)}
        clip = SourceClip()
        clip_path = clip.ensure(tools["ffmpeg"])
        report.update({"machine": machine_facts(tools), "sender_code": sender_code, "clip": clip.probe(tools["ffprobe"]),
                       "settings": {"seconds": args.seconds, "viewers": args.viewer_counts, "edge_workers": args.edge_workers,
                                    "viewers_per_client": args.viewers_per_client}})
        report["machine"]["sender_revision"] = sender_code

        key_file = workdir / "distribution.key"
        key_file.write_text(secrets.token_hex(24) + "\n")
        key_file.chmod(0o600)
        origin = Node("origin", workdir / "origin", sender, env, key_file, {})
        edge = Node("edge-a", workdir / "edge-a", sender, env, key_file, {"http.workers": str(args.edge_workers)})
        nodes += [origin, edge]
        for n in nodes:
            n.setup()
        hop_port = free_port(HOST)
        hop_url = f"http://{HOST}:{hop_port}"
        origin.cli("endpoint", "upsert", "origin", "--type", "tribes_origin", "--url", origin.base_url)
        edge.cli("endpoint", "upsert", "origin", "--type", "tribes_origin", "--url", hop_url)
        edge.cli("endpoint", "upsert", "edge-a", "--type", "tribes_edge", "--url", edge.base_url, "--source", "origin")
        stream = json.loads(origin.cli("stream", "create", SLUG, "--json"))
        key = json.loads(origin.cli("key", "create", SLUG, "--json"))["key"]
        sid = stream["id"]

        hop_log = workdir / "hop.jsonl"
        hop = Helper(["--counting-hop", "--port", str(hop_port), "--upstream", f"{HOST}:{origin.http_port}", "--log", str(hop_log)],
                     workdir / "hop.log")
        helpers.append(hop)
        hop.line(10)
        origin.start("ingest")
        origin.start("http")
        edge.start("http")
        edge.start("edge-fill")
        publishers = Publishers(tools["ffmpeg"], clip_path, workdir / "publisher")
        publishers.start([f"rtmp://{HOST}:{origin.rtmp_port}/live/{key}"])

        def live(node: Node) -> str | None:
            doc = fetch_json(f"{node.base_url}/api/streams/{SLUG}/playback") or {}
            return doc.get("generation_id") if doc.get("status") == "live" and doc.get("master_url") else None

        def alive() -> str | None:
            return origin.problem() or edge.problem() or publishers.problem()

        gid = wait_until(lambda: live(origin), START_TIMEOUT_S, "the stream live at the origin", alive=alive)
        wait_until(lambda: live(edge) == gid, START_TIMEOUT_S, "the generation live at the edge", alive=alive)
        dirs = {"origin": origin.rendition_dir(sid, gid), "edge": edge.rendition_dir(sid, gid)}
        wait_until(lambda: all((d / "index.m3u8").exists() for d in dirs.values()), START_TIMEOUT_S, "both playlists in the spools",
                   alive=alive)
        watch = SpoolWatch(dirs)
        watch.start()
        log(f"live: {sid}/{gid} at the origin and the edge; settling {args.settle:g} s")
        time.sleep(args.settle)
        ctx = {"edge_port": edge.http_port, "base": f"/hls/{sid}/{gid}/{RENDITION}/", "hop_log": hop_log, "watch": watch,
               "roles": {"edge_http": lambda: [edge.procs["http"].pid], "edge_fill": lambda: [edge.procs["edge-fill"].pid],
                         "origin": lambda: [origin.procs["ingest"].pid, origin.procs["http"].pid],
                         "hop": lambda: [hop.proc.pid]}}
        for i, n in enumerate(args.viewer_counts):
            if i:
                time.sleep(args.settle)
            report["rounds"].append(run_round(n, ctx, args, workdir))
            if problem := alive():
                raise SetupError(problem)
        if watch.error:
            report["warnings"].append(f"spool watch: {watch.error}")
    except SetupError as e:
        print(f"edges: setup failed: {e}", file=sys.stderr)
        print(f"edges: work directory kept for inspection (logs, installs): {workdir}", file=sys.stderr)
        return 2
    except Deadline:
        print(f"edges: the whole run took longer than --timeout {args.timeout:g} s; work directory kept: {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edges: interrupted; work directory kept: {workdir}", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping everything is not interrupted
        if watch is not None:
            watch.stopping.set()
        if publishers is not None:
            publishers.stop()
        for n in reversed(nodes):
            for d, code in n.stop().items():
                if code not in (0, None, -15):
                    report["warnings"].append(f"{n.name}'s {d} exited with {code} on SIGTERM: {tail(n.root / f'{d}.log')}")
        for h in helpers:
            h.stop()
        signal.signal(signal.SIGINT, previous_sigint)
    report["goals"] = goals(report["rounds"])
    return finish_report(report, render(report), workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    sys.exit(main())
