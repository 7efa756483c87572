"""The management API that the control plane (Legion) calls: `POST /api/admin/management`.

One JSON-RPC 2.0-style call per request: `{"jsonrpc": "2.0"?, "method", "params"?, "id"?}`,
answered `{"jsonrpc": "2.0", "id", "result"}` or `{"jsonrpc": "2.0", "id", "error": {"code",
"message", "data": {"field", "type"}}}` (docs/management-api.md is the reference).

Order of checks: the bearer token first (401 without a usable `Authorization: Bearer …`, 403 for
a token that is not valid), before the body is even parsed; then the JSON (-32700), the call's
shape (-32600), the method (-32601, HTTP 404), its params against the method's schema (-32602,
the offending field named); then the domain layer, whose errors keep their HTTP status.

The call and each method's params are models (`daemons.http.schemas`): the model validates them,
names the offending field from where it failed, and gives the JSON Schema `capabilities` answers
and the OpenAPI document publishes. Methods marked `sensitive` answer secrets (a stream key, a
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
from daemons.core.config import parse_listen
from daemons.core.domain import (
    endpoints, generations, keys, mgmt_tokens, playback, recordings, renditions, restream, snapshots, stream_views, streams,
)
from daemons.core.errors import ConfigError, SenderError
from daemons.core.stats import read_fresh_stats
from daemons.http import schemas
from daemons.runtime import logging as slog

log = slog.get("http.management")

API_VERSION = 1

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

BEARER_REALM = 'Bearer realm="sender-management"'


class CallError(Exception):
    """An error answered as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, *, field: str | None = None, type: str, http_status: int,
                 call_id: Any = None):
        super().__init__(message)
        self.code, self.message, self.field, self.type, self.http_status = code, message, field, type, http_status
        self.call_id = call_id  # the call's id, when the error came before it was known to the handler


# --- the methods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    params: Any  # its params' model (daemons.http.schemas): validation and the schema `capabilities` answers
    run: Callable[[Any, dict], Awaitable[Any]]
    sensitive: bool = False
    result: Any = None  # its result's model, where the answer has a fixed shape
    # The param a domain error that names no field is about, by SenderError code ("no stream 'x'":
    # the `stream` param).
    blame: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description, "params": schemas.schema_of(self.params),
                "sensitive": self.sensitive}


METHODS: dict[str, Method] = {}


def method(name: str, description: str, params, **kw):
    def register(fn):
        METHODS[name] = Method(name, description, params, fn, **kw)
        return fn

    return register


async def _in_store(ctx, fn, *args, **kw):
    return await ctx.store.run(fn, *args, **kw)


@method("capabilities", "Every method with its params schema and whether its result is sensitive.", schemas.NoParams,
        result=schemas.Capabilities)
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
        schemas.StreamParams, blame={"not_found": "stream"})
async def stream_get(ctx, params: dict) -> dict:
    return await _in_store(ctx, _stream_get, params["stream"])


@method("stream.list", "All streams, each with its active generation (null when idle).",
        schemas.ListParams)
async def stream_list(ctx, params: dict) -> dict:
    return {"streams": await _in_store(ctx, stream_views.list_with_generations, include_deleted=params.get("include_deleted", False))}


@method("stream.create", "Create a stream. An existing slug is a conflict (-32009, HTTP 409).",
        schemas.StreamCreateParams, blame={"conflict": "slug", "invalid_input": "ladder"})
async def stream_create(ctx, params: dict) -> dict:
    params = {"ladder": ctx.config["renditions.ladder"], **params}
    row = await _in_store(ctx, streams.create, **params)
    await ctx.directory.refresh()
    return row


@method("stream.update", "Change a stream's slug, title, visibility or auto start; unchanged fields stay.",
        schemas.StreamUpdateParams, blame={"not_found": "stream", "conflict": "slug"})
async def stream_update(ctx, params: dict) -> dict:
    ref = params.pop("stream")
    row = await _in_store(ctx, streams.update, ref, **params)
    await ctx.directory.refresh()
    return row


@method("stream.delete", "Soft-delete a stream: its keys stop working, its active generation ends, the slug is free.",
        schemas.StreamParams, blame={"not_found": "stream"})
async def stream_delete(ctx, params: dict) -> dict:
    row = await _in_store(ctx, streams.delete, params["stream"])
    await ctx.directory.refresh()
    return row


@method("stream.start", "Start a generation (needed before publishing when auto_start is off); "
                        "an active one is returned as is. reconnect_grace, when given, becomes the stream's own.",
        schemas.StreamStartParams, result=schemas.StreamStarted, blame={"not_found": "stream"})
