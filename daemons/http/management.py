"""The management API that the control plane (Legion) calls: `POST /api/admin/management`.

One JSON-RPC 2.0-style call per request: `{"jsonrpc": "2.0"?, "method", "params"?, "id"?}`,
answered `{"jsonrpc": "2.0", "id", "result"}` or `{"jsonrpc": "2.0", "id", "error": {"code",
"message", "data": {"field", "type"}}}` (docs/management-api.md is the reference).

Order of checks: the bearer token first (401 without a usable `Authorization: Bearer …`, 403 for
a token that is not valid), before the body is even parsed; then the JSON (-32700), the call's
shape (-32600), the method (-32601, HTTP 404), its params against the method's schema (-32602,
the offending field named); then the domain layer, whose errors keep their HTTP status.

Each method declares its params as a JSON-Schema-ish dict; the same dict validates the call and
is what `capabilities` answers. Methods marked `sensitive` answer secrets (a stream key, a
playback token): nothing but the method name, the id and the outcome is ever logged, for any
method. Token verifiers are re-read from the config file when it changes, so `sender token
revoke` takes effect without a restart.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import trio

from daemons.core import config as config_mod
from daemons.core.config import RENDITION_KINDS, parse_listen
from daemons.core.domain import endpoints, generations, keys, mgmt_tokens, playback, renditions, snapshots, streams
from daemons.core.errors import ConfigError, SenderError
from daemons.core.stats import read_fresh_stats
from daemons.runtime import logging as slog

log = slog.get("http.management")

API_VERSION = 1
MAX_ID_LENGTH = 128

# JSON-RPC 2.0 codes, and Sender's own (the -32000..-32099 "server error" range) per SenderError code.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APP_CODES = {
    "invalid_input": INVALID_PARAMS,
    "unauthorized": -32001,
    "forbidden": -32003,
    "not_found": -32004,
    "conflict": -32009,
    "store_error": -32010,
    "config_invalid": -32011,
}
OTHER_APP_ERROR = -32000
HTTP_OF = {PARSE_ERROR: 400, INVALID_REQUEST: 400, METHOD_NOT_FOUND: 404, INVALID_PARAMS: 400, INTERNAL_ERROR: 500}

BEARER_REALM = 'Bearer realm="sender-management"'


class CallError(Exception):
    """An error answered as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, *, field: str | None = None, type: str, http_status: int,
                 call_id: Any = None):
        super().__init__(message)
        self.code, self.message, self.field, self.type, self.http_status = code, message, field, type, http_status
        self.call_id = call_id  # the call's id, when the error came before it was known to the handler


def _invalid_params(message: str, field: str | None) -> CallError:
    return CallError(INVALID_PARAMS, message, field=field, type="invalid_input", http_status=400)


# --- params schemas: a small JSON-Schema subset, checked field by field ----------------------


def obj(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False, **extra}


def string(description: str, **kw) -> dict:
    return {"type": "string", "description": description, **kw}


def boolean(description: str) -> dict:
    return {"type": "boolean", "description": description}


def integer(description: str, **kw) -> dict:
    return {"type": "integer", "description": description, **kw}


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_ARTICLE = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
            "object": "an object", "array": "an array", "null": "null"}


