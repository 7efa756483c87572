"""`sender stream …`: create, list, show, update, delete, start and stop streams."""

from __future__ import annotations

import typer

from daemons.core import domain
from daemons.core.config import parse_duration
from daemons.core.domain import playback
from daemons.core.errors import InvalidInput
from daemons.core.stats import read_fresh_stats
from sender_cli import context, render
from sender_cli.commands import restream as restream_cmd
from sender_cli.commands.completion import stream_slugs
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Streams: what broadcasters publish to.", no_args_is_help=True)

SLUG_ARG = typer.Argument(..., help="Stream slug (or id).", autocompletion=stream_slugs)
COLUMNS = ("slug", "title", "visibility", "auto_start", "reconnect_grace", "recording", "id", "created_at")
GRACE_HELP = ('How long a broadcast whose publisher left stays live for it to come back: "90s", "5m", '
              '"0s" (end at once) or "never" (until `sender stream stop`); "default" = rtmp.reconnect_grace.')


RECORD_HELP = ("Record its broadcasts (a replay of each: DVR while live, VOD once ended); "
               "unset = the config's recording.enabled. Applies from its next broadcast.")


def _grace(value: str | None):
    """--reconnect-grace: None = not given; "default" = back to the config's."""
    return None if value is None or value.strip().lower() == "default" else value


def _table(rows: list[dict]) -> None:
    render.table(
        "Streams",
        ("slug", "title", "visibility", "auto start", "state", "id"),
        ((r["slug"], r["title"], r["visibility"], r["auto_start"], _state(r["generation"]), r["id"]) for r in rows),
    )


def _state(generation: dict | None) -> str:
    if generation is None:
        return "idle"
    if domain.generations.is_active(generation["status"]) and generation["publisher_left_at"]:
        return f"{generation['status']} (publisher away)"
    return generation["status"]


@app.command("create")
def create(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="URL-safe name: lowercase letters, digits, '-'."),
    title: str = typer.Option("", "--title", help="Title shown to viewers (default: the slug)."),
    visibility: str = typer.Option("public", "--visibility", help="public | unlisted | private."),
    auto_start: bool = typer.Option(True, "--auto-start/--no-auto-start", help="Start a generation when a publisher connects."),
    reconnect_grace: str = typer.Option(None, "--reconnect-grace", help=GRACE_HELP),
    record: bool = typer.Option(None, "--record/--no-record", help=RECORD_HELP, show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a stream with the config's default rendition ladder."""
    cli = context.get(ctx)
    row = domain.streams.create(
        cli.store(), slug, title=title, visibility=visibility, auto_start=auto_start,
        ladder=cli.install().config["renditions.ladder"], reconnect_grace=_grace(reconnect_grace), recording=record,
    )
    render.emit(row, as_json, lambda: render.fields(f"Stream {row['slug']} created", row, COLUMNS))


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include deleted streams."),
    as_json: bool = JSON_OPTION,
) -> None:
    """All streams with their state."""
    rows = domain.stream_views.list_with_generations(context.get(ctx).store(), include_deleted=all_)
    render.emit(rows, as_json, lambda: _table(rows))