async def stream_start(ctx, params: dict) -> dict:
    generation, created = await _in_store(ctx, streams.start, params.pop("stream"), **params,
                                          record_default=ctx.config["recording.enabled"])
    return {"generation": generation, "created": created}


@method("stream.stop", "End the active generation: the publisher is disconnected, viewers see the end.",
        schemas.StreamParams, result=schemas.StreamStopped, blame={"not_found": "stream"})
async def stream_stop(ctx, params: dict) -> dict:
    generation = await _in_store(ctx, streams.stop, params["stream"])
    return {"generation": generation, "stopped": generation is not None}


@method("stream.status", "Is it live? status (offline | starting | live | ended), the latest generation, and the "
                         "connected publisher and packaging pipeline as the ingest daemon reports them.",
        schemas.StreamParams, result=schemas.StreamStatus, blame={"not_found": "stream"})
async def stream_status(ctx, params: dict) -> dict:
    ingest = await trio.to_thread.run_sync(read_fresh_stats, ctx.install.state_dir, "ingest") or {}
    return await _in_store(ctx, stream_views.status, params["stream"], ingest, ctx.config)


@method("stream.playback_token", "A playback token for a (private) stream: {token, expires_at (unix s), ttl_s}. "
                                 "Append ?token=… to the playback API and HLS URLs.",
        schemas.PlaybackTokenParams, sensitive=True, result=schemas.PlaybackToken, blame={"not_found": "stream"})
async def stream_playback_token(ctx, params: dict) -> dict:
    stream = await _in_store(ctx, streams.get, params["stream"])
    ttl = params.get("ttl_s", int(ctx.config.seconds("http.playback_token_ttl")))
    return playback.mint_token(ctx.playback_secret, stream["id"], ttl)


def _obs_server(cfg) -> str:
    host = urlsplit(cfg["node.public_base_url"]).hostname or "127.0.0.1"
    _, port = parse_listen(cfg["rtmp.listen"])
    return f"rtmp://{host}/live" if port == 1935 else f"rtmp://{host}:{port}/live"


@method("stream_key.create", "A new stream key: the key is in this answer and nowhere else, ever.",
        schemas.KeyCreateParams, sensitive=True, blame={"not_found": "stream"})
async def stream_key_create(ctx, params: dict) -> dict:
    row, key = await _in_store(ctx, keys.create, ctx.secret, params["stream"], label=params.get("label", ""))
    server = _obs_server(ctx.config)
    return {**row, "key": key, "server": server, "url": f"{server}/{key}"}


@method("stream_key.revoke", "Revoke a stream key by id or prefix; revoking twice keeps the first time.",
        schemas.KeyRevokeParams, blame={"not_found": "key_id"})
async def stream_key_revoke(ctx, params: dict) -> dict:
    return await _in_store(ctx, keys.revoke, params["key_id"])


@method("media_endpoints.upsert", "Create an endpoint or change the given fields (idempotent); sources, when "
                                  "given, replace its ordered parent links (the graph stays acyclic).",
        schemas.EndpointUpsertParams, blame={"not_found": "sources", "conflict": "sources"})
async def media_endpoints_upsert(ctx, params: dict) -> dict:
    endpoint_id = params.pop("id")
    return await _in_store(ctx, endpoints.upsert, endpoint_id, **params)


@method("media_endpoints.list", "All endpoints with their sources and thresholds.",
        schemas.ListParams)
async def media_endpoints_list(ctx, params: dict) -> dict:
    return {"endpoints": await _in_store(ctx, endpoints.list_, include_deleted=params.get("include_deleted", False))}


def _rendition_upsert(store, ref: str, rendition: dict) -> dict:
    return renditions.upsert(store, streams.get(store, ref)["id"], rendition)


@method("renditions.upsert", "Create or replace a stream's rendition of that name (idempotent). "
                             "Takes effect at the stream's next generation.",
        schemas.RenditionUpsertParams, blame={"not_found": "stream"})
async def renditions_upsert(ctx, params: dict) -> dict:
    ref = params.pop("stream")
    return await _in_store(ctx, _rendition_upsert, ref, params)


@method("endpoint_snapshots.report", "Record an observation of an endpoint: its latest snapshot per "
                                     "(endpoint, generation), and its history.",
        schemas.SnapshotReportParams, result=schemas.SnapshotRecord, blame={"not_found": "endpoint_id"})
async def endpoint_snapshots_report(ctx, params: dict) -> dict:
    return await _in_store(ctx, snapshots.record, params, history_limit=ctx.config["snapshot.history_limit"])


