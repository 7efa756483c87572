"""`sender rendition …`: a stream's renditions (the source remux and transcoded rungs)."""

from __future__ import annotations

import typer

from daemons.core import domain
from sender_cli import context, render
from sender_cli.commands.completion import stream_slugs
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Renditions: the variants each stream is packaged in.", no_args_is_help=True)

SLUG_ARG = typer.Argument(..., help="Stream slug (or id).", autocompletion=stream_slugs)


def _table(rows: list[dict]) -> None:
    render.table("Renditions", ("name", "kind", "width", "height", "video bps", "audio bps", "fps", "codecs", "measured avg/peak bps"),
                 ((r["name"], r["kind"], r["width"], r["height"], r["video_bitrate"], r["audio_bitrate"], r["frame_rate"],
                   ",".join(c for c in (r["video_codec"], r["audio_codec"]) if c) or None,
                   f"{r['measured_average_bandwidth']}/{r['measured_bandwidth']}" if r["measured_bandwidth"] else None)
                  for r in rows))


@app.command("upsert")
def upsert(
    ctx: typer.Context,
    slug: str = SLUG_ARG,
    name: str = typer.Argument(..., help="Rendition name, e.g. source, 720p."),
    kind: str = typer.Option("transcode", "--kind", help="source | transcode."),
    width: int = typer.Option(None, "--width"),
    height: int = typer.Option(None, "--height"),
    video_bitrate: int = typer.Option(None, "--video-bitrate", help="bits/s"),
    audio_bitrate: int = typer.Option(None, "--audio-bitrate", help="bits/s"),
    frame_rate: float = typer.Option(None, "--frame-rate"),
    video_codec: str = typer.Option(None, "--video-codec"),
    audio_codec: str = typer.Option(None, "--audio-codec"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or replace a rendition of a stream."""
    store = context.get(ctx).store()
    stream = domain.streams.get(store, slug)
    given = {"name": name, "kind": kind, "width": width, "height": height, "video_bitrate": video_bitrate,
             "audio_bitrate": audio_bitrate, "frame_rate": frame_rate, "video_codec": video_codec, "audio_codec": audio_codec}
    row = domain.renditions.upsert(store, stream["id"], {k: v for k, v in given.items() if v is not None})
    render.emit(row, as_json, lambda: _table([row]))


@app.command("list")
def list_(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """A stream's renditions."""
    store = context.get(ctx).store()
    rows = domain.renditions.list_(store, domain.streams.get(store, slug)["id"])
    render.emit(rows, as_json, lambda: _table(rows))


@app.command("delete")
def delete(ctx: typer.Context, slug: str = SLUG_ARG, name: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Remove a rendition from a stream."""
    store = context.get(ctx).store()
    domain.renditions.delete(store, domain.streams.get(store, slug)["id"], name)
    render.emit({"deleted": name}, as_json, lambda: render.console.print(f"Rendition {name} deleted.", markup=False))
