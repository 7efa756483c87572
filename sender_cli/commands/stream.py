"""`sender stream …`: create, list, show, update, delete, start and stop streams."""

from __future__ import annotations

import typer

from daemons.core import advice, domain
from daemons.core.config import parse_duration
from daemons.core.domain import playback
from daemons.core.errors import InvalidInput
from daemons.core.stats import read_fresh_stats
from sender_cli import context, render
from sender_cli.commands.completion import stream_slugs
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Streams: what broadcasters publish to.", no_args_is_help=True)

SLUG_ARG = typer.Argument(..., help="Stream slug (or id).", autocompletion=stream_slugs)
COLUMNS = ("slug", "title", "visibility", "auto_start", "id", "created_at")


def _table(rows: list[dict], active: dict[str, dict]) -> None:
    render.table(
        "Streams",
        ("slug", "title", "visibility", "auto start", "state", "id"),
        (
            (r["slug"], r["title"], r["visibility"], r["auto_start"], active.get(r["id"], {}).get("status", "idle"), r["id"])
            for r in rows
        ),
    )


@app.command("create")
def create(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="URL-safe name: lowercase letters, digits, '-'."),
    title: str = typer.Option("", "--title", help="Title shown to viewers (default: the slug)."),
    visibility: str = typer.Option("public", "--visibility", help="public | unlisted | private."),
    auto_start: bool = typer.Option(True, "--auto-start/--no-auto-start", help="Start a generation when a publisher connects."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a stream with the config's default rendition ladder."""
    cli = context.get(ctx)
    row = domain.streams.create(
        cli.store(), slug, title=title, visibility=visibility, auto_start=auto_start, ladder=cli.install().config["renditions.ladder"]
    )
    render.emit(row, as_json, lambda: render.fields(f"Stream {row['slug']} created", row, COLUMNS))


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include deleted streams."),
    as_json: bool = JSON_OPTION,
) -> None:
    """All streams with their state."""
    store = context.get(ctx).store()
    rows = domain.streams.list_(store, include_deleted=all_)
    active = {g["stream_id"]: g for g in domain.generations.list_(store, active_only=True, limit=10_000)}
    for r in rows:
        r["generation"] = active.get(r["id"])
    render.emit(rows, as_json, lambda: _table(rows, active))


