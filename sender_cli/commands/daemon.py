"""`sender daemon NAME` (what each systemd unit runs) and `sender up` (all of them, foreground)."""

from __future__ import annotations

import importlib
import shutil
import signal
import subprocess
import sys

import trio
import typer

from daemons.core.install import Install
from sender_cli import context, render

# Every daemon that exists, in start order: name → module whose main(config_path) runs it.
DAEMONS = {
    "ingest": "daemons.ingest.main",
    "http": "daemons.http.main",
    "edge-fill": "daemons.edge_fill.main",
    "snapshot": "daemons.snapshot.main",
}

app = typer.Typer(help="Run one daemon in the foreground (what its systemd unit runs).", no_args_is_help=True)


def _runner(name: str):
    def command(ctx: typer.Context) -> None:
        cli = context.get(ctx)
        cli.install()  # a broken config fails here, as one line
        importlib.import_module(DAEMONS[name]).main(cli.config_path)

    command.__doc__ = f"Run sender-{name} in the foreground until SIGTERM/SIGINT."
    return command


for _name in DAEMONS:
    app.command(_name)(_runner(_name))


DEMO_SLUG = "demo"
DEMO_KEY_LABEL = "sender up --demo"


def up(
    ctx: typer.Context,
    demo: bool = typer.Option(False, "--demo", help="Also create the stream 'demo' and publish a test pattern to it with ffmpeg."),
) -> None:
    """Run every daemon in the foreground, one process each, until Ctrl-C; then stop them cleanly."""
    cli = context.get(ctx)
    install = Install.load(cli.config_path)
    cfg = install.config
    cfg_path = str(cfg.path)
    rtmp_host, rtmp_port = cfg.listen("rtmp.listen")
    http_host, http_port = cfg.listen("http.listen")
    local = lambda h: "127.0.0.1" if h in ("0.0.0.0", "::", "") else h  # noqa: E731 - where this machine reaches it
    render.err_console.print(f"sender up: {', '.join(DAEMONS)} with {cfg_path} (Ctrl-C stops)", markup=False)
    render.err_console.print(f"  OBS server:   rtmp://{local(rtmp_host)}:{rtmp_port}/live  (stream key: `sender key create SLUG`)", markup=False)
    render.err_console.print(f"  HTTP:         http://{local(http_host)}:{http_port}/api/streams", markup=False)
    publisher = None
    if demo:
        key = _demo_key(install)
        publisher = _demo_publisher_cmd(f"rtmp://{local(rtmp_host)}:{rtmp_port}/live/{key}")
        render.err_console.print(f"  watch:        http://{local(http_host)}:{http_port}/watch/{DEMO_SLUG}", markup=False)
        render.err_console.print(f"  demo stream:  http://{local(http_host)}:{http_port}/api/streams/{DEMO_SLUG}/playback "
                                 "(its master_url plays in any HLS player)", markup=False)
    code = trio.run(_supervise, cfg_path, publisher, (local(rtmp_host), rtmp_port))
    raise typer.Exit(code)


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
        proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:
                with trio.CancelScope(shield=True):
                    proc.terminate()
                    await proc.wait()
        render.error(f"demo publisher exited with status {proc.returncode}; restarting in 2 s")
        await trio.sleep(2)


async def _port_open(host: str, port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def _supervise(config_path: str, demo_publisher: list[str] | None = None, rtmp: tuple[str, int] | None = None) -> int:
    """Start each daemon; on a signal or any daemon's exit, stop the others. Exit status: first failure."""
    procs: dict[str, trio.Process] = {}
    exit_codes: dict[str, int] = {}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def watch(name: str, proc: trio.Process) -> None:
                exit_codes[name] = await proc.wait()
                nursery.cancel_scope.cancel()  # one gone: stop the rest

            async def on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_signal)
            for name in DAEMONS:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "sender_cli", "--config", config_path, "daemon", name],
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                )
                procs[name] = proc
                nursery.start_soon(watch, name, proc)
            if demo_publisher is not None:
                nursery.start_soon(_publish_demo, demo_publisher, rtmp)
        with trio.CancelScope(shield=True):
            for proc in procs.values():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                for name, proc in procs.items():
                    exit_codes[name] = await proc.wait()
            for name, proc in procs.items():
                if proc.returncode is None:
                    render.error(f"sender-{name} did not stop in 15 s; killing it")
                    proc.kill()
                    exit_codes[name] = await proc.wait()
    failed = {n: c for n, c in exit_codes.items() if c not in (0, -signal.SIGTERM)}
    for name, c in failed.items():
        render.error(f"sender-{name} exited with status {c}")
    return 1 if failed else 0
