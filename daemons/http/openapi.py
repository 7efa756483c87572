"""The OpenAPI 3.1 document of every HTTP route, served at `/api/openapi.json`.

Built once per process (`document()` is cached: treat the answer as read-only) from the
sections below, one function per family of routes. Request and response bodies are not written
here: each is the JSON Schema of its model in `daemons.http.schemas`, and the management API's
calls come from `daemons.http.management.METHODS` (the params schema of each is the object
`capabilities` answers). `docs/openapi.json` is this document,
written by `python -m daemons.http.openapi > docs/openapi.json`; tests/http/test_openapi.py
fails when it drifts, when a route of the Quart app or of the HLS handler is missing here, and
when schemathesis, driven by this document, gets a 5xx from a live daemon.

Adding a route: add its path item to the matching section (or a new section listed in
`SECTIONS`), its bodies' models to `MODELS`, then regenerate docs/openapi.json.
"""

from __future__ import annotations

import functools
import json
import sys

from daemons.http import management, schemas
from daemons.media import names

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"

# --- path parameters' patterns (the same alphabets the code checks) --------------------------------

SLUG_PATTERN = names.anchored(names.NAME)
STREAM_ID_PATTERN = names.anchored(names.STREAM_ID)
GENERATION_ID_PATTERN = names.anchored(names.GENERATION_ID)
RENDITION_PATTERN = names.anchored(names.RENDITION)
MEDIA_FILE_PATTERN = names.anchored(names.MEDIA_FILE)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MP4_TYPE = "video/mp4"
TS_TYPE = "video/mp2t"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


# --- components: the payload models of daemons/http/schemas.py ---------------------------------

# Request and response bodies of the JSON routes, and the management results that have a fixed
# shape, each published under its model's name.
MODELS = (
    schemas.Error, schemas.Health, schemas.Readiness, schemas.StreamList, schemas.Playback,
    schemas.PlayerEventBatch, schemas.Accepted, schemas.ExternalSnapshot, schemas.ExternalSnapshots,
    schemas.ReportAccepted,
    *dict.fromkeys(m.result for m in management.METHODS.values() if m.result is not None),
)


def _schemas() -> dict:
    return {**{model.__name__: schemas.schema_of(model) for model in MODELS}, **_management_schemas()}


def _components() -> dict:
    return {
        "schemas": _schemas(),
        "securitySchemes": {
            "nodeToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The node token of a distribution: an HMAC of the key in `distribution.key_file`, which "
                               "the origin and its edges share (sender-edge-fill sends it).",
            },
            "managementToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "A management API token (`sender token create`); the install keeps only its verifier "
                               "(`management.token_verifiers`).",
            },
        },
    }


# --- sections: one per family of routes --------------------------------------------------

def _health_paths() -> dict:
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["operations"], "summary": "Liveness: the process answers.",
            "responses": {"200": _json(_ref("Health"), "Alive.")},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["operations"], "summary": "Readiness: the store answers and the spool is writable.",
            "responses": {"200": _json(_ref("Readiness"), "Ready."),
                          "503": _json(_ref("Readiness"), "Not ready; `checks` says why.")},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["operations"],
            "summary": "Prometheus metrics of every HTTP worker and of the ingest daemon.",
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.",
                                  "content": {PROMETHEUS_TYPE: {"schema": {"type": "string"}}}}},
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["operations"], "summary": "This document.",
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }},
    }


def _playback_paths() -> dict:
    return {
        "/api/streams": {"get": {
            "operationId": "listStreams", "tags": ["playback"], "summary": "Public streams, by slug.",
            "responses": {"200": _json(_ref("StreamList"), "The public streams (unlisted and private ones never appear).")},
        }},
        "/api/streams/{slug}/playback": {"get": {
            "operationId": "getPlayback", "tags": ["playback"],
            "summary": "What a player needs to start watching a stream.",
            "parameters": [
                {"name": "slug", "in": "path", "required": True, "schema": {"type": "string", "pattern": SLUG_PATTERN}},
                {"name": "token", "in": "query", "required": False,
                 "description": "A playback token; required for private streams.", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json(_ref("Playback"), "The stream's playback information."),
                "403": _error("A private stream, without a valid playback token."),
                "404": _error("No such stream."),
            },
        }},
    }


def _thumbnail_paths() -> dict:
    """A stream's picture (daemons/http/thumbnails.py; sender-ingest's daemons/ingest/thumbnails.py makes it)."""
    return {
        "/api/streams/{slug}/thumbnail.jpg": {"get": {
            "operationId": "getThumbnail", "tags": ["playback"],
            "summary": "A JPEG of a recent keyframe of the stream's latest broadcast (or of `generation`), refreshed "
                       "every `thumbnails.interval_s` while live; cached for that long (`private` for private streams).",
            "parameters": [
                {"name": "slug", "in": "path", "required": True, "schema": {"type": "string", "pattern": SLUG_PATTERN}},
                {"name": "token", "in": "query", "required": False,
                 "description": "A playback token; required for private streams.", "schema": {"type": "string"}},
                {"name": "generation", "in": "query", "required": False,
                 "description": "A generation of the stream (a recording) instead of its latest.",
                 "schema": {"type": "string", "pattern": GENERATION_ID_PATTERN}},
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The picture, at most `thumbnails.width` wide.",
                        "headers": {"Cache-Control": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}},
                        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                "304": {"description": "Not modified (If-None-Match)."},
                "400": _error("`generation` is not a generation id."),
                "403": _error("A private stream, without a valid playback token."),
                "404": _error("No such stream, or no picture of it yet."),
            },
        }},
    }


