"""The HTTP API's payloads, each defined once as a typed model.

Every JSON body sender-http takes or answers is a model here (a pydantic TypedDict: the value
stays a plain dict, an absent member stays absent). From each model come, with no second copy:

* validation — `check(model, value)` raises `Invalid` naming the offending member as the model
  locates it (`ladder[0].height`, `events[3].kind`, `health_thresholds.max_segment_lag`), with a
  message made from the same error;
* its JSON Schema — `schema_of(model)`: what the management API's `capabilities` answers for each
  method's params, and what the OpenAPI document (`daemons.http.openapi`) publishes for each
  request and response.

Enums and alphabets come from their owners: stream visibilities from `domain.streams`, public
statuses and end reasons from `domain.generations`, endpoint types and snapshot statuses from the
domain, ids, slugs and rendition names from `daemons.media.names`, rendition fields and health
thresholds from the config's own checks. The player's telemetry event kinds are owned here.

Request models are strict (no coercion: `"1"` is not an integer, `true` is not a number) and
closed (an unknown member is an error); response models are closed too, so a test can hold a live
answer against its model.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict on Python < 3.12

from daemons.core import config
from daemons.core.domain import endpoints, generations, playback, restream, snapshots, streams
from daemons.media import names

CLOSED = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# --- checking a value against a model ----------------------------------------------------------


class Invalid(Exception):
    """A value that breaks its model: `field` is the offending member's path (None: the whole
    value), `message` says what is wrong for a human."""

    def __init__(self, message: str, field: str | None):
        super().__init__(message)
        self.message, self.field = message, field


@functools.cache
def _adapter(model) -> TypeAdapter:
    return TypeAdapter(model)


def check(model, value: Any, *, what: str = "the body") -> Any:
    """`value` as the model validates it (a plain dict for a TypedDict); else `Invalid` for the
    first error, `what` naming the whole value in messages."""
    try:
        return _adapter(model).validate_python(value)
    except ValidationError as e:
        raise _invalid(model, e.errors(include_url=False)[0], what) from None


def _invalid(model, error: dict, what: str) -> Invalid:
    field, node, parent = _locate(schema_of(model), error["loc"])
    where = field or what
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        message = f"{where} is required"
    elif kind == "extra_forbidden":
        allowed = ", ".join(parent.get("properties", ())) or "none"
        message = f"unknown field {_show(error['loc'][-1])} (allowed: {allowed})"
    elif _is_union(node):  # the call's id: its description says what is allowed
        message = f"{where} must be {node.get('description', 'of another type')}"
    elif kind in _TYPE_WORDS:
        words = _TYPE_WORDS[kind] + (" or null" if _nullable(node) else "")
        message = f"{where} must be {words}"
    elif kind in ("literal_error", "enum"):
        plain = _plain(node)
        choices = plain["enum"] if "enum" in plain else [plain["const"]] if "const" in plain else None
        if choices is None:  # a map's key
            message = f"{where} is not allowed: use one of {ctx.get('expected', '')}"
        elif len(choices) == 1:
            message = f"{where} must be {json.dumps(choices[0])}"
        else:
            message = f"{where} {_show(value)} is not allowed: use one of {', '.join(map(str, choices))}"
    elif kind in _BOUND_WORDS:
        bound = next(iter(ctx.values()))
        message = f"{where} {_show(value)} is not allowed: it must be {_BOUND_WORDS[kind]} {bound:g}"
    elif kind == "string_too_long":
        message = f"{where} must be at most {ctx['max_length']} characters"
    elif kind == "too_long":
        message = f"{where} must have at most {ctx['max_length']} items"
    elif kind in ("too_short", "string_too_short"):
        message = f"{where} must have at least {ctx['min_length']} {'item' if kind == 'too_short' else 'character'}" + \
                  ("s" if ctx["min_length"] != 1 else "")
    elif kind == "value_error":  # a check of the model's own (the config's rules, items that repeat)
        message = f"{where} {_show(value)} is not allowed: {ctx.get('error', error['msg'])}"
    else:  # a pattern: the model's description says what is allowed
        description = node.get("description") or _plain(node).get("description")
        message = f"{where} {_show(value)} is not allowed: {description or error['msg']}"
    return Invalid(message, field)


_BOUND_WORDS = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than",
                "less_than": "less than"}
_TYPE_WORDS = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number",
    "bool_type": "true or false", "list_type": "an array", "dict_type": "an object", "none_required": "null",
}


def _locate(schema: dict, loc: tuple) -> tuple[str | None, dict, dict]:
    """(path, the schema at it, the object schema holding it) of a pydantic error location. The
    schema is the map: a location part that is no member, index or map key of the schema at that
    point (a union branch's tag) ends the path there."""
    path, node, parent = "", schema, schema
    for part in loc:
        plain = _plain(node)
        if isinstance(part, int) and "items" in plain:
            path, parent, node = f"{path}[{part}]", plain, plain["items"]
        elif isinstance(part, str) and part in plain.get("properties", {}):
            path, parent, node = f"{path}.{part}" if path else part, plain, plain["properties"][part]
        elif isinstance(part, str) and plain.get("type") == "object":  # a map's key, or an unknown member
            extra = plain.get("additionalProperties")
            path, parent, node = f"{path}.{part}" if path else part, plain, extra if isinstance(extra, dict) else {}
        else:
            break
    return path or None, node, parent


def _plain(node: dict) -> dict:
    """A nullable schema's non-null branch (pydantic's `X | None`, which validates without a tag)."""
    branches = node.get("anyOf")
    if branches and len(branches) == 2 and {"type": "null"} in branches:
        return next(b for b in branches if b != {"type": "null"})
    return node


def _is_union(node: dict) -> bool:
    return len([b for b in node.get("anyOf", ()) if b != {"type": "null"}]) > 1


def _nullable(node: dict) -> bool:
    return {"type": "null"} in node.get("anyOf", ())


def _show(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else json.dumps(v, default=repr)
    return s if len(s) <= 60 else s[:57] + "..."


# --- JSON Schema of a model ----------------------------------------------------------------------


class _Generate(GenerateJsonSchema):
    def field_title_should_be_set(self, schema) -> bool:
        return False  # "Slug" for slug says nothing


@functools.cache
def schema_of(model) -> dict:
    """The model's JSON Schema, self-contained (nested models inlined, no titles, `required`
    always present on objects). Cached: one object per model, to be read, never changed."""
    doc = _adapter(model).json_schema(schema_generator=_Generate)
    return _inline(doc, doc.pop("$defs", {}))


def _inline(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        return _inline({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    out = {}
    for k, v in node.items():
        if k == "title":
            continue
        if k == "properties":
            out[k] = {name: _inline(sub, defs) for name, sub in v.items()}
        else:
            out[k] = _inline(v, defs) if k in _SUBSCHEMAS else v
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("required", [])
    return out


_SUBSCHEMAS = {"items", "anyOf", "oneOf", "allOf", "additionalProperties", "propertyNames", "prefixItems"}


# --- shared types -------------------------------------------------------------------------------


def _pattern(regex: str, description: str) -> Any:
    return Annotated[str, Field(pattern=names.anchored(regex), description=description)]


def _text(description: str, max_length: int) -> Any:
    return Annotated[str, Field(max_length=max_length, description=description)]


def _described(kind: Any, description: str) -> Any:
    return Annotated[kind, Field(description=description)]


def _config_checked(kind: config.Kind, json_type: str, description: str, max_length: int | None = None) -> Any:
    """A value the config's own `Kind` checks (a rendition field, a health threshold, a URL): the
    rule is the config's; the schema says the JSON type, and the range in the config's words."""

    def run(value: Any) -> Any:
        try:
            if max_length is not None and isinstance(value, str) and len(value) > max_length:
                raise ValueError(f"expected at most {max_length} characters")
            return kind.check(value)
        except ValueError as e:
            raise PydanticCustomError("value_error", "{error}", {"error": str(e)}) from None

    schema = {"type": json_type, "description": f"{description.rstrip('.')} ({kind.name})."}
    if max_length is not None:
        schema["maxLength"] = max_length
    return Annotated[Any, PlainValidator(run), WithJsonSchema(schema)]


def _unique(items: list) -> list:
    if len(set(items)) != len(items):
        raise ValueError("an item is repeated")
    return items


Slug = _pattern(names.NAME, "1-64 of a-z, 0-9 and '-', starting and ending with a letter or digit.")
StreamId = _pattern(names.STREAM_ID, "A stream id: st_ and 16 hex digits.")
GenerationId = _pattern(names.GENERATION_ID, "A generation id: gen_ and 16 hex digits.")
RenditionName = _pattern(names.RENDITION, "1-32 of a-z, 0-9, '_' and '-', starting with a letter or digit.")
Time = Annotated[str, Field(description="ISO 8601 UTC.")]
Url = Annotated[str, Field(json_schema_extra={"format": "uri"})]

Visibility = Literal[streams.VISIBILITIES]
PublicStatus = Literal[generations.PUBLIC_STATUSES]
GenerationStatus = Literal[tuple(s.value for s in generations.Status)]
EndReason = Literal[tuple(r.value for r in generations.EndReason)]
RenditionKind = Literal[config.RENDITION_KINDS]
EndpointType = Literal[endpoints.TYPES]
SnapshotStatus = Literal[snapshots.STATUSES]


# --- operations -------------------------------------------------------------------------------------


class Health(TypedDict):
    __pydantic_config__ = CLOSED
    status: Literal["ok"]


class Readiness(TypedDict):
    __pydantic_config__ = CLOSED
    status: Literal["ready", "not ready"]
    checks: _described(dict[str, str], "One entry per check (`store`, `spool`): `ok` or `error: <why>`.")


class ErrorBody(TypedDict):
    __pydantic_config__ = CLOSED
    code: _described(str, "Machine-readable, e.g. `invalid_input`, `not_found`, `forbidden`, `rate_limited`, `body_too_large`.")
    message: _described(str, "What was wrong, for a human.")
    field: NotRequired[_described(str, "The offending input field, where one is to blame (e.g. `events[3].kind`).")]


class Error(TypedDict):
    """Every error answer of the JSON routes."""

    __pydantic_config__ = CLOSED
    error: ErrorBody


# --- playback -----------------------------------------------------------------------------------------


class StreamSummary(TypedDict):
    __pydantic_config__ = CLOSED
    slug: Slug
    title: str
    status: PublicStatus
    generation_id: GenerationId | None
    started_at: Time | None
    publisher_connected: _described(bool, "false while the broadcaster is reconnecting.")


class StreamList(TypedDict):
    __pydantic_config__ = CLOSED
    streams: list[StreamSummary]


class PlaybackStream(TypedDict):
    __pydantic_config__ = CLOSED
    id: StreamId
    slug: Slug
    title: str
    visibility: Visibility


class PlaybackRendition(TypedDict):
    __pydantic_config__ = CLOSED
    name: RenditionName
    kind: RenditionKind
    width: int | None
    height: int | None
    frame_rate: float | int | None
    video_codec: str | None
    audio_codec: str | None
    measured_bandwidth: _described(int | None, "Peak bits per second, measured by the packager.")
    measured_average_bandwidth: _described(int | None, "Average bits per second, measured by the packager.")


class Playback(TypedDict):
    """What a player needs to start."""

    __pydantic_config__ = CLOSED
    stream: PlaybackStream
    status: PublicStatus
    generation_id: GenerationId | None
    started_at: Time | None
    live_at: Time | None
    ended_at: Time | None
    end_reason: _described(EndReason | None, "Why an ended broadcast ended (null unless status is ended).")
    publisher_connected: _described(bool, "Whether the broadcaster is connected now (false while it is reconnecting, "
                                          "and when nothing is active).")
    publisher_left_at: _described(str | None, "ISO 8601 UTC: since when an active broadcast's publisher is away.")
    ends_at: _described(str | None, "ISO 8601 UTC: when the reconnect grace ends the broadcast if its publisher does "
                                    "not come back (null: it waits until stopped).")
    master_url: _described(Url | None, "The generation's master playlist (carrying `?token=` for private streams); "
                                       "null until there is one.")
    low_latency: bool
    renditions: list[PlaybackRendition]
    viewers: Annotated[int, Field(ge=0)]


# --- player telemetry -----------------------------------------------------------------------------

EVENT_KINDS = ("startup", "playing", "error", "rebuffer", "rebuffer_end", "live_edge", "quality", "ended")
TELEMETRY_MAX_EVENTS = 50


class PlayerEvent(TypedDict):
    __pydantic_config__ = CLOSED
    kind: Literal[EVENT_KINDS]
    value: NotRequired[Annotated[float | None, Field(gt=-1e9, lt=1e9)]]
    detail: NotRequired[Annotated[str | None, Field(max_length=500)]]


class PlayerEventBatch(TypedDict):
    __pydantic_config__ = CLOSED
    session_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="8-64 letters, digits, '-' or '_'.")]
    stream: Annotated[str, Field(min_length=1, description="The stream's slug.")]
    generation_id: NotRequired[GenerationId | None]
    events: Annotated[list[PlayerEvent], Field(min_length=1, max_length=TELEMETRY_MAX_EVENTS)]


class Accepted(TypedDict):
    __pydantic_config__ = CLOSED
    accepted: Annotated[int, Field(ge=1, le=TELEMETRY_MAX_EVENTS)]


# --- endpoint snapshots: reported by the control plane (management) or an external endpoint --------


class _SnapshotFields(TypedDict, total=False):
    __pydantic_config__ = CLOSED
    endpoint_id: _text("The endpoint observed.", 100)
    generation_id: _text("The generation observed (\"\" for the endpoint as a whole).", 100)
    observed_at: _text("When (UTC ISO-8601); default now.", 40)
    reporter: _text("Who observed it.", 100)
    status: _described(SnapshotStatus, "The endpoint's health.")
    viewers: _described(int, "Viewers.")
    ingress_bps: _described(int, "Bits/s in.")
    egress_bps: _described(int, "Bits/s out.")
    playlist_age_s: _described(float, "Seconds since the playlist last changed.")
    last_segment_at: _text("When the last segment appeared (UTC ISO-8601).", 40)
    segment_lag: _described(int | None, "Segments behind the source.")


class ExternalSnapshot(_SnapshotFields):
    """One observation: generation_id "" (the default) for the endpoint as a whole. endpoint_id and
    reporter, when given, must be the endpoint itself."""

    status: _described(SnapshotStatus, "The endpoint's health.")


class ExternalSnapshots(TypedDict):
    __pydantic_config__ = CLOSED
    snapshots: Annotated[list[ExternalSnapshot], Field(min_length=1, max_length=snapshots.MAX_REPORT_ROWS)]


class SnapshotRecord(TypedDict):
    """A snapshot as recorded."""

    __pydantic_config__ = CLOSED
    endpoint_id: str
    generation_id: str
    observed_at: Time
    reporter: str
    status: SnapshotStatus
    viewers: int
    ingress_bps: int
    egress_bps: int
    playlist_age_s: float | int | None
    last_segment_at: Time | None
    segment_lag: int | None


class ReportAccepted(TypedDict):
    __pydantic_config__ = CLOSED
    accepted: int
    snapshots: _described(list[SnapshotRecord], "Recorded: the rows as stored.")


# --- management API: the call, each method's params, some results ------------------------------

MAX_CALL_ID_LENGTH = 128


CallId = Annotated[
    Union[Annotated[str, Field(max_length=MAX_CALL_ID_LENGTH)], Annotated[int, Field(gt=-2**53, lt=2**53)], None],
    Field(description=f"a string of at most {MAX_CALL_ID_LENGTH} characters, an integer below 2**53 or null"),
]


class Call(TypedDict):
    """One JSON-RPC 2.0-style call (no batches); its id is echoed in the answer."""

    __pydantic_config__ = CLOSED
    id: NotRequired[CallId]  # first: an id that is fine is echoed in the answer to any other error
    jsonrpc: NotRequired[Literal["2.0"]]
    method: Annotated[str, Field(min_length=1, description="The method's name (see capabilities).")]
    params: NotRequired[_described(dict[str, Any] | None, "The method's named parameters (null or left out: none).")]


class CallErrorData(TypedDict):
    __pydantic_config__ = CLOSED
    field: _described(str | None, "The offending member or parameter.")
    type: _described(str, "e.g. `invalid_input`, `not_found`, `conflict`, `unauthorized`.")


class CallError(TypedDict):
    __pydantic_config__ = CLOSED
    code: _described(int, "JSON-RPC's (-32700 parse error, -32600 invalid request, -32601 unknown method, -32602 "
                          "invalid params) or Sender's (-32000 to -32099).")
    message: str
    data: CallErrorData


class CallResult(TypedDict):
    __pydantic_config__ = CLOSED
    jsonrpc: Literal["2.0"]
    id: CallId
    result: _described(Any, "The method's answer.")


class CallFailure(TypedDict):
    __pydantic_config__ = CLOSED
    jsonrpc: Literal["2.0"]
    id: CallId
    error: CallError


class NoParams(TypedDict):
    __pydantic_config__ = CLOSED


StreamRef = _text("The stream's slug or id.", 100)


class StreamParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: StreamRef


class ListParams(TypedDict):
    __pydantic_config__ = CLOSED
    include_deleted: NotRequired[_described(bool, "Include soft-deleted ones (default false).")]


# A rendition of a ladder: the config's fields (`renditions.ladder`), each checked by the config's own
# rule; a name and a kind always.
_RENDITION_DOCS = {
    "name": "Rendition name.", "kind": "source (remux) or transcode.", "width": "Width in pixels.",
    "height": "Height in pixels; required for transcode.", "video_bitrate": "Video bits/s; required for transcode.",
    "audio_bitrate": "Audio bits/s.", "frame_rate": "Frames per second.", "video_codec": "Video codec.",
    "audio_codec": "Audio codec.",
}
_RENDITION_TYPES = {"width": "integer", "height": "integer", "video_bitrate": "integer", "audio_bitrate": "integer",
                    "frame_rate": "number"}


def _rendition_field(name: str, kind: config.Kind) -> Any:
    if name == "name":
        return RenditionName
    if name == "kind":
        return _described(RenditionKind, _RENDITION_DOCS[name])
    if name in _RENDITION_TYPES:
        return _config_checked(kind, _RENDITION_TYPES[name], _RENDITION_DOCS.get(name, name))
    return _text(_RENDITION_DOCS.get(name, name), 100)


_RENDITION_MEMBERS = {name: _rendition_field(name, kind)
                      for name, kind in config._RENDITION_FIELDS.items()}  # noqa: SLF001 - the config's own checks
RenditionSpec = TypedDict("RenditionSpec", {
    name: field if name in ("name", "kind") else NotRequired[field] for name, field in _RENDITION_MEMBERS.items()})
RenditionSpec.__pydantic_config__ = CLOSED

# Health thresholds of an endpoint: the config's health.* keys, each checked by its own rule.
_HEALTH = {key.split(".", 1)[1]: spec for key, spec in config.SCHEMA.items() if key.startswith("health.")}
HealthThresholds = TypedDict("HealthThresholds", {
    name: NotRequired[_config_checked(spec.kind, "integer" if type(spec.default) is int else "number", spec.doc)]
    for name, spec in _HEALTH.items()})
HealthThresholds.__pydantic_config__ = CLOSED
assert tuple(_HEALTH) == endpoints.HEALTH_KEYS

ReconnectGrace = _described(
    Annotated[str | None, Field(max_length=20)],
    "How long a broadcast whose publisher left stays live for it to come back (\"90s\", \"5m\", \"0s\" = end at "
    "once, \"never\" = until stream.stop); null = the node's rtmp.reconnect_grace.")


class _StreamFields(TypedDict, total=False):
    __pydantic_config__ = CLOSED
    title: _text("Title shown to viewers.", 200)
    visibility: _described(Visibility, "public (listed), unlisted (playable with the URL) or private (playback token).")
    auto_start: _described(bool, "Start a generation when a publisher connects (else stream.start first).")
    reconnect_grace: ReconnectGrace
    recording: _described(bool | None, "Record its broadcasts (replays: DVR while live, VOD once ended); null = the "
                                       "node's recording.enabled. Applies from its next generation.")


class StreamCreateParams(_StreamFields):
    slug: Annotated[Slug, Field(description="URL-safe name: 1-64 of a-z, 0-9 and '-'.")]
    ladder: NotRequired[Annotated[list[RenditionSpec], Field(max_length=16, description="Its renditions (default: the "
                                                                                         "config's renditions.ladder).")]]


class StreamUpdateParams(_StreamFields):
    stream: StreamRef
    slug: NotRequired[Annotated[Slug, Field(description="A new slug.")]]


class StreamStartParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: StreamRef
    reconnect_grace: NotRequired[_described(ReconnectGrace, "Becomes the stream's own.")]


class PlaybackTokenParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: StreamRef
    ttl_s: NotRequired[Annotated[int, Field(ge=1, le=playback.MAX_TTL_S, description="Lifetime in seconds (default: "
                                                                                     "the config's http.playback_token_ttl).")]]


class KeyCreateParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: StreamRef
    label: NotRequired[_text("A note to tell keys apart.", 100)]


class KeyRevokeParams(TypedDict):
    __pydantic_config__ = CLOSED
    key_id: _text("The key's id (key_…) or prefix (sk…).", 100)


class EndpointUpsertParams(TypedDict):
    __pydantic_config__ = CLOSED
    id: Annotated[Slug, Field(description="Endpoint id: 1-64 of a-z, 0-9 and '-'.")]
    type: NotRequired[_described(EndpointType, "Required for a new endpoint.")]
    name: NotRequired[_text("Human-readable name.", 200)]
    node_id: NotRequired[_text("The Sender node serving it.", 100)]
    public_base_url: NotRequired[_config_checked(config.URL, "string", "Its base URL", max_length=500)]
    enabled: NotRequired[_described(bool, "Whether it serves.")]
    health_thresholds: NotRequired[_described(HealthThresholds, "Overrides of the config's health.* thresholds.")]
    sources: NotRequired[Annotated[list[_text("An endpoint id.", 64)], AfterValidator(_unique),
                                   Field(max_length=64, description="Ordered source endpoint ids, each once.",
                                         json_schema_extra={"uniqueItems": True})]]


class RenditionUpsertParams(RenditionSpec):
    stream: StreamRef


class SnapshotReportParams(_SnapshotFields):
    endpoint_id: _text("The endpoint observed.", 100)
    status: _described(SnapshotStatus, "The endpoint's health.")


class Generation(TypedDict):
    """A generation: one broadcast of a stream."""

    __pydantic_config__ = CLOSED
    id: GenerationId
    stream_id: StreamId
    status: GenerationStatus
    mode: str
    started_at: Time
    live_at: Time | None
    ended_at: Time | None
    failure_reason: str | None
    discontinuity_count: int
    updated_at: Time
    publisher_connected_at: Time | None
    publisher_left_at: Time | None
    end_reason: EndReason | None
    recorded: _described(bool, "Whether it keeps every segment (a recording: replays at generation-scoped URLs).")


# --- restream: a stream's push targets (domain.restream); the URL is answered masked, always ----------

RestreamTargetId = _text("A restream target's id (rt_…).", 100)
MaskedUrl = _described(str, "The target's URL with its stream key masked (rtmp://host/app/ab…cd); the key itself is "
                            "never answered.")


class RestreamAddParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: StreamRef
    url: _text("rtmp:// or rtmps://host[:port]/app/key — the platform's URL with its stream key (stored as a secret, "
               "answered masked).", restream.MAX_URL_LENGTH)
    label: NotRequired[_text("A name for the target (e.g. YouTube).", 100)]


class RestreamListParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: NotRequired[_described(StreamRef, "Only this stream's targets (default: every stream's).")]


class RestreamTargetParams(TypedDict):
    __pydantic_config__ = CLOSED
    target: RestreamTargetId


class RestreamTarget(TypedDict):
    """A restream target as anyone may see it."""

    __pydantic_config__ = CLOSED
    id: str
    stream_id: StreamId
    stream: Slug
    label: str
    url: MaskedUrl
    enabled: bool
    created_at: Time
    updated_at: Time
    deleted_at: _described(Time | None, "When it was removed (restream.remove answers it).")


class RestreamTargets(TypedDict):
    __pydantic_config__ = CLOSED
    targets: list[RestreamTarget]


class RestreamTargetState(TypedDict):
    """A target of the stream and what sender-ingest is doing with it."""

    __pydantic_config__ = CLOSED
    id: str
    label: str
    url: MaskedUrl
    enabled: bool
    state: _described(Literal[restream.STATES], "idle (no publisher) or disabled; while the stream has a publisher: "
                                                 "connecting, live or failing.")
    state_since: Time | None
    last_error: _described(str | None, "Why the last push failed (ffmpeg's message, the key masked).")
    bytes: _described(int, "Bytes pushed to the target during this publish.")
    bitrate_bps: _described(int, "Bits per second pushed now.")
    attempts: _described(int, "Connections tried during this publish.")


# --- recordings (domain.recordings): recorded generations in the spool -----------------------------


class RecordingListParams(TypedDict):
    __pydantic_config__ = CLOSED
    stream: NotRequired[_described(StreamRef, "Only this stream's recordings (default: every stream's).")]
    limit: NotRequired[Annotated[int, Field(ge=1, le=1000, description="At most this many, newest first (default 100).")]]


class RecordingParams(TypedDict):
    __pydantic_config__ = CLOSED
    generation_id: GenerationId


class Recording(TypedDict):
    """A recorded generation whose files are in the spool."""

    __pydantic_config__ = CLOSED
    generation_id: GenerationId
    stream: Slug
    stream_id: StreamId
    visibility: Visibility
    status: GenerationStatus
    active: _described(bool, "Live (or starting): a DVR replay; never removed by retention.")
    started_at: Time
    ended_at: Time | None
    end_reason: EndReason | None
    renditions: list[RenditionName]
    complete: _described(bool, "Its VOD playlists are written: it ended and sender-ingest closed it.")
    duration_s: _described(float | int, "Seconds its playlist lists (the VOD one, else the DVR one).")
    segments: int
    discontinuities: _described(int, "Publisher reconnects, backend restarts and spool outages it spans.")
    bytes: _described(int, "Its size in the spool.")
    replay_path: _described(str | None, "Its replay page (/watch/<slug>/<generation>; a private stream's needs "
                                        "`?token=`); null once its stream is deleted.")
    master_path: _described(str, "Its master playlist: master-vod.m3u8 once complete, else master-dvr.m3u8.")


class RecordingList(TypedDict):
    __pydantic_config__ = CLOSED
    recordings: list[Recording]


class RecordingDeleted(Recording):
    deleted: Literal[True]


class StreamStatus(TypedDict):
    """stream.status: is it live?"""

    __pydantic_config__ = CLOSED
    stream: Slug
    stream_id: StreamId
    status: PublicStatus
    active: bool
    generation: _described(Generation | None, "The latest generation.")
    publisher: _described(dict[str, Any] | None, "The connected publisher as the ingest daemon reports it (null unless "
                                                 "a generation is active).")
    publisher_connected: bool
    publisher_left_at: Time | None
    reconnect_grace: _described(str, "The grace that applies: the stream's own, else the node's.")
    ends_at: _described(Time | None, "When the reconnect grace ends the broadcast if its publisher does not come back.")
    pipeline: _described(dict[str, Any] | None, "The generation's packaging pipeline as the ingest daemon reports it.")
    warnings: list[str]
    restream: _described(list[RestreamTargetState], "Its restream targets with their state.")
    ingest_running: _described(bool, "false when the ingest daemon's stats are missing or stale.")
    stats_updated_at: Time | None


class StreamStarted(TypedDict):
    __pydantic_config__ = CLOSED
    generation: Generation
    created: bool


class StreamStopped(TypedDict):
    __pydantic_config__ = CLOSED
    generation: Generation | None
    stopped: bool


class PlaybackToken(TypedDict):
    __pydantic_config__ = CLOSED
    token: str
    expires_at: _described(int, "Unix seconds.")
    ttl_s: int


class MethodInfo(TypedDict):
    __pydantic_config__ = CLOSED
    name: str
    description: str
    params: _described(dict[str, Any], "The params' JSON Schema.")
    sensitive: _described(bool, "Its result is a secret (never logged).")


class Capabilities(TypedDict):
    __pydantic_config__ = CLOSED
    api: Literal["sender-management"]
    version: int
    node: str
    limits: dict[str, int]
    methods: list[MethodInfo]