def validate(schema: dict, value: Any, path: str = "") -> None:
    """Raise an invalid-params CallError naming the first field that breaks the schema."""
    where = path or "params"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            raise _invalid_params(f"{where} must be {' or '.join(_ARTICLE[k] for k in kinds)}", path or None)
    if "enum" in schema and value not in schema["enum"]:
        raise _invalid_params(f"{where} {_show(value)} is not allowed: use one of {', '.join(map(str, schema['enum']))}", path or None)
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        raise _invalid_params(f"{where} must be at most {schema['maxLength']} characters", path or None)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if len(value) > schema.get("maxProperties", len(value)):
            raise _invalid_params(f"{where} has more than {schema['maxProperties']} members", path or None)
        for k in value:
            if k not in props and extra is False:
                allowed = ", ".join(props) or "none"
                raise _invalid_params(f"unknown parameter {_show(k)} (allowed: {allowed})", _join(path, k))
        for k in schema.get("required", ()):
            if k not in value:
                raise _invalid_params(f"{_join(path, k)} is required", _join(path, k))
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                validate(sub, v, _join(path, k))
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise _invalid_params(f"{where} must have at most {schema['maxItems']} items", path or None)
        if "items" in schema:
            for i, item in enumerate(value):
                validate(schema["items"], item, f"{where}[{i}]")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# --- the methods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    params: dict
    run: Callable[[Any, dict], Awaitable[Any]]
    sensitive: bool = False
    # Which param to blame for a domain error that names no field (by SenderError code), and
    # what to call the fields the domain names in its own words.
    blame: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description, "params": self.params, "sensitive": self.sensitive}


METHODS: dict[str, Method] = {}


def method(name: str, description: str, params: dict, **kw):
    def register(fn):
        METHODS[name] = Method(name, description, params, fn, **kw)
        return fn

    return register


STREAM_REF = string("The stream's slug or id.", maxLength=100)
RENDITION_FIELDS = {
    "name": string("Rendition name: 1-32 of a-z, 0-9, _ and -.", maxLength=32),
    "kind": {"type": "string", "enum": list(RENDITION_KINDS), "description": "source (remux) or transcode."},
    "width": integer("Width in pixels (16-7680)."),
    "height": integer("Height in pixels (16-4320); required for transcode."),
    "video_bitrate": integer("Video bits/s (50000-100000000); required for transcode."),
    "audio_bitrate": integer("Audio bits/s (8000-1000000)."),
    "video_codec": string("Video codec.", maxLength=100),
    "audio_codec": string("Audio codec.", maxLength=100),
    "frame_rate": {"type": "number", "description": "Frames per second (1-240)."},
}
STREAM_FIELDS = {
    "title": string("Title shown to viewers (at most 200 characters).", maxLength=200),
    "visibility": {"type": "string", "enum": list(streams.VISIBILITIES),
                   "description": "public (listed), unlisted (playable with the URL) or private (playback token)."},
    "auto_start": boolean("Start a generation when a publisher connects (else stream.start first)."),
    "reconnect_grace": {"type": ["string", "null"], "maxLength": 20,
                        "description": "How long a broadcast whose publisher left stays live for it to come back "
                                       "(\"90s\", \"5m\", \"0s\" = end at once, \"never\" = until stream.stop); "
                                       "null = the node's rtmp.reconnect_grace."},
}
SNAPSHOT_FIELDS = {
    "endpoint_id": string("The endpoint observed.", maxLength=100),
    "generation_id": string("The generation observed (\"\" for the endpoint as a whole).", maxLength=100),
    "observed_at": string("When (UTC ISO-8601); default now.", maxLength=40),
    "reporter": string("Who observed it.", maxLength=100),
    "status": {"type": "string", "enum": list(snapshots.STATUSES), "description": "The endpoint's health."},
    "viewers": integer("Viewers."),
    "ingress_bps": integer("Bits/s in."),
    "egress_bps": integer("Bits/s out."),
    "playlist_age_s": {"type": "number", "description": "Seconds since the playlist last changed."},
    "last_segment_at": string("When the last segment appeared (UTC ISO-8601).", maxLength=40),
    "segment_lag": {"type": ["integer", "null"], "description": "Segments behind the source."},
}


async def _in_store(ctx, fn, *args, **kw):
    return await ctx.store.run(fn, *args, **kw)


@method("capabilities", "Every method with its params schema and whether its result is sensitive.", obj({}))
async def capabilities(ctx, params: dict) -> dict:
    return {
        "api": "sender-management",
        "version": API_VERSION,
        "node": ctx.config["node.id"],
        "limits": {"max_request_body": ctx.config["http.max_request_body"]},
        "methods": [m.describe() for m in METHODS.values()],
    }


