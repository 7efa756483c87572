"""`sender daemon NAME` (what each systemd unit runs) and `sender up` (all of them, foreground).

`sender up` supervises its daemons the way the units' `Restart=on-failure` does: each runs as
its own child process (`daemons.runtime.children`: its own process group, SIGTERM if `sender up`
dies); one that exits without being asked is started again with exponential backoff, logged and
counted in `<state_dir>/stats/up.json` (`sender status` shows it), and the others keep running.
A daemon that exits before it ever said READY (its notify socket, as under systemd) cannot start
at all: `sender up` stops and says why. Only SIGINT/SIGTERM to `sender up` stops them all, in
reverse start order, within one deadline.

One `sender up` per node: it holds `<state_dir>/run/up.lock` (flock) while it runs, and checks
the listen ports before anything starts, so a second one (or one beside the units) refuses in
one line without touching the spool or the store.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass

import trio
import typer

from daemons.core.domain.common import now_iso
from daemons.core.install import Install
from daemons.core.stats import stats_path, write_stats
from daemons.runtime import checks, children
from daemons.runtime import logging as slog
from sender_cli import context, render

# Every daemon that exists, in start order: name → module whose main(config_path) runs it.
DAEMONS = {
    "ingest": "daemons.ingest.main",
    "http": "daemons.http.main",
    "edge-fill": "daemons.edge_fill.main",
    "snapshot": "daemons.snapshot.main",
}
# The front tier (front.kind): run only where it is configured, after the others.
FRONT = {"front": "daemons.front.main"}
RUNNABLE = {**DAEMONS, **FRONT}

app = typer.Typer(help="Run one daemon in the foreground (what its systemd unit runs).", no_args_is_help=True)


def _runner(name: str):
    def command(ctx: typer.Context) -> None:
        cli = context.get(ctx)
        cli.install()  # a broken config fails here, as one line
        importlib.import_module(RUNNABLE[name]).main(cli.config_path)

    command.__doc__ = f"Run sender-{name} in the foreground until SIGTERM/SIGINT."
    return command


for _name in RUNNABLE:
    app.command(_name)(_runner(_name))


DEMO_SLUG = "demo"
DEMO_KEY_LABEL = "sender up --demo"
LOCK_FILE = "up.lock"  # under <state_dir>/run
STATS_NAME = "up"  # <state_dir>/stats/up.json
RESTART_BACKOFF_S = (0.5, 30.0)  # first delay, longest delay; doubled after each quick exit
STABLE_RUN_S = 60.0  # a daemon that ran this long starts again after the first delay
STOP_DEADLINE_S = 20.0  # for all of them together (the units' TimeoutStopSec); then SIGKILL
DEMO_RESTART_S = 2.0

log = slog.get("up")


def up(
    ctx: typer.Context,
    demo: bool = typer.Option(False, "--demo", help="Also create the stream 'demo' and publish a test pattern to it with ffmpeg."),
    front: str = typer.Option(None, "--front", metavar="KIND", help="Also run the front tier: nginx (HTTPS, "
                              "HTTP/2, every public viewer request answered by nginx). Sets front.kind and puts "
                              "http.listen on loopback; without it, the front runs when front.kind is set."),
) -> None:
    """Run every daemon in the foreground, one process each, restarting any that dies, until
    Ctrl-C; then stop them cleanly."""
    cli = context.get(ctx)
    install = Install.load(cli.config_path)
    if front is not None:
        install = _configure_front(install, front)
    cfg = install.config
    names = list(DAEMONS) + (list(FRONT) if cfg["front.kind"] else [])
    if cfg["front.kind"]:
        _require_front_binaries(cfg)
    lock = _claim_node(install, names)  # before anything touches the store or the spool
    try:
        slog.setup(cfg["log.level"])
        rtmp_host, rtmp_port = cfg.listen("rtmp.listen")
        http_host, http_port = cfg.listen("http.listen")
        local = lambda h: "127.0.0.1" if h in ("0.0.0.0", "::", "") else h  # noqa: E731 - where this machine reaches it
        viewers = f"http://{local(http_host)}:{http_port}"
        if cfg["front.kind"]:
            key = "front.listen" if cfg["front.listen"] else "front.http_listen"
            host, port = cfg.listen(key)
            viewers = f"{'https' if key == 'front.listen' else 'http'}://{cfg['front.server_name'] or local(host)}:{port}"
        render.err_console.print(f"sender up: {', '.join(names)} with {cfg.path} (Ctrl-C stops)", markup=False)
        render.err_console.print(f"  OBS server:   rtmp://{local(rtmp_host)}:{rtmp_port}/live  (stream key: `sender key create SLUG`)", markup=False)
        render.err_console.print(f"  HTTP:         {viewers}/api/streams", markup=False)
        publisher = None
        if demo:
            key = _demo_key(install)
            publisher = _demo_publisher_cmd(f"rtmp://{local(rtmp_host)}:{rtmp_port}/live/{key}")
            render.err_console.print(f"  watch:        {viewers}/watch/{DEMO_SLUG}", markup=False)
            render.err_console.print(f"  demo stream:  {viewers}/api/streams/{DEMO_SLUG}/playback "
                                     "(its master_url plays in any HLS player)", markup=False)
        code = trio.run(_supervise, install, publisher, (local(rtmp_host), rtmp_port), names)
    finally:
        os.close(lock)
    raise typer.Exit(code)


def _configure_front(install: Install, kind: str) -> Install:
    """`sender up --front KIND`: front.kind set, and sender-http on loopback behind it."""
    from daemons.core import config as config_mod
    from daemons.core.errors import SenderError

    cfg = install.config
    try:
        new = cfg.with_value("front.kind", kind)
    except SenderError as e:
        render.error(f"--front: {e.message}")
        raise typer.Exit(2)
    host, port = cfg.listen("http.listen")
    if host not in ("127.0.0.1", "::1", "localhost"):
        new = new.with_value("http.listen", f"127.0.0.1:{port}")
    _require_front_binaries(new)  # before the config changes
    if new.values != cfg.values:
        config_mod.write(new, cfg.path)
        changed = [k for k in ("front.kind", "http.listen") if new[k] != cfg[k]]
        render.err_console.print("sender up: set " + ", ".join(f"{k} = {new[k]!r}" for k in changed) + f" in {cfg.path}", markup=False)
    return Install.load(cfg.path)


def _require_front_binaries(cfg) -> None:
    """One line, before anything starts, when the front's programs are not installed."""
    from daemons.core.front_config import binaries, install_hint

    missing = [name for name, path in binaries(cfg).items() if path is None]
    if missing:
        render.error(f"the front (front.kind = {cfg['front.kind']!r}) needs {', '.join(missing)}, not installed here: "
                     f"{install_hint(missing)}")
        raise typer.Exit(1)


