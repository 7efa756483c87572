"""A second process holds the store's write lock while the real `sender` CLI writes: the CLI
waits (busy timeout) and succeeds, with no "database is locked" — and, as a control, the same
situation with a zero busy timeout does fail, so the lock really was held while the CLI ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.cli.cli_helpers import assert_one_line_error
from daemons.core import config as cfg
from daemons.core.store import Store

REPO = Path(__file__).resolve().parents[2]

# Takes the write lock (BEGIN IMMEDIATE) with a row of its own in the transaction, says "locked",
# then on "hold SECONDS" keeps it that long more, or on "release" at once; commits; says "committed".
HOLDER = textwrap.dedent(
    """
    import sys, time
    from daemons.core.store import Store
    store = Store.open(sys.argv[1], migrate=False)
    with store.write() as db:
        db.execute(
            "INSERT INTO streams (id, slug, created_at, updated_at) VALUES ('st_holder', 'holder', 't', 't')"
        )
        print("locked", flush=True)
        command = sys.stdin.readline().split()
        if command[0] == "hold":
            time.sleep(float(command[1]))
    print("committed", flush=True)
    store.close()
    """
)


def _start_holder(db_path: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = holder.stdout.readline().strip()
    assert line == "locked", (line, holder.stderr.read() if holder.poll() is not None else "")
    return holder


def _wait_until_open(proc: subprocess.Popen, db_path: Path, timeout: float = 20) -> None:
    """Until the CLI process has the store open (it is about to write, or already waiting)."""
    fd_dir = Path(f"/proc/{proc.pid}/fd")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return  # finished already: the caller's assertions say whether that was right
        try:
            if any(os.readlink(fd) == str(db_path) for fd in fd_dir.iterdir()):
                return
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.005)
    raise AssertionError("the CLI never opened the store")


def _finish(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_cli_waits_for_another_writer_and_succeeds(sender, install):
    db_path = Path(install.config["store.path"])
    holder = _start_holder(db_path)
    try:
        cli = sender.popen("stream", "create", "x", "--json")
        _wait_until_open(cli, db_path)
        holder.stdin.write("hold 1.0\n")  # keep the lock ~1 s more while the CLI tries to write
        holder.stdin.flush()
        out, err = cli.communicate(timeout=30)
        held_out, held_err = holder.communicate(timeout=30)
    finally:
        _finish(holder)
    assert cli.returncode == 0, err
    assert "locked" not in err and err == ""
    assert json.loads(out)["slug"] == "x"
    assert held_out.strip() == "committed", held_err
    with Store.open(db_path) as store:
        rows = store.query("SELECT slug FROM streams ORDER BY rowid")
    assert [r["slug"] for r in rows] == ["holder", "x"]  # the CLI wrote after the holder committed


def test_control_without_busy_timeout_the_cli_fails_cleanly(sender, install, config_path):
    cfg.write(install.config.with_value("store.busy_timeout_ms", 0), config_path)
    db_path = Path(install.config["store.path"])
    holder = _start_holder(db_path)
    try:
        cli = sender.popen("stream", "create", "x")
        out, err = cli.communicate(timeout=30)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        held_out, _ = holder.communicate(timeout=30)
    finally:
        _finish(holder)
    assert cli.returncode == 1
    line = assert_one_line_error(err, out)
    assert "locked" in line or "busy" in line
    assert held_out.strip() == "committed"
    with Store.open(db_path) as store:
        assert [r["slug"] for r in store.query("SELECT slug FROM streams")] == ["holder"]
