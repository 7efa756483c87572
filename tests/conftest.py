"""Fixtures shared by the whole suite: a real install in a temp directory, its store, and ways to
run the `sender` command (in process through typer's runner, and as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemons.core.install import Install, init
from daemons.core.store import Store

SENDER = Path(sys.executable).parent / "sender"


@pytest.fixture
def install_dir(tmp_path: Path) -> Path:
    """A fresh `sender init --dir` layout: D/sender.toml, D/state (store, secret), D/spool."""
    directory = tmp_path / "var"
    init(directory=directory)
    return directory


@pytest.fixture
def config_path(install_dir: Path) -> Path:
    return install_dir / "sender.toml"


@pytest.fixture
def install(config_path: Path) -> Install:
    return Install.load(config_path)


@pytest.fixture
def secret(install: Install) -> bytes:
    return install.secret()


@pytest.fixture
def store(install: Install):
    s = install.open_store()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def bare_store(tmp_path: Path):
    """A migrated store without an install around it."""
    s = Store.open(tmp_path / "bare.db")
    try:
        yield s
    finally:
        s.close()


@dataclass
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class SenderProcess:
    """Runs the installed `sender` console script as a real subprocess."""

    def __init__(self, config: Path | None, cwd: Path):
        self.config = config
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SENDER_CONFIG" and not k.startswith("_SENDER")}
        if self.config is not None:
            env["SENDER_CONFIG"] = str(self.config)
        env.update(extra)
        return env

    def popen(self, *args: str, **extra_env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(SENDER), *args],
            cwd=self.cwd,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, timeout: float = 30, **extra_env: str) -> Completed:
        proc = subprocess.run(
            [str(SENDER), *args],
            cwd=self.cwd,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Completed(list(args), proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def sender(config_path: Path, tmp_path: Path) -> SenderProcess:
    """`sender …` as a subprocess with SENDER_CONFIG pointing at a fresh install."""
    assert SENDER.exists(), f"console script {SENDER} is not installed (pip install -e .)"
    return SenderProcess(config_path, tmp_path)


@pytest.fixture
def sender_noinstall(tmp_path: Path) -> SenderProcess:
    """`sender …` as a subprocess with no SENDER_CONFIG at all."""
    assert SENDER.exists(), f"console script {SENDER} is not installed (pip install -e .)"
    return SenderProcess(None, tmp_path)