def _stream_get(store, ref: str) -> dict:
    row = streams.get(store, ref)
    row["renditions"] = renditions.list_(store, row["id"])
    row["keys"] = keys.list_(store, row["id"])
    row["generation"] = generations.active(store, row["id"])
    return row


@method("stream.get", "One stream: its fields, renditions, keys (never the keys themselves) and active generation.",
        obj({"stream": STREAM_REF}, ("stream",)), blame={"not_found": "stream"})
async def stream_get(ctx, params: dict) -> dict:
    return await _in_store(ctx, _stream_get, params["stream"])


@method("stream.list", "All streams, each with its active generation (null when idle).",
        obj({"include_deleted": boolean("Include soft-deleted streams (default false).")}))
async def stream_list(ctx, params: dict) -> dict:
    return {"streams": await _in_store(ctx, streams.list_with_generations, include_deleted=params.get("include_deleted", False))}


@method("stream.create", "Create a stream. An existing slug is a conflict (-32009, HTTP 409).",
        obj({"slug": string("URL-safe name: 1-64 of a-z, 0-9 and '-'.", maxLength=64), **STREAM_FIELDS,
             "ladder": {"type": "array", "maxItems": 16, "items": obj(RENDITION_FIELDS, ("name", "kind")),
                        "description": "Its renditions (default: the config's renditions.ladder)."}},
            ("slug",)),
        blame={"conflict": "slug", "invalid_input": "ladder"})
async def stream_create(ctx, params: dict) -> dict:
    params = {"ladder": ctx.config["renditions.ladder"], **params}
    row = await _in_store(ctx, streams.create, **params)
    await ctx.directory.refresh()
    return row


@method("stream.update", "Change a stream's slug, title, visibility or auto start; unchanged fields stay.",
        obj({"stream": STREAM_REF, "slug": string("A new slug.", maxLength=64), **STREAM_FIELDS}, ("stream",)),
        blame={"not_found": "stream", "conflict": "slug"})
async def stream_update(ctx, params: dict) -> dict:
    ref = params.pop("stream")
    row = await _in_store(ctx, streams.update, ref, **params)
    await ctx.directory.refresh()
    return row


@method("stream.delete", "Soft-delete a stream: its keys stop working, its active generation ends, the slug is free.",
        obj({"stream": STREAM_REF}, ("stream",)), blame={"not_found": "stream"})
async def stream_delete(ctx, params: dict) -> dict:
    row = await _in_store(ctx, streams.delete, params["stream"])
    await ctx.directory.refresh()
    return row


@method("stream.start", "Start a generation (needed before publishing when auto_start is off); "
                        "an active one is returned as is. reconnect_grace, when given, becomes the stream's own.",
        obj({"stream": STREAM_REF, "reconnect_grace": STREAM_FIELDS["reconnect_grace"]}, ("stream",)),
        blame={"not_found": "stream"})
async def stream_start(ctx, params: dict) -> dict:
    generation, created = await _in_store(ctx, streams.start, params.pop("stream"), **params)
    return {"generation": generation, "created": created}


@method("stream.stop", "End the active generation: the publisher is disconnected, viewers see the end.",
        obj({"stream": STREAM_REF}, ("stream",)), blame={"not_found": "stream"})
async def stream_stop(ctx, params: dict) -> dict:
    generation = await _in_store(ctx, streams.stop, params["stream"])
    return {"generation": generation, "stopped": generation is not None}


@method("stream.status", "Is it live? status (offline | starting | live | ended), the latest generation, and the "
                         "connected publisher and packaging pipeline as the ingest daemon reports them.",
        obj({"stream": STREAM_REF}, ("stream",)), blame={"not_found": "stream"})
async def stream_status(ctx, params: dict) -> dict:
    ingest = await trio.to_thread.run_sync(read_fresh_stats, ctx.install.state_dir, "ingest") or {}
    return await _in_store(ctx, streams.status, params["stream"], ingest, ctx.config)