def _claim_node(install: Install, names: list[str] | None = None) -> int:
    """The node is ours to run: the `sender up` lock (a file descriptor, held until closed) and
    every listen port free. Otherwise one line and exit 1, with nothing started or changed."""
    run_dir = install.state_dir / "run"
    run_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        render.error(f"another `sender up` (pid {holder}) already runs this node ({install.config.path}); "
                     f"stop it first (Ctrl-C in its terminal, or `kill -TERM {holder}`)")
        raise typer.Exit(1)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    taken = [c for name in (names or DAEMONS) for c in checks.check_listen_free(name, install.config)]
    if taken:
        os.close(fd)
        details = "; ".join(c.detail for c in taken)
        if "sender-" in details:  # held by Sender daemons (checks.describe_holders names them)
            render.error(f"the sender-* units (or a `sender up` of another install) already run this node: {details}")
        else:
            render.error(f"cannot start: {details}; stop it, or `sender config set` another listen address")
        raise typer.Exit(1)
    return fd


def _demo_key(install: Install) -> str:
    """The demo stream (created if missing) and a fresh key for it; earlier demo keys are revoked."""
    from daemons.core import domain
    from daemons.core.errors import NotFound

    with install.open_store() as store:
        try:
            domain.streams.get(store, DEMO_SLUG)
        except NotFound:
            domain.streams.create(store, DEMO_SLUG, title="Sender demo (test pattern)")
        for old in domain.keys.list_(store, DEMO_SLUG):
            if old["label"] == DEMO_KEY_LABEL and not old["revoked_at"]:
                domain.keys.revoke(store, old["id"])
        _, key = domain.keys.create(store, install.secret(), DEMO_SLUG, label=DEMO_KEY_LABEL)
    return key


