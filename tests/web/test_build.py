"""The committed player build (daemons/http/static/) is what `npm ci && npm run build` makes from
web/: a fresh build in a temporary directory gives the same files, byte for byte."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
STATIC = ROOT / "daemons" / "http" / "static"
SOURCES = ["package.json", "package-lock.json", "build.mjs", "tsconfig.json", "src"]
NPM = shutil.which("npm")


def test_build_inputs_are_committed_not_node_modules():
    for name in SOURCES:
        assert (WEB / name).exists(), name
    ignored = subprocess.run(["git", "check-ignore", "-q", "web/node_modules/hls.js/package.json"], cwd=ROOT)
    assert ignored.returncode == 0, "web/node_modules must be ignored by git"


@pytest.mark.skipif(NPM is None, reason="npm missing (Debian: apt-get install nodejs npm, or run .ci/bootstrap --test)")
def test_a_fresh_build_equals_the_committed_assets(tmp_path):
    work = tmp_path / "web"
    work.mkdir()
    for name in SOURCES:
        src = WEB / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    env = {**os.environ, "SENDER_STATIC_OUT": str(tmp_path / "out"), "npm_config_audit": "false", "npm_config_fund": "false"}
    for cmd in ([NPM, "ci", "--no-audit", "--no-fund"], [NPM, "run", "build"]):
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    built = sorted(p.name for p in (tmp_path / "out").iterdir())
    committed = sorted(p.name for p in STATIC.iterdir() if p.name != "__pycache__")
    assert built == committed, "daemons/http/static/ is stale: cd web && npm ci && npm run build"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "out", STATIC, built, shallow=False)
    assert not mismatch and not errors, f"daemons/http/static/ differs from a fresh build: {mismatch or errors}"