def _distribution_paths() -> dict:
    return {
        "/api/distribution": {"get": {
            "operationId": "getDistribution", "tags": ["distribution"],
            "summary": "What this node offers its edge nodes: every stream with its latest generation, renditions and "
                       "their live positions, and this node's load. Edges (sender-edge-fill) poll it.",
            "security": [{"nodeToken": []}],
            "responses": {
                "200": _json({"type": "object", "required": ["version", "node_id", "streams"],
                              "properties": {"version": {"const": 1}, "node_id": {"type": "string"},
                                             "load": {"type": ["object", "null"]},
                                             "streams": {"type": "array", "items": {"type": "object"}}}},
                             "The listing."),
                "401": _error("No valid node token."),
                "404": _error("This node is not part of a distribution (`distribution.key_file` unset)."),
            },
        }},
    }


def _telemetry_paths() -> dict:
    return {
        "/api/player/events": {"post": {
            "operationId": "postPlayerEvents", "tags": ["telemetry"],
            "summary": "Player telemetry: a batch of 1 to 50 events from one player session.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PlayerEventBatch")}}},
            "responses": {
                "202": _json(_ref("Accepted"), "Stored."),
                "400": _error("Invalid batch; `field` names the culprit."),
                "413": _error("The body is over 16 KiB."),
                "429": _error("Too many events from this address."),
            },
        }},
    }


def _endpoint_report_paths() -> dict:
    return {
        "/api/endpoints/{endpoint_id}/snapshots": {"post": {
            "operationId": "postEndpointSnapshots", "tags": ["telemetry"],
            "summary": "An external endpoint's own process reports its snapshots (token or HMAC signature).",
            "description": "Authenticate with `Authorization: Bearer <report token>` (`sender endpoint token ID`) or sign: "
                           "`X-Sender-Timestamp: <unix s>` and `X-Sender-Signature: sha256=<hex HMAC-SHA256(token, "
                           "timestamp + \".\" + body)>` (±300 s; each signature accepted once). Only external_origin and "
                           "external_edge endpoints. Every row is checked before any is written. Body at most 16 KiB; "
                           "120 reports a minute per endpoint.",
            "parameters": [
                {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}},
                {"name": "X-Sender-Timestamp", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "X-Sender-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                _ref("ExternalSnapshot"), _ref("ExternalSnapshots")]}}}},
            "responses": {
                "202": _json(_ref("ReportAccepted"), "Recorded: the rows as stored."),
                "400": _error("Invalid report; `field` names the culprit. Nothing was written."),
                "401": _error("No, a wrong or an expired token or signature (or no token minted for this endpoint)."),
                "403": _error("Not an external endpoint: its own node's sender-snapshot reports it."),
                "404": _error("No such endpoint."),
                "409": _error("This signed report was already received (a replay)."),
                "413": _error("The body is over 16 KiB."),
                "429": _error("Too many reports for this endpoint, or failed authentications from this address."),
            },
        }},
    }


def _management_schemas() -> dict:
    """One call schema per method of management.METHODS: the envelope's members (schemas.Call),
    the method's name, and its params schema — the very object `capabilities` answers."""
    envelope = schemas.schema_of(schemas.Call)
    calls = []
    for m in management.METHODS.values():
        call = {
            "title": m.name, "type": "object", "description": m.description,
            "required": envelope["required"], "additionalProperties": False,
            "properties": {**envelope["properties"], "method": {"const": m.name}, "params": m.describe()["params"]},
        }
        if m.result is not None:
            call["x-result"] = m.result.__name__  # the component its result is
        calls.append(call)
    return {
        "ManagementRequest": {
            "description": f"{envelope['description']} `params` as the method declares them (the `capabilities` "
                           "method answers the same schemas); `x-result` names the result's schema where it has one.",
            "oneOf": calls,
        },
        "ManagementResponse": {"oneOf": [schemas.schema_of(schemas.CallResult), schemas.schema_of(schemas.CallFailure)]},
    }


def _management_paths() -> dict:
    answer = lambda description: _json(_ref("ManagementResponse"), description)  # noqa: E731
    return {
        "/api/admin/management": {"post": {
            "operationId": "management", "tags": ["management"],
            "summary": "The management API (JSON-RPC 2.0 style), as Legion calls it.",
            "description": "One method call per request, authenticated by a management token. Errors are JSON-RPC "
                           "error objects, answered with the matching HTTP status; call `capabilities` for every "
                           "method's parameters.",
            "security": [{"managementToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ManagementRequest")}}},
            "responses": {
                "200": answer("The method's result."),
                "400": answer("Not JSON, not a call, or invalid params (`error.data.field` names the culprit)."),
                "401": answer("No `Authorization: Bearer <management token>`."),
                "403": answer("A token that is not valid (revoked, or never created here)."),
                "404": answer("Unknown method, or the thing named does not exist."),
                "409": answer("The change conflicts with the current state (e.g. a slug in use)."),
                "413": _error("The body is over `http.max_request_body`."),
            },
        }},
    }


