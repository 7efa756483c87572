"""Streams: create, find, update, soft-delete. A stream is what a broadcaster publishes to."""

from __future__ import annotations

from daemons.core.domain import renditions
from daemons.core.domain.common import as_bool, check_choice, check_name, check_text, new_id, now_iso
from daemons.core.errors import Conflict, InvalidInput, NotFound
from daemons.core.store import Store

VISIBILITIES = ("public", "unlisted", "private")


def _row(row: dict) -> dict:
    return as_bool(dict(row), "auto_start")


def create(
    store: Store,
    slug: str,
    *,
    title: str = "",
    visibility: str = "public",
    auto_start: bool = True,
    ladder: list[dict] | None = None,
) -> dict:
    """A new stream, with renditions from the given ladder (the config's default ladder)."""
    check_name(slug, "slug")
    check_text(title, "title")
    check_choice(visibility, "visibility", VISIBILITIES)
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


def update(
    store: Store,
    ref: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    visibility: str | None = None,
    auto_start: bool | None = None,
) -> dict:
    changes: dict = {}
    if slug is not None:
        changes["slug"] = check_name(slug, "slug")
    if title is not None:
        changes["title"] = check_text(title, "title")
    if visibility is not None:
        changes["visibility"] = check_choice(visibility, "visibility", VISIBILITIES)
    if auto_start is not None:
        changes["auto_start"] = int(bool(auto_start))
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
        db.execute(
            "UPDATE stream_generations SET status = 'ended', ended_at = ?, updated_at = ? "
            "WHERE stream_id = ? AND status IN ('starting', 'live')",
            (now, now, current["id"]),
        )
    return get(store, current["id"], include_deleted=True)
