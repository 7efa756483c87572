"""The fronts' generated files, written (atomically); the nginx front's, also checked: what sender-front writes at every
start and reload, and what `sender install` and `sender doctor` check with `nginx -t` before
anything runs (daemons/core/front_nginx.py renders them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from daemons.core import config as config_mod
from daemons.core.front_nginx import LUA_MODULE, NginxFiles, nginx_test_argv, render_owned_nginx


def write_atomically(path: Path, text: str) -> None:
    """A generated config file, complete or not at all (mode 0640: it may hold a key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)


CHECK_KEY = "0" * 32  # what configs checked but never run (install, doctor) carry instead of the key


def write_files(cfg: config_mod.Config, files: NginxFiles, key: str) -> None:
    files.config_dir.mkdir(parents=True, exist_ok=True)
    files.workdir.mkdir(parents=True, exist_ok=True)
    for path, text in ((files.lua, LUA_MODULE.read_text()), (files.conf, render_owned_nginx(cfg, key=key, files=files))):
        write_atomically(path, text)


def check_config(cfg: config_mod.Config, nginx: str) -> str | None:
    """`nginx -t` on the config sender-front would write, in a scratch directory: None when nginx
    accepts it, else what nginx says (install and doctor use it before anything runs)."""
    with tempfile.TemporaryDirectory(prefix="sender-front-check-") as tmp:
        files = NginxFiles(Path(tmp), Path(tmp, "work"))
        write_files(cfg, files, CHECK_KEY)
        r = subprocess.run(nginx_test_argv(files, nginx), capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else " ".join((r.stderr + r.stdout).split())[-400:]