# --- recordings (domain.recordings) ---------------------------------------------------------------


@method("recording.list", "Recordings in the spool, newest first: each recorded generation with its size, duration, "
                          "segments, and its replay page and master playlist.",
        schemas.RecordingListParams, result=schemas.RecordingList, blame={"not_found": "stream"})
async def recording_list(ctx, params: dict) -> dict:
    return {"recordings": await _in_store(ctx, recordings.list_, ctx.install.spool_root, stream=params.get("stream"),
                                          limit=params.get("limit", 100))}


@method("recording.delete", "Delete an ended recording's files (the generation stays in the history). A live one, or "
                            "one sender-ingest has not closed yet, is a conflict (-32009, HTTP 409).",
        schemas.RecordingParams, result=schemas.RecordingDeleted,
        blame={"not_found": "generation_id", "conflict": "generation_id"})
async def recording_delete(ctx, params: dict) -> dict:
    return await _in_store(ctx, recordings.delete, ctx.install.spool_root, params["generation_id"])


# --- restream targets (domain.restream): the URL carries a stream key, answered masked ---------------


@method("restream.add", "Push the stream to another platform while it has a publisher: an rtmp:// or rtmps:// URL "
                        "carrying the platform's stream key (kept as a secret: every answer masks it). At most "
                        "restream.max_targets per stream, each URL once; a live publisher starts pushing within a second.",
        schemas.RestreamAddParams, result=schemas.RestreamTarget, blame={"not_found": "stream", "conflict": "url"})
async def restream_add(ctx, params: dict) -> dict:
    return await _in_store(ctx, restream.add, params["stream"], params["url"], label=params.get("label", ""),
                           max_targets=ctx.config["restream.max_targets"])


@method("restream.list", "Restream targets (URLs masked) of one stream, or of every stream. Their live state is in "
                         "stream.status.", schemas.RestreamListParams, result=schemas.RestreamTargets,
        blame={"not_found": "stream"})
async def restream_list(ctx, params: dict) -> dict:
    return {"targets": await _in_store(ctx, restream.list_, params.get("stream"))}


@method("restream.remove", "Remove a restream target: a live push to it stops within a second.",
        schemas.RestreamTargetParams, result=schemas.RestreamTarget, blame={"not_found": "target"})
async def restream_remove(ctx, params: dict) -> dict:
    return await _in_store(ctx, restream.remove, params["target"])


@method("restream.enable", "Enable a restream target: a live publisher starts pushing to it within a second.",
        schemas.RestreamTargetParams, result=schemas.RestreamTarget, blame={"not_found": "target"})
async def restream_enable(ctx, params: dict) -> dict:
    return await _in_store(ctx, restream.set_enabled, params["target"], True)


@method("restream.disable", "Disable a restream target (kept for later): a live push to it stops within a second.",
        schemas.RestreamTargetParams, result=schemas.RestreamTarget, blame={"not_found": "target"})
async def restream_disable(ctx, params: dict) -> dict:
    return await _in_store(ctx, restream.set_enabled, params["target"], False)


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
    try:
        call = schemas.check(schemas.Call, doc, what="the body")
    except schemas.Invalid as e:
        # The model checks the id first: an error elsewhere means the id is fine, and echoed.
        call_id = doc.get("id") if isinstance(doc, dict) and e.field != "id" else None
        if e.field == "params":
            raise CallError(INVALID_PARAMS, e.message, field="params", type="invalid_input", http_status=400,
                            call_id=call_id) from None
        raise CallError(INVALID_REQUEST, e.message, field=e.field, type="invalid_request", http_status=400,
                        call_id=call_id) from None
    return call.get("id"), call["method"], call.get("params") or {}


def _answer_error(call_id: Any, e: CallError) -> tuple[int, dict]:
    return e.http_status, {
        "jsonrpc": "2.0", "id": call_id,
        "error": {"code": e.code, "message": e.message, "data": {"field": e.field, "type": e.type}},
    }


def _from_sender_error(m: Method, e: SenderError) -> CallError:
    """The domain's error as the call's: the field it names, else the param the method declares
    for its kind of error (`blame`)."""
    field = e.field if e.field is not None else m.blame.get(e.code)
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
            raise CallError(METHOD_NOT_FOUND, f"unknown method {name[:60]!r}: call capabilities for the list",
                            field="method", type="method_not_found", http_status=404)
        try:
            params = schemas.check(m.params, params, what="params")
        except schemas.Invalid as e:
            raise CallError(INVALID_PARAMS, e.message, field=e.field, type="invalid_input", http_status=400) from None
        try:
            result = await m.run(ctx, params)
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
