"""`sender daemon NAME` (what each systemd unit runs) and `sender up` (all of them, foreground)."""

from __future__ import annotations

import importlib
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


def up(ctx: typer.Context) -> None:
    """Run every daemon in the foreground, one process each, until Ctrl-C; then stop them cleanly."""
    cli = context.get(ctx)
    install = Install.load(cli.config_path)
    cfg_path = str(install.config.path)
    render.err_console.print(f"sender up: {', '.join(DAEMONS)} with {cfg_path} (Ctrl-C stops)", markup=False)
    code = trio.run(_supervise, cfg_path)
    raise typer.Exit(code)


async def _supervise(config_path: str) -> int:
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
