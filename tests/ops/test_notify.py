"""sd_notify as systemd sees it: each daemon, a real subprocess, sends READY=1 on a real AF_UNIX
datagram socket once it listens, then WATCHDOG=1 pings, then STOPPING=1 on SIGTERM and exits 0.
And a daemon whose startup checks fail refuses to start: one log line, exit 1, no READY.
sender-snapshot and sender-edge-fill listen on nothing: their READY=1 comes after their first
round (collection, discovery), when their stats file exists."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from daemons.core import config as config_mod
from sender_cli.commands.daemon import DAEMONS

SENDER = Path(sys.executable).parent / "sender"
LISTEN_KEY = {"ingest": "rtmp.listen", "http": "http.listen", "snapshot": None, "edge-fill": None}
WATCHDOG_USEC = 200_000  # pings every 0.1 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
async def notify_socket():
    """A datagram socket like systemd's /run/systemd/notify (a short path: sun_path is 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sd-") as d:
        path = f"{d}/notify"
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            await sock.bind(path)
            yield sock, path


async def run_daemon(name: str, env: dict, notify_path: str, sock) -> tuple[list[str], int, str]:
    """Start `sender daemon NAME` with NOTIFY_SOCKET; return the messages until it exited."""
    cfg = config_mod.load(env["SENDER_CONFIG"])
    port = int(cfg[LISTEN_KEY[name]].rsplit(":", 1)[1]) if LISTEN_KEY[name] else None
    messages: list[str] = []
    proc = await trio.lowlevel.open_process(
        [str(SENDER), "daemon", name],
        env={**env, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        with trio.fail_after(20):
            while not any(m.startswith("READY=1") for m in messages):
                messages.append((await sock.recv(4096)).decode())
            if port is not None:
                assert accepts(port), f"READY=1 before sender-{name} listens on {port}"
            else:
                assert (Path(cfg["node.state_dir"]) / "stats" / f"{name}.json").exists(), f"READY=1 before sender-{name} collected"
            while sum(m == "WATCHDOG=1" for m in messages) < 3:
                messages.append((await sock.recv(4096)).decode())
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in messages:
                messages.append((await sock.recv(4096)).decode())
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = b""
    while chunk := await proc.stderr.receive_some(65536):
        err += chunk
    await proc.stderr.aclose()
    return messages, code, err.decode()


@pytest.mark.parametrize("name", sorted(set(DAEMONS) & set(LISTEN_KEY)))
async def test_daemon_notifies_ready_watchdog_and_stopping(name, sender, config_path, install_dir, notify_socket):
    sock, path = notify_socket
    spool = install_dir / "new-spool"  # missing: the daemon's startup checks create it, mode 0750
    cfg = config_mod.load(config_path).with_value("rtmp.listen", f"127.0.0.1:{free_port()}").with_value("http.listen", f"127.0.0.1:{free_port()}")
    config_mod.write(cfg.with_value("spool.root", str(spool)), config_path)
    messages, code, err = await run_daemon(name, sender.env(), path, sock)
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert ready == "READY=1\nSTATUS=running"
    assert messages.index(ready) < messages.index("WATCHDOG=1") < messages.index("STOPPING=1")
    assert code == 0, err
    assert "stopping signal=SIGTERM" in err and "stopped" in err
    assert spool.is_dir() and spool.stat().st_mode & 0o777 == 0o750


def test_every_existing_daemon_has_a_notify_test():
    """When edge-fill or snapshot lands in DAEMONS, it needs its listen key here (or its own test)."""
    assert set(DAEMONS) <= set(LISTEN_KEY), f"no notify test for {set(DAEMONS) - set(LISTEN_KEY)}"


@pytest.mark.parametrize(
    "name, change, says",
    [
        ("ingest", {"backend.ffmpeg": "/nonexistent/ffmpeg"}, "backend.ffmpeg: '/nonexistent/ffmpeg' is not executable"),
        ("http", "world-writable spool", "is writable by every user"),
        ("http", "no secret", "install secret"),
        ("snapshot", {"control_plane.report_url": "http://127.0.0.1:9/reports"}, "no signing key file is set"),
        ("edge-fill", {"distribution.key_file": "/nonexistent/distribution.key"}, "cannot read the distribution key"),
    ],
)
async def test_daemon_refuses_to_start_when_a_check_fails(name, change, says, sender, config_path, install_dir, notify_socket):
    sock, path = notify_socket
    cfg = config_mod.load(config_path).with_value("rtmp.listen", "127.0.0.1:0").with_value("http.listen", "127.0.0.1:0")
    if isinstance(change, dict):
        for k, v in change.items():
            cfg = cfg.with_value(k, v)
    elif change == "world-writable spool":
        (install_dir / "spool").chmod(0o777)
    else:
        (install_dir / "state" / "secret").unlink()
    config_mod.write(cfg, config_path)
    r = await trio.to_thread.run_sync(lambda: sender("daemon", name))
    with socket.socket(fileno=os.dup(sock.fileno())) as raw, pytest.raises(BlockingIOError):
        raw.recv(4096, socket.MSG_DONTWAIT)  # it never said READY=1 (nor anything)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"sender.{name}: refusing to start: " in lines[0] and says in lines[0] and "(fix: " in lines[0]
