"""The README's quick start works as written, right after its own run command: its commands are
read from README.md and run in order, from a directory laid out like the checkout (`.venv`,
`var/`), against a running `sender up --demo`. Only what cannot be the same in a test changes:
the ports (free loopback ports instead of 1935 and 8080), the key (the one `sender key create`
printed), and ffplay, which has no screen here (ffprobe reads the same URL)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from tests.daemons.conftest import needs_ffmpeg, wait_for
from tests.daemons.test_up import free_port, port_open

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
pytestmark = [pytest.mark.slow, needs_ffmpeg]


def section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def shell_lines(markdown: str) -> list[str]:
    """The commands of the fenced sh blocks, in order; continued lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", markdown, re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


async def sh(command: str, cwd: Path, env: dict) -> str:
    done = await trio.run_process(["bash", "-c", command], cwd=cwd, env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, (command, done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
    return done.stdout.decode()


async def stop(proc: trio.Process, sig: int, timeout: float) -> int:
    """Signal `proc`, then wait for it (killed after `timeout`): a trio Process never waited for
    leaves its pidfd open, and the ResourceWarning ("unclosed file") fails whichever later test
    is running when it is collected."""
    proc.send_signal(sig)
    with trio.move_on_after(timeout):
        return await proc.wait()
    proc.kill()
    return await proc.wait()


@pytest.fixture
def home():
    """Where a person who followed "Run it" stands. Short (not under pytest's tmp dirs): the
    daemons' sockets under var/state must fit AF_UNIX's 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="sender-qs-") as d:
        yield Path(d)


async def test_the_quick_start_works_as_written_after_the_run_command(home, tmp_path):
    (home / ".venv").symlink_to(VENV)
    env = {k: v for k, v in os.environ.items() if k != "SENDER_CONFIG"}
    rtmp_port, http_port = free_port(), free_port()

    # "Run it": its command after the bootstrap, on free ports, with sender up in the background.
    [run] = shell_lines(section("Run it"))
    init, up_cmd = run.removeprefix("bash .ci/bootstrap && ").rsplit(" && ", 1)
    assert up_cmd == ".venv/bin/sender --config var/sender.toml up --demo"
    await sh(init, home, env)
    for key, port in (("rtmp.listen", rtmp_port), ("http.listen", http_port)):
        await sh(f".venv/bin/sender --config var/sender.toml config set {key} 127.0.0.1:{port}", home, env)
    with open(tmp_path / "up.log", "wb") as up_log:
        up = await trio.lowlevel.open_process(["bash", "-c", f"exec {up_cmd}"], cwd=home, env=env,
                                              stdout=subprocess.DEVNULL, stderr=up_log)
    publisher = None
    try:
        await wait_for(lambda: port_open(rtmp_port) and port_open(http_port), timeout=30)

        # The quick start, in order.
        steps = shell_lines(section("Five-minute quick start"))
        text = "\n".join(steps)
        for written in ("rtmp://127.0.0.1/live/KEY", "http://127.0.0.1:8080/", "ffplay "):
            assert written in text, f"the README no longer says {written!r}: update this test"
        exports: list[str] = []
        outputs: dict[str, str] = {}
        key = None
        slug = None
        for step in steps:
            command = step.replace("http://127.0.0.1:8080/", f"http://127.0.0.1:{http_port}/")
            if command.startswith("export "):
                exports.append(command)
                continue
            if command.startswith("ffmpeg "):
                assert key, "no key printed before the publisher"
                command = command.replace("rtmp://127.0.0.1/live/KEY", f"rtmp://127.0.0.1:{rtmp_port}/live/{key}")
                with open(tmp_path / "ffmpeg.log", "wb") as log:
                    publisher = await trio.lowlevel.open_process(["bash", "-c", f"exec {command}"], cwd=home, env=env,
                                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
                # "A few seconds later the stream is live": wait for it as a person would.
                await wait_until_live(home, env, exports, slug, publisher, tmp_path)
                continue
            if command.startswith("ffplay "):
                command = "ffprobe -v error -rw_timeout 10000000 -show_entries stream=codec_type -of csv=p=0 " + command.removeprefix("ffplay ")
            out = await sh("\n".join([*exports, command]), home, env)
            outputs[step] = out
            if match := re.search(r"stream create (\S+)", command):
                slug = match.group(1)
            if "key create" in command:
                key = out.split("(shown once, store it now):", 1)[1].split()[0]

        assert slug and slug != "demo"  # `sender up --demo` already has `demo`, with its publisher
        status = next(out for step, out in outputs.items() if "stream status" in step)
        assert "live" in status and "127.0.0.1:" in status, status  # the generation and the publisher
        playback = json.loads(next(out for step, out in outputs.items() if step.startswith("curl ")))
        assert playback["status"] == "live" and playback["master_url"]
        probe = next(out for step, out in outputs.items() if step.startswith("ffplay "))
        assert set(probe.split()) == {"video", "audio"}, probe
        # and the demo still plays beside it
        demo = json.loads(await sh(f"curl -s http://127.0.0.1:{http_port}/api/streams/demo/playback", home, env))
        assert demo["status"] == "live"
    finally:
        if publisher is not None:
            await stop(publisher, signal.SIGTERM, 10)
        code = await stop(up, signal.SIGINT, 20)
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]


async def wait_until_live(home: Path, env: dict, exports: list[str], slug: str, publisher: trio.Process, logs: Path) -> None:
    with trio.fail_after(30):
        while True:
            assert publisher.returncode is None, ((logs / "ffmpeg.log").read_text()[-2000:], (logs / "up.log").read_text()[-3000:])
            out = await sh("\n".join([*exports, f".venv/bin/sender stream status {slug} --json"]), home, env)
            generation = json.loads(out).get("generation") or {}
            # "A few seconds later": live, and its first whole segment written. Live comes with the
            # first part (LL-HLS players start there); ffplay/ffprobe (ffmpeg 5.1) play whole
            # segments only and find no stream in a playlist that has none yet.
            if generation.get("status") == "live" and _has_a_segment(home, generation):
                return
            await trio.sleep(0.2)


def _has_a_segment(home: Path, generation: dict) -> bool:
    playlists = (home / "var").rglob(f"{generation['id']}/source/index.m3u8")
    return any("#EXTINF" in p.read_text() for p in playlists)