def _demo_publisher_cmd(url: str) -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise typer.BadParameter("--demo needs ffmpeg on PATH (bash .ci/bootstrap installs it)")
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-b:v", "2500k",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", url,
    ]


async def _publish_demo(cmd: list[str], rtmp: tuple[str, int]) -> None:
    """The test pattern, once ingest listens; restarted if it stops (it never ends by itself)."""
    while not await _port_open(*rtmp):
        await trio.sleep(0.2)
    while True:
        publisher = children.spawn(cmd)
        try:
            code = await publisher.wait()
        finally:
            await publisher.stop(grace_s=5)
            await publisher.aclose()
        render.error(f"demo publisher exited with status {code}; restarting in {DEMO_RESTART_S:g} s")
        await trio.sleep(DEMO_RESTART_S)


async def _port_open(host: str, port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return False
    await stream.aclose()
    return True


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


@dataclass
class Supervised:
    """One daemon under `sender up`, across its restarts."""

    name: str
    child: children.Child | None = None
    ever_ready: bool = False
    restarts: int = 0
    last_exit: dict | None = None
    started_at: str | None = None

    def stats(self) -> dict:
        running = self.child is not None and self.child.returncode is None
        return {"pid": self.child.pid if running else None, "started_at": self.started_at, "restarts": self.restarts,
                "last_exit": self.last_exit}


class Backoff:
    """Delays before restarting a daemon: doubling from the first to the longest while it keeps
    exiting soon after its start, back to the first after a run of `stable_s`."""

    def __init__(self, first_s: float = RESTART_BACKOFF_S[0], longest_s: float = RESTART_BACKOFF_S[1],
                 stable_s: float = STABLE_RUN_S):
        self.first_s, self.longest_s, self.stable_s = first_s, longest_s, stable_s
        self._next = first_s

    def after_exit(self, ran_s: float) -> float:
        """The delay before the next start of a daemon that ran `ran_s` seconds this time."""
        if ran_s >= self.stable_s:
            self._next = self.first_s
        delay, self._next = self._next, min(self._next * 2, self.longest_s)
        return delay


class StartFailed(Exception):
    """A daemon exited before it was ever ready: restarting will not help."""


async def _supervise(install: Install, demo_publisher: list[str] | None = None, rtmp: tuple[str, int] | None = None,
                     names: list[str] | None = None) -> int:
    """Run every daemon, restarting any that exits, until SIGINT/SIGTERM; then stop them in
    reverse start order. Exit status: 1 if one could not start or did not stop cleanly."""
    daemons = [Supervised(name) for name in (names or DAEMONS)]
    failed: list[str] = []
    # Each daemon's notify socket stays open until it has stopped (it says STOPPING=1 there).
    with contextlib.ExitStack() as sockets, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                for d in daemons:
                    name = f"sender-up-{os.getpid()}-{d.name}"  # abstract: no file to clean up, no path limit
                    notify = sockets.enter_context(trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM))
                    await notify.bind("\0" + name)
                    nursery.start_soon(_read_notifications, notify, d)
                    nursery.start_soon(_keep_running, install, d, "@" + name)
                nursery.start_soon(_write_stats_loop, install, daemons)
                if demo_publisher is not None:
                    nursery.start_soon(_publish_demo, demo_publisher, rtmp)
                async for signum in signals:
                    slog.log(log, logging.INFO, "stopping every daemon", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
        except* StartFailed as group:
            failed += [str(e) for e in group.exceptions]
        with trio.CancelScope(shield=True):
            failed += await _stop_all(daemons)
            await trio.to_thread.run_sync(lambda: stats_path(install.state_dir, STATS_NAME).unlink(missing_ok=True))
    for line in failed:
        render.error(line)
    return 1 if failed else 0


async def _keep_running(install: Install, d: Supervised, notify_socket: str) -> None:
    """Start one daemon and start it again whenever it exits, with backoff. The daemon says
    READY=1 on its notify socket (daemons.runtime.systemd), as under the units."""
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
    env["NOTIFY_SOCKET"] = notify_socket
    cmd = [sys.executable, "-m", "sender_cli", "--config", str(install.config.path), "daemon", d.name]
    backoff = Backoff()
    while True:
        # On the main thread, with its own process group (a Ctrl-C reaches us only; we stop
        # them in order) and SIGTERM should `sender up` die without stopping it.
        d.child = children.spawn(cmd, env=env, death_signal=signal.SIGTERM)
        d.started_at = now_iso()
        started = trio.current_time()
        code = await d.child.wait()
        await d.child.aclose()
        ran_s = trio.current_time() - started
        d.last_exit = {"code": code, "description": describe_exit(code), "at": now_iso(), "ran_s": round(ran_s, 1)}
        if not d.ever_ready:
            raise StartFailed(f"sender-{d.name} {describe_exit(code)} before it was ready (its log above says why)")
        delay = backoff.after_exit(ran_s)
        d.restarts += 1
        slog.log(log, logging.WARNING, f"sender-{d.name} {describe_exit(code)}; restarting it", pid=d.child.pid,
                 ran_s=round(ran_s, 1), backoff_s=delay, restarts=d.restarts)
        await trio.sleep(delay)


async def _read_notifications(sock, d: Supervised) -> None:
    while True:
        message = await sock.recv(4096)
        if b"READY=1" in message.split(b"\n"):
            if d.ever_ready:
                slog.log(log, logging.INFO, f"sender-{d.name} is back", pid=d.child.pid if d.child else None, restarts=d.restarts)
            d.ever_ready = True


async def _write_stats_loop(install: Install, daemons: list[Supervised]) -> None:
    """`<state_dir>/stats/up.json` every second, like every daemon's own stats."""
    while True:
        payload = {"daemons": {d.name: d.stats() for d in daemons}, "restarts": sum(d.restarts for d in daemons)}
        try:
            await trio.to_thread.run_sync(write_stats, install.state_dir, STATS_NAME, payload)
        except OSError as e:
            slog.log(log, logging.WARNING, "cannot write stats", error=e)
        await trio.sleep(1)


async def _stop_all(daemons: list[Supervised]) -> list[str]:
    """SIGTERM each still running daemon, last started first, waiting for each until one shared
    deadline; SIGKILL what is left. Returns what did not stop cleanly."""
    deadline = trio.current_time() + STOP_DEADLINE_S
    problems = []
    for d in reversed(daemons):
        child = d.child
        if child is None or child.returncode is not None:
            continue
        child.terminate()
        with trio.move_on_at(deadline):
            code = await child.wait()
        if child.returncode is None:
            problems.append(f"sender-{d.name} did not stop in {STOP_DEADLINE_S:g} s; killed it")
            code = await child.stop(grace_s=0, sig=signal.SIGKILL)
        elif code not in (0, -signal.SIGTERM):
            problems.append(f"sender-{d.name} {describe_exit(code)} while stopping")
        await child.aclose()
    return problems
