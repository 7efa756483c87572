"""`sender restream …`: push a stream to other platforms (YouTube, Twitch, any RTMP/RTMPS server)
while it has a publisher. The target URL carries the platform's stream key: Sender keeps it and
shows it masked, always (rtmp://a.rtmp.youtube.com/live2/ab…cd)."""

from __future__ import annotations

import sys

import typer

from daemons.core.domain import restream
from daemons.core.errors import InvalidInput
from daemons.core.stats import read_fresh_stats
from sender_cli import context, render
from sender_cli.commands.completion import stream_slugs
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Restream: push a stream to other platforms while it is live.", no_args_is_help=True)

TARGET_ARG = typer.Argument(..., help="The target's id (rt_…, see `sender restream list`).")


def _print_target(row: dict, what: str) -> None:
    state = "enabled" if row["enabled"] else "disabled"
    label = f" ({row['label']})" if row["label"] else ""
    render.console.print(f"{what} {row['id']}{label} of {row['stream']}: {row['url']} — {state}.", markup=False)


@app.command("add")
def add(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Stream slug (or id).", autocompletion=stream_slugs),
    url: str = typer.Argument(..., help="rtmp:// or rtmps://host[:port]/app/KEY as the platform gives it; "
                                        "'-' reads it from stdin (kept out of shell history and the process list)."),
    label: str = typer.Option("", "--label", help="A name for the target, e.g. YouTube."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a target: while the stream has a publisher, its source is pushed there unchanged."""
    if url == "-":
        url = sys.stdin.readline().strip()
        if not url:
            raise InvalidInput("no URL on stdin", field="url")
    cli = context.get(ctx)
    row = restream.add(cli.store(), slug, url, label=label, max_targets=cli.install().config["restream.max_targets"])
    render.emit(row, as_json, lambda: _print_target(row, "Restream target"))


@app.command("list")
def list_(
    ctx: typer.Context,
    slug: str = typer.Argument(None, help="Only this stream's targets.", autocompletion=stream_slugs),
    as_json: bool = JSON_OPTION,
) -> None:
    """Targets (URLs masked) and what the ingest daemon is doing with each."""
    cli = context.get(ctx)
    rows = restream.list_(cli.store(), slug)
    ingest = read_fresh_stats(cli.install().state_dir, "ingest") or {}
    states = {s["id"]: s for s in restream.states(rows, ingest)}
    for r in rows:
        r["state"], r["last_error"] = states[r["id"]]["state"], states[r["id"]]["last_error"]
    render.emit(rows, as_json, lambda: render.table(
        "Restream targets", ("id", "stream", "label", "url", "state", "last error"),
        ((r["id"], r["stream"], r["label"], r["url"], r["state"], r["last_error"] or "") for r in rows)))


@app.command("remove")
def remove(ctx: typer.Context, target: str = TARGET_ARG, as_json: bool = JSON_OPTION) -> None:
    """Remove a target: a live push to it stops within a second."""
    row = restream.remove(context.get(ctx).store(), target)
    render.emit(row, as_json, lambda: _print_target(row, "Removed restream target"))


@app.command("enable")
def enable(ctx: typer.Context, target: str = TARGET_ARG, as_json: bool = JSON_OPTION) -> None:
    """Enable a target: a live publisher starts pushing to it within a second."""
    row = restream.set_enabled(context.get(ctx).store(), target, True)
    render.emit(row, as_json, lambda: _print_target(row, "Restream target"))


@app.command("disable")
def disable(ctx: typer.Context, target: str = TARGET_ARG, as_json: bool = JSON_OPTION) -> None:
    """Disable a target (kept for later): a live push to it stops within a second."""
    row = restream.set_enabled(context.get(ctx).store(), target, False)
    render.emit(row, as_json, lambda: _print_target(row, "Restream target"))


def status_lines(targets: list[dict]) -> list[str]:
    """`sender stream status`'s restream lines: one per target."""
    out = []
    for t in targets:
        line = f"  {t['id']} {t['label'] or '-'} {t['url']}: {t['state']}"
        if t["state"] == "live":
            line += f", {t['bitrate_bps'] / 1e6:.2f} Mb/s, {t['bytes'] / 1e6:.1f} MB sent"
        if t["state"] in ("failing", "connecting") and t["last_error"]:
            line += f" (last error: {t['last_error']}; attempt {t['attempts']})"
        out.append(line)
    return out

