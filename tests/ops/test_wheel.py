"""Sender as a new user installs it from a wheel: built from this source tree (an sdist, then a
wheel from the sdist, as `python -m build` does), installed into a fresh virtualenv, and run from
a directory outside the checkout: `sender init`, `sender install --root`, `sender up`. The
installed `sender` finds its unit templates, man pages and reference config as package data,
never in the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
import trio

from sender_cli.commands.install_cmd import unit_names
from tests.daemons.conftest import needs_ffmpeg
from tests.daemons.test_up import free_port
from tests.ops.test_quickstart import stop

REPO = Path(__file__).resolve().parents[2]
# What the wheel must carry from the checkout's top level (the source of truth), and where.
SHIPPED = {
    **{f"units/{p.name}": f"sender_cli/share/units/{p.name}" for p in (REPO / "units").iterdir()},
    **{f"man/{p.name}": f"sender_cli/share/man/{p.name}" for p in (REPO / "man").iterdir()},
    "config/sender.toml": "sender_cli/share/config/sender.toml",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".git").exists() or shutil.which("git") is None, reason="needs the git checkout (its file list)"),
]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-3000:], r.stderr[-3000:])
    return r


def copy_source_tree(dest: Path) -> Path:
    """The files git would commit (tracked, or new and not ignored), as they are in the work
    tree: the build never writes into the shared checkout (build/, egg-info)."""
    names = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for name in filter(None, names.split("\0")):
        src, target = REPO / name, dest / name
        if not src.is_symlink() and not src.exists():
            continue  # deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the wheel, everything the builds printed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_source_tree(tmp / "src")
    dist = tmp / "dist"
    dist.mkdir()
    # Offline: the test extras bring setuptools (the build backend) into this virtualenv.
    sdist = run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))", str(dist)],
                cwd=src)
    with tarfile.open(dist / sdist.stdout.splitlines()[-1]) as tar:
        tar.extractall(tmp / "sdist", filter="data")
    [unpacked] = (tmp / "sdist").iterdir()
    wheel = run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(unpacked)])
    [whl] = dist.glob("sender-*.whl")
    return whl, sdist.stdout + sdist.stderr + wheel.stdout + wheel.stderr


def test_the_build_warns_nothing_and_the_wheel_carries_the_shipped_files(built):
    whl, log = built
    # e.g. `project.license` as a TOML table (SetuptoolsDeprecationWarning, on every install)
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]
    with zipfile.ZipFile(whl) as z:
        for source, packaged in SHIPPED.items():
            assert z.read(packaged) == (REPO / source).read_bytes(), f"{packaged} differs from {source}"
        metadata = z.read("sender-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata.splitlines()


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed. Its dependencies come from this test run's
    virtualenv through a path entry (a .pth line adds the directory without running the .pth
    files in it, so the checkout's editable install stays out)."""
    whl, _ = built
    venv = tmp_path_factory.mktemp("venv") / "v"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", "--no-index", str(whl)])
    site = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "sender-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@needs_ffmpeg
async def test_a_wheel_install_inits_installs_and_runs_outside_the_checkout(venv, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SENDER_CONFIG", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    sender = str(venv / "bin" / "sender")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run([sender, *args], cwd=elsewhere, env=env)

    # The installed package is the wheel's, and the checkout is nowhere on its path.
    where = run([str(venv / "bin" / "python"), "-c", "import sys, sender_cli, daemons; print(sender_cli.__file__); print(daemons.__file__); print(*sys.path, sep='\\n')"],
                cwd=elsewhere, env=env).stdout.splitlines()
    assert all(Path(p).is_relative_to(venv) for p in where[:2]), where[:2]
    assert str(REPO) not in where[2:] and not any(Path(p).resolve() == REPO for p in where[2:] if p)

    # `sender init`, then the daemons on free loopback ports.
    node = tmp_path / "node"
    cli("init", "--dir", str(node))
    config = str(node / "sender.toml")
    rtmp_port, http_port = free_port(), free_port()
    cli("--config", config, "config", "set", "rtmp.listen", f"127.0.0.1:{rtmp_port}")
    cli("--config", config, "config", "set", "http.listen", f"127.0.0.1:{http_port}")

    # `sender install --root`: the units filled from the packaged templates, the packaged man pages.
    root = tmp_path / "root"
    cli("install", "--root", str(root))
    units = root / "usr/lib/systemd/system"
    assert sorted(p.name for p in units.iterdir()) == sorted(unit_names())
    assert f"ExecStart={sender} --config /etc/sender/sender.toml daemon ingest" in (units / "sender-ingest.service").read_text()
    for page in (REPO / "man").iterdir():
        assert (root / f"usr/share/man/man{page.suffix[1:]}" / page.name).read_bytes() == page.read_bytes()

    # `sender up` answers /healthz, and stops cleanly on Ctrl-C.
    up = await trio.lowlevel.open_process([sender, "--config", config, "up"], cwd=elsewhere, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=2) as c:
            with trio.fail_after(30):
                while up.returncode is None:
                    try:
                        if (await c.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass  # not listening yet
                    await trio.sleep(0.1)
        assert up.returncode is None, "sender up exited before it answered /healthz"
    finally:
        code = await stop(up, signal.SIGINT, 20)  # waited for, whatever happened: nothing left running
        err = b""
        while chunk := await up.stderr.receive_some(65536):
            err += chunk
        await up.stderr.aclose()
    assert code == 0, err.decode()[-3000:]
