"""`sender key …`: stream keys, shown exactly once when created."""

from __future__ import annotations

from urllib.parse import urlsplit

import typer

from daemons.core import domain
from daemons.core.config import parse_listen
from sender_cli import context, render
from sender_cli.commands.completion import stream_slugs
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Stream keys: what OBS needs to publish.", no_args_is_help=True)


def obs_server_url(cfg) -> str:
    """The "Server" to type into OBS: this node's public host and the RTMP port."""
    host = urlsplit(cfg["node.public_base_url"]).hostname or "127.0.0.1"
    _, port = parse_listen(cfg["rtmp.listen"])
    return f"rtmp://{host}/live" if port == 1935 else f"rtmp://{host}:{port}/live"


@app.command("create")
def create(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Stream slug (or id).", autocompletion=stream_slugs),
    label: str = typer.Option("", "--label", help="A note to tell keys apart (e.g. 'studio OBS')."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key for a stream. The key is printed now and never again."""
    cli = context.get(ctx)
    row, key = domain.keys.create(cli.store(), cli.install().secret(), slug, label=label)
    server = obs_server_url(cli.install().config)
    data = {"key": key, "id": row["id"], "stream": row["stream"], "prefix": row["prefix"], "server": server, "url": f"{server}/{key}"}

    def human() -> None:
        render.console.print(f"Stream key for {row['stream']} (shown once, store it now):", markup=False)
        render.console.print(f"  {key}", markup=False, style="bold")
        render.console.print(f"OBS → Settings → Stream: Service 'Custom', Server {server}, Stream Key as above.", markup=False)
        render.console.print(f"ffmpeg: ffmpeg … -f flv {server}/<key>", markup=False)

    render.emit(data, as_json, human)


@app.command("list")
def list_(
    ctx: typer.Context,
    slug: str = typer.Argument(None, help="Only this stream's keys.", autocompletion=stream_slugs),
    as_json: bool = JSON_OPTION,
) -> None:
    """Keys (their ids and prefixes, never the keys)."""
    rows = domain.keys.list_(context.get(ctx).store(), slug)
    render.emit(rows, as_json, lambda: render.table(
        "Stream keys", ("id", "stream", "prefix", "label", "created", "last used", "revoked"),
        ((r["id"], r["stream"], r["prefix"], r["label"], r["created_at"], r["last_used_at"], r["revoked_at"]) for r in rows)))


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="Key id or prefix."), as_json: bool = JSON_OPTION) -> None:
    """Revoke a key: it stops working for new publishes at once."""
    row = domain.keys.revoke(context.get(ctx).store(), key_id)
    render.emit(row, as_json, lambda: render.console.print(f"Key {row['id']} ({row['prefix']}) of {row['stream']} revoked at {row['revoked_at']}.", markup=False))
