"""`sender up` supervises like the units' Restart=on-failure, and only one runs a node.

Fault drills with real daemons (issue 14): a daemon killed from outside (SIGTERM, SIGKILL) comes
back with a new pid while the others keep running and HTTP keeps answering; `sender status`
counts the restarts; Ctrl-C stops everything and `sender up` exits 0. A second `sender up` (or
one beside daemons already running) refuses in one line before it starts or changes anything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from daemons.core.stats import read_fresh_stats
from sender_cli.commands.daemon import Backoff
from tests.daemons.conftest import needs_ffmpeg, wait_for
from tests.daemons.test_up import SENDER, new_install, port_open, sender, wait_for_async

DAEMON_STATS = ("ingest", "http-0", "edge-fill", "snapshot")


class RunningUp:
    """`sender up` as a user runs it, its stderr drained as it comes (the daemons write there too;
    an unread pipe would stall them) into `err`."""

    def __init__(self, proc: trio.Process, state_dir: Path):
        self.proc = proc
        self.state_dir = state_dir
        self.err = b""

    @property
    def stats(self) -> dict:
        """`sender up`'s own stats: each daemon's pid, restarts and last exit."""
        return read_fresh_stats(self.state_dir, "up") or {}

    def pid_of(self, name: str) -> int | None:
        return ((self.stats.get("daemons") or {}).get(name) or {}).get("pid")

    def text(self) -> str:
        return self.err.decode(errors="replace")

    async def drain(self) -> None:
        while chunk := await self.proc.stderr.receive_some(65536):
            self.err += chunk

    async def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        with trio.fail_after(25):
            return await self.proc.wait()


async def start_up(nursery: trio.Nursery, env: dict, state_dir: Path, *args: str) -> RunningUp:
    proc = await trio.lowlevel.open_process([SENDER, "up", *args], env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    up = RunningUp(proc, state_dir)
    nursery.start_soon(up.drain)
    try:
        # Every daemon writing its stats, and `sender up`'s own (written each second) naming each
        # one's pid: a daemon may write its first stats before `sender up` writes its next.
        await wait_for(lambda: all(read_fresh_stats(state_dir, n) for n in DAEMON_STATS)
                       and all(up.pid_of(n) for n in ("ingest", "http", "edge-fill", "snapshot")), timeout=40)
    except BaseException:
        await up.interrupt()
        raise
    return up


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


async def poll_healthz(http_port: int, failures: list[str], done: trio.Event) -> None:
    """GET /healthz every 0.1 s until `done`; every answer that is not 200 is a failure."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=2) as c:
        while not done.is_set():
            try:
                r = await c.get("/healthz")
                if r.status_code != 200:
                    failures.append(f"{r.status_code} at {trio.current_time():.1f}")
            except httpx.TransportError as e:
                failures.append(f"{type(e).__name__} at {trio.current_time():.1f}")
            await trio.sleep(0.1)


