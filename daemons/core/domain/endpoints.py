"""Media endpoints and the distribution graph.

An endpoint is a place that serves a stream's HLS: a Sender origin or edge (tribes_*), or an
external origin/edge. Each has an ordered list of source endpoints (its parent links); the links
make the graph, which must stay acyclic. Upserts are idempotent: the same input twice is the
same state, and `updated_at` moves only when something changed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from daemons.core import config as config_mod
from daemons.core.domain.common import as_bool, check_choice, check_name, check_text, like_prefix, now_iso
from daemons.core.errors import ConfigError, Conflict, InvalidInput, NotFound
from daemons.core.store import Store

TYPES = ("tribes_origin", "tribes_edge", "external_origin", "external_edge")
EXTERNAL_TYPES = ("external_origin", "external_edge")
REPORT_TOKEN_PREFIX = "ert_"
HEALTH_KEYS = tuple(k.split(".", 1)[1] for k in config_mod.SCHEMA if k.startswith("health."))


def _check_thresholds(value: object) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("health thresholds must be an object such as {\"max_playlist_age_s\": 6}")
    out = {}
    for k, v in value.items():
        if k not in HEALTH_KEYS:
            raise InvalidInput(f"unknown health threshold {k!r}; allowed: {', '.join(HEALTH_KEYS)}")
        try:
            out[k] = config_mod.check_value(f"health.{k}", v)
        except ConfigError as e:
            raise InvalidInput(e.message) from None
    return dict(sorted(out.items()))


def _check_base_url(value: object) -> str:
    try:
        return config_mod.check_value("node.public_base_url", check_text(value, "public_base_url", 500))
    except ConfigError:
        raise InvalidInput(f"public_base_url {value!r} is not allowed: use an http(s) URL or \"\"") from None


def _row(row: dict, store: Store) -> dict:
    out = as_bool(dict(row), "enabled")
    out.pop("report_token_salt", None)  # a token's ingredient: never shown
    out["health_thresholds"] = json.loads(out["health_thresholds"] or "{}")
    out["sources"] = [
        r["source_id"]
        for r in store.query("SELECT source_id FROM endpoint_sources WHERE endpoint_id = ? ORDER BY position", (row["id"],))
    ]
    return out


def get(store: Store, endpoint_id: str, *, include_deleted: bool = False) -> dict:
    row = store.one("SELECT * FROM media_endpoints WHERE id = ?", (endpoint_id,))
    if row is None or (row["deleted_at"] and not include_deleted):
        raise NotFound(f"no endpoint {endpoint_id!r}")
    return _row(row, store)


def list_(store: Store, *, include_deleted: bool = False) -> list[dict]:
    where = "" if include_deleted else "WHERE deleted_at IS NULL"
    return [_row(r, store) for r in store.query(f"SELECT * FROM media_endpoints {where} ORDER BY id")]


def live_ids(store: Store) -> set[str]:
    """Ids of the endpoints not deleted."""
    return {r["id"] for r in store.query("SELECT id FROM media_endpoints WHERE deleted_at IS NULL")}


def ids_starting(store: Store, prefix: str) -> list[str]:
    """Ids of endpoints not deleted that start with `prefix` (shell completion)."""
    rows = store.query("SELECT id FROM media_endpoints WHERE deleted_at IS NULL AND id LIKE ? ESCAPE '\\' ORDER BY id",
                       (like_prefix(prefix),))
    return [r["id"] for r in rows]


def upsert(
    store: Store,
    endpoint_id: str,
    *,
    type: str | None = None,
    name: str | None = None,
    node_id: str | None = None,
    public_base_url: str | None = None,
    enabled: bool | None = None,
    health_thresholds: dict | None = None,
    sources: list[str] | None = None,
) -> dict:
    """Create the endpoint or change the given fields; `sources` (if given) replaces its links."""
    check_name(endpoint_id, "endpoint id")
    fields: dict = {}
    if type is not None:
        fields["type"] = check_choice(type, "endpoint type", TYPES)
    if name is not None:
        fields["name"] = check_text(name, "name")
    if node_id is not None:
        fields["node_id"] = check_text(node_id, "node_id", 100)
    if public_base_url is not None:
        fields["public_base_url"] = _check_base_url(public_base_url)
    if enabled is not None:
        fields["enabled"] = int(bool(enabled))
    if health_thresholds is not None:
        fields["health_thresholds"] = json.dumps(_check_thresholds(health_thresholds), sort_keys=True)
    with store.write() as db:
        current = store.one("SELECT * FROM media_endpoints WHERE id = ?", (endpoint_id,))
        now = now_iso()
        if current is None or current["deleted_at"]:
            if "type" not in fields:
                raise InvalidInput(f"endpoint {endpoint_id!r} is new: its type is required ({', '.join(TYPES)})")
            row = {
                "id": endpoint_id,
                "name": endpoint_id,
                "node_id": "",
                "public_base_url": "",
                "enabled": 1,
                "health_thresholds": "{}",
                **fields,
                "created_at": now,
                "updated_at": now,
                "deleted_at": None,
            }
            if current is None:
                db["media_endpoints"].insert(row)
            else:  # re-creating a deleted id starts it afresh
                # (and a token of the deleted endpoint must not work)
                db["media_endpoints"].update(endpoint_id, {**row, "report_token_salt": ""})
                db.execute("DELETE FROM endpoint_sources WHERE endpoint_id = ?", (endpoint_id,))
        else:
            changed = {k: v for k, v in fields.items() if current[k] != v}
            if changed:
                db["media_endpoints"].update(endpoint_id, {**changed, "updated_at": now})
        if sources is not None:
            _set_sources(store, endpoint_id, sources)
    return get(store, endpoint_id)


def link(store: Store, endpoint_id: str, sources: list[str]) -> dict:
    """Set the endpoint's ordered source list (empty list: no sources)."""
    with store.write():
        get(store, endpoint_id)
        _set_sources(store, endpoint_id, sources)
    return get(store, endpoint_id)