@app.command("show")
def show(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """One stream: its fields, keys, renditions and recent generations."""
    store = context.get(ctx).store()
    row = domain.streams.get(store, slug)
    row["keys"] = domain.keys.list_(store, row["id"])
    row["renditions"] = domain.renditions.list_(store, row["id"])
    row["generations"] = domain.generations.list_(store, row["id"], limit=5)
    row["reconnect_grace"] = row["reconnect_grace"] or f"{context.get(ctx).install().config['rtmp.reconnect_grace']} (default)"

    def human() -> None:
        recording = row["recording"] if row["recording"] is not None else \
            f"{context.get(ctx).install().config['recording.enabled']} (default)"
        render.fields(f"Stream {row['slug']}", {**row, "recording": recording}, (*COLUMNS, "updated_at"))
        render.table("Keys", ("id", "prefix", "label", "created", "last used", "revoked"),
                     ((k["id"], k["prefix"], k["label"], k["created_at"], k["last_used_at"], k["revoked_at"]) for k in row["keys"]))
        render.table("Renditions", ("name", "kind", "size", "video bps", "audio bps"),
                     ((r["name"], r["kind"], f"{r['width'] or '?'}x{r['height']}" if r["height"] else "as published", r["video_bitrate"], r["audio_bitrate"]) for r in row["renditions"]))
        render.table("Recent generations", ("id", "status", "started", "live", "ended", "why", "discontinuities"),
                     ((g["id"], g["status"], g["started_at"], g["live_at"], g["ended_at"], g["end_reason"] or g["failure_reason"],
                       g["discontinuity_count"]) for g in row["generations"]))

    render.emit(row, as_json, human)


@app.command("update")
def update(
    ctx: typer.Context,
    slug: str = SLUG_ARG,
    new_slug: str = typer.Option(None, "--slug", help="Rename the stream."),
    title: str = typer.Option(None, "--title"),
    visibility: str = typer.Option(None, "--visibility", help="public | unlisted | private."),
    auto_start: bool = typer.Option(None, "--auto-start/--no-auto-start"),
    reconnect_grace: str = typer.Option(None, "--reconnect-grace", help=GRACE_HELP),
    record: bool = typer.Option(None, "--record/--no-record", help=RECORD_HELP, show_default=False),
    record_default: bool = typer.Option(False, "--record-default", help="Back to the config's recording.enabled."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a stream's slug, title, visibility, auto start, reconnect grace or recording."""
    if record is not None and record_default:
        raise InvalidInput("--record/--no-record and --record-default contradict each other", field="record")
    changes = {} if reconnect_grace is None else {"reconnect_grace": _grace(reconnect_grace)}
    if record is not None or record_default:
        changes["recording"] = record
    row = domain.streams.update(context.get(ctx).store(), slug, slug=new_slug, title=title, visibility=visibility,
                                auto_start=auto_start, **changes)
    render.emit(row, as_json, lambda: render.fields(f"Stream {row['slug']} updated", row, (*COLUMNS, "updated_at")))


@app.command("delete")
def delete(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Soft-delete a stream: its keys stop working, its slug can be reused, history stays."""
    row = domain.streams.delete(context.get(ctx).store(), slug)
    render.emit(row, as_json, lambda: render.console.print(f"Stream {row['slug']} deleted ({row['id']}).", markup=False))


@app.command("start")
def start(
    ctx: typer.Context,
    slug: str = SLUG_ARG,
    reconnect_grace: str = typer.Option(None, "--reconnect-grace", help=GRACE_HELP + " Kept as the stream's own."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Start a generation (needed before publishing when auto start is off)."""
    changes = {} if reconnect_grace is None else {"reconnect_grace": _grace(reconnect_grace)}
    cli = context.get(ctx)
    gen, created = domain.streams.start(cli.store(), slug, **changes, record_default=cli.install().config["recording.enabled"])
    msg = f"Generation {gen['id']} {'started' if created else 'already active'} ({gen['status']})."
    render.emit(gen, as_json, lambda: render.console.print(msg, markup=False))


@app.command("stop")
def stop(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """End the active generation: publishers are disconnected, viewers see the end."""
    gen = domain.streams.stop(context.get(ctx).store(), slug)
    msg = f"Generation {gen['id']} ended." if gen else "Nothing was active."
    render.emit(gen, as_json, lambda: render.console.print(msg, markup=False))


@app.command("status")
def status(ctx: typer.Context, slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Is it live? The latest generation, the connected publisher (or since when it is away, and
    when the reconnect grace ends the broadcast), and advice for the broadcaster."""
    cli = context.get(ctx)
    ingest = read_fresh_stats(cli.install().state_dir, "ingest") or {}
    data = domain.stream_views.status(cli.store(), slug, ingest, cli.install().config)

    def human() -> None:
        generation, publisher = data["generation"], data["publisher"]
        line = f"{data['stream']}: {data['status']}" + (f" (generation {generation['id']})" if generation else "")
        render.console.print(line, markup=False)
        if publisher:
            render.fields("Publisher", publisher, ("remote", "connected_since", "bitrate_bps", "video_codec", "audio_codec",
                                                   "width", "height", "frame_rate", "keyframe_interval_s", "video_frames", "bytes_in"))
        elif data["publisher_left_at"]:
            ends = f"; the broadcast ends at {data['ends_at']} unless it returns" if data["ends_at"] else "; the broadcast waits until stopped"
            render.console.print(f"The publisher left at {data['publisher_left_at']} (reconnect grace {data['reconnect_grace']}){ends}.", markup=False)
        else:
            render.console.print("No publisher connected.", markup=False)
        if data["restream"]:
            render.console.print("Restream targets:", markup=False)
            for line in restream_cmd.status_lines(data["restream"]):
                render.console.print(line, markup=False)
        for w in data["warnings"]:
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
