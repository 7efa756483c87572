"""`sender recording …`: list, show, delete and export recorded broadcasts (domain.recordings).

Export remuxes a recording's VOD playlist into one MP4 (ffmpeg `-c copy`, no re-encode; the
index moved to the front so the file plays while it downloads): written under a temporary name
beside the target and renamed when whole.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import typer

from daemons.core import domain
from daemons.core.errors import Conflict, InvalidInput, SenderError
from daemons.media import names
from sender_cli import context, render
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Recordings: replays of past (and live) broadcasts.", no_args_is_help=True)

GENERATION_ARG = typer.Argument(..., help="The recording's generation id (gen_…; see `sender recording list`).")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _state(r: dict) -> str:
    return f"{r['status']} (DVR)" if r["active"] else r["status"] if r["complete"] else f"{r['status']} (not closed yet)"


@app.command("list")
def list_(
    ctx: typer.Context,
    stream: str = typer.Option(None, "--stream", help="Only this stream's recordings (slug or id)."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="At most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recordings in the spool, newest first, with their size and duration."""
    cli = context.get(ctx)
    rows = domain.recordings.list_(cli.store(), cli.install().spool_root, stream=stream, limit=limit)

    def human() -> None:
        render.table(
            "Recordings",
            ("generation", "stream", "state", "started", "duration", "segments", "size"),
            ((r["generation_id"], r["stream"], _state(r), r["started_at"], _duration(r["duration_s"]), r["segments"],
              _size(r["bytes"])) for r in rows),
        )
        if rows:
            total = sum(r["bytes"] for r in rows)
            render.console.print(f"{len(rows)} recording(s), {_size(total)}.", markup=False)

    render.emit(rows, as_json, human)


@app.command("show")
def show(ctx: typer.Context, generation: str = GENERATION_ARG, as_json: bool = JSON_OPTION) -> None:
    """One recording: its stream, state, duration, size, renditions and where to watch it."""
    cli = context.get(ctx)
    row = domain.recordings.get(cli.store(), cli.install().spool_root, generation)
    base = cli.install().config["node.public_base_url"].rstrip("/")
    row["replay_url"] = f"{base}{row['replay_path']}" if row["replay_path"] else None
    row["master_url"] = f"{base}{row['master_path']}"

    def human() -> None:
        shown = {**row, "state": _state(row), "duration": _duration(row["duration_s"]), "size": _size(row["bytes"])}
        render.fields(f"Recording {row['generation_id']}", shown,
                      ("stream", "visibility", "state", "started_at", "ended_at", "end_reason", "duration", "segments",
                       "discontinuities", "renditions", "size", "replay_url", "master_url"))
        if row["visibility"] == "private":
            render.console.print(f"Private: add ?token=… to the URLs (`sender stream token {row['stream']}`).", markup=False)

    render.emit(row, as_json, human)


@app.command("delete")
def delete(ctx: typer.Context, generation: str = GENERATION_ARG, as_json: bool = JSON_OPTION) -> None:
    """Delete an ended recording's files (its broadcast stays in the stream's history)."""
    cli = context.get(ctx)
    row = domain.recordings.delete(cli.store(), cli.install().spool_root, generation)
    render.emit(row, as_json, lambda: render.console.print(
        f"Recording {row['generation_id']} of {row['stream']} deleted ({_size(row['bytes'])} freed).", markup=False))


def export_command(ffmpeg: str, playlist: Path, target: Path) -> list[str]:
    """ffmpeg remuxing an HLS playlist of fMP4 segments into one MP4: every stream, no re-encode,
    the index at the front (+faststart)."""
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(playlist),
            "-map", "0", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(target)]


@app.command("export")
def export(
    ctx: typer.Context,
    generation: str = GENERATION_ARG,
    mp4: Path = typer.Option(..., "--mp4", metavar="FILE", help="The MP4 file to write.", dir_okay=False),
    rendition: str = typer.Option(None, "--rendition", help="Which rendition (default: the first, the source)."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Export an ended recording as one MP4 file (a remux of its VOD playlist: no re-encode)."""
    cli = context.get(ctx)
    inst = cli.install()
    row = domain.recordings.get(cli.store(), inst.spool_root, generation)
    if not row["complete"]:
        raise Conflict(f"recording {generation} has no VOD playlist yet: it is written when the broadcast ends "
                       f"(`sender stream stop {row['stream']}`)")
    name = rendition or (row["renditions"][0] if row["renditions"] else "source")
    if name not in row["renditions"]:
        raise InvalidInput(f"recording {generation} has no rendition {name!r} (it has {', '.join(row['renditions'])})",
                           field="rendition")
    playlist = domain.recordings.directory(inst.spool_root, row["stream_id"], generation) / name / names.VOD_PLAYLIST
    if mp4.exists() and not force:
        raise InvalidInput(f"{mp4} exists: choose another file, or --force", field="mp4")
    partial = mp4.with_name(f".{mp4.name}.part")
    started = time.monotonic()
    try:
        done = subprocess.run(export_command(inst.config["backend.ffmpeg"], playlist, partial),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    except OSError as e:
        raise SenderError(f"cannot run ffmpeg ({inst.config['backend.ffmpeg']}): {e.strerror}") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SenderError(f"ffmpeg could not export {generation}: {done.stderr.strip()[-500:] or f'exit {done.returncode}'}")
    os.replace(partial, mp4)
    data = {"generation_id": generation, "stream": row["stream"], "rendition": name, "file": str(mp4),
            "bytes": mp4.stat().st_size, "duration_s": row["duration_s"], "seconds": round(time.monotonic() - started, 3)}
    render.emit(data, as_json, lambda: render.console.print(
        f"Exported {generation} ({row['stream']}, {name}, {_duration(row['duration_s'])}) to {mp4}: "
        f"{_size(data['bytes'])} in {data['seconds']:.1f} s.", markup=False))