@method("stream.playback_token", "A playback token for a (private) stream: {token, expires_at (unix s), ttl_s}. "
                                 "Append ?token=… to the playback API and HLS URLs.",
        obj({"stream": STREAM_REF,
             "ttl_s": integer(f"Lifetime in seconds, 1-{playback.MAX_TTL_S} (default: the config's http.playback_token_ttl).")},
            ("stream",)),
        sensitive=True, blame={"not_found": "stream"})
async def stream_playback_token(ctx, params: dict) -> dict:
    stream = await _in_store(ctx, streams.get, params["stream"])
    ttl = params.get("ttl_s", int(ctx.config.seconds("http.playback_token_ttl")))
    return playback.mint_token(ctx.playback_secret, stream["id"], ttl)


def _obs_server(cfg) -> str:
    host = urlsplit(cfg["node.public_base_url"]).hostname or "127.0.0.1"
    _, port = parse_listen(cfg["rtmp.listen"])
    return f"rtmp://{host}/live" if port == 1935 else f"rtmp://{host}:{port}/live"


@method("stream_key.create", "A new stream key: the key is in this answer and nowhere else, ever.",
        obj({"stream": STREAM_REF, "label": string("A note to tell keys apart (at most 100 characters).", maxLength=100)},
            ("stream",)),
        sensitive=True, blame={"not_found": "stream"})
async def stream_key_create(ctx, params: dict) -> dict:
    row, key = await _in_store(ctx, keys.create, ctx.secret, params["stream"], label=params.get("label", ""))
    server = _obs_server(ctx.config)
    return {**row, "key": key, "server": server, "url": f"{server}/{key}"}


@method("stream_key.revoke", "Revoke a stream key by id or prefix; revoking twice keeps the first time.",
        obj({"key_id": string("The key's id (key_…) or prefix (sk…).", maxLength=100)}, ("key_id",)),
        blame={"not_found": "key_id"})
async def stream_key_revoke(ctx, params: dict) -> dict:
    return await _in_store(ctx, keys.revoke, params["key_id"])


@method("media_endpoints.upsert", "Create an endpoint or change the given fields (idempotent); sources, when "
                                  "given, replace its ordered parent links (the graph stays acyclic).",
        obj({
            "id": string("Endpoint id: 1-64 of a-z, 0-9 and '-'.", maxLength=64),
            "type": {"type": "string", "enum": list(endpoints.TYPES), "description": "Required for a new endpoint."},
            "name": string("Human-readable name.", maxLength=200),
            "node_id": string("The Sender node serving it.", maxLength=100),
            "public_base_url": string("Its http(s) base URL, or \"\".", maxLength=500),
            "enabled": boolean("Whether it serves."),
            "health_thresholds": {"type": "object", "maxProperties": 16,
                                  "additionalProperties": {"type": "number"},
                                  "description": f"Overrides of {', '.join(endpoints.HEALTH_KEYS)}."},
            "sources": {"type": "array", "maxItems": 64, "items": string("An endpoint id.", maxLength=64),
                        "description": "Ordered source endpoint ids."},
        }, ("id",)),
        blame={"not_found": "sources", "conflict": "sources"},
        aliases={"endpoint id": "id", "endpoint type": "type"})
async def media_endpoints_upsert(ctx, params: dict) -> dict:
    endpoint_id = params.pop("id")
    return await _in_store(ctx, endpoints.upsert, endpoint_id, **params)


@method("media_endpoints.list", "All endpoints with their sources and thresholds.",
        obj({"include_deleted": boolean("Include soft-deleted endpoints (default false).")}))
async def media_endpoints_list(ctx, params: dict) -> dict:
    return {"endpoints": await _in_store(ctx, endpoints.list_, include_deleted=params.get("include_deleted", False))}


def _rendition_upsert(store, ref: str, rendition: dict) -> dict:
    return renditions.upsert(store, streams.get(store, ref)["id"], rendition)


