"""`sender doctor`: is this install healthy, and if not, what to do — one line per check.

The checks live in `daemons.runtime.checks` (the daemons run the fatal ones at start); this
command runs all of them against the config chosen by --config / SENDER_CONFIG, even a broken one.
"""

from __future__ import annotations

from pathlib import Path

import typer

from daemons.runtime import checks
from sender_cli import context, render
from sender_cli.commands.daemon import DAEMONS
from sender_cli.context import JSON_OPTION

SYMBOL = {checks.OK: "✔", checks.WARN: "!", checks.FAIL: "✘"}
STYLE = {checks.OK: "green", checks.WARN: "yellow", checks.FAIL: "red"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def _unit_dirs() -> tuple[tuple[Path, ...], bool]:
    """Where `sender install` puts units: the system's directories, else this user's."""
    user_dir = Path.home() / ".config" / "systemd" / "user"
    if not any((d / "sender.target").is_file() for d in checks.SYSTEM_UNIT_DIRS) and (user_dir / "sender.target").is_file():
        return (user_dir,), True
    return checks.SYSTEM_UNIT_DIRS, False


def doctor(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Check ffmpeg, spool, state, ports, config, store, clock and units; print each with its fix. Exit 1 on any failure."""
    cli = context.get(ctx)
    unit_dirs, user_units = _unit_dirs()
    results = checks.doctor(cli.config_path, daemons=list(DAEMONS), unit_dirs=unit_dirs, user_units=user_units)
    failed = [c for c in results if not c.ok]
    data = {"ok": not failed, "checks": [c.as_dict() for c in results]}

    def human() -> None:
        width = max(len(c.name) for c in results)
        for c in results:
            line = f"{SYMBOL[c.status]} {c.name:<{width}}  {c.detail}"
            if c.fix and c.status != checks.OK:
                line += f" — fix: {c.fix}"
            render.console.print(line, style=STYLE[c.status], markup=False)
        if failed:
            render.console.print(f"{len(failed)} problem(s) found.", markup=False)
        else:
            warnings = sum(c.status == checks.WARN for c in results)
            render.console.print("All good." if not warnings else f"All good ({warnings} warning(s)).", markup=False)

    render.emit(data, as_json, human)
    if failed:
        raise typer.Exit(1)
