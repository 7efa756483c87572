"""`sender doctor` on a healthy install and on broken ones, as a real subprocess: the verdict,
the ✔/✘ lines, the fix, the exit status and --json."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from daemons.core import config as config_mod
from daemons.core.store import Store
from daemons.core.store.migrations import MIGRATIONS
from daemons.runtime import checks

SENDER = Path(sys.executable).parent / "sender"


def set_config(config_path: Path, **values) -> None:
    cfg = config_mod.load(config_path)
    for key, value in values.items():
        cfg = cfg.with_value(key.replace("__", "."), value)
    config_mod.write(cfg, config_path)


@pytest.fixture
def healthy(config_path):
    """A fresh install whose ports the kernel picks (tests never hold fixed ports)."""
    set_config(config_path, rtmp__listen="127.0.0.1:0", http__listen="127.0.0.1:0")
    return config_path


def by_name(result) -> dict[str, dict]:
    return {c["name"]: c for c in result.json()["checks"]}


def test_healthy_install(sender, healthy):
    r = sender("doctor", "--json")
    assert r.returncode == 0, r.stdout
    doc = r.json()
    assert doc["ok"] is True
    checks_ = by_name(r)
    expected = {"config", "ffmpeg", "ffmpeg encoders", "spool", "state", "secret", "store", "port rtmp.listen", "port http.listen", "clock", "units"}
    assert expected <= set(checks_)
    for name in expected - {"units", "clock", "spool", "state"}:
        assert checks_[name]["status"] == "ok", checks_[name]
    # Not installed as units: worth saying, not a failure (this is a `sender up` install).
    assert checks_["units"]["status"] in ("ok", "warn") and checks_["units"]["ok"]

    human = sender("doctor")
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].startswith("✔ config") and str(healthy) in lines[0]
    assert all(line[0] in "✔!" for line in lines[:-1]) and lines[-1].startswith("All good")


def test_no_ffmpeg_on_path(sender, healthy, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = sender("doctor", PATH=str(empty))
    assert r.returncode == 1
    line = next(l for l in r.stdout.splitlines() if l.startswith("✘ ffmpeg"))
    assert "'ffmpeg' is not on PATH" in line and "fix: install ffmpeg (`apt install ffmpeg`)" in line
    assert r.stdout.splitlines()[-1] == "1 problem(s) found."


def test_old_ffmpeg_and_missing_encoders(sender, healthy, tmp_path):
    """An ffmpeg that is too old and lacks libx264, for a ladder that transcodes."""
    old = tmp_path / "ffmpeg-4.2"
    old.write_text("#!/bin/sh\ncase \"$2\" in\n -version) echo 'ffmpeg version 4.2.7 Copyright';;\n"
                   " -encoders) printf 'Encoders:\\n ------\\n A....D aac   AAC\\n';;\nesac\n")
    old.chmod(0o755)
    ladder = [{"name": "source", "kind": "source"}, {"name": "480p", "kind": "transcode", "height": 480, "video_bitrate": 1_200_000}]
    set_config(healthy, backend__ffmpeg=str(old), renditions__ladder=ladder)
    r = sender("doctor", "--json")
    assert r.returncode == 1
    c = by_name(r)
    assert c["ffmpeg"]["status"] == "fail" and "4.2.7" in c["ffmpeg"]["detail"] and "5.1" in c["ffmpeg"]["fix"]
    assert c["ffmpeg encoders"]["status"] == "fail" and "libx264" in c["ffmpeg encoders"]["detail"]


def test_the_real_ffmpeg_has_the_transcode_encoders(sender, healthy):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (run .ci/bootstrap --test)")
    set_config(healthy, renditions__ladder=[{"name": "480p", "kind": "transcode", "height": 480, "video_bitrate": 1_200_000}])
    c = by_name(sender("doctor", "--json"))
    assert c["ffmpeg encoders"]["status"] == "ok" and "aac, libx264" in c["ffmpeg encoders"]["detail"]


def test_read_only_spool(sender, healthy, install_dir):
    spool = install_dir / "spool"
    if os.geteuid() != 0:
        spool.chmod(0o555)
        try:
            r = sender("doctor", "--json")
        finally:
            spool.chmod(0o750)
    else:
        # Root writes through any mode: make the spool a read-only mount, in a private mount
        # namespace of the doctor's own (nothing changes outside it).
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only spool")
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && exec "$2" doctor --json'
        proc = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(spool), str(SENDER)],
                              capture_output=True, text=True, env=sender.env(), timeout=60)
        if proc.returncode != 1 and "doctor" not in proc.stdout:
            pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
        from tests.conftest import Completed

        r = Completed([], proc.returncode, proc.stdout, proc.stderr)
    assert r.returncode == 1
    c = by_name(r)["spool"]
    assert c["status"] == "fail" and "is not writable" in c["detail"] and str(spool) in c["detail"]
    assert "chown" in c["fix"] or "read-write" in c["fix"]
    assert by_name(r)["state"]["status"] != "fail"


def test_world_writable_spool(sender, healthy, install_dir):
    (install_dir / "spool").chmod(0o777)
    r = sender("doctor", "--json")
    assert r.returncode == 1
    c = by_name(r)["spool"]
    assert "writable by every user" in c["detail"] and c["fix"] == f"`chmod 750 {install_dir / 'spool'}`"


def test_busy_port_held_by_another_process(sender, healthy):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        set_config(healthy, rtmp__listen=f"127.0.0.1:{port}")
        r = sender("doctor", "--json")
    assert r.returncode == 1
    c = by_name(r)["port rtmp.listen"]
    assert c["status"] == "fail" and f"127.0.0.1:{port} is in use by pid {os.getpid()}" in c["detail"]
    assert "sender config set rtmp.listen HOST:PORT" in c["fix"]


async def test_port_held_by_our_own_daemon_is_fine(sender, healthy, tmp_path):
    import trio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    set_config(healthy, http__listen=f"127.0.0.1:{port}")
    proc = await trio.lowlevel.open_process([str(SENDER), "daemon", "http"], env=sender.env(), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(20):
            while checks._try_bind("127.0.0.1", port) is None:  # until the daemon has bound it
                await trio.sleep(0.05)
        r = await trio.to_thread.run_sync(lambda: sender("doctor", "--json"))
        c = by_name(r)["port http.listen"]
        assert c["status"] == "ok" and f"held by sender-http (pid {proc.pid})" in c["detail"], c
    finally:
        proc.terminate()
        with trio.fail_after(15):
            await proc.wait()


def test_corrupt_config(sender, config_path):
    config_path.write_text("[rtmp\nlisten = ")
    r = sender("doctor")
    assert r.returncode == 1
    first = r.stdout.splitlines()[0]
    assert first.startswith("✘ config") and "not valid TOML" in first and "fix: edit" in first
    # Without a config nothing else can be checked, but the clock still is; no traceback.
    assert [l[0] for l in r.stdout.splitlines()[:-1]] == ["✘", "✔"] and "Traceback" not in r.stderr

    config_path.write_text('[rtmp]\nlisten = "nowhere"\n')
    c = by_name(sender("doctor", "--json"))["config"]
    assert "rtmp.listen" in c["detail"] and "HOST:PORT" in c["detail"]


def test_missing_config(sender_noinstall, tmp_path):
    r = sender_noinstall("--config", str(tmp_path / "none.toml"), "doctor", "--json")
    assert r.returncode == 1
    c = r.json()["checks"][0]
    assert c["name"] == "config" and "no config at" in c["detail"] and "sender init" in c["fix"]


def test_store_not_migrated_and_secret_exposed(sender, healthy, install_dir):
    db = install_dir / "state" / "sender.db"
    for p in install_dir.joinpath("state").glob("sender.db*"):
        p.unlink()
    last = [m.name for m in MIGRATIONS._migrations][-1]
    with Store.open(db, migrate=False) as store:
        store.migrate(stop_before=last)
    (install_dir / "state" / "secret").chmod(0o644)
    c = by_name(sender("doctor", "--json"))
    assert c["store"]["status"] == "fail" and last in c["store"]["detail"] and "migrates" in c["store"]["fix"]
    assert c["secret"]["status"] == "fail" and "chmod 600" in c["secret"]["fix"]


def test_clock_check():
    assert checks.check_clock(now=1_000_000_000).status == checks.FAIL  # 2001
    assert checks.check_clock().ok