@method("renditions.upsert", "Create or replace a stream's rendition of that name (idempotent). "
                             "Takes effect at the stream's next generation.",
        obj({"stream": STREAM_REF, **RENDITION_FIELDS}, ("stream", "name", "kind")),
        blame={"not_found": "stream"})
async def renditions_upsert(ctx, params: dict) -> dict:
    ref = params.pop("stream")
    return await _in_store(ctx, _rendition_upsert, ref, params)


@method("endpoint_snapshots.report", "Record an observation of an endpoint: its latest snapshot per "
                                     "(endpoint, generation), and its history.",
        obj(SNAPSHOT_FIELDS, ("endpoint_id", "status")),
        blame={"not_found": "endpoint_id"})
async def endpoint_snapshots_report(ctx, params: dict) -> dict:
    return await _in_store(ctx, snapshots.record, params, history_limit=ctx.config["snapshot.history_limit"])


# --- tokens: the verifiers in the config file, re-read when it changes -------------------------


class TokenVerifiers:
    def __init__(self, config):
        self.path = config.path
        self.verifiers: list[str] = list(config["management.token_verifiers"])
        self.stamp: tuple | None = None  # the file may have changed since the daemon loaded it: read it first

    def _stamp(self):
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    async def current(self) -> list[str]:
        stamp = self._stamp()
        if stamp is not None and stamp != self.stamp:
            try:
                cfg = await trio.to_thread.run_sync(config_mod.load, self.path)
                self.verifiers = list(cfg["management.token_verifiers"])
            except ConfigError as e:  # mid-edit, or broken: keep the last good list
                slog.log(log, logging.WARNING, "config unreadable; keeping the management tokens known", error=e.message)
            self.stamp = stamp
        return self.verifiers


def _verifiers_of(ctx) -> TokenVerifiers:
    tv = getattr(ctx, "_management_tokens", None)
    if tv is None:
        tv = TokenVerifiers(ctx.config)
        ctx._management_tokens = tv
    return tv


_BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)


async def authenticate(ctx, authorization: str | None) -> str:
    """The token's prefix (safe to log), or a CallError for 401 / 403."""
    m = _BEARER.fullmatch(authorization or "")
    if not m:
        raise CallError(-32001, f"authentication required: send 'Authorization: Bearer <management token>' "
                                f"(WWW-Authenticate: {BEARER_REALM})", type="unauthorized", http_status=401)
    check = mgmt_tokens.verify(ctx.secret, m.group(1), await _verifiers_of(ctx).current())
    if not check.ok:
        raise CallError(-32003, "the management token is not valid (revoked, or never created here)",
                        type="forbidden", http_status=403)
    return check.prefix


# --- the call ------------------------------------------------------------------------------------


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text[:20]} is out of range")
    return value