@app.command("show")
def show(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """One stream: its fields, keys, renditions and recent generations."""
    store = context.get(ctx).store()
    row = domain.streams.get(store, slug)
    row["keys"] = domain.keys.list_(store, row["id"])
    row["renditions"] = domain.renditions.list_(store, row["id"])
    row["generations"] = domain.generations.list_(store, row["id"], limit=5)

    def human() -> None:
        render.fields(f"Stream {row['slug']}", row, (*COLUMNS, "updated_at"))
        render.table("Keys", ("id", "prefix", "label", "created", "last used", "revoked"),
                     ((k["id"], k["prefix"], k["label"], k["created_at"], k["last_used_at"], k["revoked_at"]) for k in row["keys"]))
        render.table("Renditions", ("name", "kind", "size", "video bps", "audio bps"),
                     ((r["name"], r["kind"], f"{r['width'] or '?'}x{r['height']}" if r["height"] else "as published", r["video_bitrate"], r["audio_bitrate"]) for r in row["renditions"]))
        render.table("Recent generations", ("id", "status", "started", "live", "ended", "discontinuities"),
                     ((g["id"], g["status"], g["started_at"], g["live_at"], g["ended_at"], g["discontinuity_count"]) for g in row["generations"]))

    render.emit(row, as_json, human)


@app.command("update")
def update(
    ctx: typer.Context,
    slug: str = SLUG_ARG,
    new_slug: str = typer.Option(None, "--slug", help="Rename the stream."),
    title: str = typer.Option(None, "--title"),
    visibility: str = typer.Option(None, "--visibility", help="public | unlisted | private."),
    auto_start: bool = typer.Option(None, "--auto-start/--no-auto-start"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a stream's slug, title, visibility or auto start."""
    row = domain.streams.update(context.get(ctx).store(), slug, slug=new_slug, title=title, visibility=visibility, auto_start=auto_start)
    render.emit(row, as_json, lambda: render.fields(f"Stream {row['slug']} updated", row, (*COLUMNS, "updated_at")))


@app.command("delete")
def delete(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Soft-delete a stream: its keys stop working, its slug can be reused, history stays."""
    row = domain.streams.delete(context.get(ctx).store(), slug)
    render.emit(row, as_json, lambda: render.console.print(f"Stream {row['slug']} deleted ({row['id']}).", markup=False))


@app.command("start")
def start(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Start a generation (needed before publishing when auto start is off)."""
    gen, created = domain.generations.start(context.get(ctx).store(), slug)
    msg = f"Generation {gen['id']} {'started' if created else 'already active'} ({gen['status']})."
    render.emit(gen, as_json, lambda: render.console.print(msg, markup=False))


@app.command("stop")
def stop(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """End the active generation: publishers are disconnected, viewers see the end."""
    gen = domain.generations.stop(context.get(ctx).store(), slug)
    msg = f"Generation {gen['id']} ended." if gen else "Nothing was active."
    render.emit(gen, as_json, lambda: render.console.print(msg, markup=False))


@app.command("status")
def status(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Is it live? The active generation and the connected publisher, as the ingest daemon sees it."""
    cli = context.get(ctx)
    store = cli.store()
    stream = domain.streams.get(store, slug)
    generation = domain.generations.active(store, stream["id"])
    ingest = read_fresh_stats(cli.install().state_dir, "ingest") or {}
    publisher = next((p for p in ingest.get("publishers", []) if p["stream_id"] == stream["id"]), None)
    pipeline = next((g for g in ingest.get("generations", []) if generation and g["generation_id"] == generation["id"]), None)
    cfg = cli.install().config
    warnings = advice.stream_warnings(publisher, pipeline, segment_target_s=cfg["hls.segment_target_s"], spool_root=str(cfg["spool.root"]))
    data = {"stream": stream["slug"], "generation": generation, "publisher": publisher, "pipeline": pipeline, "warnings": warnings,
            "stats_updated_at": ingest.get("updated_at")}

    def human() -> None:
        state = generation["status"] if generation else "idle"
        render.console.print(f"{stream['slug']}: {state}" + (f" (generation {generation['id']})" if generation else ""), markup=False)
        if publisher:
            render.fields("Publisher", publisher, ("remote", "connected_since", "bitrate_bps", "video_codec", "audio_codec",
                                                   "width", "height", "frame_rate", "video_frames", "bytes_in"))
        else:
            render.console.print("No publisher connected.", markup=False)
        for w in warnings:
            render.err_console.print(f"warning: {w}", markup=False)

    render.emit(data, as_json, human)


@app.command("token")
def token(
    ctx: typer.Context,
    slug: str = SLUG_ARG,
    ttl: str = typer.Option(None, "--ttl", help="Lifetime, e.g. 90s, 15m, 6h, 7d (default: http.playback_token_ttl)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a playback token for a (private) stream: add ?token=… to its playback and HLS URLs."""
    cli = context.get(ctx)
    cfg = cli.install().config
    try:
        seconds = parse_duration(ttl) if ttl is not None else cfg.seconds("http.playback_token_ttl")
    except ValueError as e:
        raise InvalidInput(f"--ttl {ttl!r} is not allowed: {e}", field="ttl") from None
    stream = domain.streams.get(cli.store(), slug)
    minted = playback.mint_token(cli.install().playback_secret(), stream["id"], int(seconds))
    data = {**minted, "stream": stream["slug"],
            "playback_url": f"{cfg['node.public_base_url']}/api/streams/{stream['slug']}/playback?token={minted['token']}"}

    def human() -> None:
        render.console.print(f"Playback token for {stream['slug']} (valid {int(seconds)} s):", markup=False)
        render.console.print(f"  {minted['token']}", markup=False, style="bold")
        render.console.print(f"Playback: {data['playback_url']}", markup=False)

    render.emit(data, as_json, human)
