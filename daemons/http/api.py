"""The quart-trio part of the HTTP daemon: playback API, player telemetry, management API,
health, metrics, OpenAPI. (HLS bytes never come through here: see app.py.)

Every error is JSON: `{"error": {"code", "message"[, "field"]}}` with the matching status.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from daemons.core.domain import distribution, generations, playback, stream_views
from daemons.core.errors import InvalidInput, SenderError
from daemons.core.stats import viewers_per_stream
from daemons.http import management, metrics, openapi, schemas, thumbnails
from daemons.http.responses import NO_STORE, error_response, json_response

TELEMETRY_MAX_BODY = 16 * 1024
def create_api(ctx) -> QuartTrio:
    """The JSON API routes. The HTML pages, the admin page and external endpoints' reports are
    registered beside them by the app (daemons/http/app.py)."""
    app = QuartTrio(__name__, static_folder=None)  # no implicit /static route: pages come with issue 6
    app.config["MAX_CONTENT_LENGTH"] = ctx.config["http.max_request_body"]
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    @app.errorhandler(SenderError)
    async def sender_error(e: SenderError):
        return json_response(e.to_json(), e.http_status)

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 400: "bad_request"}.get(e.code, "http_error")
        return error_response(e.code, code, e.description or e.name)

    # --- health and metrics -----------------------------------------------------------

    @app.get("/healthz")
    async def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz():
        checks = {}
        try:
            await ctx.store.run(lambda s: s.ping())
            checks["store"] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure means not ready, said in the answer
            checks["store"] = f"error: {e}"
        root = ctx.install.spool_root
        checks["spool"] = "ok" if os.access(root, os.W_OK | os.X_OK) else f"error: {root} is not writable"
        ready = all(v == "ok" for v in checks.values())
        return json_response({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics_route():
        await metrics.refresh(ctx)  # the endpoint snapshots, from the store (at most once a second)
        return Response(metrics.render(ctx), content_type="text/plain; version=0.0.4; charset=utf-8", headers=NO_STORE)

    @app.get("/api/openapi.json")
    async def openapi_route():
        return json_response(openapi.document(), headers={"Cache-Control": "max-age=300"})

    # --- distribution: what this node offers its edges -----------------------------------

    @app.get("/api/distribution")
    async def distribution_route():
        if ctx.distribution_key is None:
            return error_response(404, "not_configured", "this node is not part of a distribution (distribution.key_file is not set)")
        if not distribution.node_authorized(ctx.distribution_key, request.headers.get("Authorization")):
            response = error_response(401, "unauthorized", "a node token (Authorization: Bearer snd_…) is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="sender-distribution"'
            return response
        # Each generation with the renditions it runs (its generation.json), not the stream's rows.
        doc = await ctx.store.run(distribution.listing, node_id=ctx.config["node.id"], spool_root=ctx.install.spool_root)
        for s in doc["streams"]:
            g = s["generation"]
            if g is None or not generations.is_active(g["status"]):
                continue
            for r in g["renditions"]:
                view = ctx.spool.rendition(s["id"], g["id"], r["name"])
                view.refresh()
                if view.playlist is not None:
                    r["last"] = view.playlist.last_msn_part()
                    r["target_duration"] = view.playlist.target_duration
                    r["playlist_age_s"] = round(max(0.0, time.time() - view.key[1] / 1e9), 3)
        return json_response(doc)

    # --- playback -----------------------------------------------------------------------

    @app.get("/api/streams")
    async def streams_list():
        rows = await ctx.store.run(stream_views.public_listing)
        return json_response({"streams": rows}, headers={"Cache-Control": "max-age=2"})

    @app.get("/api/streams/<slug>/playback")
    async def playback_route(slug: str):
        entry = await ctx.directory.find(slug)
        if entry is None:
            return error_response(404, "not_found", f"no stream {slug!r}")
        token = request.args.get("token")
        if entry.visibility == "private" and not playback.token_valid(ctx.playback_secret, entry.id, token):
            return error_response(403, "forbidden", "this stream is private: a valid playback token is required")
        doc = await ctx.store.run(partial(playback.info, default_grace=ctx.config["rtmp.reconnect_grace"]), entry.id)
        doc["low_latency"] = ctx.config["hls.low_latency"]
        doc["master_url"] = None
        gid = doc["generation_id"]
        if gid and doc["status"] in ("live", "ended"):
            master = ctx.install.spool_root / "streams" / entry.id / gid / "master.m3u8"
            if master.exists():
                url = f"{ctx.base_url_of(request.scope)}/hls/{entry.id}/{gid}/master.m3u8"
                if entry.visibility == "private":
                    url += f"?token={token}"
                doc["master_url"] = url
        doc["viewers"] = _viewers_of(ctx, entry.id)
        cache = "private, no-store" if entry.visibility == "private" else "max-age=1"
        return json_response(doc, headers={"Cache-Control": cache})

    @app.get("/api/streams/<slug>/thumbnail.jpg")
    async def thumbnail_route(slug: str):
        return await thumbnails.serve(ctx, slug)  # the stream's picture (daemons/http/thumbnails.py)

    # --- player telemetry -------------------------------------------------------------

    @app.post("/api/player/events")
    async def player_events():
        client = ctx.client_of(request.scope)
        if ctx.telemetry_limiter.blocked(client):
            return error_response(429, "rate_limited", "too many player events from this address; slow down",)
        body = await request.get_data(cache=False)
        if len(body) > TELEMETRY_MAX_BODY:
            return error_response(413, "body_too_large", f"player events are limited to {TELEMETRY_MAX_BODY} bytes")
        batch = _parse_events(body)
        entry = await ctx.directory.find(batch["stream"])
        if entry is None:
            raise InvalidInput(f"no stream {batch['stream']!r}", field="stream")
        for _ in batch["events"]:
            ctx.telemetry_limiter.record(client)
        for e in batch["events"]:
            ctx.counters.player_events[e["kind"]] += 1
        await ctx.store.run(playback.record_events, entry.id, batch, ctx.config["http.telemetry_keep_events"])
        return json_response({"accepted": len(batch["events"])}, 202)

    # --- management API (Legion) ------------------------------------------------------

    @app.post("/api/admin/management")
    async def management_route():
        client = ctx.client_of(request.scope)
        if ctx.auth_failures.blocked(client):  # guessing tokens: slowed down per address
            return json_response({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32029, "message": "too many failed logins from this address; try again in a minute",
                "data": {"field": None, "type": "rate_limited"}}}, 429, headers={"Retry-After": "60"})
        body = await request.get_data(cache=False)
        status, payload = await management.handle(ctx, body, request.headers.get("Authorization"))
        if status in (401, 403):
            ctx.auth_failures.record(client)
        headers = {"WWW-Authenticate": management.BEARER_REALM} if status == 401 else None
        return json_response(payload, status, headers=headers)

    return app


def _viewers_of(ctx, stream_id: str) -> int:
    renditions = [r for w in metrics.all_worker_stats(ctx) for r in w.get("viewers", ()) if r["stream_id"] == stream_id]
    return viewers_per_stream(renditions).get(stream_id, 0)


def _parse_events(body: bytes) -> dict:
    """The batch (`schemas.PlayerEventBatch`), each event with its value and detail (None when absent)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body must be a JSON object") from None
    try:
        batch = schemas.check(schemas.PlayerEventBatch, doc)
    except schemas.Invalid as e:
        raise InvalidInput(e.message, field=e.field) from None
    events = [{"kind": e["kind"], "value": e.get("value"), "detail": e.get("detail")} for e in batch["events"]]
    return {"session_id": batch["session_id"], "stream": batch["stream"], "generation_id": batch.get("generation_id"),
            "events": events}