def parse_call(body: bytes) -> tuple[Any, str, dict]:
    """(id, method, params) of a well-formed call, else CallError (parse error / invalid request)."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CallError(PARSE_ERROR, "the body is not JSON", type="parse_error", http_status=400) from None
    try:  # "\ud800" escapes decode to lone surrogates, which no store or log can take
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise CallError(PARSE_ERROR, "the body is not JSON text: it escapes a lone UTF-16 surrogate, or nests too deep",
                        type="parse_error", http_status=400) from None
    if isinstance(doc, list):
        raise CallError(INVALID_REQUEST, "batch calls are not supported: send one call object per request",
                        type="invalid_request", http_status=400)
    if not isinstance(doc, dict):
        raise CallError(INVALID_REQUEST, "the body must be a JSON object: {\"method\", \"params\", \"id\"}",
                        type="invalid_request", http_status=400)
    call_id = doc.get("id")
    if call_id is not None and (isinstance(call_id, bool) or not isinstance(call_id, (str, int))
                                or (isinstance(call_id, str) and len(call_id) > MAX_ID_LENGTH)
                                or (isinstance(call_id, int) and abs(call_id) >= 2**53)):
        raise _request_error(f"id must be a string of at most {MAX_ID_LENGTH} characters, an integer below 2**53 or null", "id")
    unknown = sorted(set(doc) - {"jsonrpc", "method", "params", "id"})
    if unknown:
        raise _request_error(f"unknown member {_show(unknown[0])} (allowed: jsonrpc, method, params, id)", unknown[0], call_id)
    if "jsonrpc" in doc and doc["jsonrpc"] != "2.0":
        raise _request_error('jsonrpc must be "2.0"', "jsonrpc", call_id)
    name = doc.get("method")
    if not isinstance(name, str) or not name:
        raise _request_error("method is required: the name of a method (see capabilities)", "method", call_id)
    params = doc.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CallError(INVALID_PARAMS, "params must be an object of named parameters", field="params",
                        type="invalid_input", http_status=400, call_id=call_id)
    return call_id, name, params


def _request_error(message: str, field: str, call_id: Any = None) -> CallError:
    return CallError(INVALID_REQUEST, message, field=field, type="invalid_request", http_status=400, call_id=call_id)


def _answer_error(call_id: Any, e: CallError) -> tuple[int, dict]:
    return e.http_status, {
        "jsonrpc": "2.0", "id": call_id,
        "error": {"code": e.code, "message": e.message, "data": {"field": e.field, "type": e.type}},
    }


def _from_sender_error(m: Method, e: SenderError) -> CallError:
    field = m.aliases.get(e.field, e.field) if e.field is not None else None
    props = m.params.get("properties", {})
    if field is None:
        first = e.message.split(" ", 1)[0]
        if first in props:
            field = first  # "viewers -1 is not allowed: …"
        else:
            quoted = re.search(r"field '([a-z_]+)'", e.message)  # "rendition field 'height': …"
            field = quoted.group(1) if quoted and quoted.group(1) in props else m.blame.get(e.code)
    code = APP_CODES.get(e.code, OTHER_APP_ERROR)
    return CallError(code, e.message, field=field, type=e.code, http_status=e.http_status)


async def handle(ctx, body: bytes, authorization: str | None) -> tuple[int, dict]:
    """One management call: (HTTP status, JSON-RPC answer)."""
    started = time.perf_counter()
    call_id: Any = None
    name = "-"
    prefix = "-"
    try:
        prefix = await authenticate(ctx, authorization)
        call_id, name, params = parse_call(body)
        m = METHODS.get(name)
        if m is None:
            raise CallError(METHOD_NOT_FOUND, f"unknown method {_show(name)}: call capabilities for the list",
                            field="method", type="method_not_found", http_status=404)
        validate(m.params, params)
        try:
            result = await m.run(ctx, dict(params))
        except SenderError as e:
            raise _from_sender_error(m, e) from None
    except CallError as e:
        call_id = e.call_id if e.call_id is not None else call_id
        _log(logging.INFO if e.http_status < 500 else logging.ERROR, name, call_id, e.type, prefix, started, e.field)
        return _answer_error(call_id, e)
    except Exception:  # noqa: BLE001 - a bug: logged with its traceback (never params or results), answered 500
        log.exception("management call failed", extra={"fields": {"method": name, "id": _log_id(call_id)}})
        return _answer_error(call_id, CallError(INTERNAL_ERROR, "internal error (see the sender-http log)",
                                                type="internal_error", http_status=500))
    _log(logging.INFO, name, call_id, "ok", prefix, started)
    return 200, {"jsonrpc": "2.0", "id": call_id, "result": result}


def _log_id(call_id: Any) -> str:
    return "-" if call_id is None else str(call_id)[:40]


def _log(level: int, name: str, call_id: Any, outcome: str, prefix: str, started: float, field: str | None = None) -> None:
    """Method, id and outcome only: never params, never results (some are secrets)."""
    fields = {"method": name[:60] if name in METHODS else "(unknown)" if name != "-" else "-",
              "id": _log_id(call_id), "outcome": outcome, "token": prefix,
              "ms": round((time.perf_counter() - started) * 1000, 1)}
    if field:
        fields["field"] = field[:60]
    slog.log(log, level, "management call", **fields)
