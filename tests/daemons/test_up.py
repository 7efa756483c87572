"""`sender up` as a user runs it: a real process tree, a real ffmpeg publisher, Ctrl-C to stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from daemons.core.stats import read_stats
from tests.daemons.conftest import FFPROBE, ffmpeg_publish_cmd, needs_ffmpeg, run_publisher, wait_for

SENDER = str(Path(sys.executable).parent / "sender")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sender(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SENDER, *args], env=env, capture_output=True, text=True, timeout=60)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def new_install(d) -> tuple[dict, int, int]:
    """`sender init` in d, listening on free loopback ports: (environment, RTMP port, HTTP port)."""
    env = {**os.environ, "SENDER_CONFIG": str(d / "sender.toml")}
    port, http_port = free_port(), free_port()
    assert sender(env, "init", "--dir", str(d)).returncode == 0
    assert sender(env, "config", "set", "rtmp.listen", f"127.0.0.1:{port}").returncode == 0
    assert sender(env, "config", "set", "http.listen", f"127.0.0.1:{http_port}").returncode == 0
    return env, port, http_port


@needs_ffmpeg
async def test_sender_up_accepts_a_publisher_and_refuses_a_wrong_key(tmp_path):
    d = tmp_path / "var"
    env, port, http_port = new_install(d)
    assert sender(env, "stream", "create", "demo").returncode == 0
    assert sender(env, "stream", "create", "hidden", "--visibility", "private").returncode == 0
    key = json.loads(sender(env, "key", "create", "demo", "--json").stdout)["key"]

    up = await trio.lowlevel.open_process([SENDER, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await wait_for(lambda: port_open(port) and port_open(http_port), timeout=20)
        async with trio.open_nursery() as n:
            result = {}

            async def publish():
                result["p"] = await run_publisher(ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{port}/live/{key}", 6))

            n.start_soon(publish)
            # `sender stream status` sees the publisher through the ingest daemon's stats.
            await wait_for(lambda: (read_stats(d / "state", "ingest") or {}).get("publishers"), timeout=10)
            # ... and the generation goes live once the packager has its first part.
            status = await wait_for(lambda: (st := json.loads(sender(env, "stream", "status", "demo", "--json").stdout))["generation"]["status"] == "live" and st, timeout=10)
            assert status["publisher"]["remote"].startswith("127.0.0.1:")
            assert status["publisher"]["video_codec"].startswith("avc1.")
            running = json.loads(sender(env, "status", "--json").stdout)["daemons"]
            assert {"ingest", "http-0"} <= set(running)
            # The HTTP daemon serves it: the playback API's master URL plays in ffprobe.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as c:
                info = (await c.get("/api/streams/demo/playback")).json()
                assert info["status"] == "live" and info["master_url"]
                media_url = info["master_url"].replace("master.m3u8", "source/index.m3u8")
                await wait_for_async(lambda: _has_segment(c, media_url), timeout=10)
                probe = await trio.run_process([FFPROBE, "-v", "error", "-show_streams", "-of", "json", info["master_url"]],
                                               capture_stdout=True, capture_stderr=True)
                kinds = {s["codec_type"] for s in json.loads(probe.stdout)["streams"]}
                assert kinds == {"video", "audio"}
                # A private stream answers nothing without a token.
                assert (await c.get("/api/streams/hidden/playback")).status_code == 403
        assert result["p"].returncode == 0, result["p"].stderr

        wrong = await run_publisher(ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{port}/live/{key[:-4]}XXXX", 1))
        assert wrong.returncode != 0
        assert b"invalid stream key" in wrong.stderr

        # The control plane's flow over the management API, against the same running daemons.
        token = json.loads(sender(env, "token", "create", "--label", "legion", "--json").stdout)["token"]
        await _legion_flow(port, http_port, token)

        # `sender stream stop` ends the generation; `status` reports it ended.
        assert sender(env, "stream", "stop", "demo").returncode == 0
        stopped = json.loads(sender(env, "stream", "status", "demo", "--json").stdout)
        assert stopped["status"] == "ended" and not stopped["active"]
    finally:
        up.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await up.wait()
        err = await _read_all(up.stderr)
    assert code == 0, err
    assert key not in err  # keys are never logged
    assert "publish refused: bad stream key" in err


async def _legion_flow(rtmp_port: int, http_port: int, token: str) -> None:
    """create stream → create key → start → publish → live → playable → stop → ended."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}) as c:
        async def call(method: str, **params):
            r = await c.post("/api/admin/management", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
            assert r.status_code == 200, r.text
            return r.json()["result"]

        await call("stream.create", slug="legion", auto_start=False)
        key = (await call("stream_key.create", stream="legion"))["key"]
        generation = (await call("stream.start", stream="legion"))["generation"]
        async with trio.open_nursery() as n:
            n.start_soon(run_publisher, ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", 4))

            async def live():
                return (await call("stream.status", stream="legion"))["status"] == "live"

            await wait_for_async(live, timeout=15)
            info = (await c.get("/api/streams/legion/playback")).json()
            assert info["generation_id"] == generation["id"] and info["master_url"]
            assert (await c.get(info["master_url"])).status_code == 200
        stopped = await call("stream.stop", stream="legion")
        assert stopped["generation"]["id"] == generation["id"]
        assert (await call("stream.status", stream="legion"))["status"] == "ended"


async def _has_segment(client: httpx.AsyncClient, url: str) -> bool:
    return "#EXTINF" in (await client.get(url)).text


async def wait_for_async(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.1)


async def _read_all(stream) -> str:
    chunks = []
    while chunk := await stream.receive_some(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


@needs_ffmpeg
async def test_sender_up_demo_is_live_within_ten_seconds(tmp_path):
    d = tmp_path / "var"
    env, port, http_port = new_install(d)
    up = await trio.lowlevel.open_process([SENDER, "up", "--demo"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as c:
            async def live_playlist() -> bool:
                try:
                    info = (await c.get("/api/streams/demo/playback")).json()
                except (httpx.TransportError, ValueError):
                    return False  # not up yet
                if not info.get("master_url"):
                    return False
                media = info["master_url"].replace("master.m3u8", "source/index.m3u8")
                return "#EXT-X-PART:" in (await c.get(media)).text

            with trio.fail_after(10):  # from `sender up --demo` to a live LL-HLS playlist
                await wait_for_async(live_playlist, timeout=10)
        # `sender status --watch` shows the demo publisher live, and ends cleanly on Ctrl-C (even
        # when this run started with SIGINT ignored: tests/ops/test_status_watch.py).
        watch = await trio.lowlevel.open_process([SENDER, "status", "--watch"], env={**env, "COLUMNS": "200"},
                                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            seen = b""
            with trio.fail_after(15):
                # the publisher with its bitrate, and this node's endpoint health from sender-snapshot
                while b"127.0.0.1:" not in seen or b"Mb/s" not in seen or b"healthy" not in seen:
                    seen += await watch.stdout.receive_some(65536)
            watch.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                assert await watch.wait() == 0
            assert b"demo" in seen and b"ingest" in seen
        finally:
            # Never left running: its process and pipe, collected during a later test, would
            # fail that one with a ResourceWarning.
            if watch.returncode is None:
                watch.kill()
                await watch.wait()
            await watch.stdout.aclose()
    finally:
        up.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await up.wait()
        err = await _read_all(up.stderr)
    assert code == 0, err
    assert f"rtmp://127.0.0.1:{port}/live" in err and "/api/streams/demo/playback" in err
    assert f"http://127.0.0.1:{http_port}/watch/demo" in err
