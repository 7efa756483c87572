"""Streams: create, find, update, start, stop, soft-delete. A stream is what a broadcaster publishes to.

Starting and stopping a stream are moves of its generation (`generations` owns the lifecycle);
this module resolves the stream and keeps the stream's own settings, such as its reconnect grace.
"""

from __future__ import annotations

from daemons.core.config import parse_grace
from daemons.core.domain import generations, renditions
from daemons.core.domain.common import as_bool, check_choice, check_name, check_text, like_prefix, new_id, now_iso
from daemons.core.errors import Conflict, InvalidInput, NotFound
from daemons.core.store import Store

VISIBILITIES = ("public", "unlisted", "private")
_UNSET = object()


def check_grace(value: object) -> str | None:
    """A stream's reconnect grace: a duration ("90s", "5m", seconds) or "never"; None = the config's."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInput("reconnect_grace must be a duration such as 30s, 5m, or \"never\"", field="reconnect_grace")
    try:
        seconds = parse_grace(value)
    except ValueError as e:
        raise InvalidInput(f"reconnect_grace {value!r} is not allowed: {e}, or \"never\"", field="reconnect_grace") from None
    if seconds is not None and seconds > 30 * 86400:
        raise InvalidInput("reconnect_grace must be at most 30 days (or \"never\")", field="reconnect_grace")
    return "never" if seconds is None else (f"{value}" if isinstance(value, str) else f"{value:g}s").strip()


def _row(row: dict) -> dict:
    return as_bool(dict(row), "auto_start", "recording")


def check_recording(value: object) -> int | None:
    """A stream's own recording setting: true, false, or None (the config's recording.enabled)."""
    if value is not None and not isinstance(value, bool):
        raise InvalidInput("recording must be true, false or null (the node's recording.enabled)", field="recording")
    return None if value is None else int(value)


def create(
    store: Store,
    slug: str,
    *,
    title: str = "",
    visibility: str = "public",
    auto_start: bool = True,
    ladder: list[dict] | None = None,
    reconnect_grace: str | None = None,
    recording: bool | None = None,
) -> dict:
    """A new stream, with renditions from the given ladder (the config's default ladder).
    `recording`: whether its broadcasts are recorded (None: the config's recording.enabled)."""
    check_name(slug, "slug")
    check_text(title, "title")
    check_choice(visibility, "visibility", VISIBILITIES)
    grace = check_grace(reconnect_grace)
    recording = check_recording(recording)
    now = now_iso()
    row = {
        "id": new_id("st"),
        "slug": slug,
        "title": title or slug,
        "visibility": visibility,
        "auto_start": int(bool(auto_start)),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "reconnect_grace": grace,
        "recording": recording,
    }
    with store.write() as db:
        if _find_live_slug(store, slug):
            raise Conflict(f"a stream with slug {slug!r} already exists")
        db["streams"].insert(row)
        for r in ladder or [{"name": "source", "kind": "source"}]:
            renditions.upsert(store, row["id"], r)
    return get(store, row["id"])


def _find_live_slug(store: Store, slug: str) -> dict | None:
    return store.one("SELECT * FROM streams WHERE slug = ? AND deleted_at IS NULL", (slug,))


def get(store: Store, ref: str, *, include_deleted: bool = False) -> dict:
    """A stream by slug or id; NotFound names what was asked for."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("a stream slug or id is required")
    row = _find_live_slug(store, ref) or store.one("SELECT * FROM streams WHERE id = ?", (ref,))
    if row is None or (row["deleted_at"] and not include_deleted):
        raise NotFound(f"no stream {ref!r}")
    return _row(row)


def list_(store: Store, *, include_deleted: bool = False) -> list[dict]:
    where = "" if include_deleted else "WHERE deleted_at IS NULL"
    return [_row(r) for r in store.query(f"SELECT * FROM streams {where} ORDER BY slug, created_at")]


def directory(store: Store) -> list[dict]:
    """What sender-http keeps in memory of every stream not deleted: id, slug, title, visibility."""
    return store.query("SELECT id, slug, title, visibility FROM streams WHERE deleted_at IS NULL")


def slugs_starting(store: Store, prefix: str) -> list[str]:
    """Slugs of streams not deleted that start with `prefix` (shell completion)."""
    rows = store.query("SELECT slug FROM streams WHERE deleted_at IS NULL AND slug LIKE ? ESCAPE '\\' ORDER BY slug",
                       (like_prefix(prefix),))
    return [r["slug"] for r in rows]


def update(
    store: Store,
    ref: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    visibility: str | None = None,
    auto_start: bool | None = None,
    reconnect_grace=_UNSET,
    recording=_UNSET,
) -> dict:
    """Change the given fields; `reconnect_grace=None` and `recording=None` go back to the
    config's (a recording setting applies from the stream's next generation)."""
    changes: dict = {}
    if slug is not None:
        changes["slug"] = check_name(slug, "slug")
    if title is not None:
        changes["title"] = check_text(title, "title")
    if visibility is not None:
        changes["visibility"] = check_choice(visibility, "visibility", VISIBILITIES)
    if auto_start is not None:
        changes["auto_start"] = int(bool(auto_start))
    if reconnect_grace is not _UNSET:
        changes["reconnect_grace"] = check_grace(reconnect_grace)
    if recording is not _UNSET:
        changes["recording"] = check_recording(recording)
    with store.write() as db:
        current = get(store, ref)
        changed = {k: v for k, v in changes.items() if _stored(current[k]) != v}
        if "slug" in changed:
            other = _find_live_slug(store, changed["slug"])
            if other and other["id"] != current["id"]:
                raise Conflict(f"a stream with slug {changed['slug']!r} already exists")
        if changed:
            changed["updated_at"] = now_iso()
            db["streams"].update(current["id"], changed)
    return get(store, current["id"])


def _stored(v):
    return int(v) if isinstance(v, bool) else v


def delete(store: Store, ref: str) -> dict:
    """Soft-delete: the row stays for history, its keys stop working, the slug is free again,
    and an active generation ends."""
    with store.write() as db:
        current = get(store, ref)
        now = now_iso()
        db["streams"].update(current["id"], {"deleted_at": now, "updated_at": now})
        generations.end_active(store, current["id"], generations.EndReason.STREAM_DELETED, at=now)
    return get(store, current["id"], include_deleted=True)


def start(store: Store, ref: str, *, reconnect_grace=_UNSET, record_default: bool = False) -> tuple[dict, bool]:
    """The stream's active generation, starting one if none is: (generation, created).
    `reconnect_grace`, when given, becomes the stream's own (kept for its next broadcasts too);
    a new generation is recorded by the stream's own setting, else `record_default` (the
    config's recording.enabled)."""
    with store.write():
        stream = get(store, ref)
        if reconnect_grace is not _UNSET:
            stream = update(store, stream["id"], reconnect_grace=reconnect_grace)
        return generations.begin(store, stream["id"], recorded=generations.records(stream, record_default))


def stop(store: Store, ref: str) -> dict | None:
    """End the stream's active generation (like its publisher's grace running out, but now);
    None when nothing was active."""
    stream = get(store, ref, include_deleted=True)
    return generations.end_active(store, stream["id"], generations.EndReason.STOPPED)
