"""Recordings: the generations that kept every segment (replays) — what they hold, which may go.

Whether a generation is recorded is decided when it begins (`generations.begin(recorded=…)`: the
stream's own setting, else `recording.enabled`) and kept in `stream_generations.recorded`. Its
spool directory then keeps every segment, and each rendition lists them in `dvr.m3u8` while live
and `vod.m3u8` once ended, beside `master-dvr.m3u8` / `master-vod.m3u8`
(`daemons/media/recording.py`; sender-http serves them at the generation's URLs). This module:

* `list_` / `get`: recorded generations whose files are in the spool, with their size on disk,
  duration and segments (from their playlists) and where to watch them;
* `delete`: an ended recording's files go (its generation's row stays, as history);
* `to_remove` (sans-IO): what retention removes — ended recordings older than `recording.keep`,
  then the oldest ended ones while all recordings together pass `recording.max_bytes`; never an
  active generation (its bytes still count);
* `retention`: the store's side of sender-ingest's retention loop: which of the spool's
  generation directories are plain ended ones (`spool.ended_retention`) and which recordings.

Reading the spool here is blocking (the CLI calls it directly, daemons through their store
worker or a thread).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from daemons.core.domain import generations, streams
from daemons.core.errors import Conflict, NotFound
from daemons.core.store import Store
from daemons.media import names
from daemons.media.hls import parse_media_playlist

AGE, SIZE = "recording.keep", "recording.max_bytes"  # why retention removes a recording


def directory(spool_root: Path, stream_id: str, generation_id: str) -> Path:
    return Path(spool_root) / "streams" / stream_id / generation_id


def disk_usage(path: Path) -> int:
    """Bytes of every file under `path` (0 when it is gone)."""
    total, pending = 0, [os.fspath(path)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            pending.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # removed meanwhile (a part leaving the live window)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


def contents(path: Path) -> dict:
    """What a recording's directory holds: its renditions (generation.json), whether its VOD
    playlists are written (`complete`), and the duration, segments and discontinuities its first
    rendition's playlist lists (the VOD one, else the DVR one)."""
    try:
        renditions = list(json.loads((path / "generation.json").read_bytes()).get("renditions") or [])
    except (OSError, ValueError, AttributeError):
        renditions = sorted(d.name for d in path.iterdir() if (d / names.DVR_PLAYLIST).exists()) if path.is_dir() else []
    out = {"renditions": renditions, "complete": False, "duration_s": 0.0, "segments": 0, "discontinuities": 0}
    for name in renditions[:1]:
        for playlist_name in (names.VOD_PLAYLIST, names.DVR_PLAYLIST):
            try:
                playlist = parse_media_playlist((path / name / playlist_name).read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            out.update(complete=playlist_name == names.VOD_PLAYLIST,
                       duration_s=round(sum(s.duration for s in playlist.segments), 3),
                       segments=len(playlist.segments),
                       discontinuities=sum(s.discontinuity for s in playlist.segments))
            break
    return out


_SELECT = ("SELECT g.id, g.stream_id, g.status, g.started_at, g.live_at, g.ended_at, g.end_reason, "
           "s.slug AS stream, s.visibility, s.deleted_at AS stream_deleted_at "
           "FROM stream_generations g JOIN streams s ON s.id = g.stream_id WHERE g.recorded = 1")


def describe(row: dict, spool_root: Path) -> dict:
    """A recording as the CLI and the management API show it (blocking: reads its directory)."""
    path = directory(spool_root, row["stream_id"], row["id"])
    held = contents(path)
    master = names.MASTER_VOD if held["complete"] else names.MASTER_DVR
    return {
        "generation_id": row["id"],
        "stream": row["stream"],
        "stream_id": row["stream_id"],
        "visibility": row["visibility"],
        "status": row["status"],
        "active": generations.is_active(row["status"]),
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "end_reason": row["end_reason"],
        **held,
        "bytes": disk_usage(path),
        # Where to watch it (a private stream's need `?token=`); none once its stream is deleted.
        "replay_path": None if row["stream_deleted_at"] else f"/watch/{row['stream']}/{row['id']}",
        "master_path": f"/hls/{row['stream_id']}/{row['id']}/{master}",
    }


def list_(store: Store, spool_root: Path, *, stream: str | None = None, limit: int = 100) -> list[dict]:
    """Recorded generations whose files are in the spool, newest first (`stream`: a slug or id)."""
    sql, params = _SELECT, []
    if stream is not None:
        sql += " AND g.stream_id = ?"
        params.append(streams.get(store, stream, include_deleted=True)["id"])
    rows = store.query(sql + " ORDER BY g.started_at DESC, g.rowid DESC", tuple(params))
    out = []
    for row in rows:
        if len(out) >= limit:
            break
        if directory(spool_root, row["stream_id"], row["id"]).is_dir():
            out.append(describe(row, spool_root))
    return out


def replay(store: Store, spool_root: Path, stream_id: str, generation_id: str) -> dict | None:
    """What the replay page of one generation of a stream plays, without reading its segments:
    the generation with `master` (master-vod.m3u8 once written, else master-dvr.m3u8); None when
    it is not this stream's, not recorded, or has no replay (yet, or any more)."""
    row = store.one(_SELECT + " AND g.id = ? AND g.stream_id = ?", (generation_id, stream_id))
    if row is None:
        return None
    path = directory(spool_root, stream_id, generation_id)
    master = next((m for m in (names.MASTER_VOD, names.MASTER_DVR) if (path / m).is_file()), None)
    if master is None:
        return None
    return {**row, "active": generations.is_active(row["status"]), "master": master}


def replays(store: Store, spool_root: Path, stream_id: str, *, limit: int = 5) -> list[dict]:
    """A stream's recordings that can be watched, newest first (the watch page's list): each as
    `replay` answers it."""
    rows = store.query("SELECT id FROM stream_generations WHERE stream_id = ? AND recorded = 1 "
                       "ORDER BY started_at DESC, rowid DESC LIMIT ?", (stream_id, limit * 4))
    found = (replay(store, spool_root, stream_id, r["id"]) for r in rows)
    return [r for r in found if r is not None][:limit]


def get(store: Store, spool_root: Path, generation_id: str) -> dict:
    """One recording; NotFound when the generation is unknown, not recorded, or its files are gone."""
    row = store.one(_SELECT + " AND g.id = ?", (generation_id,))
    if row is None:
        known = store.one("SELECT id FROM stream_generations WHERE id = ?", (generation_id,))
        raise NotFound(f"generation {generation_id!r} was not recorded" if known else f"no generation {generation_id!r}")
    if not directory(spool_root, row["stream_id"], row["id"]).is_dir():
        raise NotFound(f"the recording of {generation_id!r} is gone from the spool (deleted, or removed by retention)")
    return describe(row, spool_root)


def delete(store: Store, spool_root: Path, generation_id: str) -> dict:
    """Remove an ended recording's files (the recording as it was, with `deleted: true`). A live
    one is a Conflict, and so is one sender-ingest has not closed yet (its generation.json not
    ended): stopping a broadcast and deleting it at once must not race the last writes."""
    recording = get(store, spool_root, generation_id)
    if recording["active"]:
        raise Conflict(f"generation {generation_id} is {recording['status']}: stop it first (`sender stream stop "
                       f"{recording['stream']}`)")
    path = directory(spool_root, recording["stream_id"], generation_id)
    try:
        closed = bool(json.loads((path / "generation.json").read_bytes()).get("ended"))
    except (OSError, ValueError, AttributeError):
        closed = True  # nothing writes a generation without one
    if not closed:
        raise Conflict(f"generation {generation_id} ended but sender-ingest has not closed its playlists yet: try again "
                       "in a moment (or once sender-ingest runs)")
    shutil.rmtree(path)
    return {**recording, "deleted": True}


# --- retention -----------------------------------------------------------------------------------


def to_remove(recordings: list[dict], *, keep_s: float, max_bytes: int, now: datetime) -> list[tuple[str, str]]:
    """Which recordings retention removes, oldest first, with why (AGE or SIZE). `recordings`:
    every recording in the spool as {"id", "status", "started_at", "ended_at", "bytes"}. An
    active one is never removed, but its bytes count toward `max_bytes` (0: no limit)."""
    ended = sorted((r for r in recordings if not generations.is_active(r["status"])), key=lambda r: (r["started_at"], r["id"]))
    cutoff = now - timedelta(seconds=keep_s)
    out = [(r["id"], AGE) for r in ended if _time(r["ended_at"] or r["started_at"]) <= cutoff]
    if max_bytes:
        gone = {gid for gid, _ in out}
        total = sum(r["bytes"] for r in recordings if r["id"] not in gone)
        for r in ended:
            if total <= max_bytes:
                break
            if r["id"] not in gone:
                out.append((r["id"], SIZE))
                total -= r["bytes"]
    return out


def retention(store: Store, generation_ids: list[str], *, ended_retention_s: float,
              now: datetime | None = None) -> tuple[set[str], list[dict]]:
    """Of the spool's generation directories: (the plain ones that may go — not recorded and
    ended longer than `ended_retention_s` ago, or unknown to the store —, the recorded ones as
    `to_remove` takes them, without their bytes)."""
    if not generation_ids:
        return set(), []
    marks = ",".join("?" * len(generation_ids))
    recorded = store.query(
        f"SELECT id, status, started_at, ended_at FROM stream_generations WHERE id IN ({marks}) AND recorded = 1",
        tuple(generation_ids))
    ids = {r["id"] for r in recorded}
    plain = [g for g in generation_ids if g not in ids]
    return generations.expired(store, plain, ended_retention_s, now=now), recorded


def usage(store: Store, spool_root: Path) -> dict:
    """All recordings in the spool: {"count", "bytes"} (for `sender status` and `sender doctor`)."""
    rows = store.query(_SELECT)
    sizes = [disk_usage(p) for r in rows if (p := directory(spool_root, r["stream_id"], r["id"])).is_dir()]
    return {"count": len(sizes), "bytes": sum(sizes)}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