def _set_sources(store: Store, endpoint_id: str, sources: list[str]) -> None:
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise InvalidInput("sources must be a list of endpoint ids")
    if len(set(sources)) != len(sources):
        raise InvalidInput("sources must not repeat an endpoint")
    for s in sources:
        if s == endpoint_id:
            raise Conflict(f"endpoint {endpoint_id!r} cannot be its own source")
        get(store, s)  # NotFound for a missing or deleted source
    current = [
        r["source_id"]
        for r in store.query("SELECT source_id FROM endpoint_sources WHERE endpoint_id = ? ORDER BY position", (endpoint_id,))
    ]
    if current == sources:
        return
    cycle = _path_to(store, sources, endpoint_id)
    if cycle:
        raise Conflict(f"linking {endpoint_id!r} to {cycle[0]!r} would make a cycle: {' -> '.join([endpoint_id, *cycle])}")
    db = store.db
    db.execute("DELETE FROM endpoint_sources WHERE endpoint_id = ?", (endpoint_id,))
    for position, s in enumerate(sources):
        db["endpoint_sources"].insert({"endpoint_id": endpoint_id, "source_id": s, "position": position})
    db["media_endpoints"].update(endpoint_id, {"updated_at": now_iso()})


def _path_to(store: Store, starts: list[str], target: str) -> list[str] | None:
    """A path of source links from one of `starts` up to `target`, if one exists."""
    parents: dict[str, list[str]] = {}
    for r in store.query("SELECT endpoint_id, source_id FROM endpoint_sources ORDER BY position"):
        parents.setdefault(r["endpoint_id"], []).append(r["source_id"])
    for start in starts:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            if node == target:
                return path
            if node in seen:
                continue
            seen.add(node)
            stack.extend((p, [*path, p]) for p in parents.get(node, []))
    return None


def delete(store: Store, endpoint_id: str) -> dict:
    """Soft-delete; refused while another endpoint still uses it as a source."""
    with store.write() as db:
        get(store, endpoint_id)
        users = [
            r["endpoint_id"]
            for r in store.query(
                "SELECT l.endpoint_id FROM endpoint_sources l JOIN media_endpoints e ON e.id = l.endpoint_id "
                "WHERE l.source_id = ? AND e.deleted_at IS NULL ORDER BY l.endpoint_id",
                (endpoint_id,),
            )
        ]
        if users:
            raise Conflict(f"endpoint {endpoint_id!r} is a source of {', '.join(users)}: unlink it first")
        now = now_iso()
        db["media_endpoints"].update(endpoint_id, {"deleted_at": now, "updated_at": now})
        db.execute("DELETE FROM endpoint_sources WHERE endpoint_id = ?", (endpoint_id,))
    return get(store, endpoint_id, include_deleted=True)


# --- report tokens: what an external endpoint's own process authenticates with --------------


def report_token(install_secret: bytes, endpoint_id: str, salt: str) -> str:
    """The endpoint's report token: HMAC(install secret, id + salt). The store keeps only the salt."""
    digest = hmac.new(install_secret, f"sender-endpoint-report:{endpoint_id}:{salt}".encode(), hashlib.sha256).hexdigest()
    return REPORT_TOKEN_PREFIX + digest


def mint_report_token(store: Store, install_secret: bytes, endpoint_id: str) -> str:
    """A new report token for an external endpoint (the previous one stops working)."""
    with store.write() as db:
        ep = get(store, endpoint_id)
        if ep["type"] not in EXTERNAL_TYPES:
            raise InvalidInput(f"endpoint {endpoint_id!r} is {ep['type']}: only external endpoints "
                               f"({', '.join(EXTERNAL_TYPES)}) report with a token", field="endpoint_id")
        salt = secrets.token_hex(16)
        db["media_endpoints"].update(endpoint_id, {"report_token_salt": salt, "updated_at": now_iso()})
    return report_token(install_secret, endpoint_id, salt)


def report_credentials(store: Store, endpoint_id: str) -> tuple[dict, str]:
    """(endpoint, its report-token salt; "" when none was minted). NotFound for a missing endpoint."""
    ep = get(store, endpoint_id)
    row = store.one("SELECT report_token_salt FROM media_endpoints WHERE id = ?", (endpoint_id,))
    return ep, row["report_token_salt"]