@needs_ffmpeg  # sender-ingest refuses to start without it
async def test_a_daemon_killed_from_outside_comes_back_and_the_others_keep_serving(tmp_path):
    d = tmp_path / "var"
    env, rtmp_port, http_port = new_install(d)
    async with trio.open_nursery() as nursery:
        up = await start_up(nursery, env, d / "state")
        try:
            first = {name: up.pid_of(name) for name in ("ingest", "http", "edge-fill", "snapshot")}
            failures: list[str] = []
            done = trio.Event()
            nursery.start_soon(poll_healthz, http_port, failures, done)

            async def comes_back(name: str, old_pid: int, restarts: int) -> int:
                def back():
                    pid = up.pid_of(name)
                    stats = up.stats["daemons"][name]
                    return pid and pid != old_pid and alive(pid) and stats["restarts"] == restarts and pid
                new = await wait_for(back, timeout=20)
                assert not alive(old_pid)
                return new

            # kill -TERM: it stops cleanly (status 0), and is started again all the same.
            os.kill(first["ingest"], signal.SIGTERM)
            second = await comes_back("ingest", first["ingest"], 1)
            await wait_for(lambda: port_open(rtmp_port), timeout=20)
            assert up.stats["daemons"]["ingest"]["last_exit"]["code"] == 0
            # kill -9
            os.kill(second, signal.SIGKILL)
            third = await comes_back("ingest", second, 2)
            await wait_for(lambda: port_open(rtmp_port) and read_fresh_stats(d / "state", "ingest")["pid"] == third, timeout=20)
            done.set()
            assert failures == []  # HTTP answered throughout
            assert {n: up.pid_of(n) for n in ("http", "edge-fill", "snapshot")} == {n: first[n] for n in ("http", "edge-fill", "snapshot")}

            # `sender status` counts the restarts and says how the last one ended.
            status = json.loads(sender(env, "status", "--json").stdout)
            assert status["daemons"]["ingest"]["pid"] == third
            assert status["daemons"]["ingest"]["restarts"] == 2
            assert status["daemons"]["ingest"]["last_exit"]["description"] == "killed by SIGKILL"
            assert status["sender_up"]["pid"] == up.proc.pid and status["sender_up"]["restarts"] == 2
            assert "up" not in status["daemons"]
            assert "restarted 2×" in sender(env, "status").stdout

            # The HTTP daemon itself, killed: back on its port.
            os.kill(first["http"], signal.SIGKILL)
            new_http = await comes_back("http", first["http"], 1)
            async with httpx.AsyncClient() as c:
                async def healthy() -> bool:
                    try:
                        return (await c.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200
                    except httpx.TransportError:
                        return False
                await wait_for_async(healthy, timeout=20)
            assert read_fresh_stats(d / "state", "http-0") is not None
        finally:
            code = await up.interrupt()
    err = up.text()
    assert code == 0, err
    assert re.search(r"sender-ingest exited with status 0; restarting it .*restarts=1", err), err
    assert re.search(r"sender-ingest killed by SIGKILL; restarting it .*restarts=2", err), err
    assert "sender-http killed by SIGKILL; restarting it" in err and "sender-ingest is back" in err
    assert "Traceback" not in err
    # Everything stopped with it, and its stats file is gone (`sender status`: not running).
    assert not any(alive(pid) for pid in (third, new_http, first["edge-fill"], first["snapshot"]))
    assert read_fresh_stats(d / "state", "up") is None
    assert json.loads(sender(env, "status", "--json").stdout)["sender_up"] is None


# A subreaper (PR_SET_CHILD_SUBREAPER) runs `sender up`, kills it once its daemons run, and
# reaps the orphaned daemons itself: their exit statuses, which nobody else could see.
SUBREAPER = """
import ctypes, json, os, signal, subprocess, sys, time
from daemons.core.stats import read_fresh_stats
ctypes.CDLL(None).prctl(36, 1)
state_dir = sys.argv[1]
up = subprocess.Popen([sys.argv[2], "up"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 40
while not all(read_fresh_stats(state_dir, n) for n in %r) and time.monotonic() < deadline:
    time.sleep(0.1)
daemons = {n: d["pid"] for n, d in read_fresh_stats(state_dir, "up")["daemons"].items()}
os.kill(up.pid, signal.SIGKILL)
statuses = {}
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    statuses[pid] = os.waitstatus_to_exitcode(status)
print(json.dumps({"up": statuses.pop(up.pid), "daemons": {n: statuses.get(pid) for n, pid in daemons.items()}}))
""" % (DAEMON_STATS,)


@needs_ffmpeg
async def test_the_daemons_stop_cleanly_when_sender_up_is_killed(tmp_path):
    """kill -9 of `sender up` leaves nothing running: each daemon gets SIGTERM from the kernel
    (its death signal) and stops as if asked, status 0, though its notify socket went with
    `sender up` and the kernel repeats the death signal as each of the dead parent's threads
    goes (a repeat used to end a daemon halfway through its stop, or during Python's exit)."""
    d = tmp_path / "var"
    env, rtmp_port, http_port = new_install(d)
    with trio.fail_after(90):
        result = await trio.run_process([sys.executable, "-c", SUBREAPER, str(d / "state"), SENDER], env=env,
                                        cwd=Path(__file__).parents[2], stdin=subprocess.DEVNULL,
                                        capture_stdout=True, capture_stderr=True, check=False)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert json.loads(result.stdout) == {"up": -signal.SIGKILL, "daemons": dict.fromkeys(("ingest", "http", "edge-fill", "snapshot"), 0)}, err
    assert all(f"sender.{name}: stopped" in err for name in ("ingest", "http", "edge-fill", "snapshot")), err
    assert "Traceback" not in err
    assert not port_open(rtmp_port) and not port_open(http_port)


@needs_ffmpeg
async def test_a_daemon_that_cannot_start_stops_sender_up_with_its_reason(tmp_path):
    d = tmp_path / "var"
    env, _, _ = new_install(d)
    assert sender(env, "config", "set", "backend.ffmpeg", str(tmp_path / "no-ffmpeg")).returncode == 0
    with trio.fail_after(60):
        result = await trio.run_process([SENDER, "up"], env=env, stdin=subprocess.DEVNULL, capture_stdout=True,
                                        capture_stderr=True, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "sender.ingest: refusing to start: backend.ffmpeg:" in err
    assert "error: sender-ingest exited with status 1 before it was ready" in err
    assert "restarting" not in err and "Traceback" not in err


def playlist_progress(text: str) -> tuple[int, int]:
    """The newest part (msn, part) a live LL-HLS playlist lists."""
    return max((int(m), int(p)) for m, p in re.findall(r"(\d+)\.(\d+)\.m4s", text))


@needs_ffmpeg
async def test_a_second_sender_up_refuses_in_one_line_and_leaves_the_node_alone(tmp_path):
    d = tmp_path / "var"
    env, rtmp_port, http_port = new_install(d)
    async with trio.open_nursery() as nursery, httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as c:
        up = await start_up(nursery, env, d / "state", "--demo")
        try:
            async def playback() -> dict:
                info = (await c.get("/api/streams/demo/playback")).json()
                media = info["master_url"].replace("master.m3u8", "source/index.m3u8") if info.get("master_url") else None
                text = (await c.get(media)).text if media else ""
                return {"generation": info.get("generation_id"), "progress": playlist_progress(text) if ".m4s" in text else None}

            async def live() -> bool:
                return (await playback())["progress"] is not None

            await wait_for_async(live, timeout=20)
            before = await playback()
            keys = json.loads(sender(env, "key", "list", "demo", "--json").stdout)

            with trio.fail_after(60):
                second = await trio.run_process([SENDER, "up", "--demo"], env=env, stdin=subprocess.DEVNULL,
                                                capture_stdout=True, capture_stderr=True, check=False)
            lines = second.stderr.decode().strip().splitlines()
            assert second.returncode == 1
            assert len(lines) == 1, lines
            assert f"another `sender up` (pid {up.proc.pid}) already runs this node" in lines[0]

            # The running node is untouched: same generation, its playlist advancing, its demo
            # key not revoked by the second one's --demo, and nothing resumed by a second ingest.
            async def advanced() -> bool:
                now = await playback()
                assert now["generation"] == before["generation"]
                return now["progress"] > before["progress"]

            await wait_for_async(advanced, timeout=10)
            assert json.loads(sender(env, "key", "list", "demo", "--json").stdout) == keys

            # A daemon started by hand beside it refuses in one line too, naming who holds its port.
            ingest_pid = up.pid_of("ingest")
            by_hand = sender(env, "daemon", "ingest")
            lines = by_hand.stderr.strip().splitlines()
            assert by_hand.returncode == 1
            assert len(lines) == 1, lines
            assert "refusing to start: port rtmp.listen:" in lines[0] and f"sender-ingest (pid {ingest_pid})" in lines[0]
        finally:
            code = await up.interrupt()
    assert code == 0, up.text()
    assert up.text().count("resuming active generation") == 0


async def test_sender_up_beside_running_daemons_refuses_before_starting_any(tmp_path):
    """As when the systemd units run the node: its ports are held by Sender daemons, no lock."""
    d = tmp_path / "var"
    env, _, http_port = new_install(d)
    http = await trio.lowlevel.open_process([SENDER, "daemon", "http"], env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open(http_port), timeout=20)
        with trio.fail_after(60):
            result = await trio.run_process([SENDER, "up"], env=env, stdin=subprocess.DEVNULL, capture_stdout=True,
                                            capture_stderr=True, check=False)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1
        assert lines == ["error: the sender-* units (or a `sender up` of another install) already run this node: "
                         f"127.0.0.1:{http_port} is in use by sender-http (pid {http.pid})"]
        assert read_fresh_stats(d / "state", "ingest") is None  # no daemon was started
    finally:
        http.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await http.wait() == 0


async def test_sender_up_names_the_program_holding_its_port(tmp_path):
    d = tmp_path / "var"
    env, rtmp_port, _ = new_install(d)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", rtmp_port))
        holder.listen()
        with trio.fail_after(60):
            result = await trio.run_process([SENDER, "up"], env=env, stdin=subprocess.DEVNULL, capture_stdout=True,
                                            capture_stderr=True, check=False)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot start: 127.0.0.1:{rtmp_port} is in use by pid {os.getpid()} ("), lines


async def test_a_worker_that_loses_the_race_for_its_port_says_so_in_one_line(tmp_path):
    """The bind itself failing (the port taken after the start checks) is one line too, not an
    exception group. An extra HTTP worker skips the port check (it shares worker 0's socket)."""
    d = tmp_path / "var"
    env, _, http_port = new_install(d)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", http_port))
        holder.listen()
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, "-m", "daemons.http.main", env["SENDER_CONFIG"]],
                env={**env, "SENDER_HTTP_WORKER": f"1:{http_port}"}, stdin=subprocess.DEVNULL,
                capture_stdout=True, capture_stderr=True, check=False, cwd=Path(__file__).parents[2])
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, lines
    assert f"refusing to start: port http.listen: 127.0.0.1:{http_port} is in use by pid {os.getpid()}" in lines[0]


def test_restart_delays_double_up_to_the_longest_and_reset_after_a_stable_run():
    backoff = Backoff(first_s=0.5, longest_s=30, stable_s=60)
    assert [backoff.after_exit(1) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_exit(60) == 0.5
    assert backoff.after_exit(59) == 1