def _hls_paths() -> dict:
    """The raw-ASGI HLS routes (hls_route.py): generation-scoped, matched on the raw path."""
    path_params = [
        {"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": STREAM_ID_PATTERN}},
        {"name": "generation_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": GENERATION_ID_PATTERN}},
    ]
    rendition = {"name": "rendition", "in": "path", "required": True, "schema": {"type": "string", "pattern": RENDITION_PATTERN}}
    token = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "A playback token; required for private streams (and carried into every URI of the playlists served)."}
    if_none_match = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    session = {"name": "X-Playback-Session-Id", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "Counts the viewer (else the address and user agent do)."}
    playlist_headers = {"Cache-Control": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}}
    refused = {
        "403": _text("A private stream, without a valid playback token."),
        "404": _text("No such stream, or no such file (yet)."),
    }
    pulled = {  # an edge node pulling what its spool lacks from the generation's upstream (pull_through.py)
        "502": _text("Edge pull-through: the upstream failed (5xx, refused, unreachable, too large)."),
        "504": _text("Edge pull-through: the upstream did not answer in time."),
    }

    def family(op_id: str, summary: str, parameters: list, responses: dict, *, in_rendition: bool = True,
               more_path_params: tuple = ()) -> dict:
        """GET, HEAD and the CORS preflight of one HLS URL kind (path parameters shared by all three)."""
        get = {"operationId": op_id, "tags": ["hls"], "summary": summary, "parameters": parameters,
               "responses": responses}
        head = {**get, "operationId": f"{op_id}Head", "summary": f"{summary} (headers only)",
                "responses": {code: {"description": r["description"]} for code, r in responses.items()}}
        options = {"operationId": f"{op_id}Preflight", "tags": ["hls"], "summary": "CORS preflight.",
                   "responses": {"204": {"description": "Allowed: GET, HEAD, OPTIONS from any origin."}}}
        return {"parameters": path_params + ([rendition] if in_rendition else []) + list(more_path_params),
                "get": get, "head": head, "options": options}

    playlist = lambda description: {"description": description, "headers": playlist_headers,  # noqa: E731
                                    "content": {PLAYLIST_TYPE: {"schema": {"type": "string"}}}}
    blocking_reload = [
        {"name": "_HLS_msn", "in": "query", "required": False,
         "description": "Blocking reload: answer once this media sequence number is in the playlist.",
         "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999}},
        {"name": "_HLS_part", "in": "query", "required": False,
         "description": "With `_HLS_msn`: wait for this part of that segment.",
         "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999}},
    ]
    return {
        "/hls/{stream_id}/{generation_id}/master.m3u8": family(
            "hlsMaster", "The generation's master (multivariant) playlist.",
            [token, if_none_match],
            {"200": playlist("The master playlist."), "304": {"description": "Not modified (If-None-Match)."}, **refused, **pulled},
            in_rendition=False,
        ),
        "/hls/{stream_id}/{generation_id}/{rendition}/index.m3u8": family(
            "hlsMediaPlaylist", "A rendition's media playlist, with LL-HLS blocking reload and delta updates.",
            [
                *blocking_reload,
                {"name": "_HLS_skip", "in": "query", "required": False, "description": "Delta update.",
                 "schema": {"enum": ["YES", "v2"]}},
                token, if_none_match, session,
            ],
            {"200": playlist("The media playlist."), "304": {"description": "Not modified (If-None-Match)."},
             "400": _text("Malformed or contradictory `_HLS_*` directives, or `_HLS_msn` too far ahead."),
             **refused, **pulled,
             "503": _text("Blocking reload: the segment or part did not arrive in time (3 target durations).")},
        ),
        "/hls/{stream_id}/{generation_id}/master-dvr.m3u8": family(
            "hlsReplayMasterDvr", "A recorded generation's DVR master playlist: its variants list every segment since the "
            "start (EVENT playlists) and it starts playback at the start (EXT-X-START); cached like a live playlist.",
            [token, if_none_match],
            {"200": playlist("The DVR master playlist."), "304": {"description": "Not modified (If-None-Match)."}, **refused, **pulled},
            in_rendition=False,
        ),
        "/hls/{stream_id}/{generation_id}/master-vod.m3u8": family(
            "hlsReplayMasterVod", "An ended recorded generation's VOD master playlist (immutable).",
            [token, if_none_match],
            {"200": playlist("The VOD master playlist."), "304": {"description": "Not modified (If-None-Match)."}, **refused, **pulled},
            in_rendition=False,
        ),
        "/hls/{stream_id}/{generation_id}/{rendition}/dvr.m3u8": family(
            "hlsReplayDvr", "A recorded rendition's DVR playlist (EXT-X-PLAYLIST-TYPE:EVENT): every segment since the "
            "start; while live with LL-HLS its end is the live playlist's (parts, preload hint, blocking reload; no "
            "delta updates); ENDLIST once the generation ended.",
            [*blocking_reload, token, if_none_match, session],
            {"200": playlist("The DVR playlist."), "304": {"description": "Not modified (If-None-Match)."},
             "400": _text("Malformed `_HLS_*` directives, `_HLS_skip` (no delta updates), or `_HLS_msn` too far ahead."),
             **refused, **pulled,
             "503": _text("Blocking reload: the segment or part did not arrive in time (3 target durations).")},
        ),
        "/hls/{stream_id}/{generation_id}/{rendition}/vod.m3u8": family(
            "hlsReplayVod", "A recorded rendition's VOD playlist (EXT-X-PLAYLIST-TYPE:VOD), written when the generation "
            "ended (immutable).",
            [token, if_none_match],
            {"200": playlist("The VOD playlist."), "304": {"description": "Not modified (If-None-Match)."}, **refused, **pulled},
        ),
        "/hls/{stream_id}/{generation_id}/{rendition}/{file}": family(
            "hlsMediaFile", "An init section (`init.mp4`, `init-N.mp4`), a segment (`N.m4s`, or MPEG-TS `N.ts`) or a part (`N.M.m4s`).",
            [
                token, if_none_match,
                {"name": "Range", "in": "header", "required": False, "description": "One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`).",
                 "schema": {"type": "string"}},
            ],
            {"200": {"description": "The file (immutable).", "content": {MP4_TYPE: {"schema": {"type": "string", "format": "binary"}},
                                                                        TS_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
             "206": {"description": "The requested byte range.", "content": {MP4_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
             "304": {"description": "Not modified (If-None-Match)."},
             **refused,
             "416": {"description": "Range not satisfiable."},
             **pulled,
             "503": _text("A preload-hinted part did not arrive in time (3 target durations).")},
            more_path_params=({"name": "file", "in": "path", "required": True,
                               "schema": {"type": "string", "pattern": MEDIA_FILE_PATTERN}},),
        ),
    }


def _page_paths() -> dict:
    """HTML pages (daemons/http/pages.py) and the built player assets they load."""
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "/": {"get": {
            "operationId": "indexPage", "tags": ["pages"], "summary": "The public streams that are live, linking to their watch pages.",
            "responses": {"200": {"description": "An HTML page.", "content": html}},
        }},
        "/watch/{slug}": {"get": {
            "operationId": "watchPage", "tags": ["pages"],
            "summary": "The watch page: a Video.js v10 player on hls.js (low-latency mode), live state and viewer count.",
            "parameters": [
                {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "token", "in": "query", "required": False,
                 "description": "A playback token, read by the page's player; required to play private streams.",
                 "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "An HTML page (the player asks the playback API for the rest).", "content": html},
                          "404": {"description": "No such stream (an HTML page).", "content": html}},
        }},
        "/watch/{slug}/{generation_id}": {"get": {
            "operationId": "replayPage", "tags": ["pages"],
            "summary": "A recording's replay page: the player with a seek bar (hls.js not in low-latency mode) on its "
                       "DVR playlist while live, its VOD playlist once ended.",
            "parameters": [
                {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "generation_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": GENERATION_ID_PATTERN}},
                {"name": "token", "in": "query", "required": False,
                 "description": "A playback token: required for private streams (checked here, and carried by the player).",
                 "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "An HTML page.", "content": html},
                          "403": {"description": "A private stream, without a valid playback token (an HTML page).", "content": html},
                          "404": {"description": "No such stream or recording, or it is gone (an HTML page).", "content": html}},
        }},
        "/static/{name}": {"get": {
            "operationId": "staticAsset", "tags": ["pages"],
            "summary": "A built player asset (content-hashed name, immutable); only the files the build made.",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file.", "content": {"text/javascript": {"schema": {"type": "string"}},
                                                                      "text/css": {"schema": {"type": "string"}}}},
                          "404": _text("No such asset.")},
        }},
    }


def _admin_paths() -> dict:
    """The admin page (daemons/http/admin.py): HTML forms behind a session cookie and CSRF tokens."""
    html = {"text/html": {"schema": {"type": "string"}}}
    form = {"application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}}
    answers = {"303": {"description": "Done: back to /admin."},
               "200": {"description": "An HTML page (a new stream key is shown once).", "content": html},
               "401": {"description": "No valid session (an HTML page).", "content": html},
               "403": {"description": "Missing or wrong CSRF token, or a wrong management token (an HTML page).", "content": html},
               "404": {"description": "No such stream or key (an HTML page).", "content": html},
               "409": {"description": "Conflict, e.g. the slug exists (an HTML page).", "content": html},
               "429": {"description": "Too many failed sign-ins (an HTML page).", "content": html}}

    def post(op: str, summary: str, params: tuple[str, ...] = ()) -> dict:
        item = {"operationId": op, "tags": ["pages"], "summary": summary, "requestBody": {"content": form}, "responses": answers}
        if params:
            item["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
        return {"post": item}

    return {
        "/admin": {"get": {"operationId": "adminPage", "tags": ["pages"],
                           "summary": "The admin page, or its sign-in form without a session.",
                           "responses": {"200": {"description": "An HTML page.", "content": html}}}},
        "/admin/login": post("adminLogin", "Sign in with a management token (fields token, csrf); sets the session cookie."),
        "/admin/logout": post("adminLogout", "Sign out."),
        "/admin/streams": post("adminCreateStream", "Create a stream (fields slug, title, visibility, csrf)."),
        "/admin/keys": post("adminCreateKey", "Create a stream key (fields stream, label, csrf); shown once with the OBS server."),
        "/admin/keys/{key_id}/revoke": post("adminRevokeKey", "Revoke a stream key.", ("key_id",)),
        "/admin/streams/{slug}/start": post("adminStartStream", "Start the stream's generation.", ("slug",)),
        "/admin/streams/{slug}/stop": post("adminStopStream", "Stop the stream's generation.", ("slug",)),
    }


SECTIONS = (_health_paths, _playback_paths, _thumbnail_paths, _distribution_paths, _telemetry_paths, _endpoint_report_paths, _management_paths, _hls_paths, _page_paths,
            _admin_paths)

TAGS = [
    {"name": "operations", "description": "Health, readiness, metrics, this document."},
    {"name": "playback", "description": "What players and pages need to find and start streams."},
    {"name": "telemetry", "description": "What players and external endpoints report."},
    {"name": "management", "description": "The management API Legion drives."},
    {"name": "distribution", "description": "Between Sender nodes: what an origin or edge offers the edges that follow it."},
    {"name": "hls", "description": "LL-HLS playlists and media, generation-scoped (served outside the web framework)."},
    {"name": "pages", "description": "HTML pages."},
]


@functools.cache
def document() -> dict:
    """The OpenAPI document (cached: do not mutate it)."""
    paths: dict = {}
    for section in SECTIONS:
        for path, item in section().items():
            assert path not in paths, f"{path} is described twice"
            paths[path] = item
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sender HTTP API",
            "version": API_VERSION,
            "description": "Playback, telemetry, management and LL-HLS routes of sender-http. Every error of a JSON "
                           "route is `{\"error\": {\"code\", \"message\"[, \"field\"]}}`; HLS errors are plain text.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": _components(),
    }


def dumps() -> str:
    """docs/openapi.json's text."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps())
